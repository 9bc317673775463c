-- The first round of a home read in one call. KEYS: the reader's home list, their author
-- list, their following version[, the celebrity set's version (absent on a Cluster: another
-- slot)[, the watched post cache's deletes version]]. ARGV: before ('' = none), n, cap,
-- home ttl ms, author ttl ms[, a fresh random version for the deletes key if it is missing].
-- Returns {following version | nil, celebrity version | nil, home slice | nil,
-- author slice | nil, deletes version | nil}, each slice as slice.lua answers.
-- A missing deletes version is created here (with no TTL, like the post cache's delete
-- makes it): a page kept under "missing" must not match after a delete made it and an
-- eviction took it again; a fresh random value each time it is missing rules that out.
local before, n, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local fv, cv, dv
if #KEYS > 4 then
  local v = redis.call('MGET', KEYS[3], KEYS[4], KEYS[5])  -- one call: cheaper in Lua
  fv, cv, dv = v[1], v[2], v[3]
  if not dv then
    redis.call('SET', KEYS[5], ARGV[6])
    dv = ARGV[6]
  end
else
  fv, cv, dv = redis.call('GET', KEYS[3]), false, false
  if #KEYS > 3 then cv = redis.call('GET', KEYS[4]) end
end
return {fv, cv,
        slice_list(KEYS[1], before, n, cap, tonumber(ARGV[4])),
        slice_list(KEYS[2], before, n, cap, tonumber(ARGV[5])), dv}
