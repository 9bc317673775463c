"""Timeline cache and post cache on Redis (scale-out profile).

Same semantics as ``memory_cache`` (the contract), shared by every API and worker process.

Id lists
--------
One Redis **list** per id list, ``<prefix>:{<user id>}:home`` and ``<prefix>:{<user id>}:author``
(the hash tag keeps all of a user's keys in one Cluster slot): ``[head, id, id, ...]``, the ids
ascending (oldest first) as canonical decimal strings, which a listpack stores as 8-byte
integers. The head is ``"!" + floor + ("b" if building)``.

Why a list and not a sorted set. Scores are doubles (53-bit mantissa) so 63-bit ids cannot be
scores; a sorted set would need members = 19-digit zero-padded ids at score 0 (lex order =
numeric order, ``ZRANGE BYLEX REV LIMIT``), or score ``id >> 12`` with padded members. Both
are exact, and both were measured here against the list: with 10,000 timelines of 800 ids,
a sorted set costs about 93 KB per timeline (a skiplist past 128 entries) and 4.4-5.4 us of
Redis CPU per fan-out insert; the list costs 8.6 KB (10.7x less) and about 2.5 us per insert,
because a fan-out insert is nearly always the newest id: ``LINDEX -1`` then ``RPUSH``, both
O(1) on the tail node, where a skiplist insert touches ~10 scattered nodes and a dict. The
order is kept by the scripts: an id older than the newest (concurrent fan-outs, redelivery)
is placed by binary search (``LINDEX``) and ``LINSERT``; a duplicate is never added. Pages
below ``before`` are found by the same binary search, then one ``LRANGE``.

The head makes the list exist: Redis has no empty list, yet ``begin`` must create an empty
list marked building and ``remove`` may empty a list that must go on existing. It also keeps
floor, building mark, ids and TTL in ONE key: one existence test in fan-out, one TTL, one
slot, nothing to drift apart.

A home list's TTL is ``inactive_seconds``, refreshed by every ``slice`` (a read): an expired
key is exactly "not read for inactive_days: skipped by fan-out, rebuilt on the next read".
Author lists get ``author_seconds`` the same way. ``begin`` creates a list with the short
``build_seconds`` TTL, so a rebuild that crashed between ``begin`` and ``install`` does not
leave a list that fan-out keeps feeding forever; ``install`` sets the long TTL.

Trimming is **lazy** on the fan-out path: a push trims only when the list has grown
``trim_slack`` ids past the cap (one ``LPOP count`` + ``LPUSH`` of the new head), so the
steady-state push is two commands. Reads stay exact: ``slice`` treats the ids beyond the
newest ``cap`` as already cut off (they and the stored floor give the effective floor), and
``install``, ``merge`` and ``remove`` trim for real, so every answer equals the memory
adapter's, which trims at once. (The newest ``cap`` of a union of inserts is the same set
whether trimmed after every insert or once at the end, and so is the largest id cut off.)

Every operation is one Lua script (EVALSHA), hence atomic: a push cannot interleave with a
``begin`` or an ``install`` of the same list. A call over many lists (push, remove, exists)
goes by ``fanout``:

- ``packed`` (standalone server, the default): ``batch`` user ids packed in ONE argument per
  script call, the script building the key names; all calls of a fan-out in one pipeline.
  A 10,000-follower push is ten calls: the client encodes ten short strings, not 10,000
  arguments.
- ``per-node`` (a ``RedisCluster`` client, the default there): the same, one call per node
  over the keys it serves, all nodes at once; the script is flagged
  ``allow-cross-slot-keys`` (Redis >= 7.0). A call that fails because a slot moved is redone
  one key at a time.
- ``per-key``: one call per key, as KEYS[1], pipelined (anything that routes by declared
  keys). Bound by the client's CPU: several times slower.

Graph facts
-----------
``<prefix>:{<uid>}:fol``: the following set (plus the member ``0``, never a user id, so that
following nobody is cached too and members stay integers: an intset, 8 bytes an id), TTL
``graph_seconds``. ``<prefix>:{<uid>}:folv``: its version. A version read when the key is
absent is created with a random start, and ``forget_following`` changes it (INCR, or a new
random value if it was lost): so a ``FLUSHALL`` between ``following_version`` and
``set_following`` makes the versions differ, and the possibly stale set is not cached.

``<prefix>:{celebs}`` holds the celebrity set (plus the member ``0``: the "loaded" marker,
since an empty set and a missing one are the same thing in Redis) and ``<prefix>:{celebs}:v``
a random version that every change replaces. ``celebrities()`` is on every home read: each
process keeps the last set it read and, while the version is unchanged, pays one GET of a
short string instead of an SMEMBERS of the whole set. Exact, not eventually consistent.

Posts
-----
``<prefix>:p:<id>``: a string, the orjson array ``[author id, handle, text, created_at]`` with
TTL ``ttl_seconds`` (default a day). Reading one builds the post with its JSON-ready form
already made (``Post._public``), so a hit costs no id or date formatting. Posts are
immutable, so ``put_many`` writes with NX, and ``delete`` leaves a tombstone for
``tombstone_seconds``: a reader that fetched the post from the database just before it was
deleted cannot put it back. (On a Cluster, ``get_many`` is a pipeline of GETs, since an
MGET must stay in one slot.)

Memory policy a deployment must set
-----------------------------------
``maxmemory <bytes>`` and ``maxmemory-policy volatile-lru`` (or ``volatile-lfu``). Every key
here has a TTL except the celebrity set and its version, so only those two are never evicted.

- A timeline, author list, following set or post evicted while the celebrity set stays: the
  next read finds it absent and rebuilds it from the record store. Correct, merely slower.
- The celebrity set evicted while timelines stay (what ``allkeys-*`` policies allow) would be
  WRONG: it is reloaded from follower counts, so an author still awaiting demotion (count
  already below the threshold, their posts never pushed) would silently stop being pulled
  AND never be merged; their posts would be missing from cached timelines.
- ``noeviction`` turns a full memory into errors on every push. Don't.
- ``FLUSHALL`` or a restart without persistence loses everything at once: consistent, every
  method answers "absent" and every list is rebuilt from the record store.

No persistence is needed (``save ""``, ``appendonly no``): nothing here is the only copy.
Needs Redis >= 7.0 (``SET NX GET``, ``LPOP`` with a count, script flags on a Cluster).

When Redis is down
------------------
Every public method turns Redis's connection-class errors (refused, reset, timed out,
``LOADING``, cluster down, a read-only replica after a failover) into ``Unavailable``
naming the cache, and logs the outage once (``homefeed.adapters.outage``); within 0.25 s
of a failure a call fails at once without trying, so that reads falling back to the record
store do not each wait for a refused connection (Redis is still tried a few times a second,
and its return is noticed). Clients made from
a URL connect within 1 s and wait at most 2 s for an answer, and retry a command twice on a
fresh connection after a connection error (a restarted server; every script here is
idempotent), so a stopped server answers within a fraction of a second and a hung one
within about 2 s. ``FeedManager`` then serves reads from the record store and leaves cache
updates to the consumers, which wait for Redis to return.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import random
from typing import Any, Callable, Sequence, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis import exceptions as redis_errors
from redis.exceptions import NoScriptError, RedisError, ResponseError

from homefeed.adapters.outage import OutageLog
from homefeed.domain.ids import MAX_ID
from homefeed.domain.model import Post
from homefeed.ports import IdSlice

KINDS = ("home", "author")

try:  # redis-py >= 5: cluster client lives here
    from redis.asyncio.cluster import RedisCluster as _AsyncCluster
except Exception:  # pragma: no cover
    _AsyncCluster = ()  # type: ignore[assignment]


def _m(id_: int) -> bytes:
    """An id as a list element: canonical decimal (a listpack stores it as an integer)."""
    return b"%d" % id_


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _new_version() -> int:
    return random.getrandbits(60) | 1  # never 0: 0 is what an absent version reads as


# ---------------------------------------------------------------------------------------------
# outages
# ---------------------------------------------------------------------------------------------

#: Errors that say Redis cannot serve now, not that a command is wrong: the connection
#: (refused, reset, timed out; BusyLoadingError is one), a cluster without a quorum or
#: resharding, a primary demoted to a read-only replica by a failover. OSError and
#: TimeoutError: what the asyncio client may let through from its socket.
_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    OSError,
    asyncio.TimeoutError,
)

#: Redis, as this process sees it: both caches share it (one warning per outage).
OUTAGE = OutageLog("Redis")

_C = TypeVar("_C", bound=type)


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if OUTAGE.since is not None and OUTAGE.recently_failed():
            raise OUTAGE.skipped()  # failed a moment ago: the caller's fallback, at once
        try:
            result = await fn(*args, **kwargs)
        except _DOWN as exc:
            raise OUTAGE.failed(exc) from exc
        if OUTAGE.since is not None:
            OUTAGE.succeeded()
        return result

    return call


def _outage_aware(cls: _C) -> _C:
    """Class decorator: every public coroutine method raises ``Unavailable`` (503) instead
    of a Redis connection error, and reports the outage (see the module docstring)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and name != "close" and inspect.iscoroutinefunction(member):
            setattr(cls, name, _guarded(member))
    return cls


