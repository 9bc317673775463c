"""PostCache contract (``homefeed.ports.PostCache``): post id -> post, bounded; a miss is
simply absent from ``get_many``'s answer (the caller goes to the record store)."""

from __future__ import annotations

import pytest

from homefeed.domain.model import Post

from .conftest import run


def post(i: int, text: str | None = None) -> Post:
    return Post(i, 100 + i % 3, f"user{i % 3}", text if text is not None else f"post {i}")


def test_empty_cache_misses(post_cache):
    async def main():
        async with post_cache() as c:
            assert await c.get_many([1, 2, 3]) == {}
            assert await c.get_many([]) == {}

    run(main())


def test_put_then_get_many_returns_exactly_the_cached_ones(post_cache):
    async def main():
        async with post_cache() as c:
            posts = [post(i) for i in range(1, 6)]
            await c.put_many(posts)
            got = await c.get_many([5, 3, 42, 1])
            assert got == {5: posts[4], 3: posts[2], 1: posts[0]}
            assert all(got[i].id == i for i in got)
            await c.put_many([])
            assert await c.get_many([1, 1, 2]) == {1: posts[0], 2: posts[1]}

    run(main())


def test_posts_round_trip_unchanged(post_cache):
    texts = ["emoji 👩🏽‍💻 🇫🇷", "RTL שלום مرحبا", "e\u0301 vs é", "tab\tnew\nline\r\n", "x" * 500]

    async def main():
        async with post_cache() as c:
            posts = [Post(10 + i, 7, "Écrivain_7", t) for i, t in enumerate(texts)]
            posts.append(Post((1 << 63) - 1, (1 << 63) - 2, "max", "largest ids"))
            await c.put_many(posts)
            got = await c.get_many([p.id for p in posts])
            for p in posts:
                q = got[p.id]
                assert (q.id, q.author_id, q.author_handle, q.text) == (
                    p.id,
                    p.author_id,
                    p.author_handle,
                    p.text,
                )
                assert q.public() == p.public()

    run(main())


def test_put_is_idempotent(post_cache):
    async def main():
        async with post_cache() as c:
            p = post(1)
            await c.put_many([p])
            await c.put_many([p, p])
            assert await c.get_many([1]) == {1: p}

    run(main())


def test_delete(post_cache):
    async def main():
        async with post_cache() as c:
            await c.put_many([post(i) for i in range(1, 5)])
            await c.delete([2, 4, 99])
            assert set(await c.get_many([1, 2, 3, 4])) == {1, 3}
            await c.delete([2])  # twice: harmless
            await c.delete([])
            assert set(await c.get_many([1, 2, 3, 4])) == {1, 3}
            # A delete wins over a later put of the same post: a reader that fetched the post
            # from the store just before it was deleted must not put it back (ids are never
            # reused, so a deleted id never needs to come back).
            await c.put_many([post(2)])
            assert set(await c.get_many([1, 2, 3, 4])) == {1, 3}

    run(main())


def test_bounded(post_cache):
    if not getattr(post_cache, "count_bound", False):
        pytest.skip("this cache is bounded by memory or TTL, not by a count of posts")

    async def main():
        async with post_cache(max_posts=10) as c:
            for start in range(0, 50, 5):
                await c.put_many([post(i) for i in range(start + 1, start + 6)])
                got = await c.get_many(list(range(1, 51)))
                assert len(got) <= 10
                # what was just put is served (a cache that keeps nothing is no cache)
                assert start + 5 in got
            await c.put_many([post(i) for i in range(100, 130)])  # one batch over the bound
            assert len(await c.get_many(list(range(1, 130)))) <= 10

    run(main())


def test_stats_count_hits_and_misses_and_peek_many_leaves_no_trace(post_cache):
    async def main():
        async with post_cache() as c:
            await c.put_many([post(1), post(2)])
            before = await c.stats()
            await c.get_many([1, 2, 3])
            after = await c.stats()
            assert after["hits"] - before["hits"] == 2
            assert after["misses"] - before["misses"] == 1
            assert set(await c.peek_many([1, 3])) == {1}
            assert await c.stats() == after

    run(main())


def test_visibility_round_trips(post_cache):
    async def main():
        async with post_cache() as c:
            posts = [Post(1, 7, "a", "public one"), Post(2, 7, "a", "unlisted one", "unlisted")]
            await c.put_many(posts)
            got = await c.get_many([1, 2])
            assert [got[i].visibility for i in (1, 2)] == ["public", "unlisted"]

    run(main())


def test_reply_and_boost_links_round_trip(post_cache):
    async def main():
        async with post_cache() as c:
            big = (1 << 63) - 1
            posts = [
                Post(11, 7, "a", "a reply", "public", 10, 8),
                Post(12, 7, "a", "", "unlisted", reblog_of_id=big),
                Post(13, 7, "a", "self reply", "unlisted", 11, 7),
                Post(14, 7, "a", "plain"),
            ]
            await c.put_many(posts)
            got = await c.get_many([p.id for p in posts])
            for p in posts:
                assert got[p.id] == p
                assert (got[p.id].in_reply_to_id, got[p.id].in_reply_to_account_id,
                        got[p.id].reblog_of_id) == (p.in_reply_to_id, p.in_reply_to_account_id, p.reblog_of_id)

    run(main())


def test_redis_entries_written_before_the_links_still_decode():
    from homefeed.adapters.redis_post_cache import RedisPostCache

    old = RedisPostCache.decode(5, b'["7","a","hi","2024-01-01T00:00:00.000Z"]')
    assert old is not None and (old.visibility, old.in_reply_to_id, old.reblog_of_id) == ("public", None, None)
    unlisted = RedisPostCache.decode(5, b'["7","a","hi","2024-01-01T00:00:00.000Z","unlisted"]')
    assert unlisted is not None and unlisted.visibility == "unlisted" and unlisted.in_reply_to_account_id is None
    p = Post(9, 7, "a", "x", "public", 3, 4, None)
    assert RedisPostCache.decode(9, RedisPostCache.encode(p)) == p
