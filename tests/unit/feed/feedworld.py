"""A small world for the timeline rules: the real FeedManager over the embedded profile.

The pieces are the product's own, not test doubles:

- record store: SQLite in a temporary file (the embedded default; there is no in-memory
  record store), with its outbox, built by ``bootstrap.build`` from ``Settings`` and shared
  by many worlds (``Records``), each with users of its own;
- timeline cache and post cache: the in-process memory adapters (the embedded profile's
  caches), the timeline cache on a clock the test moves, so "inactive" is a step, not a wait;
- writes go through ``Homefeed`` (the use cases: record + event in one transaction, then the
  API process's read-your-writes cache updates), and the fan-out consumer applies the
  events only when the test says so (``deliver``): between a write and its delivery the
  timeline is what a reader would see while the consumer lags.

Every call is synchronous for the test (``Records`` runs the event loop), so a test reads
as the story of the rule: who follows whom, who posts, what each one reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Awaitable, Sequence, TypeVar

from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache
from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.domain.model import Event
from homefeed.ports import IdSlice
from homefeed.service_layer.consumers import FANOUT
from homefeed.service_layer.feed import AUTHOR, HOME, FeedManager
from homefeed.service_layer.services import Homefeed

T = TypeVar("T")

DAY = 86400.0


class Clock:
    """The timeline cache's clock (monotonic seconds), moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Records:
    """The system of record of many worlds: one SQLite file (store, outbox, search index),
    opened once. Each ``World`` over it registers its own users, so worlds never see each
    other's follows or posts; sharing the file spares each test the opening and migration
    of a database (the slowest part of a world by far)."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(
            data_dir=data_dir,
            sqlite_synchronous="NORMAL",  # durability is not what these tests are about
        )
        self.loop = asyncio.new_event_loop()
        built = build(self.settings)
        self.store = built.store
        self.stream = built.stream
        self.search_index = built.search_index
        self.worlds = 0
        self.run(self.store.open())

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def close(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()


class World:
    """One service over ``records``: fresh memory caches and FeedManager, its own users,
    the fan-out consumer run by hand."""

    def __init__(self, records: Records, *, celebrity_threshold: int = 3, timeline_cap: int = 5,
                 inactive_days: float = 14.0, max_lists: int | None = None,
                 max_posts: int | None = None) -> None:
        """``max_lists`` / ``max_posts``: bound the caches (lists of each kind, posts) to
        make eviction happen; by default the product's defaults."""
        self.records = records
        records.worlds += 1
        self.prefix = f"w{records.worlds}_"
        self.settings = replace(
            records.settings,
            celebrity_threshold=celebrity_threshold,
            timeline_cap=timeline_cap,
            inactive_days=inactive_days,
            **({"cache_max_timelines": max_lists} if max_lists else {}),
            **({"cache_max_posts": max_posts} if max_posts else {}),
        )
        self.loop = records.loop
        self.clock = Clock()
        # The embedded profile's caches, as bootstrap.build makes them, but the timeline
        # cache on our clock (bootstrap.build takes no clock).
        self.cache = MemoryTimelineCache(
            cap=self.settings.timeline_cap,
            inactive_seconds=self.settings.inactive_days * DAY,
            max_lists=self.settings.cache_max_timelines,
            clock=self.clock,
        )
        self.hf = Homefeed(
            self.settings,
            store=records.store,
            stream=records.stream,
            cache=self.cache,
            posts=MemoryPostCache(self.settings.cache_max_posts),
            search_index=records.search_index,
        )
        self.feed: FeedManager = self.hf.feed
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}
        # Events a previous world left unapplied concern only its users: skip them.
        stale = self.pending()
        if stale:
            self.run(self.hf.stream.ack(FANOUT, stale))
        #: Every event the fan-out consumer applied, in order (for redelivery).
        self.delivered: list[Event] = []

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def close(self) -> None:
        """Nothing to release: the caches go with the world, the records stay open."""

    # -- writes (the API's use cases) -------------------------------------------------------
    def user(self, handle: str) -> int:
        uid = int(self.run(self.hf.register(self.prefix + handle))["id"])
        self.ids[handle] = uid
        self.names[uid] = handle
        return uid

    def users(self, *handles: str) -> list[int]:
        return [self.user(h) for h in handles]

    def follow(self, follower: int, followee: int) -> None:
        self.run(self.hf.follow(follower, self.prefix + self.names[followee]))

    def unfollow(self, follower: int, followee: int) -> None:
        self.run(self.hf.unfollow(follower, self.prefix + self.names[followee]))

    def post(self, author: int, text: str | None = None) -> int:
        text = text or f"a post by {self.names[author]}"
        return int(self.run(self.hf.create_post(author, text))["id"])

    def delete(self, author: int, post_id: int) -> None:
        self.run(self.hf.delete_post(author, post_id))

    # -- the fan-out consumer ----------------------------------------------------------------
    def pending(self) -> list[Event]:
        """The events the fan-out consumer has not acknowledged yet (fetched, not applied)."""
        return self.run(self.hf.stream.fetch(FANOUT, 10_000, timeout=0))

    def deliver(self) -> int:
        """Apply and acknowledge every pending event, as the fan-out consumer does."""
        n = 0
        while True:
            events = self.pending()
            if not events:
                return n
            self.run(self.hf.consumers.fan_out(events))
            self.run(self.hf.stream.ack(FANOUT, events))
            self.delivered.extend(events)
            n += len(events)

    def deliver_some(self, n: int) -> int:
        """Apply and acknowledge the next ``n`` pending events only: the consumer lags."""
        events = self.run(self.hf.stream.fetch(FANOUT, n, timeout=0))
        if events:
            self.run(self.hf.consumers.fan_out(events))
            self.run(self.hf.stream.ack(FANOUT, events))
            self.delivered.extend(events)
        return len(events)

    def redeliver(self, events: Sequence[Event]) -> None:
        """Apply ``events`` again, as after a lost acknowledgement or a crashed worker."""
        self.run(self.hf.consumers.fan_out(list(events)))

    # -- reads (what a user sees) ------------------------------------------------------------
    def page(self, reader: int, limit: int = 20, before: int | None = None) -> tuple[list[int], int | None]:
        got = self.run(self.hf.home_timeline(reader, limit, before))
        return [int(p["id"]) for p in got["posts"]], (None if got["next"] is None else int(got["next"]))

    def home(self, reader: int, limit: int = 100) -> list[int]:
        """The reader's whole home timeline, newest first, paged to its end with ``next``."""
        out: list[int] = []
        before = None
        for _ in range(1000):
            ids, nxt = self.page(reader, limit, before)
            assert len(ids) <= limit
            assert nxt is None or (len(ids) == limit and nxt == ids[-1]), (ids, nxt)
            out.extend(ids)
            if nxt is None:
                return out
            before = nxt
        raise AssertionError("paging did not end")

    def recomputed_home(self, reader: int) -> list[int]:
        """The home timeline computed straight from the record store (no cache at all)."""
        return self.run(self.feed.store.home_post_ids(reader, None, 100_000))

    # -- the cache itself (only for rules that are about the cache) ------------------------
    def cached_home(self, reader: int) -> IdSlice | None:
        """The reader's cached home list (every id kept, and its floor), or None if absent.
        Looking does not count as a read."""
        return self.run(self.cache.peek(HOME, reader))

    def cached_author(self, author: int) -> IdSlice | None:
        return self.run(self.cache.peek(AUTHOR, author))

    def celebrities(self) -> frozenset[int]:
        return self.run(self.feed.celebrities())

    def days_pass(self, days: float) -> None:
        self.clock.now += days * DAY
