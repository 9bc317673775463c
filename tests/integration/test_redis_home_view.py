"""The Redis timeline cache's ``home_view`` across processes: each process keeps following
sets in memory under the version key (``folv``) that every follow change bumps, so a home
read checks its copy with one version read instead of loading the set. These tests run two
caches on one Redis and key prefix (two API processes) and check that a follow change made
by one is never answered from the other's old copy, and what happens when the version key
expires before the set."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from homefeed.adapters.redis_cache import FastLane
from homefeed.adapters.redis_post_cache import RedisPostCache
from homefeed.adapters.redis_timeline_cache import RedisTimelineCache
from homefeed.domain.errors import Unavailable
from homefeed.domain.model import Post
from homefeed.ports import IdSlice
from tests.backends import REDIS_URL, needs

pytestmark = needs("redis")


async def _two(prefix: str) -> tuple[RedisTimelineCache, RedisTimelineCache]:
    return RedisTimelineCache(REDIS_URL, prefix=prefix), RedisTimelineCache(REDIS_URL, prefix=prefix)


async def _load(c: RedisTimelineCache, user: int, ids: list[int]) -> None:
    """What ``FeedManager.following_of`` does on a miss."""
    version = await c.following_version(user)
    await c.set_following(user, ids, version)


async def _cleanup(c: RedisTimelineCache, prefix: str) -> None:
    keys = [k async for k in c.client.scan_iter(match=prefix + ":*", count=1000)]
    if keys:
        await c.client.delete(*keys)


def test_a_follow_change_in_one_process_is_seen_by_the_others_next_view() -> None:
    async def main() -> None:
        prefix = "hfhv" + uuid.uuid4().hex[:10]
        a, b = await _two(prefix)
        try:
            await _load(a, 1, [2, 3])
            assert (await a.home_view(1, None, 5)).following == frozenset({2, 3})
            assert (await b.home_view(1, None, 5)).following is None  # b has no copy yet
            assert await b.following(1) == frozenset({2, 3})  # ... now it has
            assert (await b.home_view(1, None, 5)).following == frozenset({2, 3})
            # b: an unfollow commits (forget), then b's next read loads the new set
            await b.forget_following(1)
            assert (await a.home_view(1, None, 5)).following is None
            assert (await b.home_view(1, None, 5)).following is None
            await _load(b, 1, [2])
            assert (await b.home_view(1, None, 5)).following == frozenset({2})
            assert (await a.home_view(1, None, 5)).following is None  # a's copy is old
            assert await a.following(1) == frozenset({2})
            assert (await a.home_view(1, None, 5)).following == frozenset({2})
        finally:
            await _cleanup(a, prefix)
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_set_that_outlived_its_version_gets_a_new_one() -> None:
    """The version's TTL runs from the last follow change, the set's from its load: when
    the version expires first, ``following`` gives the set a fresh version (the set is
    current: no follow change dropped it), so views use the copy again."""
    async def main() -> None:
        prefix = "hfhv" + uuid.uuid4().hex[:10]
        a, b = await _two(prefix)
        try:
            await _load(a, 1, [4, 5])
            await a.client.delete(a._folv % 1)  # the version expired
            assert (await a.home_view(1, None, 5)).following is None
            assert await b.following(1) == frozenset({4, 5})
            assert (await b.home_view(1, None, 5)).following == frozenset({4, 5})
            version_ttl = await a.client.pttl(a._folv % 1)
            assert 0 < version_ttl <= await a.client.pttl(a._fol % 1) + 1000  # (read 1 ms apart)
            # a's copy was made under the expired version: not used
            assert (await a.home_view(1, None, 5)).following is None
            await b.forget_following(1)
            assert (await b.home_view(1, None, 5)).following is None
        finally:
            await _cleanup(a, prefix)
            await a.close()
            await b.close()

    asyncio.run(main())


@pytest.mark.parametrize("memo", [0, 3])
def test_the_copies_are_bounded_by_members(memo: int) -> None:
    async def main() -> None:
        prefix = "hfhv" + uuid.uuid4().hex[:10]
        c = RedisTimelineCache(REDIS_URL, prefix=prefix, following_memo=memo)
        try:
            await _load(c, 1, [2, 3])
            await _load(c, 2, [3, 4])
            v1, v2 = await c.home_view(1, None, 5), await c.home_view(2, None, 5)
            if memo == 0:
                assert v1.following is None and v2.following is None
            else:  # room for one set of two: the newest
                assert v1.following is None and v2.following == frozenset({3, 4})
            assert await c.following(1) == frozenset({2, 3})  # Redis still has both
        finally:
            await _cleanup(c, prefix)
            await c.close()

    asyncio.run(main())


# -- the bare connection of the hot read path (redis_cache.FastLane) --------------------------
def _start_private(port: int, d: Path) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(d), "--logfile", str(d / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(200):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    pytest.skip("could not start a private redis-server")


def test_home_views_and_post_reads_survive_a_script_flush_and_a_restart(tmp_path: Path) -> None:
    """On a private redis-server (SCRIPT FLUSH, restart): the bare connection reloads the
    script, reconnects after a restart, and while the server is down a read fails with
    ``Unavailable`` (the feed then reads the record store)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/3"
    proc = _start_private(port, tmp_path)

    async def main() -> None:
        c, p = RedisTimelineCache(url), RedisPostCache(url)
        post = Post(5, 9, "h", "hello")
        try:
            assert c._fast is not None and p._fast is not None
            await c.install("home", 1, [3, 5], 0)
            await p.put_many([post])
            assert (await c.home_view(1, None, 5)).home == IdSlice([5, 3], 0)
            assert (await p.get_many([5, 6])) == {5: post}
            await c.client.script_flush()
            assert (await c.home_view(1, None, 5)).home == IdSlice([5, 3], 0)
            proc.terminate()
            proc.wait(5)
            with pytest.raises(Unavailable):
                await c.home_view(1, None, 5)
            with pytest.raises(Unavailable):
                await p.get_many([5])
            restarted = _start_private(port, tmp_path)
            try:
                await asyncio.sleep(0.3)  # outage_aware fails calls at once for 0.25 s
                assert (await c.home_view(1, None, 5)).home is None  # a new, empty server
                assert await p.get_many([5]) == {}
                await c.install("home", 1, [7], 0)
                assert (await c.home_view(1, None, 5)).home == IdSlice([7], 0)
            finally:
                restarted.terminate()
                restarted.wait(5)
        finally:
            await c.close()
            await p.close()

    try:
        asyncio.run(main())
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_server_that_stops_answering_fails_the_pending_requests() -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 20)  # reads, never answers
            await asyncio.sleep(60)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        lane = FastLane("127.0.0.1", port, 0, None, None, timeout=0.2)
        try:
            with pytest.raises(redis.ConnectionError):
                await lane.call(b"PING")
        finally:
            lane.close()
            server.close()

    asyncio.run(main())


