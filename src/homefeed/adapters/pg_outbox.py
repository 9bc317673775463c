"""EventStream read straight from the PostgreSQL outbox table (scale-out profile without a
message bus, and the source the JetStream relay reads).

Why not ``ORDER BY seq``
------------------------
In SQLite one writer commits in ``seq`` order. In PostgreSQL many transactions run at once:
``seq`` (an identity column) is taken when the row is inserted, but rows become visible when
their transaction commits, in whatever order the commits happen. A reader that saw seq 11
committed may later see seq 10 appear (its transaction took the number first and committed
last). A consumer that remembered "everything up to 11" would skip 10 forever.

Position = (xid, seq), read behind the oldest running transaction
-----------------------------------------------------------------
Every outbox row stores the id of the transaction that wrote it,
``xid xid8 NOT NULL DEFAULT pg_current_xact_id()`` (64-bit, never wraps). A reader selects

    WHERE xid < pg_snapshot_xmin(pg_current_snapshot())  ORDER BY xid, seq

``pg_snapshot_xmin`` of the statement's own snapshot is the oldest transaction id still
running (in the whole cluster). Every transaction with a smaller xid has ended, committed
or rolled back, before that snapshot was taken, so its rows are either visible to this very
statement or never will be. The set of rows below that bound is therefore a *stable prefix*
of the order ``(xid, seq)``: no row can later appear inside it. A consumer's position is the
pair ``(xid, seq)`` of the last event it acknowledged (table ``consumer_offsets``), and it
reads strictly after that pair; since nothing can appear behind a position once it has been
delivered, nothing is ever skipped, and after an ack nothing is delivered again.

Order. ``(xid, seq)`` is the order in which transactions got their xid (at their first
write), not the order of their commits, and that is the order consumers see. It keeps causal
order: a transaction that acts on another's result (deleting a post, unfollowing after a
follow) read that result after it committed, and takes its own xid at its first write,
later still, hence a larger xid. Every write of ``PgRecordStore`` is a single statement
whose decisive write comes first, so this holds for every event type it emits. (What it
does not order is two independent transactions contending on a counter row: the
``followers_count`` carried in follow events may then arrive out of order; consumers read
counts from the store, never from events.)

Cost. An event is delivered only once every transaction that started writing before it has
ended: delivery waits behind the longest-running write transaction *in the cluster*, and
an idle-in-transaction session or a forgotten prepared transaction (2PC) stalls it until it
ends (``lag`` shows it growing). Keep write transactions short, and set
``idle_in_transaction_session_timeout`` on the server. Read this stream on the primary.

Waiting. ``fetch`` with a timeout waits for a wake-up (this process's commits, or a NOTIFY
on ``homefeed_outbox`` from any other, see ``PgDatabase``) and polls every
``poll_interval`` as a fallback. When a wake-up finds nothing deliverable (the new rows sit
behind an older running transaction, whose end sends no notification) it re-polls quickly,
backing off from 5 ms.

One read for every consumer of a process. The consumers of a worker read the same new
events right after the same commit; each reading them itself was a statement of the
primary per consumer and commit (issue 14's seventh pass). So the newest events are kept in
a shared tail, read once (``_read``, ``_refresh``) with the consumers' stored positions in
the same statement; a consumer far behind it reads the table itself. A consumer's position
is what it acknowledged, or the stored one as read by a refresh that began after that, so
a move of the stored position by another process (``homefeed replay``) is followed at the
next refresh; a move sends a NOTIFY, which makes one. The acknowledgements that the
consumers of a process make meanwhile are written together, in one statement.

Events. ``Event.seq`` encodes the position so that it grows in delivery order, as the port
promises, and stays a 63-bit integer (JSON, ``bigint`` and ``Nats-Msg-Id`` friendly):
``Event.seq = xid << 16 | k``, ``k`` being the rank of the row among its transaction's
outbox rows (0 for every write of ``PgRecordStore``, which appends exactly one). It is
unique and stable (the same for every consumer and every redelivery), so it is the relay's
``Nats-Msg-Id``. Limits: 65,536 events per transaction, and xids below 2**47 (at 100,000
write transactions per second, 44 years). ``Event.ack_handle`` is the position
``(xid, outbox seq)``; ``ack`` stores the greatest position of the batch. ``head()`` returns
the ``Event.seq`` of the last event of the stable prefix (0 if none) and
``seek(consumer, seq)`` moves a consumer just after the event ``seq`` (0: to the beginning);
``seek`` with an ``(xid, outbox seq)`` tuple works on positions.

Dead letters: as in the SQLite outbox stream (``homefeed.adapters.outbox_stream``), in the
table ``dead_letters``: ``dead_letter`` records the event and moves the consumer past it in
one statement; ``retry_dead_letter`` marks it, and ``fetch`` (looking at most every
``RETRY_POLL`` seconds, so a retry asked for by any process is seen) delivers marked events
before new ones; acknowledging one deletes it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Sequence

from homefeed.adapters.outbox_base import OutboxStreamBase
from homefeed.adapters.pg_db import NOTIFY_CHANNEL, LeaderLock, PgDatabase
from homefeed.aio import GroupWrite, wait_for
from homefeed.domain.model import Event
from homefeed.ports import DeadLetter
from homefeed.adapters.dead_letter_rows import dead_letter_from_row, retry_all

Position = tuple[int, int]  # (xid, outbox seq)
START: Position = (0, 0)
RANK_BITS = 16
MAX_RANK = (1 << RANK_BITS) - 1
MAX_XID = (1 << (63 - RANK_BITS)) - 1

# The consumer's position (or the start) and the stable bound, in the statement's snapshot.
_POS = """
pos AS (
    SELECT coalesce(o.xid, '0'::xid8) AS xid, coalesce(o.seq, 0) AS seq,
           pg_snapshot_xmin(pg_current_snapshot()) AS xmin
    FROM (SELECT 1) one LEFT JOIN consumer_offsets o ON o.consumer = %(c)s
)"""

# The next events after ``pos``, below the stable bound, with each one's rank in its
# transaction: row_number within the batch, plus, for the transaction the position is in
# (a previous batch ended inside it), the rows of it already consumed.
_BATCH = """batch AS (
    SELECT e.* FROM pos CROSS JOIN LATERAL (
        SELECT xid, seq, type, data FROM outbox
        WHERE (xid, seq) > (pos.xid, pos.seq) AND xid < pos.xmin
        ORDER BY xid, seq LIMIT %(n)s
    ) e
)"""
_RANKED = """b.xid::text::bigint, b.seq, b.type, b.data,
       row_number() OVER (PARTITION BY b.xid ORDER BY b.seq) - 1
       + CASE WHEN b.xid = pos.xid
              THEN (SELECT count(*) FROM outbox i WHERE i.xid = pos.xid AND i.seq <= pos.seq)
              ELSE 0 END
