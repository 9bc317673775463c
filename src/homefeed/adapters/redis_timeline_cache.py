"""Timeline cache on Redis (scale-out profile): the home and author id lists, the following
sets and the celebrity set, shared by every API and worker process. Same semantics as
``memory_cache`` (the contract suite runs both).

Every operation is one Lua script (``lua/``; the list layout and why it is a list are at the
top of ``lua/timeline_lib.lua``). A call over many lists (push, remove, exists) goes by
``fanout``: ``packed`` (standalone server: ``batch`` user ids packed in one argument per
call, the script building the key names), ``per-node`` (a Cluster: the same, one call per
node over the keys it serves) or ``per-key`` (one call per key, as KEYS[1]). The graph keys,
the memory policy a deployment must set and the behaviour while Redis is down are in the
README ("Scale-out profile").
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from typing import Any, ClassVar, Sequence

from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError, ResponseError

from homefeed.adapters.redis_cache import FastLane, RedisCluster, connect, ms, outage_aware
from homefeed.adapters.redis_lua import LuaScript
from homefeed.domain.ids import EPOCH_MS, MAX_ID, NODE_BITS, SEQ_BITS
from homefeed.ports import HomeView, IdSlice

KINDS = ("home", "author", "public")  # "public": one list, key 0 (the public timeline)


def _m(id_: int) -> bytes:
    """An id as a list element: canonical decimal (a listpack stores it as an integer)."""
    return b"%d" % id_


#: How far ahead of this process's clock another id generator may be (see ``_assumed_top``).
TOP_MARGIN_MS = 60_000


def _assumed_top() -> int:
    """The top a fan-out assumes when its kind's top key is missing (``lua/push.lua``): the
    largest id of the millisecond TOP_MARGIN_MS from now, above every id any node has made,
    as long as no node's clock runs that far ahead."""
    ms = int(time.time() * 1000) + TOP_MARGIN_MS - EPOCH_MS
    return (ms << (NODE_BITS + SEQ_BITS)) | ((1 << (NODE_BITS + SEQ_BITS)) - 1)
def _id_slice(r: list[bytes] | None) -> IdSlice | None:
    """A slice script's answer ({floor, ids ascending...} or nil) as an ``IdSlice``."""
    if r is None:
        return None
    return IdSlice(list(map(int, r[:0:-1])), int(r[0]))


def _new_version() -> int:
    return random.getrandbits(60) | 1  # never 0: 0 is what an absent version reads as


