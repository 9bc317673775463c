"""The fan-out from the small side (``FeedManager._home_targets``: the followers among the
users with a cached home timeline, for an author whose followers far outnumber them) reaches
exactly the lists the old path (push to every follower) reaches, against a plain model.

Hypothesis draws who follows the author and a sequence of: a post by the author (committed
to a real SQLite store, then fanned out as the fan-out consumer does), the delete of their
oldest post (committed, then ``fan_out_delete``), a rebuild of a
user's home list (``begin``, the store read, ``install``), a ``begin`` alone (a crashed
rebuild: the list takes pushes, unreadable), and a list's expiry (behind the adapter's
back: on Redis the key is deleted as an expiry or eviction would, no script running; in
memory its inactivity deadline passes). A post or delete may have a rebuild or an expiry happen
*between* the listing of the cached timelines and the push (the race ``_home_targets``'s
docstring is about; the old path gets the same step just before its push or removal).

The model: each existing list holds the author's posts pushed while it existed, and a
rebuilt list every post of the author's if the user follows them. Both paths, on the memory
cache and on Redis (packed and per-key calls, the home registry of ``lua/live.lua``), must
end with exactly the model's lists. A registry that misses a member (e.g. ``begin.lua`` not adding
the user) fails it: a list rebuilt after the first listing never gets the next post.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache
from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.adapters.sqlite_store import SqliteRecordStore
from homefeed.service_layer.feed import HOME, FeedManager
from tests.backends import REDIS_URL, needs, unique

N = 6  # users 1..N besides the author
USERS = st.integers(0, N - 1)
BETWEEN = st.one_of(st.none(), st.tuples(st.sampled_from(["rebuild", "expire"]), USERS))
STEP = st.one_of(
    st.tuples(st.sampled_from(["post", "delete"]), BETWEEN),
    st.tuples(st.sampled_from(["rebuild", "begin", "expire"]), USERS),
)


class _Between:
    """The timeline cache, with one step run right after ``home_keys`` answers (the small
    side) or right before a home push (the old path): inside the fan-out's window."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.step: Callable[[], Awaitable[None]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _run(self) -> None:
        step, self.step = self.step, None
        if step is not None:
            await step()

    async def home_keys(self, limit: int) -> list[int] | None:
        got = await self.inner.home_keys(limit)
        await self._run()
        return got

    async def push(self, kind: str, keys: Any, id_: int) -> int:
        if kind == HOME:
            await self._run()
        return await self.inner.push(kind, keys, id_)

    async def remove(self, kind: str, keys: Any, ids: Any) -> None:
        if kind == HOME:
            await self._run()
        await self.inner.remove(kind, keys, ids)


async def _scenario(cache: Any, small_side: bool, follows: set[int], steps: list[Any], d: Path) -> None:
    store = SqliteRecordStore(SqliteDatabase(d / "homefeed.db"))
    await store.open()
    try:
        users = [(i, f"u{i}", f"u{i}", i.to_bytes(32, "big")) for i in range(1, N + 2)]
        author = N + 1
        await store.bulk_load(users, ((i + 1, author, i + 1) for i in sorted(follows)), [])
        between = _Between(cache)
        feed = FeedManager(store, between, MemoryPostCache(), celebrity_threshold=1 << 40,
                           timeline_cap=800, strategy="push")
        if small_side:
            feed.small_side_min, feed.small_side_ratio = 0, 1e-9  # always, whatever the counts
        else:
            feed.small_side_min = 1 << 62  # never
        model: dict[int, set[int]] = {}  # user index -> the post ids their list holds
        building: set[int] = set()
        posts: set[int] = set()

        async def expire(u: int) -> None:
            if isinstance(cache, MemoryTimelineCache):
                lst = cache._lists[HOME].get(u + 1)
                if lst is not None:
                    lst.used -= cache.inactive_seconds + 1
            else:
                await cache.client.delete(cache._key(HOME, u + 1))
            model.pop(u, None)
            building.discard(u)

        async def rebuild(u: int) -> None:
            await feed.rebuild_home(u + 1)
            model[u] = set(posts) if u in follows else set()
            building.discard(u)

        for step in steps:
            if step[0] in ("post", "delete"):
                if step[0] == "post":
                    p = await store.create_post(author, f"u{author}", "a post")
                    posts.add(p.id)
                    for u in model:
                        if u in follows:
                            model[u].add(p.id)
                elif not posts:
                    continue
                else:  # the oldest post goes
                    gone = min(posts)
                    await store.delete_post(gone, author)
                    posts.discard(gone)
                    for ids in model.values():
                        ids.discard(gone)
                if step[1] is not None:
                    what, u = step[1]
                    between.step = (lambda u=u: rebuild(u)) if what == "rebuild" else (lambda u=u: expire(u))
                if step[0] == "post":
                    await feed.fan_out_post(p)
                else:
                    await feed.fan_out_delete(gone, author)
                await between._run()  # not run if the fan-out never got there (no followers)
            elif step[0] == "rebuild":
                await rebuild(step[1])
            elif step[0] == "begin":
                await cache.begin(HOME, step[1] + 1)
                model.setdefault(step[1], set())
                building.add(step[1])
            else:
                await expire(step[1])

        if small_side and follows:
            assert feed.counters["small_side_fanouts"] >= sum(1 for step in steps if step[0] == "post")
        elif not small_side:
            assert feed.counters["small_side_fanouts"] == 0
        for u in building:  # readable now: their content is what the pushes left
            await cache.install(HOME, u + 1, [], 0)
        assert sorted(await cache.exists(HOME, list(range(1, N + 1)))) == sorted(u + 1 for u in model)
        for u in range(N):
            s = await cache.peek(HOME, u + 1)
            assert (None if s is None else set(s.ids)) == model.get(u), (u, u in follows)
    finally:
        await store.close()


