"""A boost racing the delete of its original never stays in its booster's author list.

Deleting an original deletes its boosts (each with its own ``post_deleted`` event), so a
boost can be gone before the request that made it has run its read-your-writes push
(``FeedManager.posted``). If the delete's event was applied first, that push would put the
boost back into the booster's author list, where no later event removes it: the crash
scenario's audit found such an id ("holds ..., which is not a post"). In process, on a real
SQLite file, through the services the routes call."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.domain.mastodon.entities import Urls
from homefeed.service_layer.feed import AUTHOR
from homefeed.service_layer.mastodon import MastodonApi

URLS = Urls("http://h:1")


async def _author_list(hf: Any, user_id: int) -> list[int]:
    got = await hf.feed.cache.slice(AUTHOR, user_id, None, 800)
    return [] if got is None else list(got.ids)


def test_a_push_after_the_boosts_delete_was_applied_is_undone() -> None:
    """The order that made the bug, forced: the boost is committed, its original deleted
    (which deletes the boost) and every event applied, and only then does the boost's
    request run its push."""
    async def main() -> None:
        hf: Any = await open_homefeed(Settings(data_dir=Path(tempfile.mkdtemp(prefix="homefeed-boostrace-"))))
        try:
            author = int((await hf.register("br_author"))["id"])
            booster = int((await hf.register("br_booster"))["id"])
            original = await hf.write_post(author, "the original")
            await hf.feed.read_author(booster, None, 20)  # the booster's author list is cached
            boost, _, created = await hf.store.reblog(booster, "br_booster", original.id)
            assert created
            await hf.delete_post(author, original.id)
            await hf.drain()
            assert not await hf.store.present_post_ids([boost.id]), "deleting the original deletes its boost"
            await hf.feed.posted(boost)  # the boost's request, late
            assert boost.id not in await _author_list(hf, booster)
            await hf.drain()
            assert boost.id not in await _author_list(hf, booster)
        finally:
            await hf.close()

    asyncio.run(main())


def test_boosts_racing_deletes_of_their_originals_leave_only_posts_in_author_lists() -> None:
    """Boosts through the Mastodon service and deletes of their originals, sent together
    many times: afterwards every booster's author list holds only stored posts, and every
    stored boost."""
    async def main() -> None:
        hf: Any = await open_homefeed(Settings(data_dir=Path(tempfile.mkdtemp(prefix="homefeed-boostrace-"))))
        api = MastodonApi(hf)
        try:
            author = int((await hf.register("bq_author"))["id"])
            boosters = [int((await hf.register(f"bq_booster{i}"))["id"]) for i in range(4)]
            for round_ in range(60):
                original = await hf.write_post(author, f"original {round_}")
                for uid in boosters:  # the boosters' author lists are cached
                    await hf.feed.read_author(uid, None, 20)

                async def boost(uid: int, post_id: int = original.id) -> None:
                    try:
                        await api.conversations.reblog(URLS, uid, post_id, "public")
                    except Exception as exc:  # the original may be gone first: 404
                        if type(exc).__name__ != "NotFound":
                            raise

                await asyncio.gather(*(boost(u) for u in boosters), hf.delete_post(author, original.id))
            await hf.drain()
            for uid in boosters:
                listed = await _author_list(hf, uid)
                stored = set(await hf.store.author_post_ids(uid, None, 800))
                assert set(listed) == stored, (uid, sorted(set(listed) - stored), sorted(stored - set(listed)))
        finally:
            await hf.close()

    asyncio.run(main())
