"""The event consumers: fan-out (timeline cache) and indexer (search index).

Each consumer fetches a batch of outbox events in commit order, applies it with idempotent
handlers, then acknowledges it. A crash between applying and acknowledging redelivers the
batch, which changes nothing. A batch that fails is retried with backoff, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Sequence

from homefeed.domain import model
from homefeed.domain.model import Event, Post
from homefeed.ports import EventStream, SearchIndex
from homefeed.service_layer.feed import FeedManager

log = logging.getLogger("homefeed.consumers")

FANOUT = "fanout"
INDEXER = "indexer"
BATCH = 256


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

    # -- handlers -------------------------------------------------------------------------
    async def fan_out(self, events: Sequence[Event]) -> None:
        feed = self.feed
        for e in events:
            d = e.data
            if e.type == model.POST_CREATED:
                await feed.fan_out_post(
                    Post(d["post_id"], d["author_id"], d.get("author_handle", ""), d.get("text", ""))
                )
            elif e.type == model.POST_DELETED:
                await feed.fan_out_delete(d["post_id"], d["author_id"])
            elif e.type == model.FOLLOWED:
                await feed.merge_followee(d["follower_id"], d["followee_id"])
            elif e.type == model.UNFOLLOWED:
                await feed.unmerge_followee(d["follower_id"], d["followee_id"])

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

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping = asyncio.Event()
        for name in self.handlers:
            self._tasks.append(asyncio.create_task(self._run(name), name=f"consumer-{name}"))

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
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
                if not events:
                    continue
                await handler(events)
                await self.stream.ack(name, events)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures[name] += 1
                log.exception("consumer %s failed; retrying in %.2fs", name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

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
            if not self._tasks:
                for name in self.handlers:
                    while await self.run_once(name):
                        pass
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumers did not drain within {timeout}s: {lags}")
            await asyncio.sleep(0.005)
