"""Keeping the serving process responsive while an audit runs in it.

In the embedded profile the audit of the timelines runs in the serving process's event loop
(the in-process cache exists only there), and SQLite reads do not suspend: a coroutine that
reads user after user holds the loop for as long as it reads. Measured on the demo world
(10k users, 50k posts): home reads went from ~1 ms to 30-50 ms while the audit ran. So the
audit gives the loop back after every record-store call and every cache read it makes
(``Pacer.tick``): a request waits for at most one of the audit's queries, not for a user's
worth of them. A yield costs microseconds against queries of a millisecond or more.

``Progress`` is how the audit says how far it is: ``(phase, done, total)``, total None when
it is not known in advance (the search walk: the posts are counted as they come).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Sequence

from homefeed.domain.model import Post, User
from homefeed.ports import RecordStore

#: ``progress(phase, done, total)``: called as the audit moves on (at most every few ms).
Progress = Callable[[str, int, "int | None"], None]


class Pacer:
    """``tick()`` after each unit of blocking work: yields to the event loop once at least
    ``slice_s`` of work ran since the last yield (0: after every unit)."""

    def __init__(self, slice_s: float = 0.0) -> None:
        self.slice_s = slice_s
        self._since = time.perf_counter()
        self.yields = 0

    async def tick(self) -> None:
        now = time.perf_counter()
        if now - self._since >= self.slice_s:
            await asyncio.sleep(0)
            self.yields += 1
            self._since = time.perf_counter()


class PacedRecordStore:
    """The record-store reads the audit and ``FeedManager.read_home`` make, each followed by
    ``Pacer.tick``. Read-only: it offers no write, so an audit cannot write through it."""

    def __init__(self, store: RecordStore, pacer: Pacer) -> None:
        self._s = store
        self._tick = pacer.tick

    async def following_ids(self, user_id: int) -> list[int]:
        got: list[int] = await self._s.following_ids(user_id)
        await self._tick()
        return got

    async def followers_count(self, user_id: int) -> int:
        got: int = await self._s.followers_count(user_id)
        await self._tick()
        return got

    async def celebrity_ids(self, threshold: int) -> list[int]:
        got: list[int] = await self._s.celebrity_ids(threshold)
        await self._tick()
        return got

    async def posts_by_ids(self, ids: Sequence[int]) -> list[Post]:
        got: list[Post] = await self._s.posts_by_ids(ids)
        await self._tick()
        return got

    async def author_post_ids(self, author_id: int, before: int | None, limit: int) -> list[int]:
        got: list[int] = await self._s.author_post_ids(author_id, before, limit)
        await self._tick()
        return got

    async def home_post_ids(self, user_id: int, before: int | None, limit: int) -> list[int]:
        got: list[int] = await self._s.home_post_ids(user_id, before, limit)
        await self._tick()
        return got

    async def posts_after(self, after_id: int, limit: int) -> list[Post]:
        got: list[Post] = await self._s.posts_after(after_id, limit)
        await self._tick()
        return got

    async def max_post_id(self) -> int:
        got: int = await self._s.max_post_id()
        await self._tick()
        return got

    async def user_by_id(self, user_id: int) -> User | None:
        got: User | None = await self._s.user_by_id(user_id)
        await self._tick()
        return got

    async def user_ids_after(self, after_id: int, limit: int) -> list[int]:
        got: list[int] = await self._s.user_ids_after(after_id, limit)
        await self._tick()
        return got

    async def sample_user_ids(self, n: int) -> list[int]:
        got: list[int] = await self._s.sample_user_ids(n)
        await self._tick()
        return got

    async def counters(self, user_ids: Sequence[int]) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        got: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = await self._s.counters(user_ids)
        await self._tick()
        return got

    async def post_counters(
        self, post_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        got: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = await self._s.post_counters(post_ids)
        await self._tick()
        return got

    async def notification_diff(self, user_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        got: dict[int, tuple[int, int]] = await self._s.notification_diff(user_ids)
        await self._tick()
        return got
