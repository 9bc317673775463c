"""EventStream of the embedded profile: the outbox table itself, read in-process.

The outbox is written by the single writer thread, so its ``seq`` order is commit order.
Each consumer's offset (the last ``seq`` it acknowledged) lives in ``consumer_offsets`` in
the same database, so after a crash a consumer resumes exactly where its last ack left it:
at-least-once delivery, made exactly-once in effect by idempotent handlers.

Dead letters. ``dead_letter`` records an event a consumer gave up on in ``dead_letters``
and moves the consumer's offset past it, in one transaction. ``retry_dead_letter`` marks it
for redelivery: the consumer's next ``fetch`` (checked at most every ``RETRY_POLL`` seconds,
so a retry asked for by another process is seen too) returns the marked events before new
ones, and acknowledging one deletes its dead letter; failing again puts it back. A retried
event is applied after newer events: retry once the cause is fixed, then run the audit.
"""

from __future__ import annotations

import asyncio
import bisect
import sqlite3
import time
from typing import Hashable, Sequence

import orjson

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain.model import Event
from homefeed.adapters.outbox_base import OutboxStreamBase
from homefeed.ports import DeadLetter, StreamPosition
from homefeed.adapters.dead_letter_rows import dead_letter_from_row, retry_all

#: How often ``fetch`` looks for dead letters marked for retry (by any process).
RETRY_POLL = 1.0
#: Newest events kept decoded for every consumer (``_read``): a few batches' worth.
TAIL_KEEP = 4096
#: Most events read into the tail at once.
TAIL_READ = 1024
#: How often ``fetch`` looks for events committed by another process (``PRAGMA
#: data_version``); this process's own commits wake the consumers at once.
FOREIGN_POLL = 0.1


class _Retry:
    """``Event.ack_handle`` of a dead letter delivered again: its row id."""

    __slots__ = ("id",)

    def __init__(self, id_: int) -> None:
        self.id = id_


