-- KEYS: celebs, celebs version. ARGV: fresh version, user id, '1' add | '0' remove.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local r
if ARGV[3] == '1' then r = redis.call('SADD', KEYS[1], ARGV[2])
else r = redis.call('SREM', KEYS[1], ARGV[2]) end
if r == 1 then redis.call('SET', KEYS[2], ARGV[1]) end
return r
