"""The batch side's records on PostgreSQL (scale-out profile): the same tables and the same
claim as ``sqlite_jobs``. ``INSERT ... ON CONFLICT (job, slot) DO UPDATE ... WHERE`` is one
atomic statement: of the processes that race for a slot, exactly one gets a row back (the
others' inserts conflict, and their update's ``WHERE`` is false while the winner's lease
runs)."""

from __future__ import annotations

from typing import Any, AsyncIterator, ClassVar

import orjson

from homefeed.adapters.pg_db import PgDatabase
from homefeed.service_layer.jobs.records import Account, JobRun, UserCounts

_RUN_COLS = ("job, slot, owner, attempt, started_at, lease_until, finished_at, duration_s,"
             " outcome, detail")
_CHUNK = 5000


def _run(row: tuple) -> JobRun:
    return JobRun(*row)


class PgJobStore:
    """``JobRecords`` and ``BatchReads`` on PostgreSQL."""

    backend: ClassVar[str] = "postgres"

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    # -- claims ---------------------------------------------------------------------------
    async def claim(self, job: str, slot: int, owner: str, now: float, lease_s: float) -> bool:
        rows = await self.db.write(
            f"INSERT INTO job_runs ({_RUN_COLS}) VALUES (%s, %s, %s, 1, %s, %s, NULL, NULL, 'running', '')"
            " ON CONFLICT (job, slot) DO UPDATE SET owner = EXCLUDED.owner,"
            " attempt = job_runs.attempt + 1, started_at = EXCLUDED.started_at,"
            " lease_until = EXCLUDED.lease_until"
            " WHERE job_runs.outcome = 'running' AND job_runs.lease_until < %s RETURNING 1",
            (job, slot, owner, now, now + lease_s, now), outbox=False)
        return len(rows) == 1

    async def renew(self, job: str, slot: int, owner: str, lease_until: float) -> bool:
        rows = await self.db.write(
            "UPDATE job_runs SET lease_until = %s WHERE job = %s AND slot = %s AND owner = %s"
            " AND outcome = 'running' RETURNING 1", (lease_until, job, slot, owner), outbox=False)
        return len(rows) == 1

    async def finish(self, job: str, slot: int, owner: str, outcome: str, finished_at: float,
                     duration_s: float, detail: str) -> bool:
        rows = await self.db.write(
            "UPDATE job_runs SET outcome = %s, finished_at = %s, duration_s = %s, detail = %s"
            " WHERE job = %s AND slot = %s AND owner = %s AND outcome = 'running' RETURNING 1",
            (outcome, finished_at, duration_s, detail[:2000], job, slot, owner), outbox=False)
        return len(rows) == 1

    async def run_of(self, job: str, slot: int) -> JobRun | None:
        row = await self.db.fetchone(f"SELECT {_RUN_COLS} FROM job_runs WHERE job = %s AND slot = %s", (job, slot))
        return None if row is None else _run(row)

    async def runs(self, job: str, limit: int = 1000) -> list[JobRun]:
        rows = await self.db.fetch(
            f"SELECT {_RUN_COLS} FROM job_runs WHERE job = %s ORDER BY started_at DESC LIMIT %s", (job, limit))
        return [_run(r) for r in rows]

    async def latest_runs(self) -> dict[str, JobRun]:
        rows = await self.db.fetch(
            f"SELECT DISTINCT ON (job) {_RUN_COLS} FROM job_runs ORDER BY job, started_at DESC")
        return {r[0]: _run(r) for r in rows}

    async def run_counts(self) -> dict[tuple[str, str], int]:
        rows = await self.db.fetch("SELECT job, outcome, count(*) FROM job_runs GROUP BY job, outcome")
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- results --------------------------------------------------------------------------
    async def put_result(self, name: str, data: Any, now: float) -> None:
        await self.db.write(
            "INSERT INTO job_results (name, data, computed_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, computed_at = EXCLUDED.computed_at",
            (name, orjson.dumps(data), now), outbox=False)

    async def result(self, name: str) -> tuple[Any, float] | None:
        row = await self.db.fetchone("SELECT data, computed_at FROM job_results WHERE name = %s", (name,))
        return None if row is None else (orjson.loads(bytes(row[0])), float(row[1]))

    # -- the home-read counter ------------------------------------------------------------
    async def add_reads(self, hours: dict[int, int], last_read: dict[int, float]) -> None:
        if hours:
            await self.db.write(
                "INSERT INTO home_reads (hour, reads) SELECT * FROM unnest(%s::bigint[], %s::bigint[])"
                " ON CONFLICT (hour) DO UPDATE SET reads = home_reads.reads + EXCLUDED.reads",
                (list(hours), list(hours.values())), outbox=False)
        if last_read:
            await self.db.write(
                "INSERT INTO account_activity (user_id, last_read_at)"
                " SELECT * FROM unnest(%s::bigint[], %s::double precision[])"
                " ON CONFLICT (user_id) DO UPDATE SET last_read_at ="
                " greatest(account_activity.last_read_at, EXCLUDED.last_read_at)",
                (list(last_read), list(last_read.values())), outbox=False)

    async def home_reads(self, since_hour: int) -> dict[int, int]:
        rows = await self.db.fetch("SELECT hour, reads FROM home_reads WHERE hour >= %s", (since_hour,))
        return {int(h): int(n) for h, n in rows}

    # -- bulk reads -----------------------------------------------------------------------
    async def public_posts_since(self, min_id: int) -> AsyncIterator[list[tuple[int, int, str]]]:
        after = min_id - 1
        while True:
            rows = await self.db.fetch(
                "SELECT id, author_id, text FROM posts WHERE id > %s AND visibility = 'public'"
                " ORDER BY id LIMIT %s", (after, _CHUNK))
            if not rows:
                return
            yield [(int(a), int(b), str(c)) for a, b, c in rows]
            after = rows[-1][0]

    async def user_counts(self) -> list[UserCounts]:
        rows = await self.db.fetch("SELECT id, handle, followers_count, following_count, posts_count FROM users")
        return [UserCounts(int(a), str(b), int(c), int(d), int(e)) for a, b, c, d, e in rows]

    async def posts_since(self, min_id: int) -> int:
        row = await self.db.fetchone("SELECT count(*) FROM posts WHERE id >= %s", (min_id,))
        return int(row[0]) if row else 0

    async def author_post_counts(self, min_id: int) -> dict[int, int]:
        rows = await self.db.fetch("SELECT author_id, count(*) FROM posts WHERE id >= %s GROUP BY author_id", (min_id,))
        return {int(a): int(n) for a, n in rows}

    async def follow_edges(self) -> AsyncIterator[list[tuple[int, int]]]:
        after: tuple[int, int] = (-1, -1)
        while True:
            rows = await self.db.fetch(
                "SELECT follower_id, followee_id FROM follows WHERE (follower_id, followee_id) > (%s, %s)"
                " ORDER BY follower_id, followee_id LIMIT %s", (*after, _CHUNK * 4))
            if not rows:
                return
            yield [(int(a), int(b)) for a, b in rows]
            after = (int(rows[-1][0]), int(rows[-1][1]))

    async def digest_candidates(self, inactive_before: float, created_before_id: int,
                                limit: int) -> list[Account]:
        rows = await self.db.fetch(
            "SELECT u.id, u.handle, u.email, a.last_read_at FROM users u"
            " LEFT JOIN account_activity a ON a.user_id = u.id"
            " WHERE u.email IS NOT NULL AND u.email <> ''"
            " AND (a.last_read_at < %s OR (a.last_read_at IS NULL AND u.id < %s))"
            " AND (a.digest_sent_at IS NULL OR a.digest_sent_at < coalesce(a.last_read_at, 0)"
            "      OR a.digest_sent_at < %s)"
            " ORDER BY u.id LIMIT %s",
            (inactive_before, created_before_id, inactive_before, limit))
        return [Account(int(i), str(h), str(e), None if r is None else float(r)) for i, h, e, r in rows]

    async def top_home_posts(self, user_id: int, since_id: int, limit: int) -> list[tuple[int, int, int]]:
        cols = {r[0] for r in await self.db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'posts'"
            " AND table_schema = current_schema()")}
        fav = "p.favourites_count" if "favourites_count" in cols else "0"
        reb = "p.reblogs_count" if "reblogs_count" in cols else "0"
        only_originals = " AND p.reblog_of_id IS NULL" if "reblog_of_id" in cols else ""
        rows = await self.db.fetch(
            f"SELECT p.id, {fav}, {reb} FROM follows f JOIN posts p ON p.author_id = f.followee_id"
            f" WHERE f.follower_id = %s AND p.id >= %s AND p.visibility = 'public'{only_originals}"
            f" ORDER BY {fav} + {reb} DESC, p.id DESC LIMIT %s", (user_id, since_id, limit))
        return [(int(a), int(b), int(c)) for a, b, c in rows]

    async def mark_digest_sent(self, user_ids: list[int], now: float) -> None:
        if not user_ids:
            return
        await self.db.write(
            "INSERT INTO account_activity (user_id, last_read_at, digest_sent_at)"
            " SELECT u, 0, %s FROM unnest(%s::bigint[]) AS u"
            " ON CONFLICT (user_id) DO UPDATE SET digest_sent_at = EXCLUDED.digest_sent_at",
            (now, user_ids), outbox=False)
