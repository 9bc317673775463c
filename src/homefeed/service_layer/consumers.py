"""The event consumers: fan-out (timeline cache) and indexer (search index).

Each consumer fetches a batch of outbox events in commit order, applies it with idempotent
handlers, then acknowledges it. A crash between applying and acknowledging redelivers the
batch, which changes nothing. A batch that fails is retried with backoff, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Sequence

from homefeed.domain import model
from homefeed.domain.model import Event, Post
from homefeed.ports import EventStream, SearchIndex
from homefeed.service_layer.feed import FeedManager

log = logging.getLogger("homefeed.consumers")

FANOUT = "fanout"
INDEXER = "indexer"
BATCH = 256
#: Failures of one event before it goes to the dead letters (where the stream has them).
MAX_ATTEMPTS = 5


class Consumers:
    def __init__(self, feed: FeedManager, stream: EventStream, index: SearchIndex) -> None:
        self.feed = feed
        self.stream = stream
        self.index = index
        self.handlers: dict[str, Callable[[Sequence[Event]], Awaitable[None]]] = {
            FANOUT: self.fan_out,
            INDEXER: self.index_events,
        }
        self._tasks: list[asyncio.Task] = []
        self._stopping: asyncio.Event | None = None  # created on start (needs a loop)
        self.failures: dict[str, int] = {name: 0 for name in self.handlers}
        self.running: tuple[str, ...] = ()
        self.dead_lettered: dict[str, int] = {}
        self._busy: set[str] = set()  # consumers applying a batch right now
        #: Called with each fan-out event once applied (metrics hook, set by entrypoints).
        self.on_applied: Callable[[Event], None] | None = None
        self._attempts: dict[tuple[str, int], int] = {}

    # -- handlers -------------------------------------------------------------------------
    async def fan_out(self, events: Sequence[Event]) -> None:
        feed = self.feed
        created: dict[int, int] = {}  # post id -> author id
        follows: dict[tuple[int, int], bool] = {}  # (follower, followee) -> the last event's say
        for e in events:
            d = e.data
            if e.type == model.POST_CREATED:
                await feed.fan_out_post(
                    Post(d["post_id"], d["author_id"], d.get("author_handle", ""), d.get("text", ""))
                )
                created[d["post_id"]] = d["author_id"]
            elif e.type == model.POST_DELETED:
                await feed.fan_out_delete(d["post_id"], d["author_id"])
            elif e.type == model.FOLLOWED:
                await feed.merge_followee(d["follower_id"], d["followee_id"])
                follows[(d["follower_id"], d["followee_id"])] = True
            elif e.type == model.UNFOLLOWED:
                await feed.unmerge_followee(d["follower_id"], d["followee_id"])
                follows[(d["follower_id"], d["followee_id"])] = False
            if self.on_applied is not None:
                self.on_applied(e)  # observability: fan-out delay, the request id's log line

        # Events may arrive out of order: workers sharing a durable consumer apply batches
        # in parallel, and a redelivery (lost ack, crashed worker) comes after newer events.
        # So: apply, THEN read the record store, then correct what an older event undid. A
        # change committed after that read has its own event, applied after this one.
        for post_id in await self._gone(created):  # deleted meanwhile: pushed for nothing
            await feed.fan_out_delete(post_id, created[post_id])
        for (follower, followee), followed in follows.items():
            now = followee in set(await feed.store.following_ids(follower))
            if now and not followed:  # an old unfollow after a newer follow
                await feed.merge_followee(follower, followee)
            elif followed and not now:  # an old follow after a newer unfollow
                await feed.unmerge_followee(follower, followee)

    async def _gone(self, post_ids: Sequence[int] | dict[int, int]) -> list[int]:
        """Those of ``post_ids`` that the record store no longer has."""
        if not post_ids:
            return []
        alive = {p.id for p in await self.feed.store.posts_by_ids(list(post_ids))}
        return [i for i in post_ids if i not in alive]

    async def index_events(self, events: Sequence[Event]) -> None:
        # Apply in order, but batch consecutive inserts: one transaction for many posts.
        pending: list[Post] = []
        for e in events:
            if e.type == model.POST_CREATED:
                d = e.data
                pending.append(Post(d["post_id"], d["author_id"], d.get("author_handle", ""), d["text"]))
            elif e.type == model.POST_DELETED:
                if pending:
                    await self.index.index(pending)
                    pending = []
                await self.index.remove([e.data["post_id"]])
        if pending:
            await self.index.index(pending)
        # As in fan_out: a post deleted meanwhile (its delete applied first) is removed again.
        gone = await self._gone([e.data["post_id"] for e in events if e.type == model.POST_CREATED])
        if gone:
            await self.index.remove(gone)

    # -- running --------------------------------------------------------------------------
    def start(self, names: Sequence[str] | None = None, leader: Callable[[str], Any] | None = None) -> None:
        """Run the named consumers as tasks. ``leader(name)``, if given, is an async context
        manager held while consuming: one process at a time runs that consumer."""
        self._stopping = asyncio.Event()
        for name in names if names is not None else tuple(self.handlers):
            if name not in self.handlers:
                raise ValueError(f"unknown consumer {name!r}")
            coro = self._run(name) if leader is None else self._run_as_leader(name, leader)
            self._tasks.append(asyncio.create_task(coro, name=f"consumer-{name}"))
        self.running = tuple(names if names is not None else self.handlers)

    async def _run_as_leader(self, name: str, leader: Callable[[str], Any]) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                async with leader(name):
                    await self._run(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s lost its leadership; competing again", name)
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, then stop. A consumer that holds no
        batch (waiting for events, or for leadership) is cancelled at once."""
        self.running = ()
        if self._stopping is not None:
            self._stopping.set()
        for t in self._tasks:
            if t.get_name().removeprefix("consumer-") not in self._busy:
                t.cancel()
        for t in self._tasks:
            try:
                await asyncio.wait_for(t, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                t.cancel()
        self._tasks = []

    async def _run(self, name: str) -> None:
        handler = self.handlers[name]
        backoff = 0.05
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                events = await self.stream.fetch(name, BATCH, timeout=0.5)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer %s could not fetch; retrying in %.2fs", name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not events:
                continue
            self._busy.add(name)
            try:
                try:
                    await handler(events)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.failures[name] += 1
                    log.exception("consumer %s failed a batch of %d; isolating", name, len(events))
                    try:
                        await self._isolate(name, events, backoff)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # the stream is away (ack/nak): redelivery retries
                        log.warning("consumer %s: isolating stopped (%r); the rest is redelivered", name, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                try:
                    await self.stream.ack(name, events)
                    backoff = 0.05
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Applied but not acknowledged (the bus is away): redelivered, reapplied.
                    log.warning("consumer %s could not acknowledge %d events (%r); they will be"
                                " redelivered", name, len(events), exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
            finally:
                self._busy.discard(name)

    async def _isolate(self, name: str, events: Sequence[Event], backoff: float) -> None:
        """Apply a failed batch one event at a time, in order, to find the event that fails.
        It is retried (redelivered) until it has failed ``MAX_ATTEMPTS`` times, then moved
        to the dead letters where the stream keeps them, so one poison event does not stop
        a consumer for ever; events after it wait (order is kept)."""
        handler = self.handlers[name]
        for i, e in enumerate(events):
            try:
                await handler([e])
                await self.stream.ack(name, [e])
                self._attempts.pop((name, e.seq), None)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts = max(e.deliveries, self._attempts.get((name, e.seq), 0) + 1)
                self._attempts[(name, e.seq)] = attempts
                dead_letter = getattr(self.stream, "dead_letter", None)
                if attempts >= MAX_ATTEMPTS and dead_letter is not None:
                    log.error("consumer %s: event %s failed %d times; dead-lettered: %r", name, e.seq, attempts, exc)
                    await dead_letter(name, e, repr(exc))
                    self._attempts.pop((name, e.seq), None)
                    self.dead_lettered[name] = self.dead_lettered.get(name, 0) + 1
                    continue
                nak = getattr(self.stream, "nak", None)
                if nak is not None:
                    await nak(name, events[i:], delay=backoff)
                return

    async def run_once(self, name: str, max_events: int = BATCH) -> int:
        """Apply one batch synchronously (for tests and batch jobs without running tasks)."""
        events = await self.stream.fetch(name, max_events, timeout=0)
        if events:
            await self.handlers[name](events)
            await self.stream.ack(name, events)
        return len(events)

    async def lags(self) -> dict[str, int]:
        return {name: await self.stream.lag(name) for name in self.handlers}

    async def drain(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            lags = await self.lags()
            if not any(lags.values()):
                return
            if not self.running:
                for name in self.handlers:
                    while await self.run_once(name):
                        pass
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumers did not drain within {timeout}s: {lags}")
            await asyncio.sleep(0.005)
