"""The administration part of the RecordStore on PostgreSQL (audit, rebuild): walking and
sampling the users, reading their counters next to the counts from the records, and
recounting them.

``PgAdminStore`` is a mixin: ``PgRecordStore`` (pg_store) inherits it and provides ``db``.
"""

from __future__ import annotations

from typing import Sequence

from psycopg import errors as pg_errors

from homefeed.adapters.pg_db import PgDatabase


# A user's counters recomputed from the records (u: the users row).
_ACTUAL = (
    "(SELECT count(*) FROM follows WHERE followee_id = u.id),"
    " (SELECT count(*) FROM follows WHERE follower_id = u.id),"
    " (SELECT count(*) FROM posts WHERE author_id = u.id)"
)


class PgAdminStore:
    """Audit and rebuild reads and the counters fix on PostgreSQL, mixed into
    ``PgRecordStore`` (which provides ``db``)."""

    db: PgDatabase

    # -- administration (audit, rebuild) ----------------------------------------------------
    async def user_ids_after(self, after_id: int, limit: int) -> list[int]:
        rows = await self.db.fetch("SELECT id FROM users WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))
        return [r[0] for r in rows]

    async def sample_user_ids(self, n: int) -> list[int]:
        rows = await self.db.fetch("SELECT id FROM users ORDER BY random() LIMIT %s", (n,), prepare=False)
        return [r[0] for r in rows]

    async def counters(
        self, user_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        if not user_ids:
            return {}
        rows = await self.db.fetch(
            f"SELECT u.id, u.followers_count, u.following_count, u.posts_count, {_ACTUAL}"
            " FROM users u WHERE u.id = ANY(%s::bigint[])",
            (list(user_ids),),
        )
        return {r[0]: ((r[1], r[2], r[3]), (int(r[4]), int(r[5]), int(r[6]))) for r in rows}

    async def fix_counters(self, user_ids: Sequence[int]) -> int:
        """Recount the users' counters. Their rows are locked first (FOR UPDATE), then the
        UPDATE counts in a snapshot taken after the lock: a concurrent follow/post of theirs
        either committed before (counted) or waits for the lock and adds itself after, so
        none is lost or counted twice. Deadlocks (a follow locking its two users in the other
        order) abort one side; this one is then run again."""
        ids = sorted(set(user_ids))
        if not ids:
            return 0
        for attempt in range(8):
            try:
                async with self.db.connection() as conn:
                    async with conn.transaction():
                        await conn.execute(
                            "SELECT id FROM users WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE", (ids,)
                        )
                        cur = await conn.execute(
                            f"UPDATE users u SET (followers_count, following_count, posts_count) = ({_ACTUAL})"
                            " WHERE u.id = ANY(%s::bigint[])"
                            f" AND (u.followers_count, u.following_count, u.posts_count) IS DISTINCT FROM ({_ACTUAL})",
                            (ids,),
                        )
                        return cur.rowcount
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == 7:
                    raise
        raise AssertionError("unreachable")
