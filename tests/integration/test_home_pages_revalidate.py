"""A kept Mastodon home rendering whose Account parts pass ``ACCOUNT_TTL`` while nothing is
committed is assembled again without ``post_stats`` (``MastodonApi.home_rendered``: only the
expired Accounts are read again). It must then show exactly what a process with no cache at
all would render: the counters and flags it was rendered with are still the store's (nothing
was committed), and every Account is either read again or read at the current version.

The clock is the module's: ``time.monotonic`` is replaced by one the test moves, so a TTL of
30 s passes in one step instead of being set to 0 (with 0 nothing would be kept long enough
to be assembled again).
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.domain.mastodon.pagination import Page
from homefeed.service_layer import mastodon as mastodon_module
from homefeed.service_layer.mastodon import MastodonApi
from tests.integration.page_ops import LIMIT, RENDERING_WRITES, URLS, WRITES, apply, users_following


class Clock:
    """``time.monotonic`` for the Mastodon module: real time plus what the test added."""

    def __init__(self) -> None:
        import time
        self._real = time.monotonic
        self.added = 0.0

    def monotonic(self) -> float:
        return self._real() + self.added


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(mastodon_module, "time", SimpleNamespace(monotonic=c.monotonic))
    return c


async def uncached(hf: Any, uid: int) -> bytes:
    posts, _ = await hf.feed.read_home(uid, None, LIMIT)
    return await MastodonApi(hf).statuses_bytes(URLS, posts, uid)


async def kept_rendering(api: MastodonApi, uid: int) -> Any:
    """Read ``uid``'s first page until its rendering is kept (a rendering is kept only if
    nothing, e.g. a consumer's acknowledgement, was committed while it ran)."""
    page = Page(limit=LIMIT)
    for _ in range(50):
        got = await api.home_rendered(URLS, uid, page)
        if api.warm_home(URLS, uid, page) is got:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError("the rendering was never kept")


def test_an_expired_account_is_read_again_without_post_stats(tmp_path: Path, clock: Clock) -> None:
    """The page is rendered at a version newer than one of its Account parts (a profile
    changed behind the API's back, as another process would: shown stale, as the TTL
    allows). When the TTL passes, the next read shows the new profile, runs no
    ``post_stats``, and its rendering is kept again."""

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path))
        try:
            api = MastodonApi(hf)
            a, b, c = [int((await hf.register(h))["id"]) for h in ("a", "b", "c")]
            await hf.follow(a, "b")
            await hf.follow(a, "c")
            await hf.write_post(b, "hello from b")
            await hf.write_post(c, "hello from c")
            await hf.drain()
            await kept_rendering(api, a)
            await hf.store.update_profile(b, "Bee Renamed", "a new note")  # a commit
            stale = await kept_rendering(api, a)  # rendered again at the new version
            assert b'"display_name":"Bee Renamed"' not in stale.body  # b's part: within the TTL
            assert stale.until < float("inf")

            stats_calls = 0
            post_stats = hf.store.post_stats

            async def counting(*args: Any, **kwargs: Any) -> Any:
                nonlocal stats_calls
                stats_calls += 1
                return await post_stats(*args, **kwargs)

            hf.store.post_stats = counting  # type: ignore[method-assign]
            clock.added += mastodon_module.ACCOUNT_TTL + 1
            assert api.warm_home(URLS, a, Page(limit=LIMIT)) is None  # expired
            before = api.revalidated
            fresh = await kept_rendering(api, a)
            assert api.revalidated > before
            assert stats_calls == 0
            assert b'"display_name":"Bee Renamed"' in fresh.body
            assert fresh.until == float("inf")  # every part read at the current version
            hf.store.post_stats = post_stats  # type: ignore[method-assign]
            assert fresh.body == await uncached(hf, a)
            assert gzip.decompress(fresh.gzipped()) == fresh.body
        finally:
            await hf.close()

    asyncio.run(main())


