-- wrk script: GET /v1/timelines/home?limit=20, rotating bearer tokens read from the file named
-- by $TOKENS (one token a line; e.g. `cut -f2 demo-data/demo-tokens.tsv | head -1000`).
local tokens = {}
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do tokens[#tokens + 1] = line end
-- $ACCEPT_ENCODING, when set and not empty, is sent as Accept-Encoding (issue14_table.py --accept-encoding).
local ae = os.getenv("ACCEPT_ENCODING") or ""
local i = 0
local headers = function(token)
  local h = {["Authorization"] = "Bearer " .. token}
  if ae ~= "" then h["Accept-Encoding"] = ae end
  return h
end
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/v1/timelines/home?limit=20", headers(tokens[i]))
end
