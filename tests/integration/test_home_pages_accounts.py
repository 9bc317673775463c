"""A kept Mastodon home rendering keeps its Account parts past ``ACCOUNT_TTL`` only while the
record store has committed nothing since they were read (``MastodonApi._fresh``): then it
must be exactly what a process with no cache at all would render.

With ``ACCOUNT_TTL`` set to 0 no staleness is allowed, so after every drawn write (posts,
boosts, favourites, follows, deletes, and profile changes made behind the API's back, as
another process would: nothing tells this process's caches) each user's first page, read
through the kept paths (``home_rendered`` and the hot path's ``warm_home``), must equal the
page rendered by a brand-new ``MastodonApi`` (empty caches, every Account read from the
store). Keeping an Account part across a commit that changed it (a version taken after the
user was read, or a rendering that ignores its parts' versions) makes it fail; so does the
old rule with a TTL of 0 never keeping anything (checked: ``kept_warm``).
"""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.domain.mastodon.pagination import Page
from homefeed.service_layer import mastodon as mastodon_module
from homefeed.service_layer.mastodon import MastodonApi
from tests.integration.page_ops import LIMIT, RENDERING_WRITES, URLS, WRITES, apply, users_following

op = st.one_of(*WRITES, *RENDERING_WRITES, st.tuples(st.sampled_from(["idle", "reads"]), st.just(0), st.just(0)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=30))
# a profile changed behind the API's back, then nothing: the page must show the new name
@example(ops=[("post", 1, True), ("idle", 0, 0), ("profile", 1, 2), ("idle", 0, 0)])
def test_kept_renderings_past_the_ttl_equal_an_uncached_rendering(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, ops: list[tuple]) -> None:
    data_dir: Path = tmp_path_factory.mktemp("accounts")
    monkeypatch.setattr(mastodon_module, "ACCOUNT_TTL", 0.0)

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=data_dir, celebrity_threshold=2, timeline_cap=6))
        try:
            api = MastodonApi(hf)
            ids = await users_following(hf)
            posts: list[tuple[int, int]] = []
            kept_warm = shown = 0

            async def check() -> None:
                nonlocal kept_warm, shown
                await hf.drain()
                for uid in ids:
                    for _ in range(2):  # the second read of an unchanged page is the kept one
                        got = await api.home_rendered(URLS, uid, Page(limit=LIMIT))
                        warm = api.warm_home(URLS, uid, Page(limit=LIMIT))
                        fresh_posts, _ = await hf.feed.read_home(uid, None, LIMIT)
                        uncached = await MastodonApi(hf).statuses_bytes(URLS, fresh_posts, uid)
                        assert got.body == uncached
                        shown += bool(got.ids)
                        if warm is not None:
                            kept_warm += bool(warm.ids)
                            assert warm.body == uncached
                            assert gzip.decompress(warm.gzipped()) == uncached

            for name, a, b in ops:
                if name == "reads":  # the read counter's commit: kept renderings stay
                    await hf.reads.flush(hf.job_store)
                elif name != "idle":
                    await apply(hf, api, ids, posts, name, a, b)
                await check()
            if shown:
                assert kept_warm  # a page of posts kept past a TTL of 0: the version rule
        finally:
            await hf.close()

    asyncio.run(main())


def test_the_read_counters_commit_keeps_the_kept_renderings(tmp_path: Path) -> None:
    """The read counter commits once a minute, and that commit changes nothing a Status shows.
    A kept rendering therefore stays kept through it: the same object, with no new
    rendering. Before ``shown_version`` every such commit rendered every kept page again. A
    commit that can change a page, here a profile change, still drops it."""

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path))
        try:
            api = MastodonApi(hf)
            a, b = [int((await hf.register(h))["id"]) for h in ("a", "b")]
            await hf.follow(a, "b")
            await hf.write_post(b, "hello from b")
            await hf.drain()
            page = Page(limit=LIMIT)
            for _ in range(10):  # kept once a rendering saw no commit (consumers' acks) while it ran
                first = await api.home_rendered(URLS, a, page)
                if api.warm_home(URLS, a, page) is first:
                    break
                await asyncio.sleep(0.05)
            assert b"hello from b" in first.body
            assert api.warm_home(URLS, a, page) is first
            await hf.reads.flush(hf.job_store)
            assert sum((await hf.job_store.home_reads(0)).values()) >= 2  # committed
            assert api.warm_home(URLS, a, page) is first
            await hf.store.update_profile(b, "B", "a new note")
            assert api.warm_home(URLS, a, page) is None
        finally:
            await hf.close()

    asyncio.run(main())
