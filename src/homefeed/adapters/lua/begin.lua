-- KEYS: list [, the home registry (live.lua): a home list on a standalone server]. ARGV: ttl ms
-- for a list created here.
local k = KEYS[1]
local s = head(k)
if s then
  if not is_building(s) then redis.call('LSET', k, 0, s .. 'b') end
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, ARGV[1]) end
else
  redis.call('RPUSH', k, '!0b')
  redis.call('PEXPIRE', k, ARGV[1])
end
if KEYS[2] then redis.call('SADD', KEYS[2], string.match(k, '{(%d+)}')) end
return 1
