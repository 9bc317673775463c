-- docs: slice_list, the read of one id list (slice.lua, home_view.lua start with it, after
-- timeline_lib).
-- k: list key; before ('' = none), n, cap, ttl ms (0: keep).
-- Returns false (absent or building) | {floor, ids ascending...}.
local function slice_list(k, before, n, cap, ttl)
  local s = head(k)
  if not s or is_building(s) then return false end
  local len = redis.call('LLEN', k)
  local floor = floor_of(s)
  local lo, hi = 1, len - 1
  local extra = len - 1 - cap
  if extra > 0 then  -- not trimmed yet: the ids beyond the newest cap count as cut off
    local vf = redis.call('LINDEX', k, extra)
    if gt(vf, floor) then floor = vf end
    lo = extra + 1
  end
  if before ~= '' and hi >= lo and not gt(before, redis.call('LINDEX', k, hi)) then
    hi = lower_bound(k, lo, hi, before) - 1
  end
  if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
  local out
  if n > 0 and hi >= lo then
    local from = hi - n + 1
    if from < lo then from = lo end
    out = redis.call('LRANGE', k, from, hi)
  else
    out = {}
  end
  table.insert(out, 1, floor)
  return out
end