FROM batch b CROSS JOIN pos"""

# A consumer's next events, after its stored position.
_FETCH = f"""
WITH {_POS}, {_BATCH}
SELECT {_RANKED}
ORDER BY b.xid, b.seq
"""

# The same after a position given (the shared tail's end: ``_refresh``), with the stored
# positions of the consumers reading the tail in the same round trip: rows (0, xid, seq,
# type, data, rank) for the events, then (1, xid, seq, consumer, NULL, NULL).
_TAIL = f"""
WITH pos AS (
    SELECT %(x)s::text::xid8 AS xid, %(s)s::bigint AS seq,
           pg_snapshot_xmin(pg_current_snapshot()) AS xmin
), {_BATCH}
SELECT 0, {_RANKED}
UNION ALL
SELECT 1, o.xid::text::bigint, o.seq, o.consumer, NULL, NULL
FROM consumer_offsets o WHERE o.consumer = ANY(%(cs)s::text[])
ORDER BY 1, 2, 3
"""

_LAG = f"""
WITH {_POS}
SELECT count(*) FROM pos JOIN outbox e ON (e.xid, e.seq) > (pos.xid, pos.seq)
"""

# lag, plus the dead letters marked for retry
_LAG_AND_RETRIES = f"""
WITH {_POS}
SELECT (SELECT count(*) FROM pos JOIN outbox e ON (e.xid, e.seq) > (pos.xid, pos.seq))
     + (SELECT count(*) FROM dead_letters WHERE consumer = %(c)s AND retry)
