"""The home timeline read from the record store alone (what ``FeedManager`` serves while
the cache is down) against a simple oracle, for random worlds: hypothesis draws users,
follows, posts and deletes, a celebrity threshold and a timeline cap, and the page sizes.

For every user and page size, walking the pages with ``next``:

- from the record store (``_read_home_from_store``): the newest-first list of the
  non-deleted posts of the user and of everyone they follow, each once; every page full
  unless it is the last, and ``next`` the id of its last post;
- through the cache (the normal path, with celebrities pulled, caps and floors): exactly the
  same pages, so a reader cannot tell which one answered.

On a real SQLite file with the in-process cache (``tests/integration/test_outages_adapters.py``
shows the switch itself with a real Redis stopped).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.service_layer.feed import FeedManager

N_USERS = 5

worlds = st.fixed_dictionaries({
    "follows": st.sets(st.tuples(st.integers(0, N_USERS - 1), st.integers(0, N_USERS - 1))
                       .filter(lambda p: p[0] != p[1]), max_size=14),
    "posts": st.lists(st.tuples(st.integers(0, N_USERS - 1), st.booleans()), max_size=24),
    "threshold": st.integers(2, 4),
    "cap": st.integers(2, 6),
    "limits": st.lists(st.integers(1, 7), min_size=1, max_size=3),
})


async def _walk(read, uid: int, limit: int) -> list[int]:
    out: list[int] = []
    before = None
    for _ in range(200):
        posts, nxt = await read(uid, before, limit)
        ids = [p.id for p in posts]
        assert len(ids) == limit or nxt is None, (ids, nxt)
        assert nxt is None or nxt == ids[-1], (ids, nxt)
        out.extend(ids)
        if nxt is None:
            return out
        before = nxt
    raise AssertionError("paging did not end")


async def _check(world: dict, data_dir: Path) -> None:
    hf = await open_homefeed(
        Settings(data_dir=data_dir, celebrity_threshold=world["threshold"], timeline_cap=world["cap"],
                 sqlite_synchronous="NORMAL"),
        run_consumers=False,
    )
    try:
        ids = [int((await hf.register(f"u{i}"))["id"]) for i in range(N_USERS)]
        for a, b in sorted(world["follows"]):
            await hf.follow(ids[a], f"u{b}")
        live: list[tuple[int, int]] = []  # (post id, author index), oldest first
        made = []
        for author, _ in world["posts"]:
            made.append(int((await hf.create_post(ids[author], f"post by u{author}"))["id"]))
        for (author, delete), pid in zip(world["posts"], made):
            if delete:
                await hf.delete_post(ids[author], pid)
            else:
                live.append((pid, author))
        await hf.consumers.drain()
        feed: FeedManager = hf.feed
        for u in range(N_USERS):
            authors = {u} | {b for a, b in world["follows"] if a == u}
            want = sorted((pid for pid, a in live if a in authors), reverse=True)
            for limit in world["limits"]:
                assert await _walk(feed._read_home_from_store, ids[u], limit) == want, (u, limit)
                assert await _walk(feed.read_home, ids[u], limit) == want, (u, limit)
    finally:
        await hf.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds)
def test_home_from_the_record_store_equals_the_oracle_and_the_cached_read(world: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="homefeed-home-") as tmp:
        asyncio.run(_check(world, Path(tmp)))
