"""The event consumers: fan-out (timeline cache), indexer (search index) and notifier
(notifications, in the system of record); webhooks and mailer (issue 12) are registered
beside them (``Consumers.register``).

Each consumer fetches a batch of outbox events in commit order, applies it with idempotent
handlers, then acknowledges it. A crash between applying and acknowledging redelivers the
batch, which changes nothing. A batch that fails is retried with backoff, never skipped.

A backend outage is not the event's fault. When a handler fails with ``Unavailable`` (or an
``OSError``: a connection the adapter did not translate), the consumer keeps the batch in
hand (``in_progress``, so that JetStream does not redeliver it, which would spend its
``max_deliver``) and applies it again with capped exponential backoff (``OUTAGE_BACKOFF``)
until the backend is back: nothing is isolated, counted towards the dead letters or
acknowledged meanwhile. One warning per consumer and outage, one line when it resumes.
Any other failure is the event's (see ``_isolate``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Coroutine, Sequence

from homefeed.aio import wait_for
from homefeed.domain import model
from homefeed.domain.errors import Unavailable
from homefeed.domain.feed_rules import is_indexed
from homefeed.domain.model import Event, Notification, Post
from homefeed.loop_slice import LoopSlice
from homefeed.ports import ConsumerLeaderFactory, EventStream, SearchIndex, background_writes
from homefeed.service_layer.feed import FeedManager, Pushed

log = logging.getLogger("homefeed.consumers")

FANOUT = "fanout"
INDEXER = "indexer"
NOTIFIER = "notifier"
#: The webhooks consumer (service_layer.webhooks) and the notification mailer
#: (service_layer.mailer): not built into ``Consumers``, ``bootstrap.build`` registers them.
WEBHOOKS = "webhooks"
MAILER = "mailer"
#: Every consumer of the event stream, in the order they are started: the one list that
#: the worker roles, ``/healthz``, ``/metrics`` and the admin ops' ``consumer`` name.
CONSUMERS = (FANOUT, INDEXER, NOTIFIER, WEBHOOKS, MAILER)
BATCH = 256
#: Failures of one event before it goes to the dead letters (where the stream has them).
MAX_ATTEMPTS = 5
#: Backoff (first, cap) in seconds while a backend is unavailable.
OUTAGE_BACKOFF = (0.1, 2.0)
#: Authors whose followers the fan-out reads in one query (see ``fan_out``): one read of
#: 25 authors was up to 4.4 ms of the loop (a heavy tail of followers).
FOLLOWERS_READ = 32


def post_of(d: dict[str, Any]) -> Post:
    """The post a ``post_created`` event describes (replies and boosts included)."""
    return Post(d["post_id"], d["author_id"], d.get("author_handle", ""), d.get("text", ""),
                d.get("visibility", "public"), in_reply_to_id=d.get("in_reply_to_id"),
                in_reply_to_account_id=d.get("in_reply_to_account_id"),
                reblog_of_id=d.get("reblog_of_id"))


def is_outage(exc: BaseException) -> bool:
    """A failure that says a backend is away, not that the event is bad."""
    return isinstance(exc, (Unavailable, OSError))


class Consumers:
    def __init__(self, feed: FeedManager, stream: EventStream, index: SearchIndex) -> None:
        self.feed = feed
        self.stream = stream
        self.index = index
        self.handlers: dict[str, Callable[[Sequence[Event]], Awaitable[None]]] = {
            FANOUT: self.fan_out,
            INDEXER: self.index_events,
            NOTIFIER: self.notify,
        }
        self._tasks: list[asyncio.Task] = []
        self._stopping: asyncio.Event | None = None  # created on start (needs a loop)
        self.failures: dict[str, int] = {name: 0 for name in self.handlers}
        self.running: tuple[str, ...] = ()
        self.dead_lettered: dict[str, int] = {}
        self._busy: set[str] = set()  # consumers fetching or applying a batch right now
        #: Called with each fan-out event once applied (metrics hook, set by entrypoints).
        self.on_applied: Callable[[Event], None] | None = None
        #: Called with the notifications the notifier inserted, after each batch is synced
        #: (the live bus: the ``notification`` frames of the streams).
        self.on_notified: Callable[[Sequence[Notification]], None] | None = None
        self._attempts: dict[tuple[str, int], int] = {}
        #: consumer -> monotonic time its current outage began (one warning per outage)
        self._outages: dict[str, float] = {}
        self.outage_backoff = OUTAGE_BACKOFF
        #: consumer -> a task run beside it while it runs, given the stop event (the
        #: webhook dispatcher beside ``webhooks``, the mail sender beside ``mailer``).
        self.companions: dict[str, Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = {}
        #: Several processes may apply one consumer's events at once: workers sharing a
        #: durable JetStream consumer. (An outbox stream is read by one process at a time:
        #: the embedded profile's own, or the leader of ``exclusive`` consumers.) The fan-out
        #: then checks its pushes against the unfollows committed meanwhile
        #: (``FeedManager.unpush_unfollowed``).
        self.parallel = stream.backend != "outbox"

    def register(
        self, name: str, handler: Callable[[Sequence[Event]], Awaitable[None]],
        companion: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Add a consumer (before ``start``): its batch handler, and a task to run beside it
        in every process that runs it, if any."""
        self.handlers[name] = handler
        self.failures.setdefault(name, 0)
        if companion is not None:
            self.companions[name] = companion

    # -- handlers -------------------------------------------------------------------------
    async def fan_out(self, events: Sequence[Event]) -> None:
        feed = self.feed
        created: dict[int, int] = {}  # post id -> author id
        follows: dict[tuple[int, int], bool] = {}  # (follower, followee) -> the last event's say
        # The authors' followers in one read for the batch (issue 14: a read per post was a
        # fifth of this consumer's CPU). Read before the events are applied, as a read per
        # post was: either way the records may be ahead of the events, and every follow or
        # unfollow committed meanwhile has its own event, applied after this one.
        authors = list({e.data["author_id"]: None for e in events if e.type == model.POST_CREATED})
        followers: dict[int, list[int]] = {}
        pushed: Pushed | None = {} if self.parallel else None
        slice_ = LoopSlice()
        if len(authors) > 1:
            # In reads of FOLLOWERS_READ authors, with the slice's check between them.
            for i in range(0, len(authors), FOLLOWERS_READ):
                followers.update(await feed.followers_to_push(authors[i : i + FOLLOWERS_READ]))
                await slice_.pause()
        for e in events:
            await slice_.pause()  # a post's pushes at a time, in slices of the loop's time
            d = e.data
            if e.type == model.POST_CREATED:
                author = d["author_id"]
                await feed.fan_out_post(post_of(d), followers.get(author), pushed)  # None: not read yet
                created[d["post_id"]] = author
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
        if pushed:  # other workers apply newer events meanwhile: unfollows among them
            await feed.unpush_unfollowed(pushed)
        for post_id in await self._gone(created):  # deleted meanwhile: pushed for nothing
            await slice_.pause()
            await feed.fan_out_delete(post_id, created[post_id])
        for (follower, followee), followed in follows.items():
            await slice_.pause()
            now = followee in set(await feed.store.following_ids(follower))
            if now and not followed:  # an old unfollow after a newer follow
                await feed.merge_followee(follower, followee)
            elif followed and not now:  # an old follow after a newer unfollow
                await feed.unmerge_followee(follower, followee)

    async def _gone(self, post_ids: Sequence[int] | dict[int, int]) -> list[int]:
        """Those of ``post_ids`` that the record store no longer has."""
        if not post_ids:
            return []
        alive = await self.feed.store.present_post_ids(list(post_ids))
        return [i for i in post_ids if i not in alive]

    async def index_events(self, events: Sequence[Event]) -> None:
        # Apply in order, but batch consecutive inserts: one transaction for many posts.
        pending: list[Post] = []
        for e in events:
            if e.type == model.POST_CREATED:
                d = e.data
                post = post_of(d)
                if is_indexed(post):  # not a boost: a boost has no words of its own
                    pending.append(post)
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

    async def notify(self, events: Sequence[Event]) -> None:
        """The notifier: notifications are a function of the records (docs/conversations.md),
        so a batch only names the *causes* its events touch, and the record store makes the
        notifications of those causes equal what the records say now (inserting what exists,
        deleting what is gone). A redelivered, late or out-of-order event changes nothing
        wrong: whatever order the events come in, the records have the last word."""
        post_ids: dict[int, None] = {}
        favourites: dict[tuple[int, int], None] = {}
        follows: dict[tuple[int, int], None] = {}
        for e in events:
            d = e.data
            if e.type in (model.POST_CREATED, model.POST_DELETED):
                post_ids[d["post_id"]] = None
            elif e.type in (model.FAVOURITED, model.UNFAVOURITED):
                favourites[(d["user_id"], d["post_id"])] = None
            elif e.type in (model.FOLLOWED, model.UNFOLLOWED):
                follows[(d["follower_id"], d["followee_id"])] = None
        if not (post_ids or favourites or follows):
            return
        inserted = await self.feed.store.sync_notifications(
            post_ids=list(post_ids), favourites=list(favourites), follows=list(follows))
        if inserted and self.on_notified is not None:
            self.on_notified(inserted)

    # -- running --------------------------------------------------------------------------
    def start(self, names: Sequence[str] | None = None, leader: ConsumerLeaderFactory | None = None) -> None:
        """Run the named consumers as tasks. ``leader(name)``, if given, is an async context
        manager held while consuming: one process at a time runs that consumer."""
        self._stopping = asyncio.Event()
        for name in names if names is not None else tuple(self.handlers):
            if name not in self.handlers:
                raise ValueError(f"unknown consumer {name!r}")
            coro = self._run(name) if leader is None else self._run_as_leader(name, leader)
            self._tasks.append(asyncio.create_task(coro, name=f"consumer-{name}"))
            if name in self.companions:
                self._tasks.append(asyncio.create_task(self.companions[name](self._stopping),
                                                       name=f"companion-{name}"))
        self.running = tuple(names if names is not None else self.handlers)

    async def _run_as_leader(self, name: str, leader: ConsumerLeaderFactory) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            try:
                async with leader(name):
                    await self._run(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_outage(exc):  # PostgreSQL away: the lock's session went with it
                    log.warning("consumer %s lost its leadership (%s); competing again", name, exc)
                else:
                    log.exception("consumer %s lost its leadership; competing again", name)
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        """Finish the batch in hand, acknowledge it, then stop. A consumer fetching is let
        finish the fetch (at most its timeout): what the stream delivered is applied and
        acknowledged, not left for a redelivery after ``ack_wait``. A consumer that holds
        nothing (waiting for leadership, or for the stream after a failed fetch) is
        cancelled at once."""
        self.running = ()
        if self._stopping is not None:
            self._stopping.set()
        for t in self._tasks:
            name = t.get_name().removeprefix("consumer-")
            if t.get_name().startswith("companion-"):
                continue  # it stops by itself once its work in flight is recorded (a few seconds)
            if name in self._busy:
                log.info("consumer %s: stopping after the fetch or batch in progress", name)
            else:
                t.cancel()
        for t in self._tasks:
            try:
                await wait_for(t, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                t.cancel()
        self._tasks = []

    async def _run(self, name: str) -> None:
        # This task's writes (the index, notifications, acknowledgements) keep derived data
        # in step: the record store may let them ride the next commit a request waits for.
        background_writes.set(True)
        backoff = 0.05
        assert self._stopping is not None
        final = False
        while not final:
            # Once stopping, a last round takes no new events: only those the stream already
            # delivered here that no fetch returned (a JetStream pull goes on delivering
            # after its fetch returned), so that they are applied and acknowledged too.
            final = self._stopping.is_set()
            self._busy.add(name)  # from the fetch on, a batch may be in hand: stop() waits
            try:
                if final:
                    events = await self._delivered(name)
                else:
                    events = await self.stream.fetch(name, BATCH, timeout=0.5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._busy.discard(name)
                if is_outage(exc):
                    self._outage_began(name, exc, "cannot fetch")
                    backoff = min(max(backoff, self.outage_backoff[0]), self.outage_backoff[1])
                else:
                    log.exception("consumer %s could not fetch; retrying in %.2fs", name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._outage_ended(name)
            if not events:
                self._busy.discard(name)
                continue
            try:
                try:
                    applied = await self._apply(name, events)
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
                if not applied:  # stopping during an outage: left for a redelivery
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

    async def _delivered(self, name: str) -> list[Event]:
        """Events delivered to this process that no fetch returned (streams that push ahead
        of the fetches have them: JetStream)."""
        return await self.stream.take_delivered(name)

    async def _apply(self, name: str, events: Sequence[Event]) -> bool:
        """Apply ``events``, riding out backend outages: while the handler fails with an
        outage the batch stays in hand and is applied again, with capped backoff, until it
        works. Returns False if the consumer is stopping meanwhile (nothing acknowledged:
        the batch is redelivered). Any other failure is raised: the event's fault."""
        delay = 0.0
        while True:
            try:
                await self._handle(name, events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._outage_began(name, exc, f"holds {len(events)} events")
                if self._stopping is not None and self._stopping.is_set():
                    return False
                await self._keep_in_hand(events)
                first, cap = self.outage_backoff
                delay = first if not delay else min(delay * 2, cap)
                await self._pause(delay)
                continue
            self._outage_ended(name)
            return True

    async def _handle(self, name: str, events: Sequence[Event]) -> None:
        """Run ``name``'s handler on ``events``. On a stream that redelivers what is not
        acknowledged within a deadline (JetStream's ``ack_wait``), report the batch in
        progress every third of it while the handler runs: a batch slowed down by a loaded
        machine is not taken for a dead worker's, given to another worker to apply a second
        time beside this one (out of order with newer events) and counted towards the
        events' ``max_deliver``. A worker that dies stops reporting, so its batch is
        redelivered after the deadline, as before."""
        handler = self.handlers[name]
        after = self.stream.redelivery_after
        if not after:
            await handler(events)
            return
        beat = asyncio.create_task(self._report_progress(events, after / 3))
        try:
            await handler(events)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)

    async def _report_progress(self, events: Sequence[Event], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self._keep_in_hand(events)

    async def _keep_in_hand(self, events: Sequence[Event]) -> None:
        """Tell the stream the events are being worked on (JetStream resets their
        ``ack_wait``), so that an outage longer than ``ack_wait`` spends no delivery."""
        try:
            await self.stream.in_progress(events)
        except asyncio.CancelledError:
            raise
        except Exception:  # the bus is away too: redelivered after ack_wait, and applied again
            pass

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the consumer is asked to stop."""
        if self._stopping is None:
            await asyncio.sleep(seconds)
            return
        try:
            await wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _outage_began(self, name: str, exc: BaseException, doing: str) -> None:
        if name not in self._outages:
            self._outages[name] = time.monotonic()
            log.warning("consumer %s %s: a backend is unavailable (%s); retrying with backoff up to"
                        " %gs until it is back (an outage is not the events' fault)",
                        name, doing, exc, self.outage_backoff[1])

    def _outage_ended(self, name: str) -> None:
        since = self._outages.pop(name, None)
        if since is not None:
            log.warning("consumer %s resumed after %.1f s", name, time.monotonic() - since)

    async def _isolate(self, name: str, events: Sequence[Event], backoff: float) -> None:
        """Apply a failed batch one event at a time, in order, to find the event that fails.
        It is retried (redelivered) until it has failed ``MAX_ATTEMPTS`` times, then moved
        to the dead letters where the stream keeps them, so one poison event does not stop
        a consumer for ever; events after it wait (order is kept). An outage meanwhile is
        ridden out (``_apply``), never counted against an event."""
        for i, e in enumerate(events):
            try:
                if not await self._apply(name, [e]):
                    return  # stopping: the rest is redelivered
                await self.stream.ack(name, [e])
                self._attempts.pop((name, e.seq), None)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts = max(e.deliveries, self._attempts.get((name, e.seq), 0) + 1)
                self._attempts[(name, e.seq)] = attempts
                if attempts >= MAX_ATTEMPTS:
                    log.error("consumer %s: event %s failed %d times; dead-lettered: %r", name, e.seq, attempts, exc)
                    await self.stream.dead_letter(name, e, repr(exc))
                    self._attempts.pop((name, e.seq), None)
                    self.dead_lettered[name] = self.dead_lettered.get(name, 0) + 1
                    continue
                await self.stream.nak(name, events[i:], delay=backoff)
                return

    async def run_once(self, name: str, max_events: int = BATCH) -> int:
        """Apply one batch synchronously (for tests and batch jobs without running tasks)."""
        events = await self.stream.fetch(name, max_events, timeout=0)
        if events:
            await self.handlers[name](events)
            await self.stream.ack(name, events)
        return len(events)

    async def lags(self) -> dict[str, int]:
        """Each consumer's lag, read in one go (``EventStream.lags``)."""
        return await self.stream.lags(list(self.handlers))

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
