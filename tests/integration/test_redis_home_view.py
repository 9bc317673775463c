"""The Redis timeline cache's ``home_view`` across processes: each process keeps following
sets in memory under the version key (``folv``) that every follow change bumps, so a home
read checks its copy with one version read instead of loading the set. These tests run two
caches on one Redis and key prefix (two API processes) and check that a follow change made
by one is never answered from the other's old copy, and what happens when the version key
expires before the set."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from homefeed.adapters.redis_timeline_cache import RedisTimelineCache
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
            assert 0 < await a.client.pttl(a._folv % 1) <= await a.client.pttl(a._fol % 1)
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