class OutboxEventStream(OutboxStreamBase):
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._offsets: dict[str, int] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry_due: dict[str, float] = {}  # consumer -> when to look for retries next
        #: The newest events, decoded once for every consumer (see ``_read``).
        self._tail: list[Event] = []
        self._tail_lo = 0
        self._tail_hi = -1  # -1: nothing read yet
        self._tail_commits = -1  # ``commits`` when the tail was last read to the end; -1: not
        self._foreign_due = 0.0  # when to look again for another process's commits
        self._version: Hashable = None  # ``SqliteDatabase.data_version()`` when last looked
        #: Commits seen so far (any commit may add events or move an offset): ``/healthz``
        #: keeps its lag snapshot only while this has not moved (``Homefeed.health``).
        self.commits = 0
        db.on_commit(self._committed)

    def _committed(self) -> None:
        # Called on the writer thread after each commit: wake every waiting consumer.
        self.commits += 1
        loop = self._loop
        if loop is not None and self._waiters:
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass

    def _wake(self) -> None:
        for w in self._waiters:
            _wake_one(w)

    def _offset(self, consumer: str) -> int:
        if consumer not in self._offsets:
            row = self.db.query_one("SELECT seq FROM consumer_offsets WHERE consumer = ?", (consumer,))
            self._offsets[consumer] = row[0] if row else 0
        return self._offsets[consumer]

    def _read(self, after: int, max_events: int) -> list[Event]:
        """The events after ``after``, at most ``max_events``.

        Every consumer reads every event, mostly the same new ones right after a commit
        (issue 14's profile of posts: five consumers reading each batch, and reading again
        after commits that added nothing). So the newest events are kept, decoded once,
        in ``_tail``: every row with ``_tail_lo < seq <= _tail_hi``, in seq order. The one
        writer at a time commits in seq order (a commit holds the next seqs), so a read of
        ``seq > _tail_hi`` extends it without a hole. It is read again, once for every
        consumer, only after a commit of this process (``commits``) or, looked for at
        most every ``FOREIGN_POLL`` seconds, of another one (``PRAGMA data_version``). A
        consumer behind the tail (replaying, or started behind the others) reads the
        table itself."""
        if self._tail_hi < 0 or after < self._tail_lo:
            if self._tail_hi < 0:  # the first read: the tail starts where this consumer is
                self._tail_lo = self._tail_hi = after
            else:
                return self._read_rows(after, max_events)
        commits = self.commits
        if commits != self._tail_commits or self._foreign_commit():
            rows = self._read_rows(self._tail_hi, TAIL_READ)
            if rows:
                self._tail.extend(rows)
                self._tail_hi = rows[-1].seq
            # all there was (else read on at the next call): nothing more until a commit
            self._tail_commits = commits if len(rows) < TAIL_READ else -1
            if len(self._tail) > TAIL_KEEP:  # forget the oldest half: consumers read near the head
                drop = len(self._tail) // 2
                self._tail_lo = self._tail[drop - 1].seq
                del self._tail[:drop]
        tail = self._tail
        if after >= self._tail_hi:
            # past the tail: nothing more, unless the tail stopped at TAIL_READ events
            return [] if self._tail_commits >= 0 else self._read_rows(after, max_events)
        start = bisect.bisect_right(tail, after, key=_seq)
        return tail[start : start + max_events]

    def _foreign_commit(self) -> bool:
        """Whether another process committed since the last look, looked at most every
        ``FOREIGN_POLL`` seconds (this process's commits are counted: ``commits``)."""
        now = time.monotonic()
        if now < self._foreign_due:
            return False
        self._foreign_due = now + FOREIGN_POLL
        version, self._version = self._version, self.db.data_version()
        return version != self._version

    def _read_rows(self, after: int, max_events: int) -> list[Event]:
        rows = self.db.query(
            "SELECT seq, type, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, max_events),
        )
        return [Event(seq, type_, orjson.loads(data)) for seq, type_, data in rows]

    async def fetch(self, consumer: str, max_events: int, timeout: float) -> list[Event]:
        self._loop = asyncio.get_running_loop()
        retried = self._due_retries(consumer, max_events)
        if retried:
            return retried
        after = self._offset(consumer)
        events = self._read(after, max_events)
        if events or timeout <= 0:
            return events
        loop = self._loop
        deadline = loop.time() + timeout
        while True:
            # A future and a timer, not ``wait_for`` (a task per wait): consumers wait once
            # or more per commit each.
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            timer = loop.call_at(deadline, _wake_one, waiter)
            try:
                events = self._read(after, max_events)  # a commit may have landed meanwhile
                if events:
                    return events
                # Any commit wakes us (another consumer's ack too), or the deadline: read again.
                await waiter
            finally:
                timer.cancel()
                self._waiters.discard(waiter)
            if loop.time() >= deadline:
                return self._read(after, max_events)

    async def ack(self, consumer: str, events: Sequence[Event]) -> None:
        retried = [e.ack_handle.id for e in events if isinstance(e.ack_handle, _Retry)]
        if retried:
            await self.db.write(
                lambda conn: conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(i,) for i in retried])
            )
            events = [e for e in events if not isinstance(e.ack_handle, _Retry)]
        if not events:
            return
        seq = max(e.seq for e in events)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO consumer_offsets(consumer, seq) VALUES (?, ?)"
                " ON CONFLICT(consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
                (consumer, seq),
            )

        # From a consumer, a deferred write (``homefeed.ports.background_writes``): it rides
        # the next commit of a request's write instead of making one of its own, and the
        # consumer, waiting for it, takes a bigger batch next.
        await self.db.write(tx)
        self._offsets[consumer] = max(self._offset(consumer), seq)

    async def head(self) -> int:
        return int(self.db.query_value("SELECT coalesce(max(seq), 0) FROM outbox"))

    async def lag(self, consumer: str) -> int:
        """Events after the offset, plus dead letters marked for retry."""
        after = self._offset(consumer)
        return int(self.db.query_value(
            "SELECT (SELECT count(*) FROM outbox WHERE seq > ?)"
            " + (SELECT count(*) FROM dead_letters WHERE consumer = ? AND retry = 1)",
            (after, consumer),
        ))

    async def lags(self, consumers: Sequence[str]) -> dict[str, int]:
        """Every consumer's ``lag`` in one statement (a row of ``VALUES`` per consumer)."""
        if not consumers:
            return {}
        names = list(dict.fromkeys(consumers))
        params: list[object] = []
        for name in names:
            params += (name, self._offset(name))
        rows = self.db.query(
            "WITH c(consumer, after) AS (VALUES " + ", ".join(["(?, ?)"] * len(names)) + ")"
            " SELECT c.consumer, (SELECT count(*) FROM outbox WHERE seq > c.after)"
            " + (SELECT count(*) FROM dead_letters d WHERE d.consumer = c.consumer AND d.retry = 1)"
            " FROM c",
            params,
        )
        return {name: int(n) for name, n in rows}

    async def seek(self, consumer: str, seq: int) -> None:
        """Move a consumer's offset (replay from ``seq + 1``, or skip to the head)."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO consumer_offsets(consumer, seq) VALUES (?, ?)"
                " ON CONFLICT(consumer) DO UPDATE SET seq = excluded.seq",
                (consumer, seq),
            )

        await self.db.write(tx)
        self._offsets[consumer] = seq

    # -- administration (replay, audit, dead letters) -------------------------------------
    async def position(self, consumer: str) -> int:
        """The offset stored for ``consumer`` (the last seq acknowledged), read from the
        database: the one any process sees, unlike the offset a running consumer caches."""
        row = self.db.query_one("SELECT seq FROM consumer_offsets WHERE consumer = ?", (consumer,))
        return row[0] if row else 0

    async def end_position(self) -> StreamPosition:
        """``(0, seq of the newest event)``: SQLite commits one transaction at a time, so
        every stored event is deliverable."""
        return (0, await self.head())

    async def acked_position(self, consumer: str) -> StreamPosition:
        return (0, await self.position(consumer))

    async def seek_before(self, consumer: str, seq: int) -> None:
        """Move ``consumer`` so that the next event it gets is the one with ``seq`` (0 or 1:
        the first event). Only the process running the consumer may do this while it runs:
        a running consumer keeps its offset in memory."""
        await self.seek(consumer, max(0, seq - 1))

    def _due_retries(self, consumer: str, max_events: int) -> list[Event]:
        now = time.monotonic()
        if now < self._retry_due.get(consumer, 0.0) or max_events <= 0:
            return []
        rows = self.db.query(
            "SELECT id, seq, type, data FROM dead_letters WHERE consumer = ? AND retry = 1"
            " ORDER BY id LIMIT ?",
            (consumer, max_events),
        )
        # Found some: look again on the next fetch (they are acknowledged or failed by then).
        self._retry_due[consumer] = 0.0 if rows else now + RETRY_POLL
        return [Event(seq, type_, orjson.loads(data), ack_handle=_Retry(id_)) for id_, seq, type_, data in rows]

    async def dead_letter(self, consumer: str, event: Event, reason: str) -> None:
        """Record ``event`` as given up by ``consumer`` and acknowledge it, in one
        transaction. A retried dead letter that failed again is put back (not duplicated)."""
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        handle = event.ack_handle
        if isinstance(handle, _Retry):

            def again(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "UPDATE dead_letters SET retry = 0, reason = ?, failures = failures + 1, at = ?"
                    " WHERE id = ?",
                    (reason, at, handle.id),
                )

            await self.db.write(again)
            return

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO dead_letters(consumer, seq, type, data, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                (consumer, event.seq, event.type, orjson.dumps(event.data), reason, at),
            )
            conn.execute(
                "INSERT INTO consumer_offsets(consumer, seq) VALUES (?, ?)"
                " ON CONFLICT(consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
                (consumer, event.seq),
            )

        await self.db.write(tx)
        self._offsets[consumer] = max(self._offset(consumer), event.seq)

    async def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters, oldest first (of ``consumer`` only, if given)."""
        rows = self.db.query(
            "SELECT id, consumer, seq, type, data, reason, failures, retry, at FROM dead_letters"
            " WHERE ? IS NULL OR consumer = ? ORDER BY id LIMIT ?",
            (consumer, consumer, limit),
        )
        return [_dead(r) for r in rows]

    async def retry_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """Mark a dead letter for redelivery to its consumer (see the module docstring)."""

        def tx(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(
                "UPDATE dead_letters SET retry = 1 WHERE id = ?"
                " RETURNING id, consumer, seq, type, data, reason, failures, retry, at",
                (dead_letter_id,),
            ).fetchone()

        row = await self.db.write(tx)
        if row is None:
            raise ValueError(f"no dead letter has id {dead_letter_id}")
        self._retry_due[row[1]] = 0.0
        self._committed()  # wake a consumer of this process waiting in fetch
        return _dead(row)

    async def retry_dead_letters(self, consumer: str | None = None) -> int:
        return await retry_all(self, consumer)


def _wake_one(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _seq(event: Event) -> int:
    return event.seq


def _dead(row: tuple) -> DeadLetter:
    return dead_letter_from_row(row, orjson.loads(row[4]))
