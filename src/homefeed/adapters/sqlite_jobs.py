"""The batch side's records on SQLite (embedded profile): the scheduler's claims
(``job_runs``), what jobs computed for readers (``job_results``), the durable home-read
counter (``home_reads``, ``account_activity``), and the bulk reads jobs make.

Claims go through the same writer thread as every other write, so two ``Homefeed``
instances (or processes) over one file serialise on SQLite's write lock: the primary key
``(job, slot)`` lets exactly one INSERT win, and the upsert's ``WHERE`` takes over a run
only when it is still ``running`` and its lease has expired (its process died).
"""

from __future__ import annotations

import sqlite3
from typing import Any, AsyncIterator, ClassVar

import orjson

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.service_layer.jobs.records import Account, JobRun, UserCounts

_RUN_COLS = ("job, slot, owner, attempt, started_at, lease_until, finished_at, duration_s,"
             " outcome, detail")
_CHUNK = 5000


def _run(row: tuple) -> JobRun:
    return JobRun(*row)


class SqliteJobStore:
    """``JobRecords`` and ``BatchReads`` on the embedded profile's SQLite file."""

    backend: ClassVar[str] = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    # -- claims ---------------------------------------------------------------------------
    async def claim(self, job: str, slot: int, owner: str, now: float, lease_s: float) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"INSERT INTO job_runs({_RUN_COLS}) VALUES (?, ?, ?, 1, ?, ?, NULL, NULL, 'running', '')"
                " ON CONFLICT(job, slot) DO UPDATE SET owner = excluded.owner,"
                " attempt = job_runs.attempt + 1, started_at = excluded.started_at,"
                " lease_until = excluded.lease_until"
                " WHERE job_runs.outcome = 'running' AND job_runs.lease_until < ?",
                (job, slot, owner, now, now + lease_s, now),
            )
            return cur.rowcount == 1

        return await self.db.write(tx)

    async def renew(self, job: str, slot: int, owner: str, lease_until: float) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE job_runs SET lease_until = ? WHERE job = ? AND slot = ? AND owner = ?"
                " AND outcome = 'running'", (lease_until, job, slot, owner)).rowcount == 1

        return await self.db.write(tx)

    async def finish(self, job: str, slot: int, owner: str, outcome: str, finished_at: float,
                     duration_s: float, detail: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE job_runs SET outcome = ?, finished_at = ?, duration_s = ?, detail = ?"
                " WHERE job = ? AND slot = ? AND owner = ? AND outcome = 'running'",
                (outcome, finished_at, duration_s, detail[:2000], job, slot, owner)).rowcount == 1

        return await self.db.write(tx)

    async def run_of(self, job: str, slot: int) -> JobRun | None:
        row = self.db.query_one(f"SELECT {_RUN_COLS} FROM job_runs WHERE job = ? AND slot = ?", (job, slot))
        return None if row is None else _run(row)

    async def runs(self, job: str, limit: int = 1000) -> list[JobRun]:
        rows = self.db.query(
            f"SELECT {_RUN_COLS} FROM job_runs WHERE job = ? ORDER BY started_at DESC LIMIT ?", (job, limit))
        return [_run(r) for r in rows]

    async def latest_runs(self) -> dict[str, JobRun]:
        rows = self.db.query(
            f"SELECT {_RUN_COLS} FROM job_runs r WHERE started_at ="
            " (SELECT max(started_at) FROM job_runs WHERE job = r.job)")
        return {r[0]: _run(r) for r in rows}

    async def run_counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.query("SELECT job, outcome, count(*) FROM job_runs GROUP BY job, outcome")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- results --------------------------------------------------------------------------
    async def put_result(self, name: str, data: Any, now: float) -> None:
        blob = orjson.dumps(data)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO job_results(name, data, computed_at) VALUES (?, ?, ?)"
                         " ON CONFLICT(name) DO UPDATE SET data = excluded.data,"
                         " computed_at = excluded.computed_at", (name, blob, now))

        await self.db.write(tx)

    async def result(self, name: str) -> tuple[Any, float] | None:
        row = self.db.query_one("SELECT data, computed_at FROM job_results WHERE name = ?", (name,))
        return None if row is None else (orjson.loads(row[0]), float(row[1]))

    # -- the home-read counter ------------------------------------------------------------
    async def add_reads(self, hours: dict[int, int], last_read: dict[int, float]) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO home_reads(hour, reads) VALUES (?, ?)"
                " ON CONFLICT(hour) DO UPDATE SET reads = reads + excluded.reads", list(hours.items()))
            conn.executemany(
                "INSERT INTO account_activity(user_id, last_read_at) VALUES (?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET last_read_at ="
                " max(last_read_at, excluded.last_read_at)", list(last_read.items()))

        # Neutral: nothing a reader keeps an answer of reads these rows (SqliteDatabase.shown_version).
        await self.db.write(tx, neutral=True)

    async def home_reads(self, since_hour: int) -> dict[int, int]:
        rows = self.db.query("SELECT hour, reads FROM home_reads WHERE hour >= ?", (since_hour,))
        return {int(h): int(n) for h, n in rows}

    # -- bulk reads -----------------------------------------------------------------------
    async def public_posts_since(self, min_id: int) -> AsyncIterator[list[tuple[int, int, str]]]:
        """(id, author_id, text) of public posts with id >= ``min_id``, in chunks."""
        after = min_id - 1
        while True:
            rows = self.db.query(
                "SELECT id, author_id, text FROM posts WHERE id > ? AND visibility = 'public'"
                " ORDER BY id LIMIT ?", (after, _CHUNK))
            if not rows:
                return
            yield [(int(a), int(b), str(c)) for a, b, c in rows]
            after = rows[-1][0]

    async def user_counts(self) -> list[UserCounts]:
        rows = self.db.query("SELECT id, handle, followers_count, following_count, posts_count FROM users")
        return [UserCounts(int(a), str(b), int(c), int(d), int(e)) for a, b, c, d, e in rows]

    async def posts_since(self, min_id: int) -> int:
        return int(self.db.query_value("SELECT count(*) FROM posts WHERE id >= ?", (min_id,)))

    async def author_post_counts(self, min_id: int) -> dict[int, int]:
        rows = self.db.query("SELECT author_id, count(*) FROM posts WHERE id >= ? GROUP BY author_id", (min_id,))
        return {int(a): int(n) for a, n in rows}

    async def follow_edges(self) -> AsyncIterator[list[tuple[int, int]]]:
        """Every (follower_id, followee_id), in chunks."""
        after: tuple[int, int] = (-1, -1)
        while True:
            rows = self.db.query(
                "SELECT follower_id, followee_id FROM follows WHERE (follower_id, followee_id) > (?, ?)"
                " ORDER BY follower_id, followee_id LIMIT ?", (*after, _CHUNK * 4))
            if not rows:
                return
            yield [(int(a), int(b)) for a, b in rows]
            after = (int(rows[-1][0]), int(rows[-1][1]))

    async def digest_candidates(self, inactive_before: float, created_before_id: int,
                                limit: int) -> list[Account]:
        """Accounts with an email whose last home read (or, never read, their creation)
        is before ``inactive_before``, and who got no digest since then."""
        rows = self.db.query(
            "SELECT u.id, u.handle, u.email, a.last_read_at FROM users u"
            " LEFT JOIN account_activity a ON a.user_id = u.id"
            " WHERE u.email IS NOT NULL AND u.email != ''"
            " AND (a.last_read_at < ? OR (a.last_read_at IS NULL AND u.id < ?))"
            " AND (a.digest_sent_at IS NULL OR a.digest_sent_at < coalesce(a.last_read_at, 0)"
            "      OR a.digest_sent_at < ?)"
            " ORDER BY u.id LIMIT ?",
            (inactive_before, created_before_id, inactive_before, limit))
        return [Account(int(i), str(h), str(e), None if r is None else float(r)) for i, h, e, r in rows]

    async def top_home_posts(self, user_id: int, since_id: int, limit: int) -> list[tuple[int, int, int]]:
        """(post id, favourites, reblogs) of the public, original posts of whom
        ``user_id`` follows since ``since_id``, the most favourited and boosted first."""
        cols = {r[1] for r in self.db.query("PRAGMA table_info(posts)")}
        fav = "p.favourites_count" if "favourites_count" in cols else "0"
        reb = "p.reblogs_count" if "reblogs_count" in cols else "0"
        only_originals = " AND p.reblog_of_id IS NULL" if "reblog_of_id" in cols else ""
        rows = self.db.query(
            f"SELECT p.id, {fav}, {reb} FROM follows f JOIN posts p ON p.author_id = f.followee_id"
            f" WHERE f.follower_id = ? AND p.id >= ? AND p.visibility = 'public'{only_originals}"
            f" ORDER BY {fav} + {reb} DESC, p.id DESC LIMIT ?", (user_id, since_id, limit))
        return [(int(a), int(b), int(c)) for a, b, c in rows]

    async def mark_digest_sent(self, user_ids: list[int], now: float) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO account_activity(user_id, last_read_at, digest_sent_at) VALUES (?, 0, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET digest_sent_at = excluded.digest_sent_at",
                [(u, now) for u in user_ids])

        await self.db.write(tx)
