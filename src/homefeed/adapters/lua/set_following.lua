-- KEYS: fol, folv. ARGV: version ('' = unconditional), ttl ms, ids...
if ARGV[1] ~= '' then
  local v = redis.call('GET', KEYS[2]) or '0'
  if v ~= ARGV[1] then return 0 end
end
redis.call('DEL', KEYS[1])
many('SADD', KEYS[1], ARGV, 3, '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
