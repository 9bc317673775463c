"""Live updates onto the ``LiveBus``: where the consumers run (the embedded ``serve``, the
scale-out workers), each post event the fan-out applies and each notification the notifier
writes becomes one compact message on the bus, which every API process's ``StreamHub``
routes to its open streams (docs/conversations.md, "Streaming").

Publishing is best effort and never slows or fails the fan-out: the consumer's hooks only
append to a bounded queue (a full queue drops the message, counted); one task publishes.
A message carries what routing and rendering need without a read of the record store (the
post's fields and hashtags), so that the hubs of many API processes add no load to it.

Messages (JSON objects, ``k`` the kind)::

    {"k": "post", "id", "author_id", "author_handle", "text", "visibility",
     "in_reply_to_id", "in_reply_to_account_id", "reblog_of_id", "tags": [lowercased]}
    {"k": "delete", "id", "author_id"}
    {"k": "notification", "user_id", "id", "type", "from_user_id", "post_id"}
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable, Iterable

import orjson

from homefeed.aio import wait_for
from homefeed.domain import model
from homefeed.domain.mastodon.content import extract_hashtags
from homefeed.domain.model import Event, Notification, Post
from homefeed.ports import LiveBus

log = logging.getLogger("homefeed.streaming")

#: Messages waiting to be published before new ones are dropped (the bus is down or slow).
QUEUE_MAX = 10_000


def post_message(post: Post) -> bytes:
    return orjson.dumps({
        "k": "post", "id": post.id, "author_id": post.author_id, "author_handle": post.author_handle,
        "text": post.text, "visibility": post.visibility, "in_reply_to_id": post.in_reply_to_id,
        "in_reply_to_account_id": post.in_reply_to_account_id, "reblog_of_id": post.reblog_of_id,
        "tags": [t.lower() for t in extract_hashtags(post.text)],
    })


def post_of(message: dict[str, Any]) -> Post:
    """The post a ``post`` message describes."""
    return Post(message["id"], message["author_id"], message.get("author_handle", ""),
                message.get("text", ""), message.get("visibility", "public"),
                in_reply_to_id=message.get("in_reply_to_id"),
                in_reply_to_account_id=message.get("in_reply_to_account_id"),
                reblog_of_id=message.get("reblog_of_id"))


def notification_message(n: Notification) -> bytes:
    return orjson.dumps({"k": "notification", "user_id": n.user_id, "id": n.id, "type": n.type,
                         "from_user_id": n.from_user_id, "post_id": n.post_id})


def event_message(e: Event) -> bytes | None:
    """The live message of a fan-out event, or None (follows change no open stream)."""
    d = e.data
    if e.type == model.POST_CREATED:
        return post_message(Post(
            d["post_id"], d["author_id"], d.get("author_handle", ""), d.get("text", ""),
            d.get("visibility", "public"), in_reply_to_id=d.get("in_reply_to_id"),
            in_reply_to_account_id=d.get("in_reply_to_account_id"), reblog_of_id=d.get("reblog_of_id"),
        ))
    if e.type == model.POST_DELETED:
        return orjson.dumps({"k": "delete", "id": d["post_id"], "author_id": d.get("author_id")})
    return None


class LivePublisher:
    """Takes messages from the consumers' hooks (never blocking them) and publishes them on
    the bus, in the order taken."""

    def __init__(self, bus: LiveBus, queue_max: int = QUEUE_MAX) -> None:
        self.bus = bus
        self.queue_max = queue_max
        self._queue: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counters = {"published": 0, "dropped": 0, "failed": 0}

    def attach(self, consumers: Any) -> None:
        """Chain onto the consumers' hooks (``on_applied``: each fan-out event once applied;
        ``on_notified``: each batch of notifications the notifier wrote, where it exists),
        keeping what was set there before (the metrics hook)."""
        before: Callable[[Event], None] | None = consumers.on_applied

        def on_applied(e: Event) -> None:
            if before is not None:
                before(e)
            self.on_event(e)

        consumers.on_applied = on_applied
        if hasattr(consumers, "on_notified"):
            notified_before: Callable[[Iterable[Notification]], None] | None = consumers.on_notified

            def on_notified(notes: Iterable[Notification]) -> None:
                if notified_before is not None:
                    notified_before(notes)
                self.on_notifications(notes)

            consumers.on_notified = on_notified

    def on_event(self, e: Event) -> None:
        if not self.bus.listened():  # nobody to receive it: not even made
            return
        try:
            message = event_message(e)
        except Exception:  # a malformed event is the fan-out's business, not ours
            log.exception("live: cannot describe event %s", e.seq)
            return
        if message is not None:
            self._put(message)

    def on_notifications(self, notes: Iterable[Notification]) -> None:
        if not self.bus.listened():
            return
        for n in notes:
            self._put(notification_message(n))

    def _put(self, message: bytes) -> None:
        if len(self._queue) >= self.queue_max:
            self.counters["dropped"] += 1
            return
        self._queue.append(message)
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-publisher")

    async def stop(self) -> None:
        """Publish what is queued (briefly), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._queue:
            try:
                await wait_for(self._flushed(), 2.0)
            except asyncio.TimeoutError:
                pass
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass

    async def _flushed(self) -> None:
        while self._queue:
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        warned = False
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            message = self._queue[0]
            try:
                await self.bus.publish(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters["failed"] += 1
                if not warned:
                    log.warning("live bus: cannot publish (%s); live updates are dropped until it is back", exc)
                    warned = True
                self._queue.popleft()  # best effort: the records do not depend on it
                await asyncio.sleep(0.2)
                continue
            if warned:
                log.warning("live bus: publishing again")
                warned = False
            self._queue.popleft()
            self.counters["published"] += 1