# ---------------------------------------------------------------------------------------------
# Lua. Ids stay strings inside Lua: Lua numbers are doubles and would round 63-bit ids.
# A list is [head, id, id, ...]: head = '!' .. floor .. ['b'], ids ascending (oldest first).
# ---------------------------------------------------------------------------------------------

_LUA_LIB = r"""
-- a > b for two canonical decimal strings (no leading zeros), exactly (never strcoll)
-- (rounding to doubles is monotonic, so doubles that differ decide; equal ones need the halves)
local function gt(a, b)
  local x, y = tonumber(a), tonumber(b)
  if x ~= y then return x > y end
  local la, lb = #a, #b
  if la ~= lb then return la > lb end
  if la <= 15 then return false end
  local a1, b1 = tonumber(string.sub(a, 1, la - 9)), tonumber(string.sub(b, 1, la - 9))
  if a1 ~= b1 then return a1 > b1 end
  return tonumber(string.sub(a, la - 8)) > tonumber(string.sub(b, la - 8))
end
-- the list's head ('!' .. floor .. ['b']), or nil if the list does not exist
local function head(k)
  local s = redis.call('LINDEX', k, 0)
  if s and string.byte(s, 1) == 33 then return s end
  return nil
end
local function is_building(s) return string.byte(s, -1) == 98 end
local function floor_of(s)
  if is_building(s) then return string.sub(s, 2, -2) end
  return string.sub(s, 2)
end
local function mkhead(floor, building)
  if building then return '!' .. floor .. 'b' end
  return '!' .. floor
end
-- trim to the newest cap ids (n = LLEN), raising the floor to the largest id cut off
local function trim(k, n, cap)
  local extra = n - 1 - cap
  if extra <= 0 then return end
  local popped = redis.call('LPOP', k, extra + 1)  -- the head and the extra oldest ids
  local s, cut = popped[1], popped[#popped]
  local f = floor_of(s)
  if gt(cut, f) then f = cut end
  redis.call('LPUSH', k, mkhead(f, is_building(s)))
end
-- smallest index in [lo, hi] whose id is >= x (hi + 1 if none); the ids there are ascending
local function lower_bound(k, lo, hi, x)
  local a, b = lo, hi + 1
  while a < b do
    local mid = math.floor((a + b) / 2)
    if gt(x, redis.call('LINDEX', k, mid)) then a = mid + 1 else b = mid end
  end
  return a
end
local function rpush_all(k, items, from)
  local args = {}
  for i = from, #items do
    args[#args + 1] = items[i]
    if #args >= 4000 then redis.call('RPUSH', k, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('RPUSH', k, unpack(args)) end
end
-- replace the whole list, keeping its TTL unless ttl > 0 is given
local function rewrite(k, hd, ids, ttl)
  if ttl <= 0 then ttl = redis.call('PTTL', k) end
  redis.call('DEL', k)
  redis.call('RPUSH', k, hd)
  rpush_all(k, ids, 1)
  if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
end
local function many(cmd, k, argv, from, first)
  local args = {}
  if first then args[1] = first end
  for i = from, #argv do
    args[#args + 1] = argv[i]
    if #args >= 4000 then redis.call(cmd, k, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call(cmd, k, unpack(args)) end
end
"""

