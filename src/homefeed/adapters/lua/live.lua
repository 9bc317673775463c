-- The home registry, <prefix>:{live}:home (standalone server only): a SET of user ids, every
-- user whose home list exists is in it (users whose list is gone may be too), plus the
-- member '!' once that is known to hold. begin.lua and union.lua (install) add the user in
-- the same script that creates the list; a member leaves only here, in a script that has
-- just seen its list absent; so the invariant holds from the moment '!' is set. The
-- registry has no TTL (volatile-lru never evicts it); if it goes anyway, '!' goes with it
-- and the client seeds it again (seed_done.lua). It lets a fan-out intersect from the small
-- side: the users with a home list (10,000) rather than the author's followers (1,000,000).
--
-- KEYS: the registry. ARGV: limit, the home key's prefix and suffix (the id goes between).
-- Returns {0} if the registry is not known complete; {1} if it has more than limit users
-- (then 256 random members are checked and the gone ones removed, so that members whose
-- list expired cannot keep it over the limit forever); else {2, 'id,id,...'}: the users
-- whose home list exists now (the others are removed).
local reg, limit, pre, suf = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
if redis.call('SISMEMBER', reg, '!') == 0 then return {0} end
local function alive(m)
  if string.byte(m, 1) < 48 or string.byte(m, 1) > 57 then return false end  -- '!', '?...'
  if redis.call('EXISTS', pre .. m .. suf) == 1 then return true end
  redis.call('SREM', reg, m)
  return false
end
if redis.call('SCARD', reg) - 1 > limit then
  for _, m in ipairs(redis.call('SRANDMEMBER', reg, 256)) do alive(m) end
  return {1}
end
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', reg)) do
  if alive(m) then out[#out + 1] = m end
end
return {2, table.concat(out, ',')}
