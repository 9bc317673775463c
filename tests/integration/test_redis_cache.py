"""The Redis timeline cache and post cache, against a real Redis, side by side with the
in-process ones.

Most scenarios take the ``env`` fixture and run once per backend: the memory adapter (the
reference semantics), the Redis adapter as deployed on one server (fan-out packed into
multi-key script calls, pipelined in several chunks, lazy trimming), and the Redis adapter in
the mode used against Redis Cluster (one script call per key, trimming at once). A
randomized differential test then drives memory and Redis with the same operations and
compares every answer.

Redis-only tests cover what has no in-process equivalent: TTLs (inactivity, build marks),
``FLUSHALL`` and a restart that forgets the loaded scripts (on a private throw-away
``redis-server``, so that other users of the shared server are not flushed), the eviction
policy the module docstring prescribes, processes sharing the celebrity set, and pushes
racing a rebuild over several connections.

Set ``HOMEFEED_TEST_REDIS_URL`` to use another server (default redis://127.0.0.1:6379/0);
every test uses its own random key prefix and deletes its keys. If Redis is unreachable the
tests skip with the command that starts it, except under ``CI=true``, where they fail.
``HOMEFEED_BENCH=1`` also runs the fan-out benchmark (inserts/s into 10,000 timelines).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

try:
    import redis
except ImportError:  # pragma: no cover
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the redis package is not installed (pip install 'redis>=5' hiredis)",
                allow_module_level=True)

from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache  # noqa: E402
from homefeed.adapters.redis_cache import RedisPostCache, RedisTimelineCache  # noqa: E402
from homefeed.domain.ids import MAX_ID  # noqa: E402
from homefeed.domain.model import Post  # noqa: E402
from homefeed.ports import IdSlice  # noqa: E402

REDIS_URL = os.environ.get("HOMEFEED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START_CMD = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)
HOME, AUTHOR = "home", "author"
KINDS = (HOME, AUTHOR)


# --------------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------------


def _ping(url: str) -> str | None:
    try:
        c = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            c.ping()
        finally:
            c.close()
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def _unavailable(msg: str):
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def redis_url() -> str:
    err = _ping(REDIS_URL)
    if err:
        _unavailable(f"Redis is not reachable at {REDIS_URL} ({err}); start it with: {START_CMD}")
    return REDIS_URL


@pytest.fixture(scope="module")
def private_redis_url(tmp_path_factory):
    """A throw-away redis-server of our own, for what must not hit a shared server:
    FLUSHALL, SCRIPT FLUSH, CONFIG SET maxmemory."""
    exe = shutil.which("redis-server")
    if exe is None:
        _unavailable("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(d), "--logfile", str(d / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while _ping(url) is not None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _unavailable(f"could not start a private redis-server on port {port}")
        time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def _free_port_pair() -> int:
    """A port p with p and p + 10000 (the cluster bus) free."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + 10000 > 65535:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory):
    """A throw-away three-master Redis Cluster, to run the scenarios the way a deployment
    that outgrew one node would: every key routed by its hash tag, one call per key."""
    exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if exe is None or cli is None:
        _unavailable("redis-server/redis-cli are not installed (Debian: apt-get install redis-server)")
    d = tmp_path_factory.mktemp("cluster")
    procs, ports = [], []
    try:
        for i in range(3):
            port = _free_port_pair()
            ports.append(port)
            procs.append(subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--save", "", "--appendonly", "no",
                 "--dir", str(d), "--logfile", str(d / f"redis-{port}.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        deadline = time.monotonic() + 10
        for port in ports:
            while _ping(f"redis://127.0.0.1:{port}/0") is not None:
                if time.monotonic() > deadline:
                    _unavailable("could not start the redis-server nodes of a test cluster")
                time.sleep(0.05)
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            states = []
            for port in ports:
                c = redis.Redis(port=port, socket_timeout=2)
                try:
                    states.append(c.cluster("info").get("cluster_state"))
                finally:
                    c.close()
            if all(s == "ok" for s in states):
                break
            if time.monotonic() > deadline:
                _unavailable(f"the test cluster did not become ready: {states}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------


@dataclass
class Spec:
    kind: str  # "memory" | "redis" | "cluster"
    url: str | None = None
    opts: dict[str, Any] = field(default_factory=dict)


VARIANTS = {
    "memory": ("memory", {}),
    # as on one server: packed multi-key calls, here 3 keys a call so that pushes to a few
    # lists already go through the pipelined multi-call path; lazy trimming
    "redis": ("redis", {"batch": 3, "trim_slack": 3, "top_if_unknown": 0, "wave": 2}),
    # the mode used against a Cluster (one call per key), on one server; trimming at once
    "redis-per-key": ("redis", {"fanout": "per-key", "trim_slack": 0}),
    # a real three-node Cluster: the adapter sees a cluster client and goes per key itself
    "redis-cluster": ("cluster", {"trim_slack": 2}),
}


@pytest.fixture(params=list(VARIANTS))
def env(request) -> Spec:
    kind, opts = VARIANTS[request.param]
    if kind == "memory":
        return Spec("memory")
    if kind == "cluster":
        return Spec("cluster", request.getfixturevalue("cluster_url"), opts)
    return Spec("redis", request.getfixturevalue("redis_url"), opts)


@pytest.fixture(params=["redis", "redis-per-key", "redis-cluster"])
def redis_env(request) -> Spec:
    kind, opts = VARIANTS[request.param]
    if kind == "cluster":
        return Spec("cluster", request.getfixturevalue("cluster_url"), opts)
    return Spec("redis", request.getfixturevalue("redis_url"), opts)


@pytest.fixture
def private_env(private_redis_url) -> Spec:
    return Spec("redis", private_redis_url, {"batch": 3, "trim_slack": 3, "top_if_unknown": 0})


class Env:
    """What a scenario gets: caches of its backend, all sharing one fresh key prefix."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.prefix = "hft" + uuid.uuid4().hex[:10]
        self._opened: list[Any] = []  # caches
        self._clients: list[Any] = []  # clients the caches do not own
        self._admin = None

    @property
    def is_redis(self) -> bool:
        return self.spec.kind != "memory"

    @property
    def is_cluster(self) -> bool:
        return self.spec.kind == "cluster"

    def _conn(self):
        """A URL (the cache owns its pool), or for a cluster a cluster client of its own."""
        if self.is_cluster:
            from redis.asyncio.cluster import RedisCluster

            client = RedisCluster.from_url(self.spec.url)
            self._clients.append(client)
            return client
        return self.spec.url

    def timeline(self, cap: int = 5, inactive_seconds: float = 3600, **kw):
        if not self.is_redis:
            return MemoryTimelineCache(cap=cap, inactive_seconds=inactive_seconds)
        opts = {**self.spec.opts, **kw}
        c = RedisTimelineCache(
            self._conn(), cap=cap, inactive_seconds=inactive_seconds, prefix=self.prefix, **opts
        )
        self._opened.append(c)
        return c

    def posts(self, **kw):
        if not self.is_redis:
            return MemoryPostCache()
        p = RedisPostCache(self._conn(), prefix=self.prefix, **kw)
        self._opened.append(p)
        return p

    @property
    def admin(self):
        if self._admin is None:
            if self.is_cluster:
                from redis.asyncio.cluster import RedisCluster

                self._admin = RedisCluster.from_url(self.spec.url)
            else:
                import redis.asyncio as aioredis

                self._admin = aioredis.Redis.from_url(self.spec.url)
        return self._admin

    async def flushall(self) -> None:
        await self.admin.flushall()

    async def aclose(self) -> None:
        if self.is_redis:
            keys = [k async for k in self.admin.scan_iter(match=self.prefix + ":*", count=1000)]
            for k in keys:  # one by one: a cluster refuses multi-key commands across slots
                await self.admin.unlink(k)
            for c in self._opened:
                await c.close()
            for client in self._clients:
                await client.aclose()
            await self.admin.aclose()


def scenario(fixture: str = "env"):
    """Make an async scenario ``fn(env: Env, **params)`` a test: it runs in a fresh event loop
    with an ``Env`` built from the ``fixture`` (``env``: every backend; ``redis_env``: the
    Redis variants; ``private_env``: a private server); the env's keys are deleted and its
    connections closed afterwards."""

    def deco(fn):
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        params[0] = params[0].replace(name=fixture)

        def test(**kwargs):
            spec = kwargs.pop(fixture)

            async def main():
                e = Env(spec)
                try:
                    await fn(e, **kwargs)
                finally:
                    await e.aclose()

            asyncio.run(main())

        test.__name__ = fn.__name__
        test.__qualname__ = fn.__qualname__
        test.__doc__ = fn.__doc__
        test.__module__ = fn.__module__
        test.__signature__ = sig.replace(parameters=params)
        return test

    return deco


# --------------------------------------------------------------------------------------------
# id lists: every port method, on every backend
# --------------------------------------------------------------------------------------------


@scenario()
async def test_an_absent_list_is_absent_to_every_method(env):
    c = env.timeline()
    for kind in KINDS:
        assert await c.slice(kind, 1, None, 10) is None
        assert await c.push(kind, [1, 2, 3], 100) == 0
        assert await c.exists(kind, [1, 2, 3]) == []
        await c.merge(kind, 1, [5, 6], 4)
        await c.remove(kind, [1], [5])
        await c.drop(kind, 1)
        assert await c.slice(kind, 1, None, 10) is None  # merge created nothing
    assert await c.push(HOME, [], 1) == 0
    assert await c.exists(HOME, []) == []


@scenario()
async def test_install_then_slice_pages_newest_first(env):
    c = env.timeline(cap=10)
    await c.install(HOME, 7, [30, 10, 50, 20, 40], 3)
    assert await c.slice(HOME, 7, None, 10) == IdSlice([50, 40, 30, 20, 10], 3)
    assert await c.slice(HOME, 7, None, 2) == IdSlice([50, 40], 3)
    assert await c.slice(HOME, 7, 40, 2) == IdSlice([30, 20], 3)
    assert await c.slice(HOME, 7, 41, 10) == IdSlice([40, 30, 20, 10], 3)
    assert await c.slice(HOME, 7, 10, 10) == IdSlice([], 3)
    assert await c.slice(HOME, 7, 1, 10) == IdSlice([], 3)
    assert await c.slice(HOME, 7, 0, 10) == IdSlice([], 3)
    assert await c.slice(HOME, 7, MAX_ID, 1) == IdSlice([50], 3)
    assert await c.slice(HOME, 7, None, 0) == IdSlice([], 3)
    # kinds are separate lists
    assert await c.slice(AUTHOR, 7, None, 10) is None
    assert await c.exists(HOME, [6, 7, 8]) == [7]


@scenario()
async def test_install_is_idempotent_unions_and_only_raises_the_floor(env):
    c = env.timeline(cap=10)
    await c.install(AUTHOR, 1, [1, 2, 3], 0)
    await c.install(AUTHOR, 1, [1, 2, 3], 0)
    assert await c.slice(AUTHOR, 1, None, 10) == IdSlice([3, 2, 1], 0)
    await c.install(AUTHOR, 1, [3, 4], 2)
    assert await c.slice(AUTHOR, 1, None, 10) == IdSlice([4, 3, 2, 1], 2)
    await c.install(AUTHOR, 1, [], 1)  # a lower floor does not lower it
    assert await c.slice(AUTHOR, 1, None, 10) == IdSlice([4, 3, 2, 1], 2)
    await c.install(AUTHOR, 2, [], 0)  # an empty list exists
    assert await c.slice(AUTHOR, 2, None, 10) == IdSlice([], 0)
    assert await c.exists(AUTHOR, [1, 2, 3]) == [1, 2]


@scenario()
async def test_begin_marks_building_pushes_land_install_clears(env):
    c = env.timeline(cap=10)
    await c.begin(HOME, 1)
    assert await c.slice(HOME, 1, None, 10) is None  # building: not served
    assert await c.exists(HOME, [1]) == [1]  # but it exists: fan-out feeds it
    assert await c.push(HOME, [1, 2], 100) == 1
    await c.merge(HOME, 1, [50], 0)
    assert await c.slice(HOME, 1, None, 10) is None
    await c.install(HOME, 1, [10, 20], 5)  # what the record store said, read after begin
    assert await c.slice(HOME, 1, None, 10) == IdSlice([100, 50, 20, 10], 5)
    # begin on an existing list keeps its ids; a second begin is harmless
    await c.begin(HOME, 1)
    await c.begin(HOME, 1)
    assert await c.slice(HOME, 1, None, 10) is None
    await c.install(HOME, 1, [], 0)
    assert await c.slice(HOME, 1, None, 10) == IdSlice([100, 50, 20, 10], 5)


@scenario()
async def test_push_is_ordered_idempotent_and_counts_lists_that_took_it(env):
    c = env.timeline(cap=100)
    for k in (1, 2, 3, 4):
        await c.install(HOME, k, [], 0)
    assert await c.push(HOME, [1, 2, 3, 4, 5, 6], 10) == 4
    assert await c.push(HOME, [1, 2, 3, 4, 5, 6], 10) == 0  # redelivered: no change
    assert await c.push(HOME, [1, 1, 2], 20) == 2  # the same list twice counts once
    # out of order: 1, 3 and 10 places behind the newest, and older than all
    for i in (30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130):
        await c.push(HOME, [1], i)
    for i in (125, 95, 35, 5, 125, 5):
        await c.push(HOME, [1], i)
    want = sorted({10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 125, 95, 35, 5}, reverse=True)
    assert await c.slice(HOME, 1, None, 100) == IdSlice(want, 0)
    assert await c.slice(HOME, 2, None, 100) == IdSlice([20, 10], 0)
    assert await c.slice(HOME, 3, None, 100) == IdSlice([10], 0)


@scenario()
async def test_trim_keeps_the_newest_cap_and_raises_the_floor(env):
    c = env.timeline(cap=5)
    await c.install(HOME, 1, [], 0)
    for i in range(1, 13):
        assert await c.push(HOME, [1], i) == 1
    assert await c.slice(HOME, 1, None, 100) == IdSlice([12, 11, 10, 9, 8], 7)
    assert await c.slice(HOME, 1, 10, 100) == IdSlice([9, 8], 7)
    assert await c.slice(HOME, 1, 8, 100) == IdSlice([], 7)
    # older than everything kept and not above the floor: cut at once, not taken
    assert await c.push(HOME, [1], 3) == 0
    assert await c.push(HOME, [1], 7) == 0
    assert await c.slice(HOME, 1, None, 100) == IdSlice([12, 11, 10, 9, 8], 7)
    # a late id inside the kept range pushes the oldest out
    await c.remove(HOME, [1], [10])
    assert await c.slice(HOME, 1, None, 100) == IdSlice([12, 11, 9, 8], 7)
    assert await c.push(HOME, [1], 10) == 1
    assert await c.push(HOME, [1], 13) == 1
    assert await c.slice(HOME, 1, None, 100) == IdSlice([13, 12, 11, 10, 9], 8)
    # install over a full list trims too
    await c.install(HOME, 1, [20, 21, 1, 2], 0)
    assert await c.slice(HOME, 1, None, 100) == IdSlice([21, 20, 13, 12, 11], 10)


@scenario()
async def test_trim_with_ids_below_a_raised_floor(env):
    """A merge may raise the floor above ids the list holds; a full list then refuses ids
    below the floor that are older than everything, and takes ids above it."""
    c = env.timeline(cap=4)
    await c.install(HOME, 1, [2, 3, 4, 5], 0)
    await c.merge(HOME, 1, [], 10)
    assert await c.slice(HOME, 1, None, 10) == IdSlice([5, 4, 3, 2], 10)
    assert await c.push(HOME, [1], 1) == 0
    assert await c.push(HOME, [1], 11) == 1
    assert await c.slice(HOME, 1, None, 10) == IdSlice([11, 5, 4, 3], 10)


@scenario()
async def test_merge_only_into_an_existing_list(env):
    c = env.timeline(cap=6)
    await c.merge(HOME, 1, [1, 2, 3], 0)
    assert await c.slice(HOME, 1, None, 10) is None
    await c.install(HOME, 1, [10, 20], 0)
    await c.merge(HOME, 1, [5, 15, 20, 25], 4)
    assert await c.slice(HOME, 1, None, 10) == IdSlice([25, 20, 15, 10, 5], 4)
    await c.merge(HOME, 1, [1, 2, 30, 40], 0)
    assert await c.slice(HOME, 1, None, 10) == IdSlice([40, 30, 25, 20, 15, 10], 5)
    await c.merge(HOME, 1, list(range(100, 200)), 0)  # many ids at once
    assert await c.slice(HOME, 1, None, 10) == IdSlice(list(range(199, 193, -1)), 193)


@scenario()
async def test_remove_from_many_lists(env):
    c = env.timeline(cap=5)
    for k in (1, 2, 3):
        await c.install(AUTHOR, k, [1, 2, 3], 0)
    await c.remove(AUTHOR, [1, 2, 4], [2, 3, 99])
    assert await c.slice(AUTHOR, 1, None, 10) == IdSlice([1], 0)
    assert await c.slice(AUTHOR, 2, None, 10) == IdSlice([1], 0)
    assert await c.slice(AUTHOR, 3, None, 10) == IdSlice([3, 2, 1], 0)
    await c.remove(AUTHOR, [1], [1])
    assert await c.slice(AUTHOR, 1, None, 10) == IdSlice([], 0)  # empty, still cached
    assert await c.exists(AUTHOR, [1, 2, 3, 4]) == [1, 2, 3]
    # what the trim cut off does not come back when newer ids are removed
    await c.install(HOME, 9, [], 0)
    for i in range(1, 9):
        await c.push(HOME, [9], i)
    await c.remove(HOME, [9], [8, 7])
    assert await c.slice(HOME, 9, None, 10) == IdSlice([6, 5, 4], 3)
    # many ids at once
    await c.install(HOME, 10, list(range(1, 6)), 0)
    await c.remove(HOME, [10], list(range(2, 40)))
    assert await c.slice(HOME, 10, None, 10) == IdSlice([1], 0)


@scenario()
async def test_drop(env):
    c = env.timeline()
    await c.install(HOME, 1, [1], 0)
    await c.install(AUTHOR, 1, [1], 0)
    await c.drop(HOME, 1)
    assert await c.slice(HOME, 1, None, 10) is None
    assert await c.slice(AUTHOR, 1, None, 10) == IdSlice([1], 0)
    assert await c.push(HOME, [1], 2) == 0


@scenario()
async def test_63_bit_ids_are_exact(env):
    """Ids past 2**53 that a double cannot tell apart, and ids of every decimal length."""
    c = env.timeline(cap=100)
    big = [1, 9, 10, 99, 100, 999_999, 1_000_000, 2**53 - 1, 2**53, 2**53 + 1, 2**53 + 2,
           10**15 - 1, 10**15, 10**18 - 1, 10**18, 10**18 + 1, MAX_ID - 2, MAX_ID - 1, MAX_ID]
    shuffled = big[:]
    random.Random(3).shuffle(shuffled)
    await c.install(HOME, 1, shuffled[:10], 0)
    await c.install(HOME, 2, [], 0)
    for i in shuffled[10:]:
        await c.push(HOME, [1], i)
    for i in shuffled:  # every push out of order for some of them
        await c.push(HOME, [2], i)
    want = sorted(big, reverse=True)
    for k in (1, 2):
        assert (await c.slice(HOME, k, None, 100)).ids == want
    for b in big:
        assert (await c.slice(HOME, 1, b, 100)).ids == [i for i in want if i < b]
        assert (await c.slice(HOME, 1, b + 1, 1)).ids == [b]
    await c.merge(HOME, 1, [], 2**53 + 1)
    assert (await c.slice(HOME, 1, None, 1)).floor == 2**53 + 1
    await c.remove(HOME, [1], [2**53])
    assert 2**53 not in (await c.slice(HOME, 1, None, 100)).ids
    assert 2**53 + 1 in (await c.slice(HOME, 1, None, 100)).ids
    # trimming past 2**53 raises the floor to exactly the id cut off
    c2 = env.timeline(cap=2)
    await c2.install(HOME, 3, [2**53, 2**53 + 1, 2**53 + 2], 0)
    assert await c2.slice(HOME, 3, None, 10) == IdSlice([2**53 + 2, 2**53 + 1], 2**53)


@scenario()
async def test_inactive_home_timelines_expire_author_lists_do_not(env):
    c = env.timeline(inactive_seconds=3.0)  # reads 0.2 s apart keep it, even on a loaded machine
    await c.install(HOME, 1, [1], 0)
    await c.install(HOME, 2, [1], 0)
    await c.install(AUTHOR, 1, [1], 0)
    for _ in range(18):  # reading keeps a timeline active
        await asyncio.sleep(0.2)
        assert await c.slice(HOME, 1, None, 10) is not None
    # 2 was not read for longer than inactive_seconds: absent, skipped by fan-out
    assert await c.exists(HOME, [1, 2]) == [1]
    assert await c.push(HOME, [1, 2], 5) == 1
    assert await c.slice(HOME, 2, None, 10) is None
    await asyncio.sleep(3.5)
    assert await c.slice(HOME, 1, None, 10) is None
    assert await c.push(HOME, [1, 2], 6) == 0
    assert await c.slice(AUTHOR, 1, None, 10) == IdSlice([1], 0)
    # rebuilt on the next read
    await c.begin(HOME, 2)
    await c.install(HOME, 2, [1, 5, 6], 0)
    assert await c.slice(HOME, 2, None, 10) == IdSlice([6, 5, 1], 0)


# --------------------------------------------------------------------------------------------
# graph facts
# --------------------------------------------------------------------------------------------


@scenario()
async def test_following_set_and_versions(env):
    c = env.timeline()
    assert await c.following(1) is None
    v = await c.following_version(1)
    assert await c.following_version(1) == v  # reading does not change it
    await c.set_following(1, [2, 3, MAX_ID], v)
    assert await c.following(1) == frozenset({2, 3, MAX_ID})
    await c.forget_following(1)
    assert await c.following(1) is None
    await c.set_following(1, [2], v)  # loaded before the follow: stale, not cached
    assert await c.following(1) is None
    v2 = await c.following_version(1)
    assert v2 != v
    await c.set_following(1, [2, 3, 4], v2)
    assert await c.following(1) == frozenset({2, 3, 4})
    await c.set_following(1, [5], None)  # no version: unconditional
    assert await c.following(1) == frozenset({5})
    await c.set_following(2, [], await c.following_version(2))  # follows nobody: cached too
    assert await c.following(2) == frozenset()
    await c.forget_following(3)  # nothing cached: fine
    assert await c.following(3) is None


@scenario()
async def test_celebrity_set(env):
    c = env.timeline()
    assert await c.celebrities() is None
    assert await c.mark_celebrity(1, True) is False  # not loaded: nothing to update
    assert await c.celebrities() is None
    await c.set_celebrities([])
    assert await c.celebrities() == frozenset()  # loaded and empty is not absent
    await c.set_celebrities([1, 2])
    assert await c.celebrities() == frozenset({1, 2})
    assert await c.mark_celebrity(3, True) is True
    assert await c.mark_celebrity(3, True) is False
    assert await c.mark_celebrity(1, False) is True
    assert await c.mark_celebrity(1, False) is False
    assert await c.celebrities() == frozenset({2, 3})
    assert await c.mark_celebrity(2, False) is True
    assert await c.mark_celebrity(3, False) is True
    assert await c.celebrities() == frozenset()
    await c.set_celebrities([MAX_ID])
    assert await c.celebrities() == frozenset({MAX_ID})


@scenario()
async def test_stats_is_a_dict_of_ints(env):
    c = env.timeline()
    await c.install(HOME, 1, [1], 0)
    stats = await c.stats()
    assert stats and all(isinstance(v, int) for v in stats.values())


# --------------------------------------------------------------------------------------------
# post cache
# --------------------------------------------------------------------------------------------


@scenario()
async def test_post_cache_round_trip(env):
    pc = env.posts()
    posts = [
        Post(2**53 + 1, MAX_ID, "Alice", "hello #rust"),
        Post(2**53 + 2, 7, "bob_1", 'ünïcödé "quotes" \\ \n\t\x00 and 🎉'),
        Post(MAX_ID, 8, "x", ""),
    ]
    assert await pc.get_many([]) == {}
    assert await pc.get_many([p.id for p in posts]) == {}
    await pc.put_many(posts)
    await pc.put_many(posts[:1])  # again: harmless
    got = await pc.get_many([p.id for p in posts] + [12345])
    assert got == {p.id: p for p in posts}
    for p in posts:
        assert got[p.id].public() == p.public()
    await pc.delete([posts[0].id, 999])
    assert set(await pc.get_many([p.id for p in posts])) == {posts[1].id, posts[2].id}
    await pc.put_many([])
    await pc.delete([])


# --------------------------------------------------------------------------------------------
# races
# --------------------------------------------------------------------------------------------


@scenario()
async def test_pushes_racing_a_rebuild_lose_no_id(env):
    """The rebuild protocol of FeedManager.rebuild_home: begin, read the store, install.
    Posts are committed (appended to ``store``) and then pushed, concurrently, by several
    workers over their own connections. Whatever the interleaving, every id committed before
    the read is in the install, and every id committed after it is pushed into the building
    list: none may be missing."""
    caches = [env.timeline(cap=10_000) for _ in range(4)] if env.is_redis else [env.timeline(cap=10_000)] * 4
    rng = random.Random(7)
    next_id = 1
    for trial in range(15):
        user = 1000 + trial
        store: list[int] = []
        stop = asyncio.Event()

        async def poster(c, n):
            nonlocal next_id
            for _ in range(n):
                next_id += 1
                i = next_id
                store.append(i)
                await c.push(HOME, [user, user + 1, user + 2], i)
                if rng.random() < 0.5:
                    await asyncio.sleep(0)

        async def rebuilder(c):
            await asyncio.sleep(rng.random() * 0.003)
            await c.begin(HOME, user)
            await asyncio.sleep(0)
            snapshot = list(store)  # the record store's answer
            await asyncio.sleep(rng.random() * 0.003)
            await c.install(HOME, user, snapshot, 0)
            stop.set()

        await asyncio.gather(rebuilder(caches[0]), *(poster(c, 40) for c in caches[1:]))
        got = await caches[0].slice(HOME, user, None, 10_000)
        assert got is not None
        assert sorted(got.ids) == sorted(store), f"trial {trial}: missing {set(store) - set(got.ids)}"


# --------------------------------------------------------------------------------------------
# differential: memory and Redis, the same operations, the same answers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(int(os.environ.get("RC_SEEDS", "12"))))
@scenario("redis_env")
async def test_same_answers_as_the_memory_adapter(env, seed):
    rng = random.Random(seed)
    cap = rng.choice([1, 2, 3, 5, 8])
    mem = MemoryTimelineCache(cap=cap, inactive_seconds=3600)
    red = env.timeline(cap=cap, trim_slack=rng.choice([0, 1, 4]), batch=rng.choice([1, 2, 100]))
    keys = [1, 2, 3, 4]
    base = rng.choice([0, 2**53 - 20, MAX_ID - 200])
    pool = [base + i for i in range(1, 120)]
    newest = [base + 60]

    def some_ids(n_max=6):
        return rng.sample(pool, rng.randint(0, n_max))

    def an_id():
        # mostly the next newest (fan-out), sometimes an older one (late, redelivered)
        if rng.random() < 0.6 and newest[0] < pool[-1]:
            newest[0] += 1
            return newest[0]
        return rng.choice(pool)

    log = []
    for step in range(250):
        kind = rng.choice(KINDS)
        key = rng.choice(keys)
        op = rng.choices(
            ["push", "slice", "begin", "install", "merge", "remove", "exists", "drop"],
            [30, 25, 5, 8, 8, 8, 4, 2],
        )[0]
        if op == "push":
            ks, i = rng.sample(keys, rng.randint(1, 4)), an_id()
            args = (kind, ks, i)
        elif op == "slice":
            before = rng.choice([None, None, rng.choice(pool), 0, MAX_ID])
            args = (kind, key, before, rng.randint(0, 8))
        elif op in ("begin", "drop"):
            args = (kind, key)
        elif op in ("install", "merge"):
            args = (kind, key, some_ids(), rng.choice([0, 0, rng.choice(pool)]))
        elif op == "remove":
            args = (kind, rng.sample(keys, rng.randint(1, 3)), some_ids(3))
        else:
            args = (kind, rng.sample(keys, rng.randint(0, 4)))
        log.append((op, args))
        want = await getattr(mem, op)(*args)
        got = await getattr(red, op)(*args)
        assert got == want, f"seed {seed} step {step}: {op}{args}: redis {got} != memory {want}\n{log[-12:]}"
        if step % 25 == 0:
            for k in keys:
                for kd in KINDS:
                    assert await red.slice(kd, k, None, 50) == await mem.slice(kd, k, None, 50), (seed, step)


# --------------------------------------------------------------------------------------------
# Redis only
# --------------------------------------------------------------------------------------------


@scenario("redis_env")
async def test_ttls(env):
    c = env.timeline(inactive_seconds=100, build_seconds=7, graph_seconds=50, author_seconds=200)
    pc = env.posts(ttl_seconds=30, tombstone_seconds=3)
    a = env.admin
    await c.begin(HOME, 1)
    assert 0 < await a.pttl(c._key(HOME, 1)) <= 7000  # a crashed rebuild does not linger
    await c.install(HOME, 1, [1], 0)
    assert 7000 < await a.pttl(c._key(HOME, 1)) <= 100_000
    await c.install(AUTHOR, 1, [1], 0)
    assert 100_000 < await a.pttl(c._key(AUTHOR, 1)) <= 200_000
    await a.pexpire(c._key(HOME, 1), 5000)
    await c.slice(HOME, 1, None, 1)  # a read refreshes
    assert await a.pttl(c._key(HOME, 1)) > 90_000
    await a.pexpire(c._key(HOME, 1), 5000)
    await c.push(HOME, [1], 2)  # fan-out does not
    await c.merge(HOME, 1, [3], 0)  # nor does a merge
    await c.remove(HOME, [1], [3])
    assert await a.pttl(c._key(HOME, 1)) <= 5000
    await c.set_following(1, [2], await c.following_version(1))
    assert 0 < await a.pttl(c._fol % 1) <= 50_000
    assert 0 < await a.pttl(c._folv % 1) <= 50_000
    await c.set_celebrities([1])
    assert await a.pttl(c._celebs) == -1  # never evicted under volatile-* (see docstring)
    p = Post(5, 1, "a", "t")
    await pc.put_many([p])
    assert 0 < await a.pttl(pc._fmt % 5) <= 30_000
    await pc.delete([5])
    assert 0 < await a.pttl(pc._fmt % 5) <= 3000


@scenario("redis_env")
async def test_a_deleted_post_cannot_be_put_back(env):
    """A reader that fetched the post from the database just before the delete must not put
    it back into the cache (the memory adapter has this race; Redis closes it)."""
    pc = env.posts()
    p = Post(10, 1, "a", "gone soon")
    await pc.put_many([p])
    await pc.delete([p.id])
    await pc.put_many([p])
    assert await pc.get_many([p.id]) == {}


@scenario("redis_env")
async def test_garbage_in_the_post_cache_is_a_miss(env):
    pc = env.posts()
    await env.admin.set(pc._fmt % 11, b"not json")
    await env.admin.set(pc._fmt % 12, b'["1","a"]')
    assert await pc.get_many([11, 12]) == {}


@scenario("redis_env")
async def test_processes_share_the_celebrity_set_exactly(env):
    a, b = env.timeline(), env.timeline()  # two processes, one Redis
    await a.set_celebrities([1])
    assert await a.celebrities() == frozenset({1})
    assert await b.celebrities() == frozenset({1})
    assert await b.mark_celebrity(2, True) is True
    assert await a.celebrities() == frozenset({1, 2})  # no stale copy
    await a.set_celebrities([3])
    assert await b.celebrities() == frozenset({3})
    await env.admin.unlink(a._celebs, a._celebs_v)
    assert await a.celebrities() is None


@scenario("redis_env")
async def test_strict_install_does_not_recreate_a_lost_build(env):
    c = env.timeline(strict_install=True)
    await c.begin(HOME, 1)
    await c.push(HOME, [1], 99)  # committed after the store was read: only in the list
    await env.admin.unlink(c._key(HOME, 1))  # lost: eviction, FLUSHALL, build TTL
    await c.install(HOME, 1, [1, 2], 0)
    assert await c.slice(HOME, 1, None, 10) is None  # absent: the caller reads the store
    await c.begin(HOME, 1)
    await c.install(HOME, 1, [1, 2, 99], 0)
    assert await c.slice(HOME, 1, None, 10) == IdSlice([99, 2, 1], 0)


@scenario("private_env")
async def test_flushall_in_the_middle_everything_is_absent_then_rebuilds(env):
    c = env.timeline(cap=5)
    pc = env.posts()
    p = Post(50, 1, "a", "t")
    await c.install(HOME, 1, [1, 2], 0)
    await c.install(AUTHOR, 1, [1, 2], 0)
    await c.begin(HOME, 2)
    await c.set_following(1, [2], await c.following_version(1))
    await c.set_celebrities([9])
    assert await c.celebrities() == frozenset({9})  # now cached in this process too
    await pc.put_many([p])
    v = await c.following_version(3)

    await env.flushall()

    for kind in KINDS:
        assert await c.slice(kind, 1, None, 10) is None
        assert await c.exists(kind, [1, 2]) == []
        assert await c.push(kind, [1, 2], 3) == 0
        await c.merge(kind, 1, [4], 0)
        await c.remove(kind, [1, 2], [1])
        assert await c.slice(kind, 1, None, 10) is None
    assert await c.following(1) is None
    assert await c.celebrities() is None  # not the copy this process held
    assert await c.mark_celebrity(9, False) is False
    assert await pc.get_many([50]) == {}
    # a version read before the flush no longer matches: a set loaded before a follow that
    # happened around the flush is not cached
    await c.set_following(3, [1], v)
    assert await c.following(3) is None

    # and everything is rebuilt from the record store as usual
    await c.begin(HOME, 1)
    await c.install(HOME, 1, [1, 2, 3], 0)
    assert await c.slice(HOME, 1, None, 10) == IdSlice([3, 2, 1], 0)
    await c.set_celebrities([9])
    assert await c.celebrities() == frozenset({9})
    await c.set_following(1, [2], await c.following_version(1))
    assert await c.following(1) == frozenset({2})


@scenario("private_env")
async def test_a_restart_that_forgot_the_scripts(env):
    c = env.timeline(cap=5, batch=2)  # several calls in one pipeline
    await c.install(HOME, 1, [1], 0)
    await c.install(HOME, 2, [1], 0)
    await env.admin.script_flush()
    assert await c.push(HOME, [1, 2, 3, 4, 5], 2) == 2  # pipelined path reloads
    await env.admin.script_flush()
    assert await c.slice(HOME, 1, None, 10) == IdSlice([2, 1], 0)  # single-call path too
    await env.admin.script_flush()
    assert await c.exists(HOME, [1, 2, 3]) == [1, 2]


@scenario("redis_env")
async def test_the_fast_fan_out_keeps_order_and_no_duplicates(env):
    """A push above the kind's top goes by RPUSHX without checks (packed mode only); ids that
    entered lists by install or merge raise the top, so an id below them is still placed in
    order; the later calls of one push stay fast, a redelivery does not, and a key given twice
    is pushed once."""
    packed = env.spec.opts.get("fanout", "packed") == "packed" and not env.is_cluster
    c = env.timeline(cap=6, batch=2, trim_slack=2)
    for k in (1, 2, 3, 4, 5):
        await c.install(HOME, k, [10], 0)
    assert await c.push(HOME, [1, 2, 3, 4, 5, 9, 1], 20) == 5
    fast = c.counters["fast_push_calls"]
    assert fast == (3 if packed else 0)  # 6 distinct keys, 2 a call: every call fast
    assert await c.push(HOME, [1, 2, 3, 4, 5], 20) == 0  # redelivered: checked, not taken
    assert c.counters["fast_push_calls"] == fast
    await c.install(HOME, 1, [100], 0)  # raises the top to 100
    await c.merge(HOME, 2, [90], 0)
    assert await c.push(HOME, [1, 2, 3], 50) == 3  # below the top: placed in order
    assert c.counters["fast_push_calls"] == fast
    for i in range(101, 110):
        assert await c.push(HOME, [1, 2], i) == 2
    assert c.counters["fast_push_calls"] > fast or not packed
    assert await c.slice(HOME, 1, None, 10) == IdSlice([109, 108, 107, 106, 105, 104], 103)
    assert await c.slice(HOME, 2, None, 10) == IdSlice([109, 108, 107, 106, 105, 104], 103)
    assert await c.slice(HOME, 3, None, 10) == IdSlice([50, 20, 10], 0)
    # the top key deleted (an operator, a bug): the assumed top covers every existing list
    await env.admin.unlink(f"{env.prefix}:{{top}}:home")
    c2 = env.timeline(cap=6, top_if_unknown=200)
    assert await c2.push(HOME, [3], 60) == 1
    assert await c2.push(HOME, [3], 201) == 1
    assert await c2.push(HOME, [3], 201) == 0
    assert await c2.slice(HOME, 3, None, 10) == IdSlice([201, 60, 50, 20, 10], 0)
    assert c2.counters["fast_push_calls"] == (1 if packed else 0)


@scenario("redis_env")
async def test_racing_fan_outs_of_many_posts_keep_every_list_ordered(env):
    """Many processes fan out interleaved ids (some redelivered, some late) to the same lists
    in several calls each; every list ends ascending, without duplicates, holding them all."""
    caches = [env.timeline(cap=10_000, batch=3, top_if_unknown=0) for _ in range(4)]
    users = list(range(1, 12))
    for u in users:
        await caches[0].install(HOME, u, [1], 0)
    rng = random.Random(7)
    ids = list(range(2, 300))
    order = ids + rng.sample(ids, 60)  # redeliveries
    head = order[:40]
    rng.shuffle(head)  # some late
    order[:40] = head
    chunks = [order[i::4] for i in range(4)]

    async def worker(c, mine):
        for i in mine:
            await c.push(HOME, users, i)
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    await asyncio.gather(*(worker(c, ch) for c, ch in zip(caches, chunks)))
    for u in users:
        got = await caches[0].slice(HOME, u, None, 10_000)
        assert got == IdSlice(sorted(set(order) | {1}, reverse=True), 0), u


@scenario("private_env")
async def test_volatile_lru_evicts_caches_but_never_the_celebrity_set(env):
    """The policy the module docstring prescribes: under memory pressure timelines and posts
    go (they are rebuilt), the celebrity set stays."""
    a = env.admin
    await a.config_set("maxmemory-policy", "volatile-lru")
    await a.config_set("maxmemory", str(await _used_memory(a) + 2_000_000))
    try:
        c = env.timeline(cap=100)
        pc = env.posts()
        await c.set_celebrities(list(range(1, 200)))
        for k in range(300):
            await c.install(HOME, k, list(range(1, 101)), 0)
        await pc.put_many([Post(i, 1, "a", "x" * 400) for i in range(1, 5000)])
        assert int((await a.info("stats"))["evicted_keys"]) > 0
        assert await c.celebrities() == frozenset(range(1, 200))
    finally:
        await a.config_set("maxmemory", "0")
        await a.config_set("maxmemory-policy", "noeviction")


async def _used_memory(a) -> int:
    return int((await a.info("memory"))["used_memory"])


@pytest.fixture
def cluster_env(cluster_url) -> Spec:
    return Spec("cluster", cluster_url, {})


@scenario("cluster_env")
async def test_cluster_fan_out_survives_a_moved_slot(env):
    """Per-node calls sent to the wrong node (as during a resharding) are redone per key."""
    c = env.timeline(cap=5, batch=4)
    assert c.fanout == "per-node"
    users = list(range(1, 30))
    for u in users[::2]:
        await c.install(HOME, u, [1], 0)
    assert await c.push(HOME, users, 2) == len(users[::2])
    nodes = c.client.get_primaries()
    right = c._node_of
    c._node_of = lambda key: next(n for n in nodes if n.name != right(key).name)  # always wrong
    assert await c.push(HOME, users, 3) == len(users[::2])
    assert await c.exists(HOME, users) == users[::2]
    await c.remove(HOME, users, [1])
    assert c.counters["node_fallbacks"] > 0
    c._node_of = right
    for u in users[::2]:
        assert await c.slice(HOME, u, None, 10) == IdSlice([3, 2], 0)
    assert await c.exists(HOME, users) == users[::2]


# --------------------------------------------------------------------------------------------
# benchmark (HOMEFEED_BENCH=1)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HOMEFEED_BENCH") != "1", reason="set HOMEFEED_BENCH=1")
@scenario("redis_env")
async def test_bench_fan_out_to_10000_followers(env):
    """Inserts/s of a push to 10,000 followers, 90% of them with a full timeline (cap 800).
    Compare with ``redis-benchmark -P 16 -t lpush -q`` on the same machine."""
    n, cap = 10_000, 800
    per_key = env.spec.opts.get("fanout") == "per-key"
    posts = 4 if per_key else 40  # one call per key is bound by the client's CPU
    c = env.timeline(cap=cap, batch=1000, trim_slack=None)  # the defaults
    base = 1 << 60
    pipe_calls = []
    for u in range(n):
        if u % 10:
            pipe_calls.append(c.install(HOME, u, [base + u * 1000 + j for j in range(cap)], 0))
        if len(pipe_calls) >= 64:
            await asyncio.gather(*pipe_calls)
            pipe_calls = []
    await asyncio.gather(*pipe_calls)
    followers = list(range(n))
    t0 = time.perf_counter()
    taken = 0
    for j in range(posts):
        taken += await c.push(HOME, followers, (1 << 61) + j)
    dt = time.perf_counter() - t0
    mode = c.fanout + (" on a 3-node cluster" if env.is_cluster else "")
    print(f"\nfan-out ({mode}): {taken} inserts in {dt:.2f} s = {taken / dt:,.0f} inserts/s")
    assert taken == posts * (n - n // 10)
    s = await c.slice(HOME, 1, None, cap)
    assert len(s.ids) == cap and s.ids[0] == (1 << 61) + posts - 1
