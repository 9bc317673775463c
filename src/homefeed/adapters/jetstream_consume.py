"""Consuming the JetStream events stream: fetch, ack, nak, in-progress, and the hand-back of
what a stopping consumer was delivered.

One durable pull consumer per consumer name (``fanout``, ``indexer``, ...): explicit ack,
``ack_wait``, ``max_deliver``, deliver all; it is created on first use. Several workers
sharing a consumer name share the durable consumer: each message goes to one of them. A
``fetch`` during an outage waits for the reconnect up to its timeout and returns ``[]``; it
never raises for a connection problem.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence

import nats.errors
import nats.js.errors
import orjson
from nats.aio.msg import Msg

from homefeed.adapters.jetstream_connection import TRANSIENT, message_of
from homefeed.adapters.jetstream_dead_letters import JetStreamDeadLetters
from homefeed.adapters.jetstream_names import DEPLOYMENT_HEADER, STATUS_HEADER, TARGET_HEADER
from homefeed.domain.errors import Unavailable
from homefeed.domain.model import Event

log = logging.getLogger("homefeed.jetstream")

#: Seconds for messages sent just before a pull expired to reach the client's buffer.
_DELIVERY_SETTLE = 0.05


class JetStreamConsumer(JetStreamDeadLetters):
    """The consuming side of the EventStream port."""

    @property
    def redelivery_after(self) -> float | None:
        """``ack_wait``: JetStream delivers an unacknowledged event again after it."""
        return self.ack_wait

    async def fetch(self, consumer: str, max_events: int, timeout: float) -> list[Event]:
        """Up to ``max_events`` events for ``consumer`` (redeliveries included: see
        ``Event.deliveries``); waits up to ``timeout`` for at least one. Returns ``[]`` when
        nothing came, including while the server is unreachable."""
        deadline = time.monotonic() + max(timeout, 0.0)
        self._require()
        if not await self._wait_connected(timeout):
            return []
        try:
            sub = await self._subscription(consumer)
            remaining = max(deadline - time.monotonic(), 0.05)
            self._pulls_end[consumer] = time.monotonic() + remaining
            msgs = await sub.fetch(max(1, max_events), timeout=remaining)
        except asyncio.TimeoutError:  # includes nats' TimeoutError and FetchTimeoutError
            return []
        except (Unavailable,) + TRANSIENT + (nats.errors.ConnectionClosedError,) as exc:
            log.info("fetch for %s: %r; will retry", consumer, exc)
            self._ensured_consumers.discard(consumer)  # check it exists on the next fetch
            await self._pause_until(deadline)
            return []
        except nats.js.errors.APIError as exc:  # e.g. 409 consumer deleted: recreate it
            log.warning("fetch for %s failed: %r; recreating the consumer", consumer, exc)
            await self._forget_subscription(consumer)
            await self._pause_until(deadline)
            return []
        return await self._events(consumer, msgs)

    async def take_delivered(self, consumer: str) -> list[Event]:
        """For a consumer about to stop: the events this process was delivered and no fetch
        returned. A pull goes on delivering until it expires, after the fetch that sent it
        has returned; nats-py keeps those messages for the next fetch, and a stopping
        consumer makes none, so they would wait out ``ack_wait`` to be redelivered. Waits
        for the last pull to expire, then empties that buffer (sending no new pull)."""
        sub = self._subs.get(consumer)
        if sub is None or self._nc is None:
            return []
        await asyncio.sleep(max(self._pulls_end.get(consumer, 0.0) - time.monotonic(), 0.0)
                            + _DELIVERY_SETTLE)
        return await self._events(consumer, _drain_pull_buffer(sub))

    async def _events(self, consumer: str, msgs: Sequence[Msg]) -> list[Event]:
        """Delivered messages as events (another consumer's retried dead letters are
        acknowledged and skipped, undecodable ones dead-lettered)."""
        events: list[Event] = []
        for m in msgs:
            headers = m.headers or {}
            target = headers.get(TARGET_HEADER)
            if target is not None and target != consumer:
                await self._ack_quietly(m)  # a retried dead letter of another consumer
                continue
            origin = headers.get(DEPLOYMENT_HEADER)
            if origin is not None and self.deployment_id is not None and origin != self.deployment_id:
                # In our own stream (open() refused anyone else's), so no other deployment
                # waits for it here: record it where an operator looks, never apply it.
                await self._dead_letter_msg(
                    consumer, m, None,
                    f"event of deployment {origin} in the stream of deployment {self.deployment_id}",
                )
                continue
            try:
                body = orjson.loads(m.data)
                event = Event(
                    int(body["seq"]),
                    str(body["type"]),
                    body.get("data") or {},
                    deliveries=m.metadata.num_delivered,
                    ack_handle=m,
                )
            except Exception as exc:
                log.error("undecodable message in %s: %r", self.stream, m.data[:200])
                await self._dead_letter_msg(consumer, m, None, f"undecodable message: {exc!r}")
                continue
            events.append(event)
        return events

    async def _pause_until(self, deadline: float) -> None:
        # Do not spin while the server is away: wait for the reconnect or the deadline.
        remaining = deadline - time.monotonic()
        if remaining > 0:
            await self._wait_connected(remaining)
            remaining = deadline - time.monotonic()
            if remaining > 0 and not self.connected:
                await asyncio.sleep(remaining)

    async def _ack_quietly(self, m: Msg) -> None:
        try:
            await self._reply_all("skip", [m], b"+ACK")
        except Unavailable:
            pass  # redelivered later and skipped again

    async def ack(self, consumer: str, events: Sequence[Event]) -> None:
        """Acknowledge each event; once this returns the server has applied the acks.
        Acking an event twice is harmless. Raises Unavailable if the connection dropped
        (the events not acknowledged will be delivered again after ``ack_wait``)."""
        if events:
            await self._reply_all(f"ack for {consumer}", [message_of(e) for e in events], b"+ACK")

    async def nak(self, consumer: str, events: Sequence[Event], delay: float | None = None) -> None:
        """Ask for redelivery of ``events`` now (or after ``delay`` seconds). After
        ``max_deliver`` deliveries the server stops and the dead-letter stream records it."""
        payload = b"-NAK"
        if delay:
            payload += b" " + orjson.dumps({"delay": int(delay * 1e9)})
        if events:
            await self._reply_all(f"nak for {consumer}", [message_of(e) for e in events], payload)

    async def in_progress(self, events: Sequence[Event]) -> None:
        """Reset the ack_wait timer of events still being worked on."""
        for e in events:
            await message_of(e).in_progress()


def _drain_pull_buffer(sub: Any) -> list[Msg]:
    """Empty nats-py's buffer of delivered messages without sending a pull request.

    This reads nats-py internals (``JetStreamContext.PullSubscription._sub`` and its
    ``_pending_queue`` / ``_pending_size``, as the library's own ``fetch`` does): nats-py has
    no public way to take what a pull already delivered without asking for more. Kept in this
    one function so that a nats-py upgrade that changes them breaks one place; when the
    attributes are absent nothing is taken, and those messages are redelivered after
    ``ack_wait`` (slower, never lost)."""
    core = getattr(sub, "_sub", None)  # third-party internals: see the docstring
    queue = getattr(core, "_pending_queue", None)
    if core is None or queue is None:
        return []
    msgs: list[Msg] = []
    while not queue.empty():
        m = queue.get_nowait()
        core._pending_size -= len(m.data)
        if m.headers and m.headers.get(STATUS_HEADER):
            continue  # the end of an expired pull (404, 408), not an event
        msgs.append(m)
    return msgs
