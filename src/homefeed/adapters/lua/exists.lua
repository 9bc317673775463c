-- KEYS: lists (or packed, as for push). Returns a string of '0'/'1', one per key.
local out = {}
each_key(ARGV, function(k, i) out[i] = redis.call('EXISTS', k) end)
return table.concat(out)
