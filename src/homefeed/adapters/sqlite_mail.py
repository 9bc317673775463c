"""MailStore of the embedded profile: notifications to mail, the mails and the opt-outs in
the SQLite file (``mail_notifications``, ``mails``, ``mail_prefs``). ``compose`` is one
write transaction (the one writer makes it atomic): a notification is in at most one mail."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Sequence

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain.mail import MailNotification, message_id

_NOTE_COLS = "user_id, cause, kind, actor_id, actor_handle, post_id, excerpt"


def compose_for(
    user_id: int, causes: list[str], now: float, bundle_seconds: float, last: float | None,
) -> list[list[str]]:
    """How ``causes`` (oldest first) of one person are split into mails now: [] while the
    bundle window of the last mail runs; all in one; or one each (bundling off)."""
    if not causes:
        return []
    if bundle_seconds <= 0:
        return [[c] for c in causes]
    if last is not None and now < last + bundle_seconds:
        return []
    return [causes]


def _note(row: tuple) -> MailNotification:
    return MailNotification(*row)


class SqliteMailStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def recipients(self, user_ids: Sequence[int]) -> dict[int, str]:
        if not user_ids:
            return {}
        marks = ",".join("?" * len(user_ids))
        rows = self.db.query(
            "SELECT u.id, u.email FROM users u LEFT JOIN mail_prefs p ON p.user_id = u.id"
            f" WHERE u.id IN ({marks}) AND coalesce(u.email, '') != '' AND NOT coalesce(p.opted_out, 0)",
            list(user_ids))
        return {r[0]: r[1] for r in rows}

    async def add_notifications(self, notes: Sequence[MailNotification], now: float) -> int:
        if not notes:
            return 0
        rows = [(n.user_id, n.cause, n.kind, n.actor_id, n.actor_handle, n.post_id, n.excerpt, now) for n in notes]

        def tx(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(f"INSERT OR IGNORE INTO mail_notifications({_NOTE_COLS}, created_at)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return conn.total_changes - before

        return await self.db.write(tx)

    async def compose(self, now: float, bundle_seconds: float, domain: str) -> int:
        if self.db.query_one("SELECT 1 FROM mail_notifications WHERE mail_id IS NULL LIMIT 1") is None:
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            made = 0
            users = [r[0] for r in conn.execute(
                "SELECT DISTINCT user_id FROM mail_notifications WHERE mail_id IS NULL LIMIT 1000")]
            for uid in users:
                last = conn.execute("SELECT max(created_at) FROM mails WHERE user_id = ?", (uid,)).fetchone()[0]
                causes = [r[0] for r in conn.execute(
                    "SELECT cause FROM mail_notifications WHERE user_id = ? AND mail_id IS NULL"
                    " ORDER BY created_at, cause", (uid,))]
                groups = compose_for(uid, causes, now, bundle_seconds, last)
                if groups:
                    conn.execute("INSERT OR IGNORE INTO mail_prefs(user_id, unsubscribe_token) VALUES (?, ?)",
                                 (uid, secrets.token_urlsafe(24)))
                for group in groups:
                    mail_id = conn.execute(
                        "INSERT INTO mails(user_id, message_id, next_at, created_at, updated_at)"
                        " VALUES (?, ?, ?, ?, ?) RETURNING id",
                        (uid, message_id(uid, group, domain), now, now, now)).fetchone()[0]
                    conn.executemany("UPDATE mail_notifications SET mail_id = ? WHERE user_id = ? AND cause = ?",
                                     [(mail_id, uid, c) for c in group])
                    made += 1
            return made

        return await self.db.write(tx)

    async def claim_mails(self, now: float, limit: int, lease_seconds: float) -> list[tuple[int, int, str, int]]:
        def tx(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(
                "UPDATE mails SET lease_until = ? WHERE id IN (SELECT id FROM mails WHERE state = 'pending'"
                " AND next_at <= ? AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_at LIMIT ?)"
                " RETURNING id, user_id, message_id, attempts",
                (now + lease_seconds, now, now, limit)).fetchall()

        return sorted(await self.db.write(tx))

    async def mail_contents(self, mail_id: int) -> tuple[str, str, str, list[MailNotification]] | None:
        row = self.db.query_one(
            "SELECT u.email, u.handle, p.unsubscribe_token, coalesce(p.opted_out, 0) FROM mails m"
            " JOIN users u ON u.id = m.user_id LEFT JOIN mail_prefs p ON p.user_id = m.user_id WHERE m.id = ?",
            (mail_id,))
        if row is None or not row[0] or row[3] or not row[2]:
            return None
        notes = [_note(r) for r in self.db.query(
            f"SELECT {_NOTE_COLS} FROM mail_notifications WHERE mail_id = ? ORDER BY created_at, cause", (mail_id,))]
        return row[0], row[1], row[2], notes

    async def mail_done(self, mail_id: int, now: float, state: str, next_at: float | None, error: str) -> None:
        await self.db.write(lambda conn: conn.execute(
            "UPDATE mails SET state = ?, attempts = attempts + 1, next_at = coalesce(?, next_at),"
            " lease_until = NULL, last_error = ?, updated_at = ? WHERE id = ?",
            (state, next_at, error[:1000] or None, now, mail_id)))

    async def opt_out(self, token: str) -> bool:
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE mail_prefs SET opted_out = 1 WHERE unsubscribe_token = ?", (token,)).rowcount > 0)

    async def unsubscribe_token(self, user_id: int) -> str | None:
        def tx(conn: sqlite3.Connection) -> str | None:
            conn.execute("INSERT OR IGNORE INTO mail_prefs(user_id, unsubscribe_token) VALUES (?, ?)",
                         (user_id, secrets.token_urlsafe(24)))
            token, opted_out = conn.execute(
                "SELECT unsubscribe_token, opted_out FROM mail_prefs WHERE user_id = ?", (user_id,)).fetchone()
            return None if opted_out else str(token)

        return await self.db.write(tx)

    async def release_leases(self) -> int:
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE mails SET lease_until = NULL WHERE lease_until IS NOT NULL").rowcount)

    async def dead_mails(self, limit: int = 1000) -> list[tuple[int, int, str, str, int, float]]:
        return [tuple(r) for r in self.db.query(  # type: ignore[misc]
            "SELECT id, user_id, message_id, coalesce(last_error, ''), attempts, updated_at FROM mails"
            " WHERE state = 'dead' ORDER BY id LIMIT ?", (limit,))]

    async def retry_mail(self, mail_id: int, now: float) -> bool:
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE mails SET state = 'pending', attempts = 0, next_at = ?, lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND state = 'dead'", (now, now, mail_id)).rowcount > 0)

    async def mail_counts(self) -> dict[str, int]:
        return {s: n for s, n in self.db.query("SELECT state, count(*) FROM mails GROUP BY state")}
