"""WebhookStore of the embedded profile: subscriptions and deliveries in the SQLite file,
beside the records (``webhook_subscriptions``, ``webhook_deliveries``).

Writes go through the database's writer thread (group commit), reads through its read
connection, as for the record store. A subscription's ``after`` is ``seq:<newest outbox
seq>`` read in the inserting transaction: the one writer commits in seq order, so an event
with a greater seq was committed after the subscription."""

from __future__ import annotations

import sqlite3
import time
from typing import Sequence

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain.webhooks import DEAD, DELIVERED, PENDING, Delivery, NewDelivery, Subscription, webhook_id

_SUB_COLS = ("id, url, events, secret, created_at, after, previous_secret, previous_until,"
             " enabled, disabled_reason")


def _sub(row: tuple) -> Subscription:
    return Subscription(
        id=row[0], url=row[1], events=tuple(e for e in row[2].split(",") if e), secret=row[3],
        created_at=row[4], after=row[5], previous_secret=row[6], previous_until=row[7],
        enabled=bool(row[8]), disabled_reason=row[9],
    )


class SqliteWebhookStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    # -- subscriptions ---------------------------------------------------------------------
    async def add_subscription(self, url: str, events: Sequence[str], secret: str) -> Subscription:
        now = time.time()

        def tx(conn: sqlite3.Connection) -> tuple:
            head = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
            return conn.execute(
                "INSERT INTO webhook_subscriptions(url, events, secret, after, created_at)"
                f" VALUES (?, ?, ?, ?, ?) RETURNING {_SUB_COLS}",
                (url, ",".join(events), secret, f"seq:{head}", now),
            ).fetchone()

        return _sub(await self.db.write(tx))

    async def subscriptions(self) -> list[Subscription]:
        return [_sub(r) for r in self.db.query(f"SELECT {_SUB_COLS} FROM webhook_subscriptions ORDER BY id")]

    async def remove_subscription(self, subscription_id: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            gone = conn.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (subscription_id,)).rowcount
            conn.execute("DELETE FROM webhook_deliveries WHERE subscription_id = ? AND state = 'pending'",
                         (subscription_id,))
            return gone > 0

        return await self.db.write(tx)

    async def rotate_secret(self, subscription_id: int, secret: str, keep_seconds: float) -> Subscription | None:
        until = time.time() + keep_seconds

        def tx(conn: sqlite3.Connection) -> tuple | None:
            return conn.execute(
                "UPDATE webhook_subscriptions SET previous_secret = secret, previous_until = ?, secret = ?"
                f" WHERE id = ? RETURNING {_SUB_COLS}",
                (until, secret, subscription_id),
            ).fetchone()

        row = await self.db.write(tx)
        return None if row is None else _sub(row)

    async def disable_subscription(self, subscription_id: int, reason: str) -> None:
        await self.db.write(lambda conn: conn.execute(
            "UPDATE webhook_subscriptions SET enabled = 0, disabled_reason = ? WHERE id = ?",
            (reason, subscription_id)))

    # -- deliveries --------------------------------------------------------------------------
    async def add_deliveries(self, deliveries: Sequence[NewDelivery], now: float) -> int:
        if not deliveries:
            return 0
        rows = [(d.subscription_id, d.event_seq, d.part, d.type, d.body, now, now) for d in deliveries]

        def tx(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO webhook_deliveries"
                "(subscription_id, event_seq, part, type, body, next_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return conn.total_changes - before

        return await self.db.write(tx)

    async def claim_deliveries(
        self, now: float, limit: int, per_subscription: int, exclude: Sequence[int], lease_seconds: float,
    ) -> list[Delivery]:
        excluded = ",".join(str(int(i)) for i in exclude) or "-1"

        def tx(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(
                "WITH due AS ("
                "  SELECT d.id, row_number() OVER (PARTITION BY d.subscription_id ORDER BY d.next_at, d.id) AS rn"
                "  FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id"
                "  WHERE d.state = 'pending' AND d.next_at <= ? AND (d.lease_until IS NULL OR d.lease_until < ?)"
                f"   AND s.enabled AND d.subscription_id NOT IN ({excluded})"
                "  ORDER BY d.next_at LIMIT ?)"
                " UPDATE webhook_deliveries SET lease_until = ?"
                " WHERE id IN (SELECT id FROM due WHERE rn <= ? ORDER BY id LIMIT ?)"
                " RETURNING id, subscription_id, event_seq, part, type, body, attempts",
                (now, now, limit * 4, now + lease_seconds, per_subscription, limit),
            ).fetchall()

        rows = await self.db.write(tx)
        return await self._with_subscriptions(rows, now)

    async def _with_subscriptions(self, rows: list[tuple], now: float) -> list[Delivery]:
        if not rows:
            return []
        subs = {s.id: s for s in await self.subscriptions()}
        out = []
        for id_, sub_id, seq, part, type_, body, attempts in sorted(rows):
            s = subs.get(sub_id)
            if s is None:
                continue
            out.append(Delivery(id_, sub_id, webhook_id(sub_id, seq, part), type_, bytes(body), attempts,
                                s.url, tuple(s.secrets_in_force(now))))
        return out

    async def delivered(self, delivery_ids: Sequence[int], now: float) -> None:
        rows = [(DELIVERED, now, i) for i in delivery_ids]
        await self.db.write(lambda conn: conn.executemany(
            "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, lease_until = NULL,"
            " last_error = NULL, updated_at = ? WHERE id = ?", rows))

    async def attempt_failed(
        self, delivery_id: int, now: float, next_at: float | None, error: str, state: str,
    ) -> None:
        await self.db.write(lambda conn: conn.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = NULL, last_error = ?,"
            " updated_at = ?, next_at = coalesce(?, next_at), state = ? WHERE id = ?",
            (error[:1000], now, next_at, PENDING if next_at is not None else state, delivery_id)))

    async def postpone(self, delivery_id: int, next_at: float) -> None:
        await self.db.write(lambda conn: conn.execute(
            "UPDATE webhook_deliveries SET lease_until = NULL, next_at = ? WHERE id = ?", (next_at, delivery_id)))

    async def release_leases(self) -> int:
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL").rowcount)

    async def dead_deliveries(self, limit: int = 1000) -> list[tuple[int, int, str, str, bytes, str, int, float]]:
        rows = self.db.query(
            "SELECT id, subscription_id, event_seq, part, type, body, coalesce(last_error, ''), attempts,"
            " updated_at FROM webhook_deliveries WHERE state = ? ORDER BY id LIMIT ?", (DEAD, limit))
        return [(r[0], r[1], webhook_id(r[1], r[2], r[3]), r[4], bytes(r[5]), r[6], r[7], r[8]) for r in rows]

    async def retry_delivery(self, delivery_id: int, now: float) -> bool:
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE webhook_deliveries SET state = ?, attempts = 0, next_at = ?, lease_until = NULL,"
            " updated_at = ? WHERE id = ? AND state = ?", (PENDING, now, now, delivery_id, DEAD)).rowcount > 0)

    async def delivery_counts(self) -> dict[str, int]:
        return {state: n for state, n in self.db.query(
            "SELECT state, count(*) FROM webhook_deliveries GROUP BY state")}