def test_concurrent_home_views_each_get_their_own_answer() -> None:
    """One connection carries every request of the process: replies go to the requests in
    the order they were sent."""
    async def main() -> None:
        prefix = "hfhv" + uuid.uuid4().hex[:10]
        c = RedisTimelineCache(REDIS_URL, prefix=prefix)
        try:
            for user in range(1, 41):
                await c.install("home", user, [user * 100 + i for i in range(user % 7)], user % 3)
            views = await asyncio.gather(*(c.home_view(u, None, 5) for u in range(1, 41) for _ in range(3)))
            for k, view in enumerate(views):
                assert view.home == await c.slice("home", k // 3 + 1, None, 5)
        finally:
            await _cleanup(c, prefix)
            await c.close()

    asyncio.run(main())


def test_a_closed_cache_does_not_reconnect() -> None:
    async def main() -> None:
        c = RedisTimelineCache(REDIS_URL, prefix="hfhv" + uuid.uuid4().hex[:10])
        await c.home_view(1, None, 5)
        await c.close()
        with pytest.raises(Unavailable):
            await c.home_view(1, None, 5)

    asyncio.run(main())


def test_a_post_deleted_through_the_post_cache_changes_the_fingerprint() -> None:
    """The post cache a timeline cache watches (``deletes_key``, as bootstrap wires them)
    changes every view's fingerprint by any delete, and a deletes key that went missing
    (evicted, flushed) comes back as a value no earlier view had."""
    from homefeed.adapters.redis_cache import OUTAGE

    while OUTAGE.recently_failed():  # a test before stopped a server: calls would fail at once
        time.sleep(0.05)

    async def main() -> None:
        prefix = "hfhv" + uuid.uuid4().hex[:10]
        p = RedisPostCache(REDIS_URL, prefix=prefix)
        c = RedisTimelineCache(REDIS_URL, prefix=prefix, deletes_key=p.deletes_key, top_if_unknown=0)
        try:
            await c.install("home", 1, [10, 11], 0)
            await c.install("author", 1, [11], 0)
            await _load(c, 1, [2])
            await c.set_celebrities([])
            first = (await c.home_view(1, None, 5)).fingerprint
            assert first is not None
            assert (await c.home_view(1, None, 5)).fingerprint == first  # nothing changed
            await p.delete([99])  # any post, on no list
            second = (await c.home_view(1, None, 5)).fingerprint
            assert second is not None and second != first
            await c.client.delete(p.deletes_key)
            third = (await c.home_view(1, None, 5)).fingerprint
            assert third is not None and third not in (first, second)
            assert (await c.home_view(1, None, 5, kept=third)).fingerprint == third
        finally:
            await _cleanup(c, prefix)
            await c.close()
            await p.close()

    asyncio.run(main())
