"""EventStream of the scale-out profile: a NATS JetStream stream with durable pull consumers.

Layout on the server
--------------------
- The events stream (``stream``, default ``HOMEFEED``) captures ``<subject_prefix>.>``; each
  outbox event is one message on ``<subject_prefix>.<event type>``, its body the JSON
  ``{"seq", "type", "data"}`` and its header ``Nats-Msg-Id: <seq>``. File storage, limits
  retention (every consumer reads every event), a duplicate window (default 2 minutes) in
  which a message whose ``Nats-Msg-Id`` was already stored is acknowledged but not stored
  again: a relay that crashed after publishing and before recording it, and so publishes the
  same batch again, creates no duplicate.
- The dead-letter stream (``<stream>_DEAD``) captures ``<dead_letter_prefix>.<consumer>``
  (default prefix: ``homefeed.dead`` for ``homefeed.events``), where :meth:`dead_letter`
  puts an event that keeps failing, with the reason; and, as a safety net, the server's
  ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.*`` advisories, so that an event
  the server gave up on after ``max_deliver`` deliveries without any answer (a worker that
  crashed on it every time) is reported too, never silently dropped.
- One durable pull consumer per consumer name (``fanout``, ``indexer``, ...): explicit ack,
  ``ack_wait``, ``max_deliver``, deliver all. It is created on first use.

Order. The relay publishes a batch pipelined (all messages sent, then the acks awaited) and
still keeps commit order: every message of a batch but the first carries
``Nats-Expected-Last-Msg-Id: <seq of the previous event>``, so if a message is lost (the
connection dropped while it was in flight) every later one of the batch is refused by the
server instead of being stored past the gap, and the batch is resent from the first event
not acknowledged. (The server checks ``Nats-Msg-Id`` first, so resending what was stored
already is answered "duplicate".) The first message of a send has no expectation; its
predecessors were all acknowledged before, so it cannot overtake them.

Scale beyond one machine. Against a NATS cluster (``nats://a:4222,nats://b:4222,...``)
create the streams with ``replicas=3``: each stream is then a Raft group over three servers,
a publish is acknowledged once a quorum stored it, and the stream survives the loss of one
server. Consumers are replicated with their stream. Throughput scales out by running more
worker processes per consumer name (they share the durable consumer: each message goes to
one of them) and, past one stream leader, by partitioning subjects over several streams.

Reconnects. The client reconnects forever (``max_reconnect_attempts=-1``). Publishing is not
buffered while disconnected (``pending_size=0``): a publish fails at once and is retried in
order once connected again. A ``fetch`` during an outage waits for the reconnect up to its
timeout and returns ``[]``; it never raises for a connection problem.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
import logging
import re
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar
from urllib.parse import parse_qs

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from homefeed.domain.errors import Unavailable
from homefeed.domain.model import Event
from homefeed.ports import DeadLetter

log = logging.getLogger("homefeed.jetstream")

T = TypeVar("T")

#: A republished dead letter is meant for one consumer only; the others skip (ack) it.
TARGET_HEADER = "Homefeed-Consumer"
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
#: The header of JetStream's status messages (the end of a pull: 404, 408).
STATUS_HEADER = "Status"
#: Seconds for messages sent just before a pull expired to reach the client's buffer.
_DELIVERY_SETTLE = 0.05

# Errors that mean "the server is not reachable right now": wait and try again.
_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,  # nats.errors.TimeoutError is one
    nats.errors.OutboundBufferLimitError,  # publishing while disconnected (pending_size=0)
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.NoRespondersError,
    nats.errors.FlushTimeoutError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,  # 503: JetStream starting, leader election
    ConnectionError,
)

_BAD_TOKEN = re.compile(r"[\s.*>]")


def _token(s: str) -> str:
    """A string usable as one subject token / consumer name."""
    return _BAD_TOKEN.sub("_", s) or "_"




class JetStreamEventStream:
    """EventStream port on NATS JetStream, plus ``publish`` (used by the outbox relay),
    ``nak``, ``dead_letter`` and the dead-letter administration."""

    def __init__(
        self,
        url: str,
        stream: str = "HOMEFEED",
        subject_prefix: str = "homefeed.events",
        max_deliver: int = 5,
        ack_wait: float = 30,
        *,
        dead_letter_prefix: str | None = None,
        dead_letter_stream: str | None = None,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        max_age: float | None = None,
        publish_timeout: float = 30.0,
        ack_timeout: float = 5.0,
        max_in_flight: int = 8192,
        op_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        reconnect_wait: float = 0.25,
        name: str = "homefeed",
    ) -> None:
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        self.stream = stream
        self.subject_prefix = subject_prefix.rstrip(".")
        if dead_letter_prefix is None:
            head, _, _ = self.subject_prefix.rpartition(".")
            dead_letter_prefix = f"{head}.dead" if head else f"{self.subject_prefix}_dead"
        self.dead_letter_prefix = dead_letter_prefix.rstrip(".")
        self.dead_letter_stream = dead_letter_stream or f"{stream}_DEAD"
        self.max_deliver = max_deliver
        self.ack_wait = float(ack_wait)
        self.replicas = replicas
        self.duplicate_window = duplicate_window
        self.max_age = max_age
        self.publish_timeout = publish_timeout
        self.ack_timeout = ack_timeout
        self.max_in_flight = max_in_flight
        self.op_timeout = op_timeout
        self.connect_timeout = connect_timeout
        self.reconnect_wait = reconnect_wait
        self.name = name

        self._nc: NATS | None = None
        self._js: Any = None
        self._subs: dict[str, Any] = {}
        #: consumer -> monotonic time its last pull request expires (see take_delivered)
        self._pulls_end: dict[str, float] = {}
        self._ensured_consumers: set[str] = set()
        self._streams_ok = False
        self._connected = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._ack_inbox = ""
        self._ack_futures: dict[str, asyncio.Future] = {}
        self._tokens = itertools.count(1)
        #: counters: events stored, resends answered "duplicate", resend rounds, reconnects
        self.stats: dict[str, int] = {
            "published": 0,
            "duplicates": 0,
            "publish_retries": 0,
            "reconnects": 0,
            "disconnects": 0,
            "dead_lettered": 0,
        }

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> "JetStreamEventStream":
        """Build from ``HOMEFEED_BUS_URL``: ``nats://h1:4222[,nats://h2:4222...]`` with
        optional query parameters ``stream``, ``subject_prefix``, ``replicas``,
        ``max_deliver``, ``ack_wait``, ``duplicate_window``, ``max_age`` (seconds), e.g.
        ``nats://a:4222,nats://b:4222,nats://c:4222?replicas=3``."""
        base, _, query = url.partition("?")
        kw: dict[str, Any] = {}
        conv: dict[str, Callable[[str], Any]] = {
            "stream": str, "subject_prefix": str, "replicas": int, "max_deliver": int,
            "ack_wait": float, "duplicate_window": float, "max_age": float,
        }
        for key, values in parse_qs(query).items():
            if key not in conv:
                raise ValueError(f"unknown parameter {key!r} in the NATS URL; known: {', '.join(conv)}")
            kw[key] = conv[key](values[-1])
        kw.update(overrides)
        return cls(base, **kw)

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._nc is not None:
            return
        self._connected = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        nc = NATS()
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=self.servers,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self.reconnect_wait,  # type: ignore[arg-type]
                    connect_timeout=2,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    pending_size=0,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                ),
                self.connect_timeout,
            )
        except (asyncio.TimeoutError, OSError, nats.errors.Error) as exc:
            try:
                await nc.close()
            except Exception:
                pass
            raise Unavailable(
                f"cannot connect to NATS at {', '.join(self.servers)}: {exc!r}. Start it with"
                " `nats-server -js -sd /var/lib/nats-server` (JetStream enabled)"
            ) from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=self.op_timeout)
        self._connected.set()
        self._ack_inbox = nc.new_inbox()
        await nc.subscribe(self._ack_inbox + ".*", cb=self._on_pub_ack)
        await self._ensure_streams()

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        self._subs.clear()
        self._ensured_consumers.clear()
        self._streams_ok = False
        for fut in self._ack_futures.values():
            if not fut.done():
                fut.cancel()
        self._ack_futures.clear()
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # closing a connection that is down
                log.debug("close failed", exc_info=True)

    async def __aenter__(self) -> "JetStreamEventStream":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    # -- connection callbacks -------------------------------------------------------------
    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats error: %r", exc)

    async def _on_disconnected(self) -> None:
        if self._nc is not None:  # not our own close()
            self.stats["disconnects"] += 1
            log.warning("disconnected from NATS; reconnecting")
        self._connected.clear()

    async def _on_reconnected(self) -> None:
        self.stats["reconnects"] += 1
        nc = self._nc
        log.warning("reconnected to NATS at %s", nc.connected_url.netloc if nc and nc.connected_url else "?")
        # The server may have come back without our streams (no persistence): check again.
        self._streams_ok = False
        self._ensured_consumers.clear()
        self._connected.set()

    async def _on_closed(self) -> None:
        self._connected.clear()

    def _require(self) -> NATS:
        if self._nc is None:
            raise Unavailable("the JetStream event stream is not open")
        return self._nc

    async def _wait_connected(self, timeout: float) -> bool:
        nc = self._require()
        if nc.is_connected:
            return True
        if timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return nc.is_connected

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run a control-plane request, riding out a reconnect for up to ``timeout``."""
        deadline = time.monotonic() + (self.op_timeout if timeout is None else timeout)
        delay = 0.05
        while True:
            self._require()
            try:
                await self._wait_connected(deadline - time.monotonic())
                return await fn()
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"JetStream {what} failed: {exc!r}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- streams and consumers ------------------------------------------------------------
    def _stream_configs(self) -> list[StreamConfig]:
        return [
            StreamConfig(
                name=self.stream,
                description="homefeed outbox events, in commit order",
                subjects=[f"{self.subject_prefix}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                num_replicas=self.replicas,
                duplicate_window=self.duplicate_window,
                max_age=self.max_age,
            ),
            StreamConfig(
                name=self.dead_letter_stream,
                description="homefeed events that kept failing, with the reason",
                subjects=[
                    f"{self.dead_letter_prefix}.>",
                    f"{ADVISORY_MAX_DELIVERIES}.{self.stream}.*",
                ],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=self.duplicate_window,
            ),
        ]

    async def _ensure_streams(self) -> None:
        if self._streams_ok:
            return
        for cfg in self._stream_configs():
            await self._call(f"create stream {cfg.name}", lambda cfg=cfg: self._ensure_stream(cfg))
        self._streams_ok = True

    async def _ensure_stream(self, cfg: StreamConfig) -> None:
        try:
            await self._js.stream_info(cfg.name)
        except nats.js.errors.NotFoundError:
            log.info("creating JetStream stream %s (%s)", cfg.name, ", ".join(cfg.subjects or []))
            await self._js.add_stream(cfg)

    def _consumer_config(self, consumer: str) -> ConsumerConfig:
        return ConsumerConfig(
            name=consumer,
            durable_name=consumer,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            filter_subject=f"{self.subject_prefix}.>",
            max_ack_pending=20000,
        )

    async def _ensure_consumer(self, consumer: str) -> None:
        if consumer in self._ensured_consumers:
            return
        await self._ensure_streams()

        async def ensure() -> None:
            try:
                info = await self._js.consumer_info(self.stream, consumer)
            except nats.js.errors.NotFoundError:
                await self._js.add_consumer(self.stream, self._consumer_config(consumer))
                return
            cfg = info.config
            if (cfg.max_deliver, round(cfg.ack_wait or 0, 3)) != (self.max_deliver, round(self.ack_wait, 3)):
                try:  # ack_wait and max_deliver are editable on a durable consumer
                    await self._js.add_consumer(self.stream, self._consumer_config(consumer))
                except nats.js.errors.APIError as exc:
                    log.warning("consumer %s keeps its settings: %s", consumer, exc)

        await self._call(f"create consumer {consumer}", ensure)
        self._ensured_consumers.add(consumer)

    async def _subscription(self, consumer: str) -> Any:
        # After a reconnect the consumer is checked again (the server may have lost it);
        # the subscription itself survives: the client replays it on the new connection.
        if consumer not in self._ensured_consumers:
            await self._ensure_consumer(_checked_name(consumer))
        sub = self._subs.get(consumer)
        if sub is None:
            sub = await self._js.pull_subscribe_bind(durable=consumer, stream=self.stream)
            self._subs[consumer] = sub
        return sub

    async def _forget_subscription(self, consumer: str) -> None:
        self._ensured_consumers.discard(consumer)
        sub = self._subs.pop(consumer, None)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    # -- publishing (the relay's side) ----------------------------------------------------
    def subject_for(self, event_type: str) -> str:
        return f"{self.subject_prefix}.{_token(event_type)}"

    @staticmethod
    def _payload(e: Event) -> bytes:
        return orjson.dumps({"seq": e.seq, "type": e.type, "data": e.data})

    async def _on_pub_ack(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        fut = self._ack_futures.pop(token, None)
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            fut.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            resp = orjson.loads(msg.data)
        except orjson.JSONDecodeError as exc:
            fut.set_exception(exc)
            return
        if "error" in resp:
            fut.set_exception(nats.js.errors.APIError.from_error(resp["error"]))
        else:
            fut.set_result(resp)

    async def _send(self, subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future:
        nc = self._require()
        token = str(next(self._tokens))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._ack_futures[token] = fut
        fut.add_done_callback(lambda _f, t=token: self._ack_futures.pop(t, None))
        try:
            await nc.publish(subject, payload, reply=f"{self._ack_inbox}.{token}", headers=headers)
        except BaseException:
            self._ack_futures.pop(token, None)
            raise
        return fut

    async def publish(self, events: Sequence[Event]) -> int:
        """Publish ``events`` (ascending ``seq``) in order and wait until JetStream stored
        every one. Returns how many were new (the others were duplicates within the window).
        Retries through reconnects for up to ``publish_timeout``; then raises Unavailable
        (nothing is lost: the caller has not acknowledged its source and will resend)."""
        if not events:
            return 0
        async with self._publish_lock:
            await self._ensure_streams()
            return await self._publish_locked(list(events))

    async def _publish_locked(self, events: list[Event]) -> int:
        payloads = [self._payload(e) for e in events]
        subjects = [self.subject_for(e.type) for e in events]
        deadline = time.monotonic() + self.publish_timeout
        stored = 0
        i = 0  # events[:i] are acknowledged by the server
        delay = 0.02
        last_error: BaseException | None = None
        while i < len(events):
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"JetStream did not store events {events[i].seq}..{events[-1].seq} within"
                    f" {self.publish_timeout}s: {last_error!r}"
                )
            if not await self._wait_connected(deadline - time.monotonic()):
                continue
            start = i
            end = min(len(events), start + self.max_in_flight)
            futs: list[asyncio.Future] = []
            try:
                for k in range(start, end):
                    headers = {MSG_ID: str(events[k].seq)}
                    if k > start:
                        headers[EXPECTED_LAST_MSG_ID] = str(events[k - 1].seq)
                    futs.append(await self._send(subjects[k], payloads[k], headers))
            except _TRANSIENT + (nats.errors.ConnectionClosedError,) as exc:
                last_error = exc  # stop sending; what was sent may still be acknowledged
            # Acknowledgements come back in order; stop at the first failure.
            ack_deadline = time.monotonic() + self.ack_timeout
            failed = False
            try:
                for fut in futs:
                    try:
                        resp = await asyncio.wait_for(fut, max(0.0, ack_deadline - time.monotonic()))
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        last_error = exc
                        failed = True
                        if isinstance(exc, nats.js.errors.NoStreamResponseError):
                            self._streams_ok = False
                        break
                    if resp.get("duplicate"):
                        self.stats["duplicates"] += 1
                    else:
                        stored += 1
                    i += 1
            finally:
                for fut in futs:
                    if not fut.done():
                        fut.cancel()
                    elif not fut.cancelled():
                        fut.exception()  # mark the refusals after the first failure as seen
            if failed or i < end:
                self.stats["publish_retries"] += 1
                log.info("publish stopped at event %d (%r); resending from there", events[i].seq, last_error)
                if not self._streams_ok:
                    try:
                        await self._ensure_streams()
                    except Unavailable as exc:
                        last_error = exc
                if not _is_chain_break(last_error):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            else:
                delay = 0.02
        self.stats["published"] += stored
        return stored

    # -- consuming ------------------------------------------------------------------------
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
        except (Unavailable,) + _TRANSIENT + (nats.errors.ConnectionClosedError,) as exc:
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
        core = getattr(sub, "_sub", None)  # nats-py's buffer, as its own fetch reads it
        queue = getattr(core, "_pending_queue", None)
        if queue is None:
            return []  # another nats-py: left for the redelivery after ack_wait
        msgs = []
        while not queue.empty():
            m = queue.get_nowait()
            core._pending_size -= len(m.data)
            if m.headers and m.headers.get(STATUS_HEADER):
                continue  # the end of an expired pull (404, 408), not an event
            msgs.append(m)
        return await self._events(consumer, msgs)

    async def _events(self, consumer: str, msgs: Sequence[Msg]) -> list[Event]:
        """Delivered messages as events (another consumer's retried dead letters are
        acknowledged and skipped, undecodable ones dead-lettered)."""
        events: list[Event] = []
        for m in msgs:
            target = (m.headers or {}).get(TARGET_HEADER)
            if target is not None and target != consumer:
                await self._ack_quietly(m)  # a retried dead letter of another consumer
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

    async def _reply_all(self, what: str, msgs: Sequence[Msg], payload: bytes) -> None:
        """Send ``payload`` (an ack, nak or term) for each message, all but the last one
        fire-and-forget and the last one as a request: the server answers it once it has
        processed it, and it processes a consumer's acks in order, so when this returns
        the server has applied every one (``lag`` already reflects them)."""
        todo = [m for m in msgs if not m._ackd]
        if not todo:
            return
        nc = self._require()
        try:
            for m in todo[:-1]:
                await nc.publish(m.reply, payload)
                m._ackd = True
            last = todo[-1]
            await nc.request(last.reply, payload, timeout=self.op_timeout)
            last._ackd = True
        except _TRANSIENT + (nats.errors.ConnectionClosedError,) as exc:
            raise Unavailable(f"{what} of {len(todo)} messages failed: {exc!r}") from exc

    async def ack(self, consumer: str, events: Sequence[Event]) -> None:
        """Acknowledge each event; once this returns the server has applied the acks.
        Acking an event twice is harmless. Raises Unavailable if the connection dropped
        (the events not acknowledged will be delivered again after ``ack_wait``)."""
        if events:
            await self._reply_all(f"ack for {consumer}", [_msg(e) for e in events], b"+ACK")

    async def nak(self, consumer: str, events: Sequence[Event], delay: float | None = None) -> None:
        """Ask for redelivery of ``events`` now (or after ``delay`` seconds). After
        ``max_deliver`` deliveries the server stops and the dead-letter stream records it."""
        payload = b"-NAK"
        if delay:
            payload += b" " + orjson.dumps({"delay": int(delay * 1e9)})
        if events:
            await self._reply_all(f"nak for {consumer}", [_msg(e) for e in events], payload)

    async def in_progress(self, events: Sequence[Event]) -> None:
        """Reset the ack_wait timer of events still being worked on."""
        for e in events:
            await _msg(e).in_progress()

    async def lag(self, consumer: str) -> int:
        """Events not yet acknowledged by ``consumer``: never delivered (num_pending) plus
        delivered and awaiting their ack (num_ack_pending). Creates the consumer if absent."""
        consumer = _checked_name(consumer)
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

    async def consumer_stats(self, consumer: str) -> dict[str, int]:
        consumer = _checked_name(consumer)
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

    # -- dead letters ---------------------------------------------------------------------
    def dead_letter_subject(self, consumer: str) -> str:
        return f"{self.dead_letter_prefix}.{_token(consumer)}"

    async def dead_letter(self, consumer: str, event: Event, reason: str) -> None:
        """Record ``event`` with ``reason`` in the dead-letter stream, then terminate it
        for ``consumer`` (no more redeliveries). Reported by :meth:`dead_letters`."""
        await self._dead_letter_msg(consumer, _msg(event), event, reason)

    async def _dead_letter_msg(self, consumer: str, m: Msg, event: Event | None, reason: str) -> None:
        md = m.metadata
        body = {
            "consumer": consumer,
            "reason": reason,
            "deliveries": md.num_delivered,
            "stream_seq": md.sequence.stream,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "event": (
                {"seq": event.seq, "type": event.type, "data": event.data}
                if event is not None
                else {"raw": m.data.decode("utf-8", "replace")}
            ),
        }
        headers = {MSG_ID: f"dl.{_token(consumer)}.{md.sequence.stream}"}
        await self._ensure_streams()
        await self._call(
            "dead-letter publish",
            lambda: self._js.publish(self.dead_letter_subject(consumer), orjson.dumps(body), headers=headers),
        )
        await self._reply_all(f"term for {consumer}", [m], b"+TERM")
        self.stats["dead_lettered"] += 1
        log.error("event %s dead-lettered for %s: %s", body["event"].get("seq"), consumer, reason)

    async def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters, oldest first (of ``consumer`` only, if given)."""
        await self._ensure_streams()
        out: list[DeadLetter] = []
        seq = 1
        while len(out) < limit:
            raw = await self._call("read dead letters", lambda seq=seq: self._next_dead(seq))
            if raw is None:
                break
            seq = int(raw.seq) + 1
            dl = await self._decode_dead(raw)
            if dl is not None and (consumer is None or dl.consumer == consumer):
                out.append(dl)
        return out

    async def _next_dead(self, seq: int) -> Any:
        try:
            return await self._js.get_msg(self.dead_letter_stream, seq=seq, subject=">", next=True)
        except nats.js.errors.NotFoundError:
            return None

    async def _decode_dead(self, raw: Any) -> DeadLetter | None:
        try:
            body = orjson.loads(raw.data or b"{}")
        except orjson.JSONDecodeError:
            return None
        at = raw.time.isoformat() if getattr(raw, "time", None) else ""
        if raw.subject.startswith(ADVISORY_MAX_DELIVERIES + "."):
            stream_seq = int(body.get("stream_seq", 0))
            event = None
            try:
                m = await self._js.get_msg(self.stream, seq=stream_seq)
                e = orjson.loads(m.data)
                event = Event(int(e["seq"]), str(e["type"]), e.get("data") or {})
            except (nats.js.errors.NotFoundError, orjson.JSONDecodeError, KeyError, ValueError):
                pass
            return DeadLetter(
                id=int(raw.seq),
                consumer=str(body.get("consumer", "")),
                event=event,
                reason=f"not acknowledged after {body.get('deliveries')} deliveries (max_deliver)",
                deliveries=int(body.get("deliveries", 0)),
                stream_seq=stream_seq,
                source="max_deliver",
                at=str(body.get("timestamp", at)),
            )
        e = body.get("event") or {}
        event = Event(int(e["seq"]), str(e["type"]), e.get("data") or {}) if "seq" in e else None
        return DeadLetter(
            id=int(raw.seq),
            consumer=str(body.get("consumer", "")),
            event=event,
            reason=str(body.get("reason", "")),
            deliveries=int(body.get("deliveries", 0)),
            stream_seq=int(body.get("stream_seq", 0)),
            source="consumer",
            at=str(body.get("at", at)),
        )

    async def retry_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """Publish the event again on the events subject, for its consumer only (a new
        ``Nats-Msg-Id``; the other consumers skip it), then delete the dead letter. The
        retried event comes after newer events: handlers are idempotent, not order-blind,
        so retry after fixing the cause and check the audit."""
        raw = await self._call("read dead letter", lambda: self._js.get_msg(self.dead_letter_stream, seq=dead_letter_id))
        dl = await self._decode_dead(raw)
        if dl is None or dl.event is None:
            raise ValueError(f"dead letter {dead_letter_id} has no event to retry")
        headers = {
            MSG_ID: f"retry.{self.dead_letter_stream}.{dead_letter_id}",
            TARGET_HEADER: dl.consumer,
        }
        payload = self._payload(dl.event)
        subject = self.subject_for(dl.event.type)
        await self._call("republish dead letter", lambda: self._js.publish(subject, payload, headers=headers))

        async def delete() -> None:
            try:
                await self._js.delete_msg(self.dead_letter_stream, dead_letter_id)
            except nats.js.errors.NotFoundError:
                pass

        await self._call("delete dead letter", delete)
        return dl

    async def retry_dead_letters(self, consumer: str | None = None) -> int:
        n = 0
        for dl in await self.dead_letters(consumer):
            if dl.event is not None:
                await self.retry_dead_letter(dl.id)
                n += 1
        return n

    # -- replay ---------------------------------------------------------------------------
    async def _event_at_or_after(self, stream_seq: int) -> tuple[int, int] | None:
        """(stream seq, event seq) of the first relayed event at or after ``stream_seq``,
        skipping retried dead letters (they carry an old event seq later in the stream)."""
        seq = stream_seq
        while True:
            async def get(seq: int = seq) -> Any:
                try:
                    return await self._js.get_msg(self.stream, seq=seq, subject=f"{self.subject_prefix}.>", next=True)
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
        consumer = _checked_name(consumer)
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

    # -- administration -------------------------------------------------------------------
    async def delete_streams(self) -> None:
        """Delete both streams and every consumer (tests, resets)."""
        for name in (self.stream, self.dead_letter_stream):
            try:
                await self._call(f"delete stream {name}", lambda name=name: self._js.delete_stream(name))
            except nats.js.errors.NotFoundError:
                pass
        self._streams_ok = False
        self._subs.clear()
        self._ensured_consumers.clear()


def _msg(e: Event) -> Msg:
    m = e.ack_handle
    if not isinstance(m, Msg):
        raise ValueError(f"event {e.seq} was not fetched from JetStream (no message to acknowledge)")
    return m


def _checked_name(consumer: str) -> str:
    if not consumer or _BAD_TOKEN.search(consumer):
        raise ValueError(f"invalid consumer name {consumer!r}: no spaces, '.', '*' or '>'")
    return consumer


def _is_chain_break(exc: BaseException | None) -> bool:
    return isinstance(exc, nats.js.errors.APIError) and "last msg id" in str(exc.description or "").lower()
