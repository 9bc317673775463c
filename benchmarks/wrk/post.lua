-- wrk script: POST /v1/posts with rotating bearer tokens read from the file named by $TOKENS
-- (one token a line). Each post's text is unique (a counter), so the index grows as in life.
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  local token = tokens[(i - 1) % #tokens + 1]
  local body = '{"text":"wrk post number ' .. i .. ' about timelines and fan-out"}'
  return wrk.format("POST", "/v1/posts",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
