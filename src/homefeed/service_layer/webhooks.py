"""Webhooks: the ``webhooks`` consumer turns events into deliveries, the dispatcher sends
them (Standard Webhooks), and the operator's commands manage subscriptions.

Why two parts. The consumer runs in event order and must never wait for the outside
world (a slow endpoint would hold back every later event, and the consumer's lag). So it
only *records* what is to be sent: one delivery row per (subscription, event, part),
inserted idempotently (a redelivered event inserts nothing), with the body rendered once
(every attempt sends the same bytes, the same ``webhook-id``). The dispatcher then sends
the due deliveries, each in its own task, and writes each outcome back: delivered, due
again later (``HOMEFEED_WEBHOOK_RETRY_SCHEDULE``, jittered), dead (the schedule is spent:
``homefeed dead-letters`` lists and retries it), or gone (a 410 disables the
subscription). A process that dies mid-attempt leaves a lease that ends by itself: the
delivery is sent again, with the same ``webhook-id`` (at least once).

Isolation. Each endpoint (scheme, host, port) has at most ``per_endpoint`` attempts in
flight and a circuit breaker: after ``BREAKER_FAILURES`` consecutive failures that cost
time or say "overloaded" (no answer within the timeout, no connection, 429, 503; a quick
500 only follows the retry schedule) its deliveries are not claimed for a cool-down
(from the schedule's first delay, doubling up to ``BREAKER_MAX``), then one attempt
probes it. Deliveries waiting for an open circuit keep
their attempts and their place: the breaker delays, never drops. Other endpoints' claims
exclude the blocked one, so a dead endpoint costs them nothing. The fan-out is a separate
consumer and never waits for this one; where both run in one process (the embedded
profile, ``worker --role all``) they share its event loop, so this consumer and the
dispatcher let the fan-out's backlog go first (``fanout_first``, bounded to
``YIELD_MAX`` seconds at a time so that webhooks never starve).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import orjson

from homefeed.adapters.http_delivery import DeliveryError, HttpSender, TargetRefused
from homefeed.aio import GroupWrite
from homefeed.domain import model
from homefeed.domain.errors import InvalidInput, NotFound
from homefeed.domain.mastodon.content import extract_mentions
from homefeed.domain.webhooks import (ACCOUNT_CREATED, ATTEMPT_TIMEOUT, DEAD, FAVOURITE_CREATED,
                                      FOLLOW_CREATED, FOLLOW_DELETED, GONE, MENTION_CREATED,
                                      REBLOG_CREATED, ROTATION_OVERLAP_SECONDS, STATUS_CREATED,
                                      STATUS_DELETED, Delivery, NewDelivery, Subscription,
                                      committed_after, new_secret, parse_events, parse_retry_schedule,
                                      parse_target, retry_delay, signature_header)
from homefeed.domain.model import Event, Post
from homefeed.ports import WebhookStore
from homefeed.service_layer.consumers import WEBHOOKS, is_outage  # the consumer's name

if TYPE_CHECKING:
    from homefeed.config import Settings
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.webhooks")

#: Attempts in flight per endpoint, per process.
PER_ENDPOINT = 8
#: Attempts in flight per process.
MAX_IN_FLIGHT = 256
#: Consecutive failures of an endpoint that open its circuit.
BREAKER_FAILURES = 5
#: The circuit's first cool-down and its cap, in seconds.
BREAKER_FIRST, BREAKER_MAX = 5.0, 300.0
#: A claimed delivery is another process's to retry only after this (an attempt takes at
#: most ATTEMPT_TIMEOUT).
LEASE_SECONDS = ATTEMPT_TIMEOUT + 15.0
#: How often a dispatcher looks for due deliveries when nothing woke it (deliveries made or
#: retried by other processes).
POLL_SECONDS = 1.0
#: Seconds a stopping dispatcher waits for attempts still sending: the others are cut, their
#: leases end and they are sent again (at least once; the receiver may have had them).
STOP_GRACE = 5.0
#: Seconds a stopping dispatcher waits, beyond that, for attempts that were answered and are
#: writing their outcome: cutting one would send again what the receiver has acknowledged.
RECORD_GRACE = 30.0
#: Longest wait, at a time, for the fan-out of this process to catch up.
YIELD_MAX = 2.0
#: How often that wait asks for the fan-out's lag. Each ask is a count over the backlog in
#: the record store: at every 5 ms (as before), a worker under ~700 posts/s asked ~90 times
#: a second, ~313 µs of PostgreSQL each (``benchmarks/scaleout_posts.py``). A webhook sent
#: 50 ms after the fan-out caught up is as timely.
YIELD_POLL = 0.05
#: An endpoint is claimed for until it holds this many times its slots (queued + in flight):
#: work in hand for the next few attempts, without claiming what it cannot send soon.
QUEUE_ROUNDS = 4


def public_base_url(settings: Settings) -> str:
    """The base of the URLs that entities carry (``HOMEFEED_PUBLIC_URL``, else the address
    the server listens on)."""
    configured = getattr(settings, "public_url", "") or ""
    if configured:
        return configured.rstrip("/")
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def fanout_first(hf: Homefeed) -> Callable[[], Awaitable[None]]:
    """An awaitable gate: returns once the fan-out consumer of this process has no backlog
    (at once if it does not run here), or after ``YIELD_MAX`` seconds."""
    from homefeed.service_layer.consumers import FANOUT

    async def gate() -> None:
        if FANOUT not in hf.consumers.running:
            return
        deadline = time.monotonic() + YIELD_MAX
        while time.monotonic() < deadline:
            try:
                if await hf.stream.lag(FANOUT) == 0:
                    return
            except Exception:  # the stream is away: nothing to wait for
                return
            await asyncio.sleep(YIELD_POLL)

    return gate


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# events -> messages
# --------------------------------------------------------------------------------------------
class Renderer:
    """The webhook messages an event makes: ``(type, part, data)``, ``data`` the Mastodon
    entity as the client API renders it (``MastodonApi``)."""

    def __init__(self, hf: Homefeed) -> None:
        from homefeed.domain.mastodon.entities import Urls
        from homefeed.service_layer.mastodon import MastodonApi

        self.hf = hf
        self.api = MastodonApi(hf)
        self.urls = Urls(public_base_url(hf.settings))

    @staticmethod
    def types_of(event: Event) -> tuple[str, ...]:
        """The webhook types ``event`` may make (before looking anything up)."""
        t, d = event.type, event.data
        if t == model.POST_CREATED:
            if d.get("reblog_of_id"):
                return (REBLOG_CREATED,)
            return (STATUS_CREATED, MENTION_CREATED)
        if t == model.POST_DELETED:
            return () if d.get("reblog_of_id") else (STATUS_DELETED,)
        return {
            model.USER_REGISTERED: (ACCOUNT_CREATED,),
            model.FOLLOWED: (FOLLOW_CREATED,),
            model.UNFOLLOWED: (FOLLOW_DELETED,),
            model.FAVOURITED: (FAVOURITE_CREATED,),
        }.get(t, ())

    async def messages(self, event: Event, wanted: set[str]) -> list[tuple[str, int, Any]]:
        t, d = event.type, event.data
        out: list[tuple[str, int, Any]] = []
        try:
            if t == model.POST_CREATED and d.get("reblog_of_id"):
                if REBLOG_CREATED in wanted:
                    original = await self._post(int(d["reblog_of_id"]))
                    if original is not None:
                        out.append((REBLOG_CREATED, 0, {"account": await self._account(d["author_id"]),
                                                        "status": await self._status(original)}))
            elif t == model.POST_CREATED:
                post = _post_of(d)
                status = await self._status(post) if wanted & {STATUS_CREATED, MENTION_CREATED} else None
                if STATUS_CREATED in wanted:
                    out.append((STATUS_CREATED, 0, status))
                if MENTION_CREATED in wanted:
                    for uid in await self._mentioned(d):
                        out.append((MENTION_CREATED, uid, {"account": await self._account(uid), "status": status}))
            elif t == model.POST_DELETED and STATUS_DELETED in wanted:
                gone = _post_of(d)
                if not gone.author_handle:  # an event that does not carry the post as it was
                    author = await self.hf.store.user_by_id(gone.author_id)
                    gone = dataclasses.replace(gone, author_handle=author.handle if author else "")
                out.append((STATUS_DELETED, 0, await self._status(gone)))
            elif t == model.USER_REGISTERED and ACCOUNT_CREATED in wanted:
                out.append((ACCOUNT_CREATED, 0, await self._account(d["user_id"])))
            elif t in (model.FOLLOWED, model.UNFOLLOWED):
                kind = FOLLOW_CREATED if t == model.FOLLOWED else FOLLOW_DELETED
                if kind in wanted:
                    out.append((kind, 0, {"account": await self._account(d["follower_id"]),
                                          "target_account": await self._account(d["followee_id"])}))
            elif t == model.FAVOURITED and FAVOURITE_CREATED in wanted:
                liked = await self._post(int(d["post_id"]))
                if liked is not None:
                    out.append((FAVOURITE_CREATED, 0, {"account": await self._account(d["user_id"]),
                                                       "status": await self._status(liked)}))
        except NotFound:  # an account gone meanwhile: nothing to describe
            return out
        return out

    async def _account(self, user_id: int) -> dict[str, Any]:
        return await self.api.account(self.urls, int(user_id))

    async def _status(self, post: Post) -> dict[str, Any]:
        return await self.api.status(self.urls, post, viewer=None)  # as nobody in particular sees it

    async def _post(self, post_id: int) -> Post | None:
        got = await self.hf.store.posts_by_ids([post_id])
        return got[0] if got else None

    async def _mentioned(self, d: dict[str, Any]) -> list[int]:
        """The accounts a post mentions: ``mention_ids`` as the record store resolved them
        when the post was written; for events written before it carried them, resolved
        from the text now."""
        if "mention_ids" in d:
            return [int(i) for i in d["mention_ids"] if int(i) != d["author_id"]]
        out = []
        for name in extract_mentions(d.get("text", ""), self.urls.host):
            user = await self.hf.store.user_by_handle(name)
            if user is not None and user.id != d["author_id"] and user.id not in out:
                out.append(user.id)
        return out


def _post_of(d: dict[str, Any]) -> Post:
    return Post(int(d["post_id"]), int(d["author_id"]), d.get("author_handle", ""), d.get("text", ""),
                d.get("visibility", "public"), in_reply_to_id=d.get("in_reply_to_id"),
                in_reply_to_account_id=d.get("in_reply_to_account_id"), reblog_of_id=d.get("reblog_of_id"))


class WebhookConsumer:
    """The ``webhooks`` consumer's handler: events -> delivery rows (idempotent)."""

    def __init__(self, hf: Homefeed, store: WebhookStore, dispatcher: "Dispatcher | None" = None) -> None:
        self.store = store
        self.renderer = Renderer(hf)
        self.dispatcher = dispatcher
        #: As ``Dispatcher.yield_to``: the fan-out of this process goes first.
        self.yield_to: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, events: Sequence[Event]) -> None:
        candidates = [e for e in events if Renderer.types_of(e)]
        if not candidates:
            return
        subs = [s for s in await self.store.subscriptions() if s.enabled]
        if not subs:  # nothing to render: no reason to let the fan-out go first
            return
        if self.yield_to is not None:
            await self.yield_to()
        rows: list[NewDelivery] = []
        stamp = _now_iso()
        for e in candidates:
            takers = [s for s in subs if set(s.events) & set(Renderer.types_of(e)) and committed_after(s.after, e.seq)]
            if not takers:
                continue
            wanted = {t for s in takers for t in s.events}
            for type_, part, data in await self.renderer.messages(e, wanted):
                body = orjson.dumps({"type": type_, "timestamp": stamp, "data": data})
                rows.extend(NewDelivery(s.id, e.seq, part, type_, body) for s in takers if type_ in s.events)
        if rows and await self.store.add_deliveries(rows, time.time()) and self.dispatcher is not None:
            self.dispatcher.wake()


