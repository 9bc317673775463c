-- KEYS: list. ARGV: before ('' = none), n, cap, ttl ms (0: keep).
-- Returns nil (absent or building) | {floor, ids ascending...}.
return slice_list(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
