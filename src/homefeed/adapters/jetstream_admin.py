"""Administration of the JetStream event stream: consumer lag and counters, stream state,
finding an event by its seq, rewinding a consumer (replay), deleting the streams."""

from __future__ import annotations

import asyncio
import functools
import time
from datetime import datetime
from typing import Any, ClassVar, Sequence

import nats.js.errors
import orjson
from nats.js.api import DeliverPolicy

from homefeed.adapters.jetstream_consume import JetStreamConsumer
from homefeed.adapters.jetstream_names import TARGET_HEADER, checked_name
from homefeed.domain.errors import Unavailable


class JetStreamAdmin(JetStreamConsumer):
    """What operators and the monitoring ask of the stream."""

    backend: ClassVar[str] = "jetstream"

    async def stats(self) -> dict[str, int]:
        """What this process counted: events stored, resends answered "duplicate", resend
        rounds, disconnects and reconnects, dead letters."""
        return dict(self._counts)

    async def end_position(self) -> tuple[int, int]:
        """``(0, stream seq)`` of the newest stored message."""
        return (0, (await self.stream_state())["last_seq"])

    async def acked_position(self, consumer: str) -> tuple[int, int]:
        """``(0, stream seq)`` of the consumer's acknowledgement floor."""
        return (0, (await self.consumer_stats(consumer))["stream_seq_acked"])

    async def replay_from(
        self, consumer: str, *, event_seq: int | None = None, start_time: datetime | None = None
    ) -> dict[str, Any]:
        """The port's name for ``rewind``: the durable consumer is recreated at the start."""
        return await self.rewind(consumer, event_seq=event_seq, start_time=start_time)

    async def lag(self, consumer: str) -> int:
        """Events not yet acknowledged by ``consumer``: never delivered (num_pending) plus
        delivered and awaiting their ack (num_ack_pending). Creates the consumer if absent."""
        consumer = checked_name(consumer)
        await self._ensure_consumer(consumer)

        async def info() -> Any:
            try:
                return await self._js.consumer_info(self.stream, consumer)
            except nats.js.errors.NotFoundError:
                self._ensured_consumers.discard(consumer)
                await self._ensure_consumer(consumer)
                return await self._js.consumer_info(self.stream, consumer)

        ci = await self._call(f"consumer info {consumer}", info)
        return int(ci.num_pending or 0) + int(ci.num_ack_pending or 0)

    async def lags(self, consumers: Sequence[str]) -> dict[str, int]:
        """``lag`` of each consumer: JetStream answers one consumer's info per request, so
        the requests go out at once and the answer takes one round trip, not one each."""
        names = list(dict.fromkeys(consumers))
        got = await asyncio.gather(*(self.lag(name) for name in names))
        return dict(zip(names, got))

    async def consumer_stats(self, consumer: str) -> dict[str, int]:
        consumer = checked_name(consumer)
        await self._ensure_consumer(consumer)
        ci = await self._call("consumer info", lambda: self._js.consumer_info(self.stream, consumer))
        return {
            "pending": int(ci.num_pending or 0),
            "ack_pending": int(ci.num_ack_pending or 0),
            "redelivered": int(ci.num_redelivered or 0),
            "waiting": int(ci.num_waiting or 0),
            "stream_seq_acked": int(ci.ack_floor.stream_seq if ci.ack_floor else 0),
        }

    async def stream_state(self) -> dict[str, int]:
        await self._ensure_streams()
        si = await self._call("stream info", lambda: self._js.stream_info(self.stream))
        return {
            "messages": int(si.state.messages),
            "first_seq": int(si.state.first_seq),
            "last_seq": int(si.state.last_seq),
            "consumers": int(si.state.consumer_count),
        }

    async def head(self) -> int:
        """The ``seq`` of the newest event in the stream (0 if none)."""
        await self._ensure_streams()

        async def last() -> int:
            si = await self._js.stream_info(self.stream)
            if not si.state.messages:
                return 0
            try:
                m = await self._js.get_msg(self.stream, seq=si.state.last_seq)
            except nats.js.errors.NotFoundError:
                return 0
            return int(orjson.loads(m.data)["seq"])

        return await self._call("get last message", last)

    async def _event_at_or_after(self, stream_seq: int) -> tuple[int, int] | None:
        """(stream seq, event seq) of the first relayed event at or after ``stream_seq``,
        skipping retried dead letters (they carry an old event seq later in the stream)."""
        seq = stream_seq
        while True:
            async def get(seq: int = seq) -> Any:
                try:
                    return await self._js.get_msg(
                        self.stream, seq=seq, subject=f"{self.subject_prefix}.>", next=True
                    )
                except nats.js.errors.NotFoundError:
                    return None

            m = await self._call("read the stream", get)
            if m is None:
                return None
            if (m.headers or {}).get(TARGET_HEADER) is not None:
                seq = int(m.seq) + 1
                continue
            try:
                return int(m.seq), int(orjson.loads(m.data)["seq"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                seq = int(m.seq) + 1

    async def find_stream_seq(self, event_seq: int) -> int | None:
        """The stream sequence of the first event whose ``Event.seq`` is at least
        ``event_seq`` (None if there is none). The relay publishes in commit order, so event
        seqs grow with stream seqs: a binary search, O(log n) reads."""
        state = await self.stream_state()
        lo, hi = state["first_seq"], state["last_seq"] + 1  # answer in [lo, hi]
        if not state["messages"]:
            return None
        found: int | None = None
        while lo < hi:
            mid = (lo + hi) // 2
            got = await self._event_at_or_after(mid)
            if got is not None and got[1] >= event_seq:
                found, hi = got[0], mid
            else:
                lo = (got[0] + 1) if got is not None else hi
        if found is None:
            got = await self._event_at_or_after(lo)
            if got is not None and got[1] >= event_seq:
                found = got[0]
        return found

    async def rewind(
        self,
        consumer: str,
        *,
        event_seq: int | None = None,
        start_time: datetime | None = None,
        idle_wait: float = 5.0,
    ) -> dict[str, Any]:
        """Make ``consumer`` receive again every event from the one whose ``Event.seq`` is
        ``event_seq`` (0: from the beginning), or every event stored since ``start_time``,
        then everything after, in stream order. JetStream cannot move a durable consumer,
        so it is deleted and created again at that point (same name, same settings): the
        workers bound to it carry on with the new one. Waits up to ``idle_wait`` seconds for
        the consumer to have no unacknowledged message, so that no worker is holding a
        batch when it goes (an acknowledgement to the deleted consumer fails; the events
        are delivered again anyway). Returns where it starts."""
        consumer = checked_name(consumer)
        await self._ensure_streams()
        if (event_seq is None) == (start_time is None):
            raise ValueError("give exactly one of event_seq and start_time")
        cfg = self._consumer_config(consumer)
        state = await self.stream_state()
        start: dict[str, Any]
        if start_time is not None:
            cfg = cfg.evolve(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start_time)
            start = {"start_time": start_time.isoformat()}
        elif event_seq is not None and event_seq <= 0:
            start = {"stream_seq": state["first_seq"], "event_seq": 0}
        else:
            assert event_seq is not None
            stream_seq = await self.find_stream_seq(event_seq)
            if stream_seq is None:  # nothing that recent: from the next event on
                stream_seq = state["last_seq"] + 1
            cfg = cfg.evolve(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=stream_seq)
            start = {"stream_seq": stream_seq, "event_seq": event_seq}
        deadline = time.monotonic() + idle_wait
        while time.monotonic() < deadline:
            try:
                ci = await self._call("consumer info", lambda: self._js.consumer_info(self.stream, consumer))
            except nats.js.errors.NotFoundError:
                break
            if not ci.num_ack_pending:
                break
            await asyncio.sleep(0.01)
        for attempt in range(10):
            async def recreate() -> None:
                try:
                    await self._js.delete_consumer(self.stream, consumer)
                except nats.js.errors.NotFoundError:
                    pass
                await self._js.add_consumer(self.stream, cfg)

            try:
                await self._call(f"recreate consumer {consumer}", recreate)
                break
            except nats.js.errors.APIError as exc:  # a worker recreated it in between: again
                if attempt == 9:
                    raise Unavailable(f"could not recreate consumer {consumer}: {exc!r}") from exc
        await self._forget_subscription(consumer)
        self._ensured_consumers.add(consumer)
        return start


    async def _delete_stream(self, name: str) -> None:
        await self._js.delete_stream(name)

    async def delete_streams(self) -> None:
        """Delete both streams and every consumer (tests, resets)."""
        for name in (self.stream, self.dead_letter_stream):
            try:
                await self._call(f"delete stream {name}", functools.partial(self._delete_stream, name))
            except nats.js.errors.NotFoundError:
                pass
        self._streams_ok = False
        self._subs.clear()
        self._ensured_consumers.clear()