@outage_aware
class RedisTimelineCache:
    """See the module docstring and ``lua/timeline_lib.lua``. ``url_or_client``: a
    ``redis://`` URL (the cache owns and
    closes its connection pool) or a ``redis.asyncio`` client (standalone or cluster)."""

    backend: ClassVar[str] = "redis"

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
        wave: int = 32,
        fanout: str | None = None,
        strict_install: bool = False,
        top_if_unknown: int | None = None,
        following_memo: int = 1_000_000,
        fast_reads: bool = True,
        deletes_key: bytes | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain braces (they are Redis Cluster hash tags)")
        self.client, self._owned = connect(url_or_client)
        self.cap = cap
        self.inactive_seconds = inactive_seconds
        self.prefix = prefix
        self._ttl = {
            "home": ms(inactive_seconds),
            "author": ms(author_seconds),
            "public": ms(author_seconds),
        }
        self._graph_ms = ms(graph_seconds)
        self._build_ms = ms(build_seconds)
        #: Lists may grow this far past the cap between two trims (reads never see it).
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.trim_slack = max(0, cap // 16 if trim_slack is None else trim_slack)
        self.batch = max(1, batch)
        #: At most this many script calls per pipeline round trip (see ``_pipelined``).
        self.wave = max(1, wave)
        cluster = isinstance(self.client, RedisCluster)
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
        #: The top id to assume when a kind's top key is missing (``lua/push.lua``); None: the
        #: clock's bound (``_assumed_top``). 0 is right only for a prefix no list predates
        #: (tests, benchmarks on a fresh server).
        self.top_if_unknown = top_if_unknown
        p = prefix.encode()
        self._fmt = {kind: p + b":{%d}:" + kind.encode() for kind in KINDS}
        self._pre = p + b":{"
        self._suf = {kind: b"}:" + kind.encode() for kind in KINDS}
        self._fol = p + b":{%d}:fol"
        self._folv = p + b":{%d}:folv"
        self._celebs = p + b":{celebs}"
        #: The fast fan-out's top keys (``lua/push.lua``); packed calls only: a Cluster script
        #: may touch only the keys it declares, in one slot.
        self._top = {kind: p + b":{top}:" + kind.encode() for kind in KINDS}
        #: The home registry (``lua/live.lua``): the users whose home list exists, kept by
        #: the scripts that create lists; a standalone server only, whatever ``fanout`` (on
        #: a Cluster it lives in another slot than the lists). None: ``home_keys`` answers
        #: None.
        self._live = None if cluster else p + b":{live}:home"
        self._celebs_v = p + b":{celebs}:v"
        self._celeb_cache: tuple[bytes, frozenset[int]] | None = None
        #: Following sets kept in this process, each under the version (``folv``) it was
        #: read or written with: every follow or unfollow bumps that version (``forget``),
        #: so a home read checks its copy with the version its one script returns instead
        #: of loading the whole set from Redis (O(followees) per read). Bounded by the
        #: members held (``following_memo``; 0: off), least recently used out first.
        self._fol_memo: OrderedDict[int, tuple[bytes, frozenset[int]]] = OrderedDict()
        self._fol_memo_members = 0
        self.following_memo = max(0, following_memo)
        self._cluster = cluster
        #: The key a post cache on the same server changes on every delete
        #: (``RedisPostCache.deletes_key``): read by ``home_view`` for its ``fingerprint``.
        #: None, or a Cluster (another slot): views carry no fingerprint.
        self.deletes_key = None if cluster else deletes_key
        #: ``home_view`` over a bare connection (``redis_cache.FastLane``) when given a
        #: ``redis://`` URL of a standalone server; redis-py's client otherwise.
        self._fast = FastLane.for_url(url_or_client) if fast_reads and isinstance(url_or_client, str) and not cluster else None
        self._push = LuaScript("push")
        self._slice = LuaScript("slice_lib", "slice")
        self._home_view = LuaScript("slice_lib", "home_view")
        self._get_following = LuaScript("get_following")
        self._begin = LuaScript("begin")
        self._union = LuaScript("union")
        self._remove = LuaScript("each_key", "remove")
        self._exists = LuaScript("each_key", "exists")
        self._set_following = LuaScript("set_following")
        self._forget_following = LuaScript("forget_following")
        self._set_celebs = LuaScript("set_celebs")
        self._mark_celeb = LuaScript("mark_celeb")
        self._get_celebs = LuaScript("get_celebs")
        self._live_keys = LuaScript("live")
        self._seed_done = LuaScript("seed_done")
        self.counters = {"pushed": 0, "push_calls": 0, "node_fallbacks": 0, "fast_push_calls": 0,
                         "registry_seeds": 0}

    async def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        if self._owned:
            await self.client.aclose()

    def _key(self, kind: str, key: int) -> bytes:
        return self._fmt[kind] % key

    # -- many keys at once ----------------------------------------------------------------
    async def _many(
        self, script: LuaScript, kind: str, keys: Sequence[int], args: Sequence[Any]
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

    async def _pipelined(self, script: LuaScript, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Pipelines (no transaction) of EVALSHA calls, at most ``wave`` calls each, one after
        the other: a 1,000,000-follower push is 1,000 calls, whose single round trip outlasted
        the socket timeout (2 s) on a busy server; a wave bounds each round trip (32 calls of
        1,000 keys: tens of ms of server time)."""
        if len(calls) == 1:
            return [await script.call_args(self.client, calls[0])]
        w = self.wave
        if len(calls) <= w:
            return await self._pipeline_wave(script, calls)
        out: list[Any] = []
        for i in range(0, len(calls), w):
            out += await self._pipeline_wave(script, calls[i : i + w])
        return out

    async def _pipeline_wave(self, script: LuaScript, calls: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline of EVALSHA calls; NOSCRIPT answers are retried once after loading the
        script."""
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
        self, script: LuaScript, kind: str, keys: Sequence[int], args: Sequence[Any]
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
        return _id_slice(await self._slice(
            self.client, [self._key(kind, key)], [b, max(0, limit), self.cap, self._ttl[kind]]
        ))

    async def home_view(self, user_id: int, before: int | None, limit: int, kept: Any = None) -> HomeView:
        """One script (one round trip): both slices and the versions of the following and
        celebrity sets, which validate this process's copies of them (on a Cluster the
        celebrity version lives in another slot: ``celebrities`` answers it). A view equal to
        ``kept`` is answered as its fingerprint alone (no ids decoded)."""
        b = b"" if before is None or before > MAX_ID else _m(max(0, before))
        keys = [self._fmt["home"] % user_id, self._fmt["author"] % user_id, self._folv % user_id]
        dk = self.deletes_key
        if not self._cluster:
            keys.append(self._celebs_v)
            if dk is not None:
                keys.append(dk)
        args: tuple[Any, ...] = (len(keys), *keys, b, max(0, limit), self.cap, self._ttl["home"], self._ttl["author"])
        if dk is not None:
            args += (b"%d" % _new_version(),)
        if self._fast is not None:
            try:
                r = await self._fast.call(b"EVALSHA", self._home_view.sha, *args)
            except NoScriptError:
                await self._home_view.load(self.client)
                r = await self._fast.call(b"EVALSHA", self._home_view.sha, *args)
        else:
            r = await self._home_view.call_args(self.client, args)
        fv, cv, home, own, dv = r
        # Every fact a page computed from this view depends on here, as Redis answered it
        # (the slices' raw replies: comparing them costs less than their ints).
        fp = ((fv, cv, dv, home, own)
              if dv is not None and fv is not None and cv is not None and home is not None and own is not None
              else None)
        if fp is not None and fp == kept:
            return HomeView(None, None, None, None, fp)
        following = None
        if fv is not None:
            memo = self._fol_memo.get(user_id)
            if memo is not None and memo[0] == fv:
                self._fol_memo.move_to_end(user_id)
                following = memo[1]
        celebs = None
        cached = self._celeb_cache
        if cv is not None and cached is not None and cached[0] == cv:
            celebs = cached[1]
        return HomeView(_id_slice(home), _id_slice(own), following, celebs, fp)

    def _memo(self, user_id: int, version: bytes, members: frozenset[int]) -> None:
        if len(members) > self.following_memo:
            return
        old = self._fol_memo.pop(user_id, None)
        if old is not None:
            self._fol_memo_members -= len(old[1])
        self._fol_memo[user_id] = (version, members)
        self._fol_memo_members += len(members)
        while self._fol_memo_members > self.following_memo:
            _, (_, gone) = self._fol_memo.popitem(last=False)
            self._fol_memo_members -= len(gone)

    def _unmemo(self, user_id: int) -> None:
        old = self._fol_memo.pop(user_id, None)
        if old is not None:
            self._fol_memo_members -= len(old[1])

    def _registry(self, kind: str) -> list[bytes]:
        """The home registry as an extra key of a script that creates ``kind`` lists."""
        return [self._live] if kind == "home" and self._live is not None else []

    async def begin(self, kind: str, key: int) -> None:
        await self._begin(self.client, [self._key(kind, key), *self._registry(kind)], [self._build_ms])

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
        keys = [self._key(kind, key)]
        if self.fanout == "packed":
            keys.append(self._top[kind])  # ids entering a list raise the kind's top
        registry = self._registry(kind)
        if registry:
            if self.fanout != "packed":
                keys.append(b"")  # no top key: the script finds the registry at KEYS[3]
            keys += registry
        await self._union(
            self.client,
            keys,
            [mode, _m(floor), self.cap, self._ttl[kind], self._top_if_unknown(),
             *map(_m, sorted(set(ids)))],
        )

    def _top_if_unknown(self) -> bytes:
        t = self.top_if_unknown
        return _m(_assumed_top() if t is None else t)

    async def push(self, kind: str, keys: Sequence[int], id_: int) -> int:
        if not keys:
            return 0
        if self.fanout == "packed":
            # the fast path (lua/push.lua) pushes without a duplicate check: each key once
            keys = list(dict.fromkeys(keys))
            token = b"%x" % random.getrandbits(64)
            args = (_m(id_), self.cap, self.trim_slack, self._top[kind], self._top_if_unknown(), token)
        else:
            args = (_m(id_), self.cap, self.trim_slack, b"", b"", b"")
        results = await self._many(self._push, kind, keys, args)
        taken = sum(r[0] for _, r in results)
        self.counters["pushed"] += taken
        self.counters["push_calls"] += 1
        self.counters["fast_push_calls"] += sum(r[1] for _, r in results)
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
        await self.client.unlink(self._key(kind, key))  # its registry member goes lazily

    async def home_keys(self, limit: int) -> list[int] | None:
        """The home registry's users whose list exists (``lua/live.lua``), or None (over
        ``limit``, a Cluster, or a registry that could not be seeded). A registry not known
        complete (a new deployment, or lost) is seeded first: one SCAN of the home lists,
        once per deployment (``_seed_registry``)."""
        if self._live is None:
            return None
        args = (max(0, limit), self._pre, self._suf["home"])
        r = await self._live_keys(self.client, [self._live], args)
        if r[0] == 0 and await self._seed_registry():
            r = await self._live_keys(self.client, [self._live], args)
        if r[0] != 2:
            return None
        return [int(x) for x in r[1].split(b",")] if r[1] else []

    async def _seed_registry(self) -> bool:
        """Add every existing home list's user to the registry and mark it complete; see
        ``lua/seed_done.lua`` for why a token added first makes that safe against lists
        created meanwhile and against the registry being lost meanwhile."""
        assert self._live is not None
        self.counters["registry_seeds"] += 1
        token = b"?%x" % random.getrandbits(64)
        await self.client.sadd(self._live, token)
        users = await self.keys("home")
        for i in range(0, len(users), 10_000):
            await self.client.sadd(self._live, *users[i : i + 10_000])
        return bool(await self._seed_done(self.client, [self._live], [token]))

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
        r = await self._get_following(
            self.client, [self._fol % user_id, self._folv % user_id], [_new_version()]
        )
        if len(r) < 2:  # no set (its "loaded" member 0 is missing)
            return None
        got = frozenset(int(m) for m in r[1:] if m != b"0")
        if r[0] is not None:
            self._memo(user_id, r[0], got)
        return got

    async def following_version(self, user_id: int) -> int:
        fresh = _new_version()
        old = await self.client.set(self._folv % user_id, fresh, nx=True, get=True, px=self._graph_ms)
        return fresh if old is None else int(old)

    async def set_following(self, user_id: int, ids: Sequence[int], version: int | None = None) -> None:
        v = b"" if version is None else b"%d" % version
        done = await self._set_following(
            self.client, [self._fol % user_id, self._folv % user_id], [v, self._graph_ms, *ids]
        )
        if done == 1 and v:
            self._memo(user_id, v, frozenset(ids))
        else:
            self._unmemo(user_id)

    async def forget_following(self, user_id: int) -> None:
        self._unmemo(user_id)
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
