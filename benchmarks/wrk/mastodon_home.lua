-- wrk script: GET /api/v1/timelines/home?limit=20 (the Mastodon home timeline), rotating
-- bearer tokens read from the file named by $TOKENS (one token a line), like home.lua.
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/api/v1/timelines/home?limit=20", {["Authorization"] = "Bearer " .. tokens[i]})
end