# Fan-out scripts on a standalone server take the user ids packed in one argument and build
# the key names themselves: a 10,000-key call then costs the client one short string instead
# of 10,000 arguments to encode, and the server as many fewer arguments to parse. (Keys not
# passed as KEYS are fine on a standalone server; against a Cluster, per-key mode passes each
# key as KEYS[1] so that it is routed by its slot.)
_EACH_KEY = r"""
local function each_key(argv, fn)
  if #KEYS > 0 then
    for i = 1, #KEYS do fn(KEYS[i], i) end
  else
    local pre, suf, i = argv[1], argv[2], 0
    for id in string.gmatch(argv[3], '%d+') do i = i + 1; fn(pre .. id .. suf, i) end
  end
end
"""

# KEYS: lists (or none, and ARGV[1..3] = key prefix, suffix, packed user ids). ARGV[4..6]:
# id, cap, slack. Returns how many lists took the id.
_PUSH = r"""
local m, cap, slack = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local taken = 0
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
if #KEYS > 0 then
  for i = 1, #KEYS do push(KEYS[i]) end
else
  local pre, suf = ARGV[1], ARGV[2]
  for id in string.gmatch(ARGV[3], '%d+') do push(pre .. id .. suf) end
end
return taken
"""

# KEYS: list. ARGV: before ('' = none), n, cap, ttl ms (0: keep).
# Returns nil (absent or building) | {floor, ids ascending...}.
_SLICE = r"""
local k = KEYS[1]
local n, cap, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
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
if ARGV[1] ~= '' and hi >= lo and not gt(ARGV[1], redis.call('LINDEX', k, hi)) then
  hi = lower_bound(k, lo, hi, ARGV[1]) - 1
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
"""

