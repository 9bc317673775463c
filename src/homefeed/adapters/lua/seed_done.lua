-- The end of seeding the home registry (live.lua). The client added a token '?<random>' to
-- the registry, then SCANned every home list and added their users: every list that existed
-- when the token was added is either found by the SCAN or gone, and every list created
-- since was added by its own script. That holds only if the registry was not lost in
-- between (eviction, a DEL): then the token is gone too, and the registry is not marked.
-- KEYS: the registry. ARGV: the token. Returns 1 if marked complete.
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[1], '!')
return 1
