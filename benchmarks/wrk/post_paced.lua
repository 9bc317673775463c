-- wrk script: POST /v1/posts at a paced rate: each connection waits $DELAY_MS (default 10)
-- between its posts (wrk's delay()), so `-c1` posts about 1000 / (DELAY_MS + latency) a second.
-- Rotating bearer tokens from the file named by $TOKENS; each text unique (a counter).
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do tokens[#tokens + 1] = line end
local pause = tonumber(os.getenv("DELAY_MS") or "10")
local i = 0
request = function()
  i = i + 1
  local token = tokens[(i * 7919) % #tokens + 1]
  local body = '{"text":"paced post number ' .. i .. ' while others read"}'
  return wrk.format("POST", "/v1/posts",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
delay = function() return pause end
