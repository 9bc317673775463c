-- KEYS: celebs, celebs version. Returns nil | {version, members...}, read together.
local v = redis.call('GET', KEYS[2])
if not v then return false end
local out = redis.call('SMEMBERS', KEYS[1])
table.insert(out, 1, v)
return out
