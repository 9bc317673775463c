-- KEYS: list. ARGV: mode, floor, cap, ttl ms, ids ascending without duplicates...
--   mode 'i' install (create if absent), 'I' install only if the list exists (was begun),
--   'm' merge (only if it exists; building mark and TTL untouched). Returns 1 if applied.
local k, mode, cap, ttl = KEYS[1], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local s = head(k)
local cur
if s then
  cur = redis.call('LRANGE', k, 1, -1)
else
  if mode ~= 'i' then return 0 end
  s, cur = '!0', {}
end
local f, building = floor_of(s), is_building(s)
if gt(ARGV[2], f) then f = ARGV[2] end
if mode ~= 'm' then building = false end
-- merge two ascending lists, dropping duplicates
local out, i, j, nc, na = {}, 1, 5, #cur, #ARGV
while i <= nc or j <= na do
  local a, b = cur[i], ARGV[j]
  if b == nil or (a ~= nil and gt(b, a)) then out[#out + 1] = a; i = i + 1
  elseif a == nil or gt(a, b) then out[#out + 1] = b; j = j + 1
  else out[#out + 1] = a; i = i + 1; j = j + 1 end
end
local from = 1
if #out > cap then
  from = #out - cap + 1
  if gt(out[from - 1], f) then f = out[from - 1] end
end
local kept = {}
for x = from, #out do kept[#kept + 1] = out[x] end
if mode == 'm' then ttl = 0 end
rewrite(k, mkhead(f, building), kept, ttl)
return 1
