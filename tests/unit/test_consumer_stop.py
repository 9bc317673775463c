"""``Consumers.stop`` drains: whatever a consumer holds when it is told to stop — the batch
it is applying, the events a fetch in progress returns, the events the stream delivered to
the process that no fetch returned — is applied and acknowledged before ``stop`` returns,
so that a SIGTERMed worker leaves nothing for a redelivery.

The stream here is scripted: a fetch waits until the test hands it its result, so each
test puts the consumer in exactly the state it is about (no timing involved).
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from homefeed.domain.model import Event
from homefeed.service_layer.consumers import FANOUT, Consumers


class ScriptedStream:
    """An event stream whose fetches return what the test puts in ``results``."""

    backend = "scripted"
    redelivery_after = None  # no deadline: nothing here is about ack_wait

    def __init__(self, delivered: Sequence[Event] = ()) -> None:
        self.results: asyncio.Queue[list[Event]] = asyncio.Queue()
        self.fetching = asyncio.Event()  # a fetch is waiting for its result
        self.fetches = 0
        self.acked: list[Event] = []
        self.delivered = list(delivered)  # what a pull delivered after its fetch returned

    async def fetch(self, consumer: str, max_events: int, timeout: float) -> list[Event]:
        self.fetches += 1
        self.fetching.set()
        try:
            return await self.results.get()
        finally:
            self.fetching.clear()

    async def ack(self, consumer: str, events: Sequence[Event]) -> None:
        self.acked.extend(events)

    async def take_delivered(self, consumer: str) -> list[Event]:
        out, self.delivered = self.delivered, []
        return out


def events(*seqs: int) -> list[Event]:
    return [Event(s, "post_created", {"post_id": s}) for s in seqs]


def consumers_over(stream: ScriptedStream, gate: asyncio.Event | None = None,
                   started: asyncio.Event | None = None) -> tuple[Consumers, list[Event]]:
    """Consumers whose fan-out handler records what it applies (setting ``started`` when it
    gets a batch, and applying it once ``gate`` opens)."""
    applied: list[Event] = []
    c = Consumers(None, stream, None)  # type: ignore[arg-type]  # the handler needs neither

    async def record(batch: Sequence[Event]) -> None:
        if started is not None:
            started.set()
        if gate is not None:
            await gate.wait()
        applied.extend(batch)

    c.handlers = {FANOUT: record}
    return c, applied


def test_what_a_fetch_in_progress_returns_is_applied_and_acknowledged() -> None:
    async def scenario() -> tuple[list[Event], list[Event]]:
        stream = ScriptedStream()
        c, applied = consumers_over(stream)
        c.start([FANOUT])
        await stream.fetching.wait()
        stopping = asyncio.create_task(c.stop())
        await asyncio.sleep(0)  # stop() has told the consumer and is waiting for it
        await stream.results.put(events(1, 2, 3))  # the stream answers the fetch now
        await stopping
        return applied, stream.acked

    applied, acked = asyncio.run(scenario())
    assert applied == events(1, 2, 3)
    assert acked == events(1, 2, 3)


def test_the_batch_being_applied_is_finished_and_acknowledged() -> None:
    async def scenario() -> tuple[list[Event], list[Event], int]:
        stream = ScriptedStream()
        gate, started = asyncio.Event(), asyncio.Event()
        c, applied = consumers_over(stream, gate, started)
        c.start([FANOUT])
        await stream.fetching.wait()
        await stream.results.put(events(1, 2))
        await started.wait()  # the handler holds the batch
        stopping = asyncio.create_task(c.stop())
        await asyncio.sleep(0)
        gate.set()
        await stopping
        return applied, stream.acked, stream.fetches

    applied, acked, fetches = asyncio.run(scenario())
    assert applied == events(1, 2) and acked == events(1, 2)
    assert fetches == 1, "a stopping consumer fetched new events"


def test_events_delivered_but_never_returned_by_a_fetch_are_applied_and_acknowledged() -> None:
    async def scenario() -> tuple[list[Event], list[Event]]:
        stream = ScriptedStream(delivered=events(7, 8))
        c, applied = consumers_over(stream)
        c.start([FANOUT])
        await stream.fetching.wait()
        stopping = asyncio.create_task(c.stop())
        await asyncio.sleep(0)
        await stream.results.put([])  # the fetch in progress found nothing new
        await stopping
        return applied, stream.acked

    applied, acked = asyncio.run(scenario())
    assert applied == events(7, 8)
    assert acked == events(7, 8)