"""

# ``_LAG_AND_RETRIES`` of several consumers in one statement (``lags``).
_LAGS = """
WITH pos AS (
    SELECT n.consumer, coalesce(o.xid, '0'::xid8) AS xid, coalesce(o.seq, 0) AS seq
    FROM unnest(%(cs)s::text[]) AS n(consumer)
    LEFT JOIN consumer_offsets o ON o.consumer = n.consumer
)
SELECT pos.consumer,
       (SELECT count(*) FROM outbox e WHERE (e.xid, e.seq) > (pos.xid, pos.seq))
     + (SELECT count(*) FROM dead_letters d WHERE d.consumer = pos.consumer AND d.retry)
FROM pos
"""

#: How often ``fetch`` looks for dead letters marked for retry (by any process).
RETRY_POLL = 1.0
#: Newest events kept decoded for every consumer of this process (``_read``): a few
#: batches' worth.
TAIL_KEEP = 4096
#: Most events read into the tail at once.
TAIL_READ = 1024

_DEAD_COLS = "id, consumer, seq, type, data, reason, failures, retry, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

# Record a dead letter and move the consumer past the event, in one statement.
_DEAD_LETTER = """
WITH d AS (
    INSERT INTO dead_letters (consumer, seq, type, data, reason)
    VALUES (%(c)s, %(seq)s, %(type)s, %(data)s, %(reason)s)
)
INSERT INTO consumer_offsets (consumer, xid, seq) VALUES (%(c)s, %(xid)s::text::xid8, %(oseq)s)
ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, updated_at = now()
WHERE (consumer_offsets.xid, consumer_offsets.seq) < (excluded.xid, excluded.seq)
"""


class _Retry:
    """``Event.ack_handle`` of a dead letter delivered again: its row id."""

    __slots__ = ("id",)

    def __init__(self, id_: int) -> None:
        self.id = id_

_ACK = """
INSERT INTO consumer_offsets (consumer, xid, seq) VALUES (%s, %s::text::xid8, %s)
ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, updated_at = now()
WHERE (consumer_offsets.xid, consumer_offsets.seq) < (excluded.xid, excluded.seq)
"""

# ``_ACK`` for several consumers at once (``_acks_written``).
_ACKS = """
INSERT INTO consumer_offsets (consumer, xid, seq)
SELECT c, x::xid8, s FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS a(c, x, s)
ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, updated_at = now()
WHERE (consumer_offsets.xid, consumer_offsets.seq) < (excluded.xid, excluded.seq)
"""

# A move of a consumer's position wakes every process's consumers (NOTIFY, sent at its
# commit): the process running the consumer reads the stored positions again at its next
# look (``_read``) instead of serving it from the tail after the position it knew.
_SEEK = f"""
WITH moved AS (
    INSERT INTO consumer_offsets (consumer, xid, seq) VALUES (%s, %s::text::xid8, %s)
    ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, seq = excluded.seq, updated_at = now()
    RETURNING 1
)
SELECT pg_notify('{NOTIFY_CHANNEL}', '') FROM moved
"""

_HEAD = """
SELECT o.xid::text::bigint, o.seq,
       (SELECT count(*) FROM outbox i WHERE i.xid = o.xid AND i.seq < o.seq)
