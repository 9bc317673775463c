-- KEYS: lists (or packed, as for push). ARGV[4]: cap, ARGV[5..]: ids.
local cap = tonumber(ARGV[4])
local nids = #ARGV - 4
local drop = {}
if nids > 8 then for x = 5, #ARGV do drop[ARGV[x]] = true end end
each_key(ARGV, function(k)
  local n = redis.call('LLEN', k)
  if n == 0 then return end
  trim(k, n, cap)  -- a pending trim first: what it cuts must not reappear
  if nids <= 8 then
    for x = 5, #ARGV do redis.call('LREM', k, 1, ARGV[x]) end
  else
    local all = redis.call('LRANGE', k, 0, -1)
    local kept = {}
    for x = 2, #all do if not drop[all[x]] then kept[#kept + 1] = all[x] end end
    if #kept < #all - 1 then rewrite(k, all[1], kept, 0) end
  end
end)
return 1
