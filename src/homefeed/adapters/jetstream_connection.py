"""The JetStream adapter's connection to NATS and the setup of its streams and consumers:
connect and reconnect, ride out an outage for control-plane requests, create the events
and dead-letter streams (claimed for this deployment) and the durable pull consumers.

Reconnects. The client reconnects forever (``max_reconnect_attempts=-1``). Publishing is not
buffered while disconnected (``pending_size=0``): a publish fails at once and is retried in
order once connected again. Control-plane requests (``_call``) wait for the reconnect up to
their timeout, then raise ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from typing import Any, Awaitable, Callable, Sequence, TypeVar, Union

import nats
import nats.errors
import nats.js.errors
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

from homefeed.adapters.jetstream_names import (
    ADVISORY_MAX_DELIVERIES,
    LEGACY_STREAM,
    WrongDeployment,
    checked_name,
    default_names,
    description,
    names_for,
    owner,
)
from homefeed.aio import wait_for
from homefeed.domain.deployment import Deployment
from homefeed.domain.errors import Unavailable
from homefeed.domain.model import Event

log = logging.getLogger("homefeed.jetstream")

T = TypeVar("T")
_C = TypeVar("_C", bound="JetStreamConnection")

#: Where the adapter learns its deployment at open: the record store's ``deployment``
#: (bootstrap), or a fixed value (tests).
DeploymentSource = Union[Deployment, Callable[[], Awaitable[Deployment]]]

# Errors that mean "the server is not reachable right now": wait and try again.
TRANSIENT: tuple[type[BaseException], ...] = (
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


class JetStreamConnection:
    """The connection, the streams and the consumers; the jobs built on them (publishing,
    consuming, dead letters, administration) are the subclasses in ``jetstream_*``."""

    def __init__(
        self,
        url: str,
        stream: str | None = None,
        subject_prefix: str | None = None,
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
        deployment: DeploymentSource | None = None,
    ) -> None:
        """A name left None is derived from the deployment at :meth:`open` (see
        ``jetstream_names``); without a deployment the names are ``HOMEFEED`` and
        ``homefeed.events``, as before deployment ids."""
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        #: the names given explicitly; they win over the deployment's
        self._explicit_names: dict[str, str | None] = {
            "stream": stream,
            "subject_prefix": subject_prefix,
            "dead_letter_prefix": dead_letter_prefix,
            "dead_letter_stream": dead_letter_stream,
        }
        self._deployment_source = deployment
        #: the deployment this process serves (None: unchecked, no header), and its id
        self.deployment: Deployment | None = None
        self.deployment_id: str | None = None
        self._set_names(None)
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
        self._counts: dict[str, int] = {
            "published": 0,
            "duplicates": 0,
            "publish_retries": 0,
            "reconnects": 0,
            "disconnects": 0,
            "dead_lettered": 0,
        }

    def _set_names(self, deployment: Deployment | None) -> None:
        names = names_for(deployment, self._explicit_names)
        self.stream = names.stream
        self.subject_prefix = names.subject_prefix
        self.dead_letter_prefix = names.dead_letter_prefix
        self.dead_letter_stream = names.dead_letter_stream

    async def _resolve_deployment(self) -> None:
        source = self._deployment_source
        if source is None or self.deployment_id is not None:
            return
        deployment = source if isinstance(source, Deployment) else await source()
        self.deployment = deployment
        self.deployment_id = deployment.id
        self._set_names(deployment)
        log.info("deployment %s: JetStream stream %s, subjects %s.>", deployment.id,
                 self.stream, self.subject_prefix)

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._nc is not None:
            return
        self._connected = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        await self._resolve_deployment()
        nc = NATS()
        try:
            await wait_for(
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
        try:
            await self._opened(nc)
            await self._ensure_streams()
        except BaseException:
            await self.close()  # refused (another deployment's stream) or unreachable
            raise

    async def _opened(self, nc: NATS) -> None:
        """What else a new connection needs (the publisher's acknowledgement inbox)."""

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

    async def __aenter__(self: _C) -> _C:
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
            self._counts["disconnects"] += 1
            log.warning("disconnected from NATS; reconnecting")
        self._connected.clear()

    async def _on_reconnected(self) -> None:
        self._counts["reconnects"] += 1
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
        """Whether the client is connected, waiting up to ``timeout`` for it.

        ``_connected`` can still be set while the client is not connected: nats-py runs the
        disconnected callback that clears it some time after its state changed. Waiting on
        the event alone then returned at once, without yielding to the loop, and a
        consumer's fetch loop spun on it: the process's event loop stopped, and with it a
        transaction it had open, which held back every PostgreSQL outbox on the cluster
        (CI, a NATS restart under load). So the state is polled while the two disagree."""
        nc = self._require()
        if nc.is_connected:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not nc.is_connected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if self._connected.is_set():  # the disconnected callback has not run yet
                await asyncio.sleep(min(remaining, 0.05))
                continue
            try:
                await wait_for(self._connected.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run a control-plane request, riding out a reconnect for up to ``timeout``."""
        deadline = time.monotonic() + (self.op_timeout if timeout is None else timeout)
        delay = 0.05
        while True:
            self._require()
            try:
                await self._wait_connected(deadline - time.monotonic())
                return await fn()
            except TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"JetStream {what} failed: {exc!r}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- streams and consumers ------------------------------------------------------------
    def _stream_configs(self) -> list[StreamConfig]:
        return [
            StreamConfig(
                name=self.stream,
                description=description(self.deployment_id),
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
            await self._call(f"create stream {cfg.name}", functools.partial(self._ensure_stream, cfg))
        self._streams_ok = True

    async def _ensure_stream(self, cfg: StreamConfig) -> None:
        try:
            info = await self._js.stream_info(cfg.name)
        except nats.js.errors.NotFoundError:
            log.info("creating JetStream stream %s (%s)", cfg.name, ", ".join(cfg.subjects or []))
            await self._js.add_stream(cfg)
            return
        if cfg.name == self.stream and self.deployment_id is not None:
            await self._claim(info.config)

    async def _claim(self, existing: StreamConfig) -> None:
        """Refuse another deployment's stream; claim a stream nobody claimed yet (one made
        before deployment ids, which a database upgraded with events goes on using).

        Refusing to start, rather than dead-lettering foreign events one by one: a worker
        bound to another deployment's durable consumer takes events away from that
        deployment's own workers (each message goes to one of them), and whatever it did
        with them (dead-letter, skip) would be done to the other deployment."""
        claimed_by = owner(existing.description)
        if claimed_by == self.deployment_id:
            return
        if claimed_by is not None:
            raise WrongDeployment(self._refusal(claimed_by))
        log.warning("claiming JetStream stream %s (made before deployment ids) for deployment %s",
                    self.stream, self.deployment_id)
        await self._js.update_stream(existing.evolve(description=description(self.deployment_id)))

    def _refusal(self, claimed_by: str) -> str:
        if self._explicit_names["stream"] or self._explicit_names["subject_prefix"]:
            own_stream, _ = default_names(self.deployment)
            fix = ("remove stream= and subject_prefix= from HOMEFEED_BUS_URL to use this"
                   f" deployment's own stream ({own_stream}), or point HOMEFEED_DATABASE_URL at"
                   f" the database of deployment {claimed_by}")
        else:  # two databases upgraded with events, both on the legacy default names
            own_stream, own_prefix = default_names(Deployment(self.deployment_id or ""))
            fix = (f"the two databases predate deployment ids and shared {LEGACY_STREAM}; give"
                   f" this one its own stream: HOMEFEED_BUS_URL=...?stream={own_stream}"
                   f"&subject_prefix={own_prefix}")
        return (f"the NATS stream {self.stream} belongs to deployment {claimed_by}, and this"
                f" database is deployment {self.deployment_id}: {fix}")

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
            await self._ensure_consumer(checked_name(consumer))
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

    # -- answering delivered messages ----------------------------------------------------
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
        except TRANSIENT + (nats.errors.ConnectionClosedError,) as exc:
            raise Unavailable(f"{what} of {len(todo)} messages failed: {exc!r}") from exc


def message_of(e: Event) -> Msg:
    """The JetStream message an event was fetched as (its ack handle)."""
    m = e.ack_handle
    if not isinstance(m, Msg):
        raise ValueError(f"event {e.seq} was not fetched from JetStream (no message to acknowledge)")
    return m