# --------------------------------------------------------------------------------------------
# sending
# --------------------------------------------------------------------------------------------
@dataclass
class _Endpoint:
    in_flight: int = 0
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = BREAKER_FIRST
    subscriptions: set[int] = field(default_factory=set)
    #: Claimed deliveries waiting for a free slot: (delivery, when claimed).
    queue: deque[tuple[Delivery, float]] = field(default_factory=deque)


class Dispatcher:
    """Sends due deliveries; runs in every process that runs the ``webhooks`` consumer."""

    def __init__(self, store: WebhookStore, sender: HttpSender, schedule: Sequence[float], *,
                 per_endpoint: int = PER_ENDPOINT, release_leases: bool = False,
                 poll: float = POLL_SECONDS, rng: random.Random | None = None) -> None:
        self.store = store
        self.sender = sender
        self.schedule = tuple(schedule)
        self.per_endpoint = per_endpoint
        self.release_at_start = release_leases
        self.poll = poll
        self.rng = rng or random.Random()
        self._wake = asyncio.Event()
        #: The circuit's first cool-down: the schedule's first delay (a failed delivery waits
        #: that long anyway), at most BREAKER_FIRST.
        self.breaker_first = min(BREAKER_FIRST, self.schedule[0]) if self.schedule else BREAKER_FIRST
        self._endpoints: dict[str, _Endpoint] = {}
        #: Awaited before each claim: returns once work of higher priority in this process
        #: (the fan-out's backlog) is done, or after a bound (set by bootstrap).
        self.yield_to: Callable[[], Awaitable[None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Attempts that were answered and are writing their outcome (never cut at a stop).
        self._recording: set[asyncio.Task[None]] = set()
        self.stop_grace, self.record_grace = STOP_GRACE, RECORD_GRACE
        #: Record a success: successes that come while a write is under way share the next
        #: write, one statement for many, each returning once its own row is written.
        self._delivered: GroupWrite[int] = GroupWrite(
            lambda ids: self.store.delivered(ids, time.time()), "homefeed-webhooks-delivered")
        self._stopping = False  # run() is ending: no new attempt starts
        #: What this process did (metrics): delivered, failed, dead, gone, postponed.
        self.counts: dict[str, int] = {"delivered": 0, "failed": 0, "dead": 0, "gone": 0, "cut_at_stop": 0}

    def wake(self) -> None:
        self._wake.set()

    def _endpoint(self, origin: str) -> _Endpoint:
        ep = self._endpoints.get(origin)
        if ep is None:
            ep = self._endpoints[origin] = _Endpoint(cooldown=self.breaker_first)
        return ep

    def _limit(self, ep: _Endpoint) -> int:
        return 1 if ep.failures >= BREAKER_FAILURES else self.per_endpoint  # half-open: one probe

    def _blocked(self, now: float) -> list[int]:
        """Subscriptions whose endpoint has enough claimed work in hand (a few rounds of its
        slots) or whose circuit is open: not claimed this round."""
        out: list[int] = []
        for ep in self._endpoints.values():
            if ep.in_flight + len(ep.queue) >= QUEUE_ROUNDS * self._limit(ep) or ep.open_until > now:
                out.extend(ep.subscriptions)
        return out

    def _pump(self, ep: _Endpoint, origin: str) -> int:
        """Start queued deliveries of ``ep`` while it has free slots and a closed circuit. A
        delivery whose lease would end before its attempt could is let go unattempted (its
        lease ends; it is claimed again, attempts untouched)."""
        started = 0
        if self._stopping:  # what is queued keeps its lease: claimed again after it ends
            return started
        now = time.time()
        while ep.queue and ep.in_flight < self._limit(ep) and ep.open_until <= now:
            d, claimed_at = ep.queue.popleft()
            if claimed_at + LEASE_SECONDS - ATTEMPT_TIMEOUT - 1 < now:
                continue
            ep.in_flight += 1
            task = asyncio.create_task(self._attempt(d, origin, ep), name=f"webhook-{d.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set; then waits for the attempts in flight to record their
        outcome (``_stop_attempts``), starting no new ones meanwhile: an attempt started then
        would outlive the store, its success unrecorded and the message sent again."""
        self._stopping = False
        if self.release_at_start:
            try:
                await self.store.release_leases()
            except Exception:
                log.exception("webhooks: could not release old leases (they end by themselves)")
        backoff = 0.1
        while not stopping.is_set():
            self._wake.clear()
            try:
                claimed = await self._round()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again, with backoff
                log.warning("webhooks: cannot claim deliveries (%s); retrying", exc)
                await _sleep_or(stopping, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if claimed:
                await asyncio.sleep(0)
                continue
            await _sleep_or(stopping, self.poll, self._wake)
        self._stopping = True
        await self._stop_attempts()

    async def _stop_attempts(self) -> None:
        """A few seconds for the attempts in flight; then those still sending are cut (sent
        again once their leases end, and counted in ``counts["cut_at_stop"]``), while those
        already answered get to write their outcome: cutting one of those would send again a
        message its receiver has acknowledged."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(list(self._tasks), timeout=self.stop_grace)
        cut = [t for t in pending if t not in self._recording]
        for t in cut:
            t.cancel()
        if cut:
            self.counts["cut_at_stop"] += len(cut)
            log.warning("webhooks: %d attempts still sending after %gs were cut at stop; they are"
                        " sent again once their leases end", len(cut), self.stop_grace)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.record_grace)
            for t in late:  # the database does not answer: the lease ends, it is sent again
                t.cancel()
            if late:
                self.counts["cut_at_stop"] += len(late)
                log.warning("webhooks: %d outcomes not written %gs after stop; sent again once"
                            " their leases end", len(late), self.record_grace)

    async def _round(self) -> int:
        """Claim what endpoints with room can take, queue it per endpoint, start what free
        slots allow; how many deliveries were claimed."""
        if self.yield_to is not None:
            await self.yield_to()
        in_hand = sum(ep.in_flight + len(ep.queue) for ep in self._endpoints.values())
        room = MAX_IN_FLIGHT - in_hand
        if room <= 0:
            await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
            return 1
        now = time.time()
        claimed = await self.store.claim_deliveries(now, min(room, 64), QUEUE_ROUNDS * self.per_endpoint,
                                                    self._blocked(now), LEASE_SECONDS)
        for d in claimed:
            try:
                origin = parse_target(d.url).origin
            except InvalidInput as exc:  # cannot happen for a URL that was accepted; no retry helps
                await self.store.attempt_failed(d.id, now, None, str(exc), DEAD)
                continue
            ep = self._endpoint(origin)
            ep.subscriptions.add(d.subscription_id)
            ep.queue.append((d, now))
        for origin, ep in self._endpoints.items():  # a circuit that closed meanwhile too
            if ep.queue:
                self._pump(ep, origin)
        return len(claimed)

    async def _attempt(self, d: Delivery, origin: str, ep: _Endpoint) -> None:
        released = False
        me = asyncio.current_task()  # (taken now: a task dropped with its loop ends outside it)

        def release() -> None:
            """The endpoint's slot is free once it answered: the next attempt starts while
            this one's outcome is written."""
            nonlocal released
            if not released:
                released = True
                ep.in_flight -= 1
                self._pump(ep, origin)
                if len(ep.queue) <= self._limit(ep) * QUEUE_ROUNDS // 2:
                    self.wake()  # refill before the endpoint runs dry

        try:
            ts = int(time.time())
            headers = {"webhook-id": d.msg_id, "webhook-timestamp": str(ts),
                       "webhook-signature": signature_header(d.secrets, d.msg_id, ts, d.body)}
            status: int | None = None
            error = ""
            endpoint_failed = False
            try:
                status = await self.sender.post(d.url, headers, d.body)
            except TargetRefused as exc:
                error = str(exc)
            except DeliveryError as exc:
                error, endpoint_failed = str(exc), True
            except Exception as exc:  # a bug here must not stop the dispatcher
                log.exception("webhooks: delivery %s failed unexpectedly", d.id)
                error = f"{type(exc).__name__}: {exc}"
            now = time.time()
            if me is not None:
                self._recording.add(me)
            if status is not None and 200 <= status < 300:
                self._succeeded(ep)
                release()
                await self._delivered(d.id)
                self.counts["delivered"] += 1
                return
            if status == 410:
                self._succeeded(ep)  # the endpoint answers; it just wants no more
                release()
                await self.store.attempt_failed(d.id, now, None, "410 Gone: subscription disabled", GONE)
                await self.store.disable_subscription(
                    d.subscription_id, f"{d.url} answered 410 Gone at {_now_iso()}")
                self.counts["gone"] += 1
                log.warning("webhooks: subscription %s disabled: %s answered 410 Gone", d.subscription_id, d.url)
                return
            if status is not None:
                error = f"HTTP {status}"
                # an endpoint that answers at once costs nobody anything: only one that does
                # not answer, or says it is overloaded, is kept waiting by its circuit
                endpoint_failed = status in (429, 503)
            if endpoint_failed:
                self._failed(ep, now, origin)
            else:
                self._succeeded(ep)
            release()
            delay = retry_delay(self.schedule, d.attempts + 1, self.rng)
            if delay is None:
                await self.store.attempt_failed(d.id, now, None, error, DEAD)
                self.counts["dead"] += 1
                log.error("webhooks: delivery %s (%s, %s) dead-lettered after %d attempts: %s",
                          d.id, d.msg_id, d.url, d.attempts + 1, error)
            else:
                await self.store.attempt_failed(d.id, now, now + delay, error, "")
                self.counts["failed"] += 1
                self.wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the outcome could not be stored: the lease ends, it is sent again
            if is_outage(exc):  # the database is away: expected, and logged by the run loop too
                log.warning("webhooks: outcome of delivery %s not recorded (%s); sent again once its"
                            " lease ends", d.id, exc)
            else:
                log.exception("webhooks: could not record the outcome of delivery %s", d.id)
        finally:
            release()
            if me is not None:
                self._recording.discard(me)

    def _succeeded(self, ep: _Endpoint) -> None:
        ep.failures, ep.open_until, ep.cooldown = 0, 0.0, self.breaker_first

    @staticmethod
    def _failed(ep: _Endpoint, now: float, origin: str) -> None:
        ep.failures += 1
        if ep.failures >= BREAKER_FAILURES and ep.open_until <= now:  # (attempts that were in
            ep.open_until = now + ep.cooldown                          # flight when it opened
            log.warning("webhooks: %s failed %d times in a row: its deliveries wait %gs (circuit"  # do not
                        " open)", origin, ep.failures, ep.cooldown)     # extend it)
            ep.cooldown = min(ep.cooldown * 2, BREAKER_MAX)


async def _sleep_or(stopping: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> None:
    waits = [asyncio.ensure_future(stopping.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


# --------------------------------------------------------------------------------------------
# the operator's side: webhooks add|list|remove|rotate-secret, and the admin route
# --------------------------------------------------------------------------------------------
class WebhookAdmin:
    def __init__(self, store: WebhookStore, allow_private: bool) -> None:
        self.store = store
        self.allow_private = allow_private

    async def add(self, url: Any, events: Any) -> dict[str, Any]:
        """The new subscription as ``{"id", "url", "events", "secret"}``. InvalidInput for
        a bad URL or event list, or a target webhooks may not reach."""
        from homefeed.adapters.http_delivery import check_url

        if not isinstance(events, (str, list)):
            raise InvalidInput("events must be a comma-separated string or a list of event names")
        kinds = parse_events(events)
        if not isinstance(url, str):
            raise InvalidInput("url must be a string")
        try:
            await asyncio.to_thread(check_url, url, self.allow_private)
        except DeliveryError as exc:
            raise InvalidInput(f"webhook target refused: {exc}") from None
        sub = await self.store.add_subscription(url, kinds, new_secret())
        return sub.public(with_secret=True)

    async def list(self) -> list[dict[str, Any]]:
        return [s.public() for s in await self.store.subscriptions()]

    async def remove(self, subscription_id: Any) -> dict[str, Any]:
        sid = _sub_id(subscription_id)
        if not await self.store.remove_subscription(sid):
            raise NotFound(f"no webhook subscription has id {sid}")
        return {"id": str(sid), "removed": True}

    async def rotate_secret(self, subscription_id: Any) -> dict[str, Any]:
        sid = _sub_id(subscription_id)
        sub = await self.store.rotate_secret(sid, new_secret(), ROTATION_OVERLAP_SECONDS)
        if sub is None:
            raise NotFound(f"no webhook subscription has id {sid}")
        return {**sub.public(with_secret=True), "previous_secret_until": sub.previous_until}


def _sub_id(raw: Any) -> int:
    try:
        value = int(str(raw))
    except ValueError:
        raise InvalidInput("the subscription id must be an integer") from None
    if value < 1:
        raise InvalidInput("the subscription id must be an integer")
    return value


def retry_schedule(settings: Settings) -> tuple[float, ...]:
    return parse_retry_schedule(settings.webhook_retry_schedule)


__all__ = ["WEBHOOKS", "Renderer", "WebhookConsumer", "Dispatcher", "WebhookAdmin", "Subscription",
           "public_base_url", "retry_schedule"]