FROM outbox o
WHERE o.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY o.xid DESC, o.seq DESC LIMIT 1
"""

# The position of the event with a given Event.seq: the k-th row of transaction xid.
_LOCATE = """
SELECT seq FROM outbox WHERE xid = %s::text::xid8 ORDER BY seq OFFSET %s LIMIT 1
"""


def event_seq(xid: int, rank: int) -> int:
    """``Event.seq`` of the ``rank``-th outbox row of transaction ``xid``."""
    if rank > MAX_RANK or xid > MAX_XID:
        raise OverflowError(
            f"outbox row {rank} of transaction {xid} does not fit an event seq"
            f" (at most {MAX_RANK + 1} events per transaction, xids below 2**{63 - RANK_BITS})"
        )
    return (xid << RANK_BITS) | rank


class PgOutboxEventStream(OutboxStreamBase):
    def __init__(self, db: PgDatabase, poll_interval: float | None = None) -> None:
        self.db = db
        self.poll_interval = poll_interval if poll_interval is not None else db.poll_interval
        self._retry_due: dict[str, float] = {}  # consumer -> when to look for retries next
        #: The newest events, read once for every consumer of this process (``_read``):
        #: every stable row with ``_tail_lo < position <= _tail_hi``, in position order.
        self._tail: list[Event] = []
        self._tail_lo: Position | None = None  # None: nothing read yet
        self._tail_hi: Position = START
        #: Refreshes of the tail started so far; what ``_known`` is stamped with.
        self._epoch = 0
        #: ``db.wakes`` when the last refresh started (-1: read again at the next look).
        self._wakes_seen = -1
        #: When (loop time) the last refresh started.
        self._refreshed_at = float("-inf")
        self._refreshing: asyncio.Future[None] | None = None
        #: consumer -> (its position, the ``_epoch`` when it was known): set by its
        #: acknowledgements, and by every refresh started after them (which reads the
        #: stored positions, moved by ``homefeed replay`` from another process too).
        self._known: dict[str, tuple[Position, int]] = {}
        #: Acknowledgements, written together (``_acks_written``); each returns once its
        #: position is committed, as a lone write would.
        self._acks: GroupWrite[tuple[str, Position]] = GroupWrite(self._acks_written, "homefeed-pg-acks")

    @property
    def commits(self) -> int:
        """This process's commits that added events (see ``PgDatabase.outbox_commits``)."""
        return self.db.outbox_commits

    # -- EventStream ----------------------------------------------------------------------
    async def fetch(self, consumer: str, max_events: int, timeout: float) -> list[Event]:
        retried = await self._due_retries(consumer, max_events)
        if retried:
            return retried
        loop = asyncio.get_running_loop()
        # Without a wait, read what is committed now. Else what the tail has, read again if a
        # commit was heard of since, or if it was read longer than a poll interval ago: a
        # caller fetching again without acknowledging (a batch that failed) also sees, within
        # a poll interval, events held back at the last read by a running transaction.
        now = loop.time()
        events = await self._read(consumer, max_events, now if timeout <= 0 else now - self.poll_interval)
        if events or timeout <= 0:
            return events
        deadline = loop.time() + timeout
        quick: float | None = None  # set after a wake-up that found nothing deliverable
        async with self.db.outbox_waiter() as woken:
            waited_from: float | None = None
            while True:
                woken.clear()  # before reading: a commit during the read is not missed
                events = await self._read(consumer, max_events, waited_from)
                remaining = deadline - loop.time()
                if events or remaining <= 0:
                    return events
                wait = min(remaining, quick if quick is not None else self.poll_interval)
                # after the wait, a read started since counts as a fresh one (``_read``)
                waited_from = loop.time()
                try:
                    await wait_for(woken.wait(), wait)
                except asyncio.TimeoutError:
                    if quick is not None:
                        quick = min(quick * 2, self.poll_interval)
                else:
                    quick = 0.005

    async def ack(self, consumer: str, events: Sequence[Event]) -> None:
        retried = [e.ack_handle.id for e in events if isinstance(e.ack_handle, _Retry)]
        if retried:
            await self.db.write(
                "DELETE FROM dead_letters WHERE id = ANY(%s::bigint[])", (retried,), outbox=False
            )
            events = [e for e in events if not isinstance(e.ack_handle, _Retry)]
        if not events:
            return
        position = max([await self._position_of(e) for e in events])
        await self._acks((consumer, position))
        self._learn(consumer, position)

    async def _acks_written(self, acks: list[tuple[str, Position]]) -> None:
        """Store the positions acknowledged by this process's consumers meanwhile, in one
        statement (``_acks``: the consumers of a worker read the same events from the tail
        and acknowledge them at about the same time; each acknowledgement is a write of the
        primary)."""
        pending: dict[str, Position] = {}
        for consumer, position in acks:
            if consumer not in pending or pending[consumer] < position:
                pending[consumer] = position
        if len(pending) == 1:
            ((consumer, (xid, seq)),) = pending.items()
            await self.db.write(_ACK, (consumer, xid, seq), outbox=False)
        else:
            names = sorted(pending)  # rows locked in one order (no deadlock between writers)
            await self.db.write(_ACKS, (
                names, [str(pending[c][0]) for c in names], [pending[c][1] for c in names]
            ), outbox=False)

    async def lag(self, consumer: str) -> int:
        """Events committed after ``consumer``'s position, deliverable yet or not, plus its
        dead letters marked for retry."""
        row = await self.db.fetchone(_LAG_AND_RETRIES, {"c": consumer})
        return row[0] if row else 0

    async def lags(self, consumers: Sequence[str]) -> dict[str, int]:
        """Every consumer's ``lag`` in one statement (one round trip)."""
        if not consumers:
            return {}
        rows = await self.db.fetch(_LAGS, {"cs": list(dict.fromkeys(consumers))})
        return {name: int(n) for name, n in rows}

    # -- positions ------------------------------------------------------------------------
    async def head(self) -> int:
        """The ``Event.seq`` of the last event of the stable prefix (0 if none): ``seek``
        to it and a consumer receives exactly the events not yet deliverable or committed
        later."""
        row = await self.db.fetchone(_HEAD)
        return event_seq(row[0], row[2]) if row else 0

    async def position(self, consumer: str) -> Position:
        row = await self.db.fetchone(
            "SELECT xid::text::bigint, seq FROM consumer_offsets WHERE consumer = %s", (consumer,)
        )
        return (row[0], row[1]) if row else START

    async def seek(self, consumer: str, seq: int | Position) -> None:
        """Move ``consumer`` just after the event whose ``Event.seq`` is ``seq`` (0: to the
        beginning, to replay everything), or to a position ``(xid, outbox seq)``."""
        if isinstance(seq, tuple):
            position = (int(seq[0]), int(seq[1]))
        elif seq == 0:
            position = START
        else:
            position = await self._locate(seq)
        await self.db.write(_SEEK, (consumer, position[0], position[1]), outbox=False)
        if consumer in self._known:
            self._known[consumer] = (position, self._epoch)
        self.db.outbox_committed()  # this process's waiters: at once

    async def _position_of(self, event: Event) -> Position:
        handle = event.ack_handle
        if isinstance(handle, tuple) and len(handle) == 2:
            return handle
        return await self._locate(event.seq)  # an Event built elsewhere: look it up

    async def _locate(self, seq: int) -> Position:
        xid, rank = seq >> RANK_BITS, seq & MAX_RANK
        row = await self.db.fetchone(_LOCATE, (xid, rank))
        if row is None:
            raise ValueError(f"no outbox event has seq {seq}")
        return (xid, row[0])

    def _learn(self, consumer: str, position: Position) -> None:
        """``consumer`` is at least at ``position`` now (acknowledged, or dead-lettered)."""
        known = self._known.get(consumer)
        if known is not None and known[0] < position:
            self._known[consumer] = (position, self._epoch)

    async def _read(self, consumer: str, max_events: int, fresh_after: float | None) -> list[Event]:
        """The events after ``consumer``'s position, at most ``max_events``.

        The consumers of a worker (fan-out, indexer, notifier, webhooks, mailer) read the
        same new events, right after the same commit: read from the table one by one,
        that was a statement of the primary per consumer and commit (issue 14's seventh
        pass: ~52 µs of PostgreSQL each, more than the handlers of three of them). So, as
        the SQLite outbox stream does, the newest events are kept, read once for all of
        them, in ``_tail``. It is read further (``_refresh``) only once a commit was heard
        of since the last read (``db.wakes``), or when ``fresh_after`` is given and the
        last read started before it (after a poll interval: events no wake-up announced,
        held back by a running transaction or committed with no LISTEN running).

        The tail is a stable prefix (the module docstring): what a refresh read below its
        snapshot's bound is exactly what a consumer's own read at that moment would get.
        A consumer's position is the one it acknowledged, or the stored one read by a
        refresh started after that (so a move by ``homefeed replay`` from another process
        is followed, as before). A consumer behind the tail (replaying, or slower than
        ``TAIL_KEEP`` events) reads the table itself, from its stored position."""
        if max_events <= 0:
            return []
        known = self._known.get(consumer)
        if known is None:  # its first fetch here
            self._known[consumer] = known = (await self.position(consumer), self._epoch)
        if self._tail_lo is None:  # the first read: the tail starts where this consumer is
            self._tail_lo = self._tail_hi = known[0]
        while True:
            if self._stale(fresh_after):  # also before serving: the read has the positions
                full = await self._refresh(fresh_after)
                if full and self._known[consumer][0] > self._tail_hi:
                    # Far ahead of the tail (it began where a consumer far behind was): begin
                    # it here instead of reading every event between, TAIL_READ at a time.
                    self._tail, self._tail_lo = [], self._known[consumer][0]
                    self._tail_hi = self._tail_lo
            position = self._known[consumer][0]
            if position < self._tail_lo:
                return await self._read_own(consumer, max_events)
            if position < self._tail_hi:
                tail = self._tail
                start = bisect.bisect_right(tail, position, key=_position)
                if start < len(tail):
                    return tail[start : start + max_events]
            if not self._stale(fresh_after):
                return []

    def _stale(self, fresh_after: float | None) -> bool:
        return self._wakes_seen != self.db.wakes or (
            fresh_after is not None and self._refreshed_at < fresh_after
        )

    async def _refresh(self, fresh_after: float | None) -> bool:
        """Read the tail further, unless a read started since that makes it fresh enough
        (one read at a time, shared by the consumers that need it). True if this call's
        read stopped at ``TAIL_READ`` events (there may be more)."""
        while self._stale(fresh_after):
            if self._refreshing is not None:
                await asyncio.shield(self._refreshing)
                continue
            self._refreshing = done = asyncio.get_running_loop().create_future()
            try:
                return await self._refresh_once()
            finally:
                self._refreshing = None
                done.set_result(None)
        return False

    async def _refresh_once(self) -> bool:
        self._epoch += 1
        epoch = self._epoch
        self._wakes_seen = self.db.wakes
        self._refreshed_at = asyncio.get_running_loop().time()
        hi = self._tail_hi
        try:
            rows = await self.db.fetch(
                _TAIL, {"x": hi[0], "s": hi[1], "n": TAIL_READ, "cs": list(self._known)}
            )
        except BaseException:
            self._wakes_seen = -1  # not read: the next look reads again
            raise
        events: list[Event] = []
        for kind, xid, seq, type_, data, rank in rows:
            if kind == 0:
                events.append(Event(event_seq(xid, rank), type_, data, ack_handle=(xid, seq)))
            else:  # a stored position; kept only if no acknowledgement came since the read began
                known = self._known.get(type_)
                if known is not None and known[1] < epoch:
                    self._known[type_] = ((xid, seq), epoch)
        if events:
            self._tail.extend(events)
            self._tail_hi = events[-1].ack_handle
            if len(events) == TAIL_READ:
                self._wakes_seen = -1  # more to read: at the next look
        if len(self._tail) > TAIL_KEEP:  # forget the oldest half: consumers read near the head
            drop = len(self._tail) // 2
            self._tail_lo = self._tail[drop - 1].ack_handle
            del self._tail[:drop]
        return len(events) == TAIL_READ

    async def _read_own(self, consumer: str, max_events: int) -> list[Event]:
        """A consumer behind the tail reads the table from its stored position."""
        rows = await self.db.fetch(_FETCH, {"c": consumer, "n": max_events})
        return [
            Event(event_seq(xid, rank), type_, data, ack_handle=(xid, seq))
            for xid, seq, type_, data, rank in rows
        ]

    # -- one active process among several -------------------------------------------------
    def leader(self, name: str, **kwargs: float) -> LeaderLock:
        """``async with stream.leader("relay"):`` see :class:`homefeed.adapters.pg_db.LeaderLock`."""
        return self.db.leader(name, **kwargs)

    # -- administration (replay, audit, dead letters) -------------------------------------
    async def tail_position(self) -> Position:
        """The position of the newest committed outbox row, deliverable yet or not (unlike
        ``head()``, not held back by running transactions): a consumer whose
        position reaches it has been delivered every event committed before this call."""
        row = await self.db.fetchone(
            "SELECT xid::text::bigint, seq FROM outbox ORDER BY xid DESC, seq DESC LIMIT 1"
        )
        return (row[0], row[1]) if row else START

    async def end_position(self) -> Position:
        return await self.tail_position()

    async def acked_position(self, consumer: str) -> Position:
        return await self.position(consumer)

    async def seek_before(self, consumer: str, seq: int) -> None:
        """Move ``consumer`` so that the next event it gets is the one whose ``Event.seq``
        is ``seq`` (0: the first event). A batch the consumer fetched before and
        acknowledges after this moves it forward again: see ``homefeed replay``."""
        if seq <= 0:
            await self.seek(consumer, START)
            return
        xid, oseq = await self._locate(seq)
        await self.seek(consumer, (xid, oseq - 1))

    async def _due_retries(self, consumer: str, max_events: int) -> list[Event]:
        now = time.monotonic()
        if now < self._retry_due.get(consumer, 0.0) or max_events <= 0:
            return []
        rows = await self.db.fetch(
            "SELECT id, seq, type, data FROM dead_letters WHERE consumer = %s AND retry"
            " ORDER BY id LIMIT %s",
            (consumer, max_events),
        )
        self._retry_due[consumer] = 0.0 if rows else now + RETRY_POLL
        return [Event(seq, type_, data, ack_handle=_Retry(id_)) for id_, seq, type_, data in rows]

    async def dead_letter(self, consumer: str, event: Event, reason: str) -> None:
        """Record ``event`` as given up by ``consumer`` and acknowledge it, in one
        statement. A retried dead letter that failed again is put back (not duplicated)."""
        from psycopg.types.json import Jsonb

        handle = event.ack_handle
        if isinstance(handle, _Retry):
            await self.db.write(
                "UPDATE dead_letters SET retry = false, reason = %s, failures = failures + 1,"
                " at = now() WHERE id = %s",
                (reason, handle.id),
                outbox=False,
            )
            return
        xid, oseq = await self._position_of(event)
        await self.db.write(
            _DEAD_LETTER,
            {"c": consumer, "seq": event.seq, "type": event.type, "data": Jsonb(event.data),
             "reason": reason, "xid": xid, "oseq": oseq},
            outbox=False,
        )
        self._learn(consumer, (xid, oseq))

    async def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters, oldest first (of ``consumer`` only, if given)."""
        rows = await self.db.fetch(
            f"SELECT {_DEAD_COLS} FROM dead_letters"
            " WHERE %(c)s::text IS NULL OR consumer = %(c)s ORDER BY id LIMIT %(n)s",
            {"c": consumer, "n": limit},
        )
        return [_dead(r) for r in rows]

    async def retry_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """Mark a dead letter for redelivery to its consumer (see the module docstring)."""
        rows = await self.db.write(
            f"UPDATE dead_letters SET retry = true WHERE id = %s RETURNING {_DEAD_COLS}",
            (dead_letter_id,),
            outbox=False,
        )
        if not rows:
            raise ValueError(f"no dead letter has id {dead_letter_id}")
        self._retry_due[rows[0][1]] = 0.0
        self.db.outbox_committed()  # wake the consumers waiting in fetch, here and elsewhere
        return _dead(rows[0])

    async def retry_dead_letters(self, consumer: str | None = None) -> int:
        return await retry_all(self, consumer)


def _position(event: Event) -> Position:
    return event.ack_handle  # type: ignore[no-any-return]


def _dead(row: tuple) -> DeadLetter:
    return dead_letter_from_row(row, row[4])
