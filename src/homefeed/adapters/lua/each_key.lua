-- Fan-out scripts on a standalone server take the user ids packed in one argument and build
-- the key names themselves: a 10,000-key call then costs the client one short string instead
-- of 10,000 arguments to encode, and the server as many fewer arguments to parse. (Keys not
-- passed as KEYS are fine on a standalone server; against a Cluster, per-key mode passes each
-- key as KEYS[1] so that it is routed by its slot.)
local function each_key(argv, fn)
  if #KEYS > 0 then
    for i = 1, #KEYS do fn(KEYS[i], i) end
  else
    local pre, suf, i = argv[1], argv[2], 0
    for id in string.gmatch(argv[3], '%d+') do i = i + 1; fn(pre .. id .. suf, i) end
  end
end
