-- KEYS: fol, folv. ARGV: a fresh version. Returns {version | nil, members...}, read together
-- (no members: no set). A set that outlived its version (the version's TTL runs from the last
-- follow change, the set's from its load) gets the fresh one, expiring with the set: a set
-- exists only if no follow change dropped it since its load, so it is current.
local out = redis.call('SMEMBERS', KEYS[1])
local v = redis.call('GET', KEYS[2])
if not v and #out > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
    v = ARGV[1]
  end
end
table.insert(out, 1, v)
return out