# KEYS: list. ARGV: ttl ms for a list created here.
_BEGIN = r"""
local k = KEYS[1]
local s = head(k)
if s then
  if not is_building(s) then redis.call('LSET', k, 0, s .. 'b') end
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, ARGV[1]) end
else
  redis.call('RPUSH', k, '!0b')
  redis.call('PEXPIRE', k, ARGV[1])
end
return 1
"""

# KEYS: list. ARGV: mode, floor, cap, ttl ms, ids ascending without duplicates...
#   mode 'i' install (create if absent), 'I' install only if the list exists (was begun),
#   'm' merge (only if it exists; building mark and TTL untouched). Returns 1 if applied.
_UNION = r"""
local k, mode, cap, ttl = KEYS[1], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local s = head(k)
local cur
if s then
  cur = redis.call('LRANGE', k, 1, -1)
else
  if mode ~= 'i' then return 0 end
  s, cur = '!0', {}
end
local f, building = floor_of(s), is_building(s)
if gt(ARGV[2], f) then f = ARGV[2] end
if mode ~= 'm' then building = false end
-- merge two ascending lists, dropping duplicates
local out, i, j, nc, na = {}, 1, 5, #cur, #ARGV
while i <= nc or j <= na do
  local a, b = cur[i], ARGV[j]
  if b == nil or (a ~= nil and gt(b, a)) then out[#out + 1] = a; i = i + 1
  elseif a == nil or gt(a, b) then out[#out + 1] = b; j = j + 1
  else out[#out + 1] = a; i = i + 1; j = j + 1 end
end
local from = 1
if #out > cap then
  from = #out - cap + 1
  if gt(out[from - 1], f) then f = out[from - 1] end
end
local kept = {}
for x = from, #out do kept[#kept + 1] = out[x] end
if mode == 'm' then ttl = 0 end
rewrite(k, mkhead(f, building), kept, ttl)
return 1
"""

# KEYS: lists (or packed, as for push). ARGV[4]: cap, ARGV[5..]: ids.
_REMOVE = _EACH_KEY + r"""
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
"""

# KEYS: lists (or packed, as for push). Returns a string of '0'/'1', one per key.
_EXISTS = _EACH_KEY + r"""
local out = {}
each_key(ARGV, function(k, i) out[i] = redis.call('EXISTS', k) end)
return table.concat(out)
"""

# KEYS: fol, folv. ARGV: version ('' = unconditional), ttl ms, ids...
_SET_FOLLOWING = r"""
if ARGV[1] ~= '' then
  local v = redis.call('GET', KEYS[2]) or '0'
  if v ~= ARGV[1] then return 0 end
end
redis.call('DEL', KEYS[1])
many('SADD', KEYS[1], ARGV, 3, '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: fol, folv. ARGV: fresh random version, ttl ms.
_FORGET_FOLLOWING = r"""
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCR', KEYS[2])
else redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: celebs, celebs version. ARGV: fresh version, ids...
_SET_CELEBS = r"""
redis.call('DEL', KEYS[1])
many('SADD', KEYS[1], ARGV, 2, '0')
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

# KEYS: celebs, celebs version. Returns nil | {version, members...}, read together.
_GET_CELEBS = r"""
local v = redis.call('GET', KEYS[2])
if not v then return false end
local out = redis.call('SMEMBERS', KEYS[1])
table.insert(out, 1, v)
return out
"""

# KEYS: celebs, celebs version. ARGV: fresh version, user id, '1' add | '0' remove.
_MARK_CELEB = r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local r
if ARGV[3] == '1' then r = redis.call('SADD', KEYS[1], ARGV[2])
else r = redis.call('SREM', KEYS[1], ARGV[2]) end
if r == 1 then redis.call('SET', KEYS[2], ARGV[1]) end
return r
"""


