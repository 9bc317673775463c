-- The GCRA of homefeed.adapters.redis_ratelimit, for many keys in one call.
-- KEYS: the keys. ARGV[1]: now (us; "" = this server's TIME); ARGV[2]: least TTL (ms); then
-- for the i-th key ARGV[3i], ARGV[3i+1], ARGV[3i+2]: interval (us), burst, cost.
-- Returns, per key, 0 (allowed, TAT stored) or the wait in microseconds (refused, nothing
-- stored), the keys taken one after the other. The steps are the port's
-- (homefeed.ports.RateLimiter), in integers: exact in Lua's doubles below 2^53 us.
if redis.replicate_commands then redis.replicate_commands() end
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local min_ttl = tonumber(ARGV[2])
local waits = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local cost = tonumber(ARGV[3 * i + 2])
  local tat = now
  local stored = redis.call('GET', KEYS[i])
  if stored then
    tat = tonumber(stored)
    if tat < now then tat = now end
  end
  local new = tat + cost * interval
  local allow_at = new - burst * interval
  if allow_at > now then
    waits[i] = allow_at - now
  else
    waits[i] = 0
    local ttl = math.max(math.ceil((new - now) / 1000), min_ttl)
    redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', ttl)
  end
end
return waits
