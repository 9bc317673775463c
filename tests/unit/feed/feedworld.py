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
from homefeed.service_layer.consumers import FANOUT, NOTIFIER
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
        for consumer in (FANOUT, NOTIFIER):
            stale = self.run(self.hf.stream.fetch(consumer, 100_000, timeout=0))
            if stale:
                self.run(self.hf.stream.ack(consumer, stale))
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

    # The conversation writes go to the record store (one transaction: record + event),
    # then to the API process's read-your-writes cache updates, as a use case does.
    def handle(self, uid: int) -> str:
        return self.prefix + self.names[uid]

    def reply(self, author: int, parent: int, text: str | None = None, mentions: Sequence[int] = ()) -> int:
        text = text or f"a reply by {self.names[author]}"
        post = self.run(self.feed.store.create_post(author, self.handle(author), text,
                                                    in_reply_to_id=parent, mention_ids=tuple(mentions)))
        self.run(self.feed.posted(post))
        return post.id

    def mention(self, author: int, *mentioned: int) -> int:
        """A post by ``author`` mentioning ``mentioned``."""
        text = "hello " + " ".join(f"@{self.handle(m)}" for m in mentioned)
        post = self.run(self.feed.store.create_post(author, self.handle(author), text,
                                                    mention_ids=tuple(mentioned)))
        self.run(self.feed.posted(post))
        return post.id

    def boost(self, booster: int, post_id: int) -> int:
        """Boost ``post_id``; the boost's id (the same one when boosting again)."""
        boost, _, created = self.run(self.feed.store.reblog(booster, self.handle(booster), post_id,
                                                            visibility="public"))
        if created:
            self.run(self.feed.posted(boost))
        return boost.id

    def unboost(self, booster: int, post_id: int) -> int | None:
        boost, _ = self.run(self.feed.store.unreblog(booster, post_id))
        if boost is not None:
            self.run(self.feed.deleted(boost.id, booster))
        return None if boost is None else boost.id

    def favourite(self, user: int, post_id: int) -> bool:
        return self.run(self.feed.store.favourite(user, post_id))[0]

    def unfavourite(self, user: int, post_id: int) -> bool:
        return self.run(self.feed.store.unfavourite(user, post_id))[0]

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

    # -- the notifier ---------------------------------------------------------------------
    def notify(self, n: int = 100_000) -> list[Event]:
        """Apply and acknowledge up to ``n`` pending events, as the notifier does; returns
        them (for redelivery)."""
        events = self.run(self.hf.stream.fetch(NOTIFIER, n, timeout=0))
        if events:
            self.run(self.hf.consumers.notify(events))
            self.run(self.hf.stream.ack(NOTIFIER, events))
        return events

    def notifications(self, user: int) -> list[tuple[int, str, int, int | None]]:
        """(id, type, from, post) of the user's notifications, newest first."""
        got = self.run(self.feed.store.notifications_page(user, limit=10_000))
        return [(n.id, n.type, n.from_user_id, n.post_id) for n in got]

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

    def shows(self, reader: int, post_id: int) -> bool:
        """``FeedManager.home_shows``: would the reader's home show the post now?"""
        post = self.run(self.feed.store.posts_by_ids([post_id]))[0]
        return self.run(self.feed.home_shows(reader, post))

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
