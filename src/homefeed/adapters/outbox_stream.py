"""EventStream of the embedded profile: the outbox table itself, read in-process.

The outbox is written by the single writer thread, so its ``seq`` order is commit order.
Each consumer's offset (the last ``seq`` it acknowledged) lives in ``consumer_offsets`` in
the same database, so after a crash a consumer resumes exactly where its last ack left it:
at-least-once delivery, made exactly-once in effect by idempotent handlers.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Sequence

import orjson

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain.model import Event


class OutboxEventStream:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._offsets: dict[str, int] = {}
        self._waiters: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        db.on_commit(self._committed)

    def _committed(self) -> None:
        # Called on the writer thread after each commit: wake every waiting consumer.
        loop = self._loop
        if loop is not None and self._waiters:
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass

    def _wake(self) -> None:
        for w in self._waiters:
            w.set()

    def _offset(self, consumer: str) -> int:
        if consumer not in self._offsets:
            row = self.db.query_one("SELECT seq FROM consumer_offsets WHERE consumer = ?", (consumer,))
            self._offsets[consumer] = row[0] if row else 0
        return self._offsets[consumer]

    def _read(self, after: int, max_events: int) -> list[Event]:
        rows = self.db.query(
            "SELECT seq, type, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, max_events),
        )
        return [Event(seq, type_, orjson.loads(data)) for seq, type_, data in rows]

    async def fetch(self, consumer: str, max_events: int, timeout: float) -> list[Event]:
        self._loop = asyncio.get_running_loop()
        after = self._offset(consumer)
        events = self._read(after, max_events)
        if events or timeout <= 0:
            return events
        loop = self._loop
        deadline = loop.time() + timeout
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            while True:
                events = self._read(after, max_events)  # a commit may have landed meanwhile
                if events:
                    return events
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                waiter.clear()
                try:
                    # Any commit wakes us (another consumer's ack too): read again.
                    await asyncio.wait_for(waiter.wait(), remaining)
                except asyncio.TimeoutError:
                    return []
        finally:
            self._waiters.discard(waiter)

    async def ack(self, consumer: str, events: Sequence[Event]) -> None:
        if not events:
            return
        seq = max(e.seq for e in events)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO consumer_offsets(consumer, seq) VALUES (?, ?)"
                " ON CONFLICT(consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
                (consumer, seq),
            )

        await self.db.write(tx)
        self._offsets[consumer] = max(self._offset(consumer), seq)

    async def head(self) -> int:
        row = self.db.query_one("SELECT coalesce(max(seq), 0) FROM outbox")
        return row[0]

    async def lag(self, consumer: str) -> int:
        after = self._offset(consumer)
        row = self.db.query_one("SELECT count(*) FROM outbox WHERE seq > ?", (after,))
        return row[0]

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