def test_an_expired_account_that_did_not_change_keeps_the_compressed_body(tmp_path: Path, clock: Clock) -> None:
    """Assembled again to the same bytes, the rendering shares its gzip body (compressed once)."""

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path))
        try:
            api = MastodonApi(hf)
            a, b, d = [int((await hf.register(h))["id"]) for h in ("a", "b", "d")]
            await hf.follow(a, "b")
            await hf.write_post(b, "hello from b")
            await hf.drain()
            await kept_rendering(api, a)
            # Another process's commit (d is on nobody's page): the version moves, so the
            # page is rendered again, with its Account parts read before it (within the TTL).
            other = sqlite3.connect(tmp_path / "homefeed.db")
            other.execute("UPDATE users SET display_name = 'dee' WHERE id = ?", (d,))
            other.commit()
            other.close()
            first = await kept_rendering(api, a)
            assert first.until < float("inf")
            zipped = first.gzipped()
            clock.added += mastodon_module.ACCOUNT_TTL + 1
            before = api.revalidated
            again = await kept_rendering(api, a)
            assert api.revalidated > before
            assert again is not first and again.body == first.body
            assert again.gzipped() is zipped
        finally:
            await hf.close()

    asyncio.run(main())


op = st.one_of(*WRITES, *RENDERING_WRITES, st.tuples(st.sampled_from(["read", "tick"]), st.just(0), st.just(0)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=30))
@example(ops=[("post", 1, True), ("read", 0, 0), ("profile", 1, 2), ("read", 0, 0), ("tick", 0, 0)])
def test_after_the_ttl_every_kept_rendering_equals_an_uncached_one(
        tmp_path_factory: pytest.TempPathFactory, clock: Clock, ops: list[tuple]) -> None:
    """Between two ticks a page may show an Account up to ``ACCOUNT_TTL`` old; right after a
    tick past it (nothing committed in between), every page read through the kept paths
    must equal an uncached rendering, however its kept rendering got there."""
    data_dir: Path = tmp_path_factory.mktemp("revalidate")

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=data_dir, celebrity_threshold=2, timeline_cap=6))
        try:
            api = MastodonApi(hf)
            ids = await users_following(hf)
            posts: list[tuple[int, int]] = []
            page = Page(limit=LIMIT)
            for name, a, b in ops:
                if name == "read":
                    await hf.drain()
                    for uid in ids:
                        await api.home_rendered(URLS, uid, page)
                elif name == "tick":
                    await hf.drain()
                    clock.added += mastodon_module.ACCOUNT_TTL + 1
                    for uid in ids:
                        for _ in range(2):  # the second read of an unchanged page is the kept one
                            got = await api.home_rendered(URLS, uid, page)
                            expected = await uncached(hf, uid)
                            assert got.body == expected
                            warm = api.warm_home(URLS, uid, page)
                            if warm is not None:
                                assert warm.body == expected
                                assert gzip.decompress(warm.gzipped()) == expected
                else:
                    await apply(hf, api, ids, posts, name, a, b)
        finally:
            await hf.close()

    asyncio.run(main())


def test_a_commit_elsewhere_keeps_the_rendering_and_a_favourite_on_the_page_drops_it(tmp_path: Path) -> None:
    """This process's commits no longer move the version the renderings are kept by: the
    store reports what each changed (``SqliteDatabase.on_shown_change``). A post, a
    favourite and a profile change that no status on a's page shows leave a's kept
    rendering as it is (the same object, no new rendering); a favourite of a post on the
    page, or a profile change of an author on it, drops it, and the next read shows it."""

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path))
        try:
            api = MastodonApi(hf)
            a, b, c, d = [int((await hf.register(h))["id"]) for h in ("a", "b", "c", "d")]
            await hf.follow(a, "b")
            shown = await hf.write_post(b, "hello from b")
            elsewhere = await hf.write_post(c, "nobody a follows wrote this")
            await hf.drain()
            page = Page(limit=LIMIT)
            first = await kept_rendering(api, a)
            assert b'"favourites_count":0' in first.body
            await hf.write_post(d, "another post elsewhere")
            await api.conversations.favourite(URLS, d, elsewhere.id, True)
            await hf.store.update_profile(c, "Cee", "not on a's page")
            await hf.drain()
            assert api.warm_home(URLS, a, page) is first
            await api.conversations.favourite(URLS, d, shown.id, True)
            assert api.warm_home(URLS, a, page) is None
            second = await kept_rendering(api, a)
            assert b'"favourites_count":1' in second.body
            assert second.body == await uncached(hf, a)
            await hf.store.update_profile(b, "Bee", "a new note")  # behind the API's back
            assert api.warm_home(URLS, a, page) is None
        finally:
            await hf.close()

    asyncio.run(main())
