-- wrk script: GET /v1/timelines/home?limit=20, rotating bearer tokens read from the file named
-- by $TOKENS (one token a line; e.g. `cut -f2 demo-data/demo-tokens.tsv | head -1000`).
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/v1/timelines/home?limit=20", {["Authorization"] = "Bearer " .. tokens[i]})
end
