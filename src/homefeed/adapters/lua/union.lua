-- KEYS: list [, the kind's top key (see push.lua) [, the home registry (live.lua)]]. ARGV:
-- mode, floor, cap, ttl ms, the top to assume when the top key is missing, ids ascending
-- without duplicates...
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
-- an installed home list is registered (live.lua): a fan-out from the small side reaches it
if KEYS[3] and mode ~= 'm' then redis.call('SADD', KEYS[3], string.match(k, '{(%d+)}')) end
local f, building = floor_of(s), is_building(s)
if gt(ARGV[2], f) then f = ARGV[2] end
if mode ~= 'm' then building = false end
-- ids may enter the list: raise the kind's top to the largest (pushes above it skip checks)
if KEYS[2] and KEYS[2] ~= '' and #ARGV >= 6 then
  local v = redis.call('GET', KEYS[2])
  local top = v and string.match(v, '^(%d+) ')
  if not top then top = ARGV[5] end
  if not v or gt(ARGV[#ARGV], top) then
    if gt(ARGV[#ARGV], top) then top = ARGV[#ARGV] end
    redis.call('SET', KEYS[2], top .. ' ')
  end
end
-- merge two ascending lists, dropping duplicates
local out, i, j, nc, na = {}, 1, 6, #cur, #ARGV
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
