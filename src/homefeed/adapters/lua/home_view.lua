-- The first round of a home read in one call. KEYS: the reader's home list, their author
-- list, their following version[, the celebrity set's version (absent on a Cluster: another
-- slot)]. ARGV: before ('' = none), n, cap, home ttl ms, author ttl ms.
-- Returns {following version | nil, celebrity version | nil, home slice | nil,
-- author slice | nil}, each slice as slice.lua answers.
local before, n, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cv = false
if #KEYS > 3 then cv = redis.call('GET', KEYS[4]) end
return {redis.call('GET', KEYS[3]), cv,
        slice_list(KEYS[1], before, n, cap, tonumber(ARGV[4])),
        slice_list(KEYS[2], before, n, cap, tonumber(ARGV[5]))}
