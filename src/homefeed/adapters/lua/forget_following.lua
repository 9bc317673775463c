-- KEYS: fol, folv. ARGV: fresh random version, ttl ms.
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCR', KEYS[2])
else redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
