"""MailStore of the scale-out profile, in PostgreSQL (``mail_notifications``, ``mails``,
``mail_prefs``). ``compose`` runs in one transaction per person under a transaction-level
advisory lock on that person, so two processes composing at once never put a notification
in two mails (the second finds it taken)."""

from __future__ import annotations

import secrets
from typing import Sequence

from homefeed.adapters.pg_db import LOCK_NAMESPACE, PgDatabase
from homefeed.adapters.sqlite_mail import _NOTE_COLS, _note, compose_for
from homefeed.domain.mail import MailNotification, message_id

#: Second key of the per-person compose lock is the user id folded to 31 bits; this first
#: key keeps it apart from the other locks.
_COMPOSE_LOCK = LOCK_NAMESPACE + 12


class PgMailStore:
    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def recipients(self, user_ids: Sequence[int]) -> dict[int, str]:
        if not user_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT u.id, u.email FROM users u LEFT JOIN mail_prefs p ON p.user_id = u.id"
            " WHERE u.id = ANY(%s::bigint[]) AND coalesce(u.email, '') <> '' AND NOT coalesce(p.opted_out, false)",
            (list(user_ids),))
        return {r[0]: r[1] for r in rows}

    async def add_notifications(self, notes: Sequence[MailNotification], now: float) -> int:
        if not notes:
            return 0
        rows = await self.db.write(
            f"INSERT INTO mail_notifications ({_NOTE_COLS}, created_at)"
            " SELECT *, %(now)s FROM unnest(%(u)s::bigint[], %(c)s::text[], %(k)s::text[], %(a)s::bigint[],"
            " %(h)s::text[], %(p)s::bigint[], %(e)s::text[])"
            " ON CONFLICT (user_id, cause) DO NOTHING RETURNING 1",
            {"now": now, "u": [n.user_id for n in notes], "c": [n.cause for n in notes],
             "k": [n.kind for n in notes], "a": [n.actor_id for n in notes],
             "h": [n.actor_handle for n in notes], "p": [n.post_id for n in notes],
             "e": [n.excerpt for n in notes]}, outbox=False)
        return len(rows)

    async def compose(self, now: float, bundle_seconds: float, domain: str) -> int:
        users = [r[0] for r in await self.db.fetch(
            "SELECT DISTINCT user_id FROM mail_notifications WHERE mail_id IS NULL LIMIT 1000")]
        made = 0
        for uid in users:
            async with self.db.connection() as conn:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)",
                                       (_COMPOSE_LOCK, uid & 0x7FFFFFFF))
                    cur = await conn.execute("SELECT max(created_at) FROM mails WHERE user_id = %s", (uid,))
                    last = (await cur.fetchone() or (None,))[0]
                    cur = await conn.execute(
                        "SELECT cause FROM mail_notifications WHERE user_id = %s AND mail_id IS NULL"
                        " ORDER BY created_at, cause", (uid,))
                    causes = [r[0] for r in await cur.fetchall()]
                    groups = compose_for(uid, causes, now, bundle_seconds, last)
                    if groups:
                        await conn.execute(
                            "INSERT INTO mail_prefs (user_id, unsubscribe_token) VALUES (%s, %s)"
                            " ON CONFLICT (user_id) DO NOTHING", (uid, secrets.token_urlsafe(24)))
                    for group in groups:
                        cur = await conn.execute(
                            "INSERT INTO mails (user_id, message_id, next_at, created_at, updated_at)"
                            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                            (uid, message_id(uid, group, domain), now, now, now))
                        mail_id = (await cur.fetchone())[0]  # type: ignore[index]
                        await conn.execute(
                            "UPDATE mail_notifications SET mail_id = %s WHERE user_id = %s AND cause = ANY(%s)",
                            (mail_id, uid, group))
                        made += 1
        return made

    async def claim_mails(self, now: float, limit: int, lease_seconds: float) -> list[tuple[int, int, str, int]]:
        rows = await self.db.write(
            "UPDATE mails m SET lease_until = %(lease)s FROM (SELECT id FROM mails WHERE state = 'pending'"
            " AND next_at <= %(now)s AND (lease_until IS NULL OR lease_until < %(now)s) ORDER BY next_at"
            " LIMIT %(n)s) c WHERE m.id = c.id AND (m.lease_until IS NULL OR m.lease_until < %(now)s)"
            " RETURNING m.id, m.user_id, m.message_id, m.attempts",
            {"lease": now + lease_seconds, "now": now, "n": limit}, outbox=False)
        return sorted(tuple(r) for r in rows)  # type: ignore[misc]

    async def mail_contents(self, mail_id: int) -> tuple[str, str, str, list[MailNotification]] | None:
        row = await self.db.fetchone(
            "SELECT u.email, u.handle, p.unsubscribe_token, coalesce(p.opted_out, false) FROM mails m"
            " JOIN users u ON u.id = m.user_id LEFT JOIN mail_prefs p ON p.user_id = m.user_id WHERE m.id = %s",
            (mail_id,))
        if row is None or not row[0] or row[3] or not row[2]:
            return None
        notes = [_note(r) for r in await self.db.fetch(
            f"SELECT {_NOTE_COLS} FROM mail_notifications WHERE mail_id = %s ORDER BY created_at, cause",
            (mail_id,))]
        return row[0], row[1], row[2], notes

    async def mail_done(self, mail_id: int, now: float, state: str, next_at: float | None, error: str) -> None:
        await self.db.write(
            "UPDATE mails SET state = %s, attempts = attempts + 1, next_at = coalesce(%s, next_at),"
            " lease_until = NULL, last_error = %s, updated_at = %s WHERE id = %s",
            (state, next_at, error[:1000] or None, now, mail_id), outbox=False)

    async def opt_out(self, token: str) -> bool:
        rows = await self.db.write(
            "UPDATE mail_prefs SET opted_out = true WHERE unsubscribe_token = %s RETURNING 1", (token,), outbox=False)
        return bool(rows)

    async def unsubscribe_token(self, user_id: int) -> str | None:
        # one statement: the row inserted, or the one there (a no-op update returns it)
        rows = await self.db.write(
            "INSERT INTO mail_prefs (user_id, unsubscribe_token) VALUES (%s, %s)"
            " ON CONFLICT (user_id) DO UPDATE SET user_id = excluded.user_id"
            " RETURNING unsubscribe_token, opted_out", (user_id, secrets.token_urlsafe(24)), outbox=False)
        token, opted_out = rows[0]
        return None if opted_out else str(token)

    async def release_leases(self) -> int:
        """Nothing: other processes may hold leases; a dead one's end by themselves."""
        return 0

    async def dead_mails(self, limit: int = 1000) -> list[tuple[int, int, str, str, int, float]]:
        return [tuple(r) for r in await self.db.fetch(  # type: ignore[misc]
            "SELECT id, user_id, message_id, coalesce(last_error, ''), attempts, updated_at FROM mails"
            " WHERE state = 'dead' ORDER BY id LIMIT %s", (limit,))]

    async def retry_mail(self, mail_id: int, now: float) -> bool:
        rows = await self.db.write(
            "UPDATE mails SET state = 'pending', attempts = 0, next_at = %s, lease_until = NULL, updated_at = %s"
            " WHERE id = %s AND state = 'dead' RETURNING 1", (now, now, mail_id), outbox=False)
        return bool(rows)

    async def mail_counts(self) -> dict[str, int]:
        return {s: n for s, n in await self.db.fetch("SELECT state, count(*) FROM mails GROUP BY state")}