def _memory() -> Any:
    return MemoryTimelineCache(cap=800)


def _redis() -> Any:
    from homefeed.adapters.redis_cache import RedisTimelineCache

    return RedisTimelineCache(REDIS_URL, cap=800, prefix=unique("hfs"))


def _redis_per_key() -> Any:
    """One script call per key (as against a proxy), on a standalone server: the registry
    is still kept, by the single-key begin and install."""
    from homefeed.adapters.redis_cache import RedisTimelineCache

    return RedisTimelineCache(REDIS_URL, cap=800, prefix=unique("hfs"), fanout="per-key")


async def _drop_prefix(cache: Any) -> None:
    keys = [k async for k in cache.client.scan_iter(match=cache.prefix + ":*", count=1000)]
    if keys:
        await cache.client.delete(*keys)


@pytest.mark.parametrize("small_side", [True, False], ids=["small-side", "old-path"])
@pytest.mark.parametrize("make", [pytest.param(_memory, id="memory"),
                                  pytest.param(_redis, id="redis", marks=needs("redis")),
                                  pytest.param(_redis_per_key, id="redis-per-key", marks=needs("redis"))])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(follows=st.sets(USERS), steps=st.lists(STEP, max_size=14))
def test_a_push_reaches_exactly_the_cached_lists_of_the_followers(make, small_side, follows, steps):
    async def main() -> None:
        cache = make()
        try:
            with tempfile.TemporaryDirectory() as d:
                await _scenario(cache, small_side, follows, steps, Path(d))
        finally:
            if not isinstance(cache, MemoryTimelineCache):
                await _drop_prefix(cache)
            await cache.close()

    asyncio.run(main())


@needs("redis")
def test_the_redis_registry_is_seeded_when_lost_and_not_marked_if_lost_while_seeding():
    """The registry gone (eviction under a wrong policy, a DEL): the next ``home_keys``
    seeds it from a SCAN and still finds every list; a registry lost during the seeding is
    not marked complete (its token went with it)."""
    from homefeed.adapters.redis_cache import RedisTimelineCache

    async def main() -> None:
        c = RedisTimelineCache(REDIS_URL, cap=10, prefix=unique("hfs"))
        try:
            for u in (1, 2, 3):
                await c.install(HOME, u, [u], 0)
            assert sorted(await c.home_keys(10)) == [1, 2, 3]
            assert c.counters["registry_seeds"] == 1  # a new prefix: seeded once
            assert sorted(await c.home_keys(10)) == [1, 2, 3]
            assert c.counters["registry_seeds"] == 1
            await c.client.delete(c._live)
            await c.begin(HOME, 4)  # recreates the registry, not marked complete
            assert sorted(await c.home_keys(10)) == [1, 2, 3, 4]
            assert c.counters["registry_seeds"] == 2
            await c.client.delete(c._live)
            await c.client.sadd(c._live, b"?t")
            await c.client.delete(c._live)  # lost after the token was added
            assert await c._seed_done(c.client, [c._live], [b"?t"]) == 0
            assert not await c.client.sismember(c._live, b"!")
        finally:
            await _drop_prefix(c)
            await c.close()

    asyncio.run(main())