class _Script:
    """A Lua script called by EVALSHA, loaded on demand (after a restart or SCRIPT FLUSH the
    server answers NOSCRIPT; the call is then retried once after loading).

    ``cross_slot``: the variant run against a Cluster node over keys of many slots that the
    node serves (``allow-cross-slot-keys``, Redis >= 7.0)."""

    def __init__(self, body: str, cross_slot: bool = False) -> None:
        shebang = "#!lua flags=allow-cross-slot-keys\n" if cross_slot else ""
        self.src = (shebang + _LUA_LIB + body).encode()
        self.sha = hashlib.sha1(self.src).hexdigest()
        self._body = body
        self._cross: _Script | None = None

    @property
    def cross(self) -> "_Script":
        if self._cross is None:
            self._cross = _Script(self._body, cross_slot=True)
        return self._cross

    async def load(self, client) -> None:
        await client.script_load(self.src)  # a cluster client loads it on every primary

    async def __call__(self, client, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        return await self.call_args(client, (len(keys), *keys, *args))

    async def call_args(self, client, numkeys_keys_args: tuple[Any, ...], **kw) -> Any:
        try:
            return await client.execute_command("EVALSHA", self.sha, *numkeys_keys_args, **kw)
        except NoScriptError:
            await self.load(client)
            return await client.execute_command("EVALSHA", self.sha, *numkeys_keys_args, **kw)


def _connect(url_or_client):
    """A URL (then the cache owns its client) or a ``redis.asyncio`` client of the caller's,
    which must answer bytes (``decode_responses=False``, the default)."""
    if isinstance(url_or_client, str):
        # A restarted server (or an idle timeout) leaves pooled connections closed: retry a
        # command on a fresh connection rather than fail the request. Every script here is
        # idempotent, so a command that may have run once is safe to send again.
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # Bounded: a stopped server refuses at once, a hung or unreachable one is given up
        # on after these (redis-py's defaults are 5 s each, times the retries). A timed-out
        # command is not retried: the timeout already is the bound.
        return aioredis.Redis.from_url(
            url_or_client,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            retry_on_error=[RedisConnectionError],
        ), True
    client = url_or_client
    try:
        if hasattr(client, "get_connection_kwargs"):
            kwargs = client.get_connection_kwargs()
        else:
            kwargs = client.connection_pool.connection_kwargs
    except Exception:  # noqa: BLE001 - a client of another shape: trust it
        kwargs = {}
    if kwargs.get("decode_responses"):
        raise ValueError("the Redis client must be made with decode_responses=False")
    return client, False


@_outage_aware
class RedisTimelineCache:
    """See the module docstring. ``url_or_client``: a ``redis://`` URL (the cache owns and
    closes its connection pool) or a ``redis.asyncio`` client (standalone or cluster)."""

    def __init__(
        self,
        url_or_client: Any,
        cap: int = 800,
        inactive_seconds: float = 14 * 86400,
        prefix: str = "hf",
        *,
        author_seconds: float = 14 * 86400,
        graph_seconds: float = 86400,
        build_seconds: float = 300,
        trim_slack: int | None = None,
        batch: int = 1000,
        fanout: str | None = None,
        strict_install: bool = False,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain braces (they are Redis Cluster hash tags)")
        self.client, self._owned = _connect(url_or_client)
        self.cap = cap
        self.inactive_seconds = inactive_seconds
        self.prefix = prefix
        self._ttl = {
            "home": _ms(inactive_seconds),
            "author": _ms(author_seconds),
        }
        self._graph_ms = _ms(graph_seconds)
        self._build_ms = _ms(build_seconds)
        #: Lists may grow this far past the cap between two trims (reads never see it).
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.trim_slack = max(0, cap // 16 if trim_slack is None else trim_slack)
        self.batch = max(1, batch)
        cluster = isinstance(self.client, _AsyncCluster)
        #: How a call over many lists is sent: "packed" (standalone: ``batch`` user ids packed
        #: in one argument per call), "per-node" (Cluster: the same, one call per node over the
        #: keys it serves), "per-key" (one call per key, KEYS[1]: any proxy or cluster).
        self.fanout = fanout or ("per-node" if cluster else "packed")
        if self.fanout not in ("packed", "per-node", "per-key"):
            raise ValueError(f"fanout must be packed, per-node or per-key, not {fanout!r}")
        if self.fanout == "per-node" and not cluster:
            raise ValueError("fanout='per-node' needs a redis.asyncio.cluster.RedisCluster client")
        #: Install only into a list that ``begin`` created and that still exists (see
        #: ``install``); the port's wording is "create if absent", hence False by default.
        self.strict_install = strict_install
        p = prefix.encode()
        self._fmt = {kind: p + b":{%d}:" + kind.encode() for kind in KINDS}
        self._pre = p + b":{"
        self._suf = {kind: b"}:" + kind.encode() for kind in KINDS}
        self._fol = p + b":{%d}:fol"
        self._folv = p + b":{%d}:folv"
        self._celebs = p + b":{celebs}"
        self._celebs_v = p + b":{celebs}:v"
        self._celeb_cache: tuple[bytes, frozenset[int]] | None = None
        self._push = _Script(_PUSH)
        self._slice = _Script(_SLICE)
        self._begin = _Script(_BEGIN)
        self._union = _Script(_UNION)
        self._remove = _Script(_REMOVE)
        self._exists = _Script(_EXISTS)
        self._set_following = _Script(_SET_FOLLOWING)
        self._forget_following = _Script(_FORGET_FOLLOWING)
        self._set_celebs = _Script(_SET_CELEBS)
        self._mark_celeb = _Script(_MARK_CELEB)
        self._get_celebs = _Script(_GET_CELEBS)
        self.counters = {"pushed": 0, "push_calls": 0, "node_fallbacks": 0}

    async def close(self) -> None:
        if self._owned:
            await self.client.aclose()

    def _key(self, kind: str, key: int) -> bytes:
        return self._fmt[kind] % key

    # -- many keys at once ----------------------------------------------------------------
    async def _many(
        self, script: _Script, kind: str, keys: Sequence[int], args: Sequence[Any]
    ) -> list[tuple[list[int], Any]]:
        """Run ``script`` over the ``kind`` lists of ``keys``, as ``self.fanout`` says.
        Returns (the keys of one call, its result) pairs."""
        if not keys:
            return []
        if self.fanout == "per-node":
            return await self._many_per_node(script, kind, keys, args)
        b = self.batch
        if self.fanout == "per-key":
            groups = [[k] for k in keys]
        else:
            groups = [list(keys[i : i + b]) for i in range(0, len(keys), b)]
        results = await self._pipelined(script, [self._call(kind, g, args) for g in groups])
        return list(zip(groups, results))

    def _call(self, kind: str, group: list[int], args: Sequence[Any]) -> tuple[Any, ...]:
        if self.fanout == "per-key":
            return (1, self._fmt[kind] % group[0], b"", b"", b"", *args)
        return (0, self._pre, self._suf[kind], b",".join([b"%d" % k for k in group]), *args)

    async def _pipelined(self, script: _Script, calls: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline (no transaction) of EVALSHA calls; NOSCRIPT answers are retried once
        after loading the script."""
        if len(calls) == 1:
            return [await script.call_args(self.client, calls[0])]
        out: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in (0, 1):
            pipe = self.client.pipeline(transaction=False)
            for i in todo:
                pipe.execute_command("EVALSHA", script.sha, *calls[i])
            results = await pipe.execute(raise_on_error=False)
            retry = []
            for i, r in zip(todo, results):
                if isinstance(r, NoScriptError) or (
                    isinstance(r, ResponseError) and str(r).startswith("NOSCRIPT")
                ):
                    retry.append(i)
                elif isinstance(r, Exception):
                    raise r
                else:
                    out[i] = r
            if not retry:
                return out
            if attempt == 0:
                await script.load(self.client)
            todo = retry
        raise NoScriptError("script could not be loaded")  # pragma: no cover

    async def _many_per_node(
        self, script: _Script, kind: str, keys: Sequence[int], args: Sequence[Any]
    ) -> list[tuple[list[int], Any]]:
        """Cluster: group the keys by the node serving their slot, one packed call per node
        and ``batch`` keys, all nodes at once. A call that fails because a slot moved (a
        resharding or failover in progress) is redone one key at a time, which redis-py
        routes and redirects; every script here is idempotent, so keys the failed call had
        already done are harmless to redo."""
        fmt = self._fmt[kind]
        await self.client.initialize()  # the slot map (a no-op once loaded)
        nodes: dict[str, tuple[Any, list[int]]] = {}
        for k in keys:
            node = self._node_of(fmt % k)
            nodes.setdefault(node.name, (node, []))[1].append(k)
        cross = script.cross
        b = self.batch
        work = [(node, ks[i : i + b]) for node, ks in nodes.values() for i in range(0, len(ks), b)]

        async def one(node, group: list[int]) -> list[tuple[list[int], Any]]:
            packed = (0, self._pre, self._suf[kind], b",".join([b"%d" % k for k in group]), *args)
            try:
                return [(group, await cross.call_args(self.client, packed, target_nodes=node))]
            except (ResponseError, RedisError) as e:
                if isinstance(e, NoScriptError):
                    raise
                self.counters["node_fallbacks"] += 1
                calls = [(1, fmt % k, b"", b"", b"", *args) for k in group]
                results = await self._pipelined(script, calls)
                return [([k], r) for k, r in zip(group, results)]

        parts = await asyncio.gather(*(one(node, g) for node, g in work))
        return [pair for part in parts for pair in part]

    def _node_of(self, key: bytes):
        return self.client.nodes_manager.get_node_from_slot(key_slot(key))

    # -- id lists -------------------------------------------------------------------------
    async def slice(self, kind: str, key: int, before: int | None, limit: int) -> IdSlice | None:
        b = b"" if before is None or before > MAX_ID else _m(max(0, before))
        r = await self._slice(
            self.client, [self._key(kind, key)], [b, max(0, limit), self.cap, self._ttl[kind]]
        )
        if r is None:
            return None
        ids = [int(x) for x in r[1:]]
        ids.reverse()
        return IdSlice(ids, int(r[0]))

    async def begin(self, kind: str, key: int) -> None:
        await self._begin(self.client, [self._key(kind, key)], [self._build_ms])

    async def install(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        """As the port says, with one option: ``strict_install`` installs only into a list
        that still exists, i.e. whose ``begin`` mark was not lost (FLUSHALL, eviction, the
        build TTL) in between; a push that landed in the lost list would otherwise be
        missing from the installed one. The caller then finds no list and reads the store."""
        mode = b"I" if self.strict_install else b"i"
        await self._union_call(mode, kind, key, ids, floor)

    async def merge(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        await self._union_call(b"m", kind, key, ids, floor)

    async def _union_call(self, mode: bytes, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        floor = min(max(0, floor), MAX_ID)
        await self._union(
            self.client,
            [self._key(kind, key)],
            [mode, _m(floor), self.cap, self._ttl[kind], *map(_m, sorted(set(ids)))],
        )

    async def push(self, kind: str, keys: Sequence[int], id_: int) -> int:
        if not keys:
            return 0
        results = await self._many(self._push, kind, keys, (_m(id_), self.cap, self.trim_slack))
        taken = sum(r for _, r in results)
        self.counters["pushed"] += taken
        self.counters["push_calls"] += 1
        return taken

    async def remove(self, kind: str, keys: Sequence[int], ids: Sequence[int]) -> None:
        if not keys or not ids:
            return
        await self._many(self._remove, kind, keys, (self.cap, *map(_m, ids)))

    async def exists(self, kind: str, keys: Sequence[int]) -> list[int]:
        if not keys:
            return []
        present: set[int] = set()
        for group, flags in await self._many(self._exists, kind, keys, ()):
            present.update(k for k, f in zip(group, flags) if f == 49)  # b"1"
        return [k for k in keys if k in present]

    async def drop(self, kind: str, key: int) -> None:
        await self.client.unlink(self._key(kind, key))

    # -- administration (audit, rebuild) --------------------------------------------------
    async def peek(
        self, kind: str, key: int, before: int | None = None, limit: int | None = None
    ) -> IdSlice | None:
        """``slice`` with TTL 0: the list's TTL (its inactivity clock) is left alone."""
        b = b"" if before is None or before > MAX_ID else _m(max(0, before))
        n = self.cap if limit is None else max(0, limit)
        r = await self._slice(self.client, [self._key(kind, key)], [b, n, self.cap, 0])
        if r is None:
            return None
        ids = [int(x) for x in r[1:]]
        ids.reverse()
        return IdSlice(ids, int(r[0]))

    async def keys(self, kind: str) -> list[int]:
        """SCAN for the ``kind`` lists (on a Cluster, redis-py scans every primary)."""
        pattern = self.prefix.encode() + b":{*}:" + kind.encode()
        head, tail = len(self._pre), len(self._suf[kind])
        out: list[int] = []
        async for k in self.client.scan_iter(match=pattern, count=1000):
            digits = k[head:-tail]
            if digits.isdigit():
                out.append(int(digits))
        return out

    # -- graph facts ----------------------------------------------------------------------
    async def following(self, user_id: int) -> frozenset[int] | None:
        members = await self.client.smembers(self._fol % user_id)
        if not members:
            return None
        return frozenset(int(m) for m in members if m != b"0")

    async def following_version(self, user_id: int) -> int:
        fresh = _new_version()
        old = await self.client.set(self._folv % user_id, fresh, nx=True, get=True, px=self._graph_ms)
        return fresh if old is None else int(old)

    async def set_following(self, user_id: int, ids: Sequence[int], version: int | None = None) -> None:
        await self._set_following(
            self.client,
            [self._fol % user_id, self._folv % user_id],
            [b"" if version is None else b"%d" % version, self._graph_ms, *ids],
        )

    async def forget_following(self, user_id: int) -> None:
        await self._forget_following(
            self.client, [self._fol % user_id, self._folv % user_id], [_new_version(), self._graph_ms]
        )

    async def celebrities(self) -> frozenset[int] | None:
        version = await self.client.get(self._celebs_v)
        if version is None:
            self._celeb_cache = None
            return None
        cached = self._celeb_cache
        if cached is not None and cached[0] == version:
            return cached[1]
        r = await self._get_celebs(self.client, [self._celebs, self._celebs_v], [])
        if not r or len(r) < 2:  # no version, or no set (its "loaded" member 0 is missing)
            self._celeb_cache = None
            return None
        got = frozenset(int(m) for m in r[1:] if m != b"0")
        self._celeb_cache = (r[0], got)
        return got

    async def set_celebrities(self, ids: Sequence[int]) -> None:
        await self._set_celebs(self.client, [self._celebs, self._celebs_v], [_new_version(), *ids])

    async def mark_celebrity(self, user_id: int, is_celebrity: bool) -> bool:
        r = await self._mark_celeb(
            self.client,
            [self._celebs, self._celebs_v],
            [_new_version(), user_id, b"1" if is_celebrity else b"0"],
        )
        return r == 1

    async def stats(self) -> dict[str, int]:
        """Server-wide figures (counting this cache's keys would need a SCAN)."""
        info = await self.client.info()
        return {
            "redis_keys": int(await self.client.dbsize()),
            "used_memory": int(info.get("used_memory", 0)),
            "evictions": int(info.get("evicted_keys", 0)),
            "expired_keys": int(info.get("expired_keys", 0)),
            "pushed": self.counters["pushed"],
        }


@_outage_aware
class RedisPostCache:
    """Post id -> post, one string key per post with a TTL (bounded by ``maxmemory`` with a
    ``volatile-*`` policy). See the module docstring."""

    TOMBSTONE = b"-"

    def __init__(
        self,
        url_or_client: Any,
        prefix: str = "hf",
        *,
        ttl_seconds: float = 86400,
        tombstone_seconds: float = 600,
        per_key: bool | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain braces")
        self.client, self._owned = _connect(url_or_client)
        self._fmt = prefix.encode() + b":p:%d"
        self._ttl_ms = _ms(ttl_seconds)
        self._tomb_ms = _ms(tombstone_seconds)
        self.per_key = isinstance(self.client, _AsyncCluster) if per_key is None else per_key
        self.hits = 0
        self.misses = 0

    async def close(self) -> None:
        if self._owned:
            await self.client.aclose()

    @staticmethod
    def encode(p: Post) -> bytes:
        return orjson.dumps([str(p.author_id), p.author_handle, p.text, p.created_at])

    @staticmethod
    def decode(id_: int, raw: bytes) -> Post | None:
        try:
            author, handle, text, created_at = orjson.loads(raw)
            public = {
                "id": str(id_),
                "author": {"id": author, "handle": handle},
                "text": text,
                "created_at": created_at,
            }
            return Post(id_, int(author), handle, text, public)
        except (ValueError, TypeError):  # a tombstone, or a format this version doesn't know
            return None

    async def get_many(self, ids: Sequence[int]) -> dict[int, Post]:
        if not ids:
            return {}
        fmt = self._fmt
        keys = [fmt % i for i in ids]
        if self.per_key:
            pipe = self.client.pipeline(transaction=False)
            for k in keys:
                pipe.get(k)
            raws = await pipe.execute()
        else:
            raws = await self.client.mget(keys)
        out: dict[int, Post] = {}
        for i, raw in zip(ids, raws):
            if raw is not None and raw != self.TOMBSTONE:
                p = self.decode(i, raw)
                if p is not None:
                    out[i] = p
        self.hits += len(out)
        self.misses += len(ids) - len(out)
        return out

    async def peek_many(self, ids: Sequence[int]) -> dict[int, Post]:
        """``get_many`` without counting hits and misses (the audit)."""
        out = await self.get_many(ids)
        # Take back this call's share (other calls may have counted meanwhile).
        self.hits -= len(out)
        self.misses -= len(ids) - len(out)
        return out

    async def put_many(self, posts: Sequence[Post]) -> None:
        if not posts:
            return
        fmt, ttl = self._fmt, self._ttl_ms
        if len(posts) == 1:
            p = posts[0]
            await self.client.set(fmt % p.id, self.encode(p), px=ttl, nx=True)
            return
        pipe = self.client.pipeline(transaction=False)
        for p in posts:  # NX: posts never change, and a tombstone must win
            pipe.set(fmt % p.id, self.encode(p), px=ttl, nx=True)
        await pipe.execute()

    async def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        fmt, ttl = self._fmt, self._tomb_ms
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.set(fmt % i, self.TOMBSTONE, px=ttl)
        await pipe.execute()
