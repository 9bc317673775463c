-- KEYS: lists (or none, and ARGV[1..3] = key prefix, suffix, packed user ids). ARGV[4..6]:
-- id, cap, slack. ARGV[7..9]: the kind's "top" key ('' where every key must be declared: a
-- Cluster), the top to assume when that key is missing, this push's token. Returns {how many
-- lists took the id, 1 if they took it by the fast path}.
--
-- The top key holds "<id> <token>": no list of the kind holds an id above <id> (every script
-- that adds ids raises it). An id above it is newer than every id in every list, so no list
-- needs an order or duplicate check: one RPUSHX (which also skips absent lists) instead of
-- LINDEX + RPUSH, half the commands of the common fan-out. The token lets the later calls of
-- the same push (one call per `batch` followers, the client never repeats a key) go on by
-- the fast path after the first call raised the top to the id; a redelivery or a concurrent
-- push of the same id has another token. Anything else (a late id, racing fan-outs) takes
-- the checked path below. A missing top (a new deployment, a deleted key) is recreated at
-- ARGV[8], which the client sets above any id made so far (its clock plus a margin); the key
-- has no TTL, so volatile-lru never evicts it, and FLUSHALL takes the lists with it.
local m, cap, slack, topk = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local taken = 0
local fast = false
if topk ~= nil and topk ~= '' then
  local v = redis.call('GET', topk)
  local top, tok
  if v then
    top, tok = string.match(v, '^(%d+) (%w*)$')
  end
  if not top then
    top, tok = ARGV[8], ''
    redis.call('SET', topk, top .. ' ')
  end
  if gt(m, top) then
    fast = true
    redis.call('SET', topk, m .. ' ' .. ARGV[9])
  elseif m == top and tok ~= '' and tok == ARGV[9] then
    fast = true
  end
end
local function push(k)
  local t = redis.call('LINDEX', k, -1)
  if not t then return end  -- absent: inactive or evicted, skipped
  local n
  if string.byte(t, 1) == 33 or gt(m, t) then
    n = redis.call('RPUSH', k, m)  -- the common case: newer than everything in the list
  elseif t == m then
    return
  else
    -- Older than the newest (concurrent fan-outs, redelivery, a late post).
    n = redis.call('LLEN', k)
    if n - 1 >= cap then  -- full: an id older than every kept id and not above the floor
      local first = n - cap  -- is cut off at once (the memory adapter skips it)
      if gt(redis.call('LINDEX', k, first), m) then
        local f = floor_of(redis.call('LINDEX', k, 0))
        if first > 1 then
          local vf = redis.call('LINDEX', k, first - 1)
          if gt(vf, f) then f = vf end
        end
        if not gt(m, f) then return end
      end
    end
    -- Usually only a few places from the end: look there first, move the newer ids aside.
    local found = 0
    for j = 2, 5 do
      local v = redis.call('LINDEX', k, -j)
      if v == m then return end
      if string.byte(v, 1) == 33 or gt(m, v) then found = j; break end
    end
    if found > 0 then
      local newer = redis.call('RPOP', k, found - 1)  -- newest first
      local args = {m}
      for x = #newer, 1, -1 do args[#args + 1] = newer[x] end
      n = redis.call('RPUSH', k, unpack(args))
    else  -- deeper: binary search, then LINSERT
      local i = lower_bound(k, 1, n - 1, m)
      local v = redis.call('LINDEX', k, i)
      if v == m then return end
      n = redis.call('LINSERT', k, 'BEFORE', v, m)
    end
  end
  taken = taken + 1
  if n - 1 - cap > slack then trim(k, n, cap) end
end
if fast then  -- packed only (a top key is never given with KEYS)
  local pre, suf = ARGV[1], ARGV[2]
  for id in string.gmatch(ARGV[3], '%d+') do
    local k = pre .. id .. suf
    local n = redis.call('RPUSHX', k, m)
    if n > 0 then
      taken = taken + 1
      if n - 1 - cap > slack then trim(k, n, cap) end
    end
  end
  return {taken, 1}
end
if #KEYS > 0 then
  for i = 1, #KEYS do push(KEYS[i]) end
else
  local pre, suf = ARGV[1], ARGV[2]
  for id in string.gmatch(ARGV[3], '%d+') do push(pre .. id .. suf) end
end
return {taken, 0}
