"""Read-only views of the caches, for ``FeedManager.read_home``: the audit computes what a
reader gets with the very code readers run, touching nothing."""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Sequence

from homefeed.domain.model import Post
from homefeed.ports import HomeView, IdSlice, PostCache, TimelineCache
from homefeed.service_layer.audit.pacing import Pacer
from homefeed.service_layer.feed import AUTHOR, HOME

#: Lists (and posts, for ``ReadOnlyPosts``) an overlay holds at most before it starts over.
MAX_OVERLAY = 20_000
MAX_POSTS = 200_000


class ReadOnlyTimelines:
    """A TimelineCache whose reads are ``peek`` (never a "read" for the inactivity clock)
    and whose writes leave the cache alone: ``FeedManager.read_home`` over it computes
    exactly what a reader would get, touching nothing.

    A list the cache does not hold is rebuilt by the FeedManager from the record store, as
    for a reader; its ``install`` lands here, in ``overlay``, not in the cache, and the
    following pages are sliced from it, as they would be from the cache. Without the
    overlay every page rebuilt the list again (one 800-id query per page, nine pages per
    user: two thirds of a full audit). ``forget()``, after each user's read, drops the home
    lists (one reader's); author lists (the celebrities every reader pulls) stay for the
    pass, as they would in the cache, up to ``MAX_OVERLAY`` lists. ``reset()`` drops all:
    each pass (the audit, then each re-check) starts from the cache as it is then, so a list
    that went stale during a pass can only show as a difference the re-check drops."""

    def __init__(self, cache: TimelineCache, pacer: Pacer | None = None) -> None:
        self._c = cache
        self._pacer = pacer or Pacer()
        #: (kind, key) -> (ids ascending, floor), installed during the current read.
        self.overlay: dict[tuple[str, int], tuple[list[int], int]] = {}

    def forget(self) -> None:
        if len(self.overlay) > MAX_OVERLAY:
            self.overlay.clear()
            return
        for k in [k for k in self.overlay if k[0] == HOME]:
            del self.overlay[k]

    def reset(self) -> None:
        self.overlay.clear()

    async def slice(self, kind: str, key: int, before: int | None, limit: int) -> IdSlice | None:
        return await self.peek(kind, key, before, limit)

    async def peek(self, kind: str, key: int, before: int | None = None, limit: int | None = None) -> IdSlice | None:
        held = self.overlay.get((kind, key))
        if held is not None:
            ids, floor = held
            end = len(ids) if before is None else bisect_left(ids, before)
            start = 0 if limit is None else max(0, end - limit)
            return IdSlice(ids[start:end][::-1], floor)
        got: IdSlice | None = await self._c.peek(kind, key, before, limit)
        await self._pacer.tick()
        return got

    async def home_view(self, user_id: int, before: int | None, limit: int, kept: Any = None) -> HomeView:
        return HomeView(await self.peek(HOME, user_id, before, limit),
                        await self.peek(AUTHOR, user_id, before, limit), None, None)

    async def begin(self, kind: str, key: int) -> None:
        return None

    async def install(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        self.overlay[(kind, key)] = (sorted(ids), floor)  # rebuilt ids: unique, newest first

    async def push(self, kind: str, keys: Sequence[int], id_: int) -> int:
        return 0

    async def merge(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        return None

    async def remove(self, kind: str, keys: Sequence[int], ids: Sequence[int]) -> None:
        return None

    async def exists(self, kind: str, keys: Sequence[int]) -> list[int]:
        return [k for k in keys if await self.peek(kind, k, None, 0) is not None]

    async def drop(self, kind: str, key: int) -> None:
        return None

    async def following(self, user_id: int) -> frozenset[int] | None:
        got: frozenset[int] | None = await self._c.following(user_id)
        return got

    async def following_version(self, user_id: int) -> int:
        return 0

    async def set_following(self, user_id: int, ids: Sequence[int], version: int | None = None) -> None:
        return None

    async def forget_following(self, user_id: int) -> None:
        return None

    async def celebrities(self) -> frozenset[int] | None:
        got: frozenset[int] | None = await self._c.celebrities()
        return got

    async def set_celebrities(self, ids: Sequence[int]) -> None:
        return None

    async def mark_celebrity(self, user_id: int, is_celebrity: bool) -> bool:
        return False

    async def stats(self) -> dict[str, int]:
        return {}


class ReadOnlyPosts:
    """A PostCache whose reads never count as reads (``peek_many``)
    and whose writes leave the cache alone.

    What the FeedManager hydrates from the record store and would put in the cache lands in
    ``overlay`` instead, and later reads of the pass take it from there after the cache (the
    cache first: a stale cached post must show, as it would to a reader). The same posts
    (celebrities', popular followees') are in thousands of homes: without it each home
    read fetched them again. ``reset()`` per pass, as for ``ReadOnlyTimelines``."""

    def __init__(self, posts: PostCache, pacer: Pacer | None = None) -> None:
        self._p = posts
        self._pacer = pacer or Pacer()
        self.overlay: dict[int, Post] = {}

    def reset(self) -> None:
        self.overlay.clear()

    async def get_many(self, ids: Sequence[int]) -> dict[int, Post]:
        got = await self._p.peek_many(ids)
        await self._pacer.tick()
        if len(got) < len(ids) and self.overlay:
            held = self.overlay
            for i in ids:
                if i not in got:
                    p = held.get(i)
                    if p is not None:
                        got[i] = p
        return got

    async def put_many(self, posts: Sequence[Post]) -> None:
        if len(self.overlay) + len(posts) > MAX_POSTS:
            self.overlay.clear()
        for p in posts:
            self.overlay[p.id] = p

    async def delete(self, ids: Sequence[int]) -> None:
        return None
