"""WebhookStore of the scale-out profile: subscriptions and deliveries in PostgreSQL
(``webhook_subscriptions``, ``webhook_deliveries``), shared by every process.

Each method is one statement (its own transaction). A subscription's ``after`` is the
snapshot of the inserting statement (``pg_current_snapshot()``): an outbox event whose
transaction that snapshot does not see committed is delivered to it (``committed_after``).
Claims are leases: ``UPDATE ... WHERE lease_until < now`` re-checks each row once a
concurrent claim commits, so two processes never hold one delivery."""

from __future__ import annotations

import time
from typing import Sequence

from homefeed.adapters.pg_db import PgDatabase
from homefeed.adapters.sqlite_webhooks import _SUB_COLS, _sub
from homefeed.domain.webhooks import DEAD, DELIVERED, PENDING, Delivery, NewDelivery, Subscription, webhook_id

_CLAIM = """
WITH due AS (
    SELECT d.id, row_number() OVER (PARTITION BY d.subscription_id ORDER BY d.next_at, d.id) AS rn
    FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id
    WHERE d.state = 'pending' AND d.next_at <= %(now)s
      AND (d.lease_until IS NULL OR d.lease_until < %(now)s)
      AND s.enabled AND NOT (d.subscription_id = ANY(%(ex)s::bigint[]))
    ORDER BY d.next_at LIMIT %(scan)s
)
UPDATE webhook_deliveries w SET lease_until = %(lease)s
FROM (SELECT id FROM due WHERE rn <= %(per)s ORDER BY id LIMIT %(n)s) c
WHERE w.id = c.id AND w.state = 'pending' AND (w.lease_until IS NULL OR w.lease_until < %(now)s)
RETURNING w.id, w.subscription_id, w.event_seq, w.part, w.type, w.body, w.attempts
"""


class PgWebhookStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    # -- subscriptions ---------------------------------------------------------------------
    async def add_subscription(self, url: str, events: Sequence[str], secret: str) -> Subscription:
        rows = await self.db.write(
            "INSERT INTO webhook_subscriptions (url, events, secret, after, created_at)"
            " VALUES (%s, %s, %s, 'snap:' || pg_current_snapshot()::text, %s)"
            f" RETURNING {_SUB_COLS}",
            (url, ",".join(events), secret, time.time()), outbox=False)
        return _sub(rows[0])

    async def subscriptions(self) -> list[Subscription]:
        return [_sub(r) for r in await self.db.fetch(f"SELECT {_SUB_COLS} FROM webhook_subscriptions ORDER BY id")]

    async def remove_subscription(self, subscription_id: int) -> bool:
        rows = await self.db.write(
            "WITH d AS (DELETE FROM webhook_deliveries WHERE subscription_id = %(id)s AND state = 'pending')"
            " DELETE FROM webhook_subscriptions WHERE id = %(id)s RETURNING id",
            {"id": subscription_id}, outbox=False)
        return bool(rows)

    async def rotate_secret(self, subscription_id: int, secret: str, keep_seconds: float) -> Subscription | None:
        rows = await self.db.write(
            "UPDATE webhook_subscriptions SET previous_secret = secret, previous_until = %s, secret = %s"
            f" WHERE id = %s RETURNING {_SUB_COLS}",
            (time.time() + keep_seconds, secret, subscription_id), outbox=False)
        return _sub(rows[0]) if rows else None

    async def disable_subscription(self, subscription_id: int, reason: str) -> None:
        await self.db.write("UPDATE webhook_subscriptions SET enabled = false, disabled_reason = %s WHERE id = %s",
                            (reason, subscription_id), outbox=False)

    # -- deliveries --------------------------------------------------------------------------
    async def add_deliveries(self, deliveries: Sequence[NewDelivery], now: float) -> int:
        if not deliveries:
            return 0
        rows = await self.db.write(
            "INSERT INTO webhook_deliveries (subscription_id, event_seq, part, type, body, next_at, updated_at)"
            " SELECT s, e, p, t, b, %(now)s, %(now)s FROM unnest(%(s)s::bigint[], %(e)s::bigint[],"
            " %(p)s::bigint[], %(t)s::text[], %(b)s::bytea[]) AS u(s, e, p, t, b)"
            " ON CONFLICT (subscription_id, event_seq, part) DO NOTHING RETURNING id",
            {"now": now, "s": [d.subscription_id for d in deliveries], "e": [d.event_seq for d in deliveries],
             "p": [d.part for d in deliveries], "t": [d.type for d in deliveries],
             "b": [d.body for d in deliveries]}, outbox=False)
        return len(rows)

    async def claim_deliveries(
        self, now: float, limit: int, per_subscription: int, exclude: Sequence[int], lease_seconds: float,
    ) -> list[Delivery]:
        rows = await self.db.write(_CLAIM, {
            "now": now, "ex": [int(i) for i in exclude], "scan": limit * 4, "lease": now + lease_seconds,
            "per": per_subscription, "n": limit}, outbox=False)
        if not rows:
            return []
        subs = {s.id: s for s in await self.subscriptions()}
        out = []
        for id_, sub_id, seq, part, type_, body, attempts in sorted(rows):
            s = subs.get(sub_id)
            if s is not None:
                out.append(Delivery(id_, sub_id, webhook_id(sub_id, seq, part), type_, bytes(body), attempts,
                                    s.url, tuple(s.secrets_in_force(now))))
        return out

    async def delivered(self, delivery_ids: Sequence[int], now: float) -> None:
        await self.db.write(
            "UPDATE webhook_deliveries SET state = %s, attempts = attempts + 1, lease_until = NULL,"
            " last_error = NULL, updated_at = %s WHERE id = ANY(%s::bigint[])",
            (DELIVERED, now, list(delivery_ids)), outbox=False)

    async def attempt_failed(
        self, delivery_id: int, now: float, next_at: float | None, error: str, state: str,
    ) -> None:
        await self.db.write(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_until = NULL, last_error = %s,"
            " updated_at = %s, next_at = coalesce(%s, next_at), state = %s WHERE id = %s",
            (error[:1000], now, next_at, PENDING if next_at is not None else state, delivery_id), outbox=False)

    async def postpone(self, delivery_id: int, next_at: float) -> None:
        await self.db.write("UPDATE webhook_deliveries SET lease_until = NULL, next_at = %s WHERE id = %s",
                            (next_at, delivery_id), outbox=False)

    async def release_leases(self) -> int:
        """Nothing: other processes may hold leases; a dead one's end by themselves."""
        return 0

    async def dead_deliveries(self, limit: int = 1000) -> list[tuple[int, int, str, str, bytes, str, int, float]]:
        rows = await self.db.fetch(
            "SELECT id, subscription_id, event_seq, part, type, body, coalesce(last_error, ''), attempts,"
            " updated_at FROM webhook_deliveries WHERE state = %s ORDER BY id LIMIT %s", (DEAD, limit))
        return [(r[0], r[1], webhook_id(r[1], r[2], r[3]), r[4], bytes(r[5]), r[6], r[7], r[8]) for r in rows]

    async def retry_delivery(self, delivery_id: int, now: float) -> bool:
        rows = await self.db.write(
            "UPDATE webhook_deliveries SET state = %s, attempts = 0, next_at = %s, lease_until = NULL,"
            " updated_at = %s WHERE id = %s AND state = %s RETURNING id",
            (PENDING, now, now, delivery_id, DEAD), outbox=False)
        return bool(rows)

    async def delivery_counts(self) -> dict[str, int]:
        return {state: n for state, n in await self.db.fetch(
            "SELECT state, count(*) FROM webhook_deliveries GROUP BY state")}
