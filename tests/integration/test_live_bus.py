"""The live bus (``LiveBus``: in process, and Redis pub/sub between processes) and the
publisher the consumers feed (``LivePublisher``).

- whatever messages one publisher sends, a subscribed listener gets exactly those, in order
  (property-based, on the real Redis: another adapter instance stands for another process);
- the publisher chains onto the consumers' hooks (the metrics hook keeps being called),
  publishes a post event as a message the hub reads back as the same post, and, when the bus
  cannot keep up, drops and counts instead of blocking the fan-out.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.adapters.local_live import LocalLiveBus
from homefeed.domain import model
from homefeed.domain.deployment import Deployment
from homefeed.domain.model import Event, Notification
from homefeed.service_layer.live import LivePublisher, post_of
from tests.backends import REDIS_URL, require

messages = st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=30)


async def _deliver(publisher: Any, listener: Any, sent: list[bytes]) -> list[bytes]:
    got: list[bytes] = []
    ready = asyncio.Event()
    done = asyncio.Event()

    def on_message(m: bytes) -> None:
        got.append(m)
        if len(got) == len(sent):
            done.set()

    def on_reset(subscribed: bool) -> None:
        if subscribed:
            ready.set()

    task = asyncio.create_task(listener.listen(on_message, on_reset))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        for m in sent:
            await publisher.publish(m)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return got


@given(sent=messages)
@settings(max_examples=25, deadline=None)
def test_local_bus_delivers_every_message_in_order(sent: list[bytes]) -> None:
    async def run() -> list[bytes]:
        bus = LocalLiveBus()
        return await _deliver(bus, bus, sent)

    assert asyncio.run(run()) == sent


@given(sent=messages)
@settings(max_examples=15, deadline=None)
def test_redis_bus_delivers_every_message_in_order_across_instances(sent: list[bytes]) -> None:
    require("redis")
    from homefeed.adapters.redis_live import RedisLiveBus

    deployment = Deployment(uuid.uuid4().hex[:12])

    async def dep() -> Deployment:
        return deployment

    async def run() -> list[bytes]:
        publisher, listener = RedisLiveBus(REDIS_URL, dep), RedisLiveBus(REDIS_URL, dep)
        try:
            return await _deliver(publisher, listener, sent)
        finally:
            await publisher.close()
            await listener.close()

    assert asyncio.run(run()) == sent


class _Consumers:
    """The hooks ``Consumers`` offers (on_applied, on_notified), as the entrypoints leave them."""

    def __init__(self) -> None:
        self.metrics: list[int] = []
        self.on_applied: Any = lambda e: self.metrics.append(e.seq)
        self.on_notified: Any = None


def test_publisher_chains_hooks_and_publishes_what_the_hub_reads() -> None:
    async def run() -> None:
        bus = LocalLiveBus()
        consumers = _Consumers()
        publisher = LivePublisher(bus)
        publisher.attach(consumers)
        heard: list[dict[str, Any]] = []
        listening = asyncio.create_task(bus.listen(lambda m: heard.append(orjson.loads(m)), lambda ok: None))
        await asyncio.sleep(0)
        publisher.start()
        created = Event(7, model.POST_CREATED, {
            "post_id": 11, "author_id": 2, "author_handle": "ann", "text": "hi #Tea", "visibility": "public",
            "in_reply_to_id": 5, "in_reply_to_account_id": 3, "reblog_of_id": None})
        consumers.on_applied(created)
        consumers.on_applied(Event(8, model.FOLLOWED, {"follower_id": 1, "followee_id": 2}))
        consumers.on_applied(Event(9, model.POST_DELETED, {"post_id": 11, "author_id": 2}))
        consumers.on_notified([Notification(20, 3, "mention", 2, 11)])
        for _ in range(100):
            if len(heard) == 3:
                break
            await asyncio.sleep(0.01)
        await publisher.stop()
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        assert consumers.metrics == [7, 8, 9]  # the metrics hook still sees every event
        assert [m["k"] for m in heard] == ["post", "delete", "notification"]  # follows are not live news
        post = post_of(heard[0])
        assert (post.id, post.author_id, post.text, post.in_reply_to_id, post.in_reply_to_account_id) == \
            (11, 2, "hi #Tea", 5, 3)
        assert heard[0]["tags"] == ["tea"]
        assert heard[2] == {"k": "notification", "user_id": 3, "id": 20, "type": "mention",
                            "from_user_id": 2, "post_id": 11}

    asyncio.run(run())


def test_a_full_queue_drops_and_counts_never_blocks() -> None:
    class StuckBus(LocalLiveBus):
        async def publish(self, message: bytes) -> None:
            await asyncio.Event().wait()  # a bus that never answers

        def listened(self) -> bool:
            return True  # someone waits for the messages, so they are made and queued

    async def run() -> None:
        publisher = LivePublisher(StuckBus(), queue_max=5)
        publisher.start()
        for i in range(20):  # synchronous: returns at once whatever the bus does
            publisher.on_notifications([Notification(i + 1, 1, "follow", 2)])
        await asyncio.sleep(0.01)
        assert publisher.counters["dropped"] >= 14
        await publisher.stop()

    asyncio.run(run())


def test_nothing_is_made_for_an_in_process_bus_nobody_listens_to() -> None:
    """Before any stream opened in the process, the in-process bus has no listener: the
    publisher makes no message (issue 14: a post's live message cost the fan-out ~15%);
    from the first listener on, every message is published again."""
    async def run() -> None:
        bus = LocalLiveBus()
        publisher = LivePublisher(bus)
        publisher.start()
        heard: list[bytes] = []
        publisher.on_event(Event(1, model.POST_CREATED, {"post_id": 10, "author_id": 2, "text": "unheard"}))
        publisher.on_notifications([Notification(3, 20, "follow", 2)])
        await asyncio.sleep(0.01)
        assert publisher.counters["published"] == 0 and publisher.counters["dropped"] == 0
        listening = asyncio.create_task(bus.listen(heard.append, lambda subscribed: None))
        await asyncio.sleep(0)
        publisher.on_event(Event(2, model.POST_CREATED, {"post_id": 11, "author_id": 2, "text": "heard"}))
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert [orjson.loads(m)["id"] for m in heard] == [11]
        listening.cancel()
        await publisher.stop()

    asyncio.run(run())
