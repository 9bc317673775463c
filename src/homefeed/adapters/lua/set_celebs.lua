-- KEYS: celebs, celebs version. ARGV: fresh version, ids...
redis.call('DEL', KEYS[1])
many('SADD', KEYS[1], ARGV, 2, '0')
redis.call('SET', KEYS[2], ARGV[1])
return 1
