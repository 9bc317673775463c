"""The conversations part of the RecordStore on PostgreSQL (docs/conversations.md): boosts,
favourites, the reads behind statuses and threads, notifications as a function of the
records, post counters and read markers.

``PgConversationsStore`` is a mixin: ``PgRecordStore`` (pg_store) inherits it and provides
``db`` and ``_next_id``. The post columns and the delete of one post with its cascade live
here, shared with ``pg_store``.

Concurrency. ``favourite`` / ``unfavourite`` are ONE statement each: the post row is locked
``FOR KEY SHARE`` (a concurrent delete of the post waits, or has won and the favourite is
NotFound), the favourites row is inserted or deleted (its unique key serialises one user's
concurrent calls) and the counter is incremented in place (``UPDATE ... SET n = n + 1``
waits for a concurrent one and re-reads the row), so the count stays exact. The writes
that touch several posts (a delete with its boosts, a boost, an unboost) and the
notification writes are one explicit transaction each, run again on a deadlock. Writes
change post counters before users' counters (their statements list them in that order),
which keeps the deadlocks they could have with each other rare.

Notifications. ``sync_notifications`` locks the causes it reads (``FOR KEY SHARE``: the
write that undoes one waits until the sync commits, and its own event brings a later sync),
then takes a shared advisory lock per recipient before writing; ``dismiss_notification``
and ``clear_notifications`` take it exclusively. So a dismissal committed while a sync runs
is seen by that sync's insert, and a dismissed notification never comes back.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Awaitable, Callable, Collection, Sequence, TypeVar

import psycopg
from psycopg import errors as pg_errors

from homefeed.adapters.pg_accounts import _USER_COLS
from homefeed.adapters.pg_db import PgDatabase
from homefeed.adapters.pg_schema import LOCK_NAMESPACE
from homefeed.domain import model
from homefeed.domain.errors import NotFound
from homefeed.domain.model import Marker, Notification, Post, PostStats, User

T = TypeVar("T")

#: A ``Post`` from ``posts p JOIN users u``, in the order of the record's fields.
POST_COLS = (
    "p.id, p.author_id, u.handle, p.text, p.visibility, p.in_reply_to_id,"
    " p.in_reply_to_account_id, p.reblog_of_id"
)
_MAX = (1 << 63) - 1
#: First key of the per-recipient advisory locks (LOCK_NAMESPACE's is the leader locks').
_NOTIFY_LOCKS = LOCK_NAMESPACE + 1
_NOTIF_COLS = "user_id, id, type, from_user_id, post_id"

# Whether posts leave their notifications as they are: every one still there, none a
# mention of someone else or a boost of another's post, and no notification made for any.
# What the notifier sees for almost every post; one statement instead of a transaction.
# Per id, so that each test is an index probe in the generic plan of the prepared statement
# too (``= ANY(array)`` there became a scan of every notification: 20-35 ms, measured).
_POSTS_QUIET = """
SELECT bool_and(
      EXISTS (SELECT FROM posts p WHERE p.id = x.id)
      AND NOT EXISTS (SELECT FROM posts p JOIN mentions m ON m.post_id = p.id
                      WHERE p.id = x.id AND p.reblog_of_id IS NULL AND m.user_id <> p.author_id)
      AND NOT EXISTS (SELECT FROM posts b JOIN posts o ON o.id = b.reblog_of_id
                      WHERE b.id = x.id AND o.author_id <> b.author_id)
      AND NOT EXISTS (SELECT FROM notifications n WHERE n.id = x.id))
  FROM unnest(%(p)s::bigint[]) AS x(id)
"""

# The post ``b.id`` names, or its original if it is a boost, locked against a delete.
_ORIGINAL = f"""
SELECT {POST_COLS} FROM posts b JOIN posts p ON p.id = coalesce(b.reblog_of_id, b.id)
JOIN users u ON u.id = p.author_id WHERE b.id = %(post)s FOR KEY SHARE OF p
"""

_FAVOURITE = f"""
WITH t AS ({_ORIGINAL}), f AS (
    INSERT INTO favourites (id, user_id, post_id) SELECT %(id)s, %(u)s, id FROM t
    ON CONFLICT (user_id, post_id) DO NOTHING
    RETURNING id, post_id
), c AS (
    UPDATE posts SET favourites_count = favourites_count + 1 WHERE id = (SELECT post_id FROM f)
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.FAVOURITED}', jsonb_build_object(
        'favourite_id', f.id, 'user_id', %(u)s, 'post_id', f.post_id, 'author_id', t.author_id)
    FROM f, t
)
SELECT t.*, EXISTS (SELECT FROM f) FROM t
"""

_UNFAVOURITE = f"""
WITH t AS ({_ORIGINAL}), f AS (
    DELETE FROM favourites WHERE user_id = %(u)s AND post_id = (SELECT id FROM t)
    RETURNING id, post_id
), c AS (
    UPDATE posts SET favourites_count = favourites_count - 1 WHERE id = (SELECT post_id FROM f)
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.UNFAVOURITED}', jsonb_build_object(
        'favourite_id', f.id, 'user_id', %(u)s, 'post_id', f.post_id, 'author_id', t.author_id)
    FROM f, t
)
SELECT t.*, EXISTS (SELECT FROM f) FROM t
"""

_BOOST = f"""
WITH b AS (
    INSERT INTO posts (id, author_id, text, visibility, reblog_of_id)
    VALUES (%(id)s, %(u)s, '', %(vis)s, %(o)s)
    ON CONFLICT (reblog_of_id, author_id) WHERE reblog_of_id IS NOT NULL DO NOTHING
    RETURNING id
), r AS (
    UPDATE posts SET reblogs_count = reblogs_count + 1 WHERE id = %(o)s AND EXISTS (SELECT FROM b)
), c AS (
    UPDATE users SET posts_count = posts_count + 1 WHERE id = %(u)s AND EXISTS (SELECT FROM b)
), e AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.POST_CREATED}', jsonb_build_object(
        'post_id', id, 'author_id', %(u)s, 'author_handle', %(handle)s::text, 'text', '',
        'visibility', %(vis)s::text, 'in_reply_to_id', NULL, 'in_reply_to_account_id', NULL,
        'reblog_of_id', %(o)s, 'mention_ids', '[]'::jsonb)
    FROM b
)
SELECT EXISTS (SELECT FROM b)
"""

# An original's boosts (each with its own event, the booster's posts_count down by one),
# favourites and mentions: deleted with it.
_DELETE_DEPENDENTS = f"""
WITH d AS (
    DELETE FROM posts WHERE reblog_of_id = %(id)s RETURNING id, author_id, text, visibility
), c AS (
    UPDATE users u SET posts_count = u.posts_count - x.n
    FROM (SELECT author_id, count(*) AS n FROM d GROUP BY author_id) x WHERE u.id = x.author_id
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.POST_DELETED}', jsonb_build_object(
        'post_id', dd.id, 'author_id', dd.author_id, 'reblog_of_id', %(id)s::bigint,
        'in_reply_to_id', NULL, 'visibility', dd.visibility,
        -- the boost as it was: webhooks send it (status.deleted) once it is gone
        'author_handle', u.handle, 'text', dd.text)
    FROM (SELECT * FROM d ORDER BY id) dd JOIN users u ON u.id = dd.author_id
    ORDER BY dd.id
), f AS (
    DELETE FROM favourites WHERE post_id = %(id)s
), m AS (
    DELETE FROM mentions WHERE post_id = %(id)s
)
SELECT count(*) FROM d
"""

_DELETE_ONE = f"""
WITH d AS (
    DELETE FROM posts WHERE id = %(id)s RETURNING id
), r AS (
    UPDATE posts SET replies_count = replies_count - 1
    WHERE id = %(reply)s::bigint AND EXISTS (SELECT FROM d)
), b AS (
    UPDATE posts SET reblogs_count = reblogs_count - 1
    WHERE id = %(orig)s::bigint AND EXISTS (SELECT FROM d)
), c AS (
    UPDATE users SET posts_count = posts_count - 1 WHERE id = %(author)s AND EXISTS (SELECT FROM d)
)
INSERT INTO outbox (type, data)
SELECT '{model.POST_DELETED}', jsonb_build_object(
    'post_id', id, 'author_id', %(author)s, 'reblog_of_id', %(orig)s::bigint,
    'in_reply_to_id', %(reply)s::bigint, 'visibility', %(vis)s::text,
    -- the post as it was: webhooks send it (status.deleted) once it is gone
    'author_handle', %(handle)s::text, 'text', %(text)s::text)
FROM d
"""

# The notification function (docs/conversations.md) for the recipients %(r)s, minus what
# each dismissed or cleared: (user_id, id, type, from_user_id, post_id).
_VISIBLE = """
SELECT e.* FROM (
    SELECT f.followee_id AS user_id, f.id, 'follow' AS type, f.follower_id AS from_user_id,
           NULL::bigint AS post_id
    FROM follows f WHERE f.followee_id = ANY(%(r)s::bigint[]) AND f.follower_id <> f.followee_id
    UNION ALL
    SELECT p.author_id, fv.id, 'favourite', fv.user_id, p.id FROM posts p
    JOIN favourites fv ON fv.post_id = p.id
    WHERE p.author_id = ANY(%(r)s::bigint[]) AND fv.user_id <> p.author_id
    UNION ALL
    SELECT o.author_id, b.id, 'reblog', b.author_id, o.id FROM posts o
    JOIN posts b ON b.reblog_of_id = o.id
    WHERE o.author_id = ANY(%(r)s::bigint[]) AND b.author_id <> o.author_id
    UNION ALL
    SELECT m.user_id, p.id, 'mention', p.author_id, p.id FROM mentions m
    JOIN posts p ON p.id = m.post_id
    WHERE m.user_id = ANY(%(r)s::bigint[]) AND p.author_id <> m.user_id AND p.reblog_of_id IS NULL
) e JOIN users u ON u.id = e.user_id
WHERE e.id > u.notifications_cleared_id AND NOT EXISTS (
    SELECT FROM notification_dismissals d WHERE d.user_id = e.user_id AND d.id = e.id)
"""

_INSERT_VISIBLE = f"""
INSERT INTO notifications ({_NOTIF_COLS})
SELECT e.u, e.i, e.t, e.f, e.p
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[]) AS e(u, i, t, f, p)
JOIN users u ON u.id = e.u
WHERE e.i > u.notifications_cleared_id AND NOT EXISTS (
    SELECT FROM notification_dismissals d WHERE d.user_id = e.u AND d.id = e.i)
ON CONFLICT DO NOTHING
RETURNING {_NOTIF_COLS}
"""

_STATS_STORED = "p.replies_count, p.reblogs_count, p.favourites_count"
_STATS_ACTUAL = (
    "(SELECT count(*) FROM posts r WHERE r.in_reply_to_id = p.id),"
    " (SELECT count(*) FROM posts b WHERE b.reblog_of_id = p.id),"
    " (SELECT count(*) FROM favourites f WHERE f.post_id = p.id)"
)


def _notification(row: tuple) -> Notification:
    return Notification(row[1], row[0], row[2], row[3], row[4])


async def _rows(conn: psycopg.AsyncConnection, sql: str, params: Any = None) -> list[tuple]:
    cur = await conn.execute(sql, params)  # type: ignore[arg-type]
    return await cur.fetchall() if cur.description else []


async def delete_post_in(conn: psycopg.AsyncConnection, row: tuple) -> None:
    """Delete the post ``row`` (POST_COLS, locked by the caller) in the caller's
    transaction, with everything ``RecordStore.delete_post`` says goes with it."""
    post_id, author_id, handle, text, visibility, reply_to, _, reblog_of = row
    if reblog_of is None:
        await _rows(conn, _DELETE_DEPENDENTS, {"id": post_id})
    await _rows(conn, _DELETE_ONE, {
        "id": post_id, "author": author_id, "reply": reply_to, "orig": reblog_of, "vis": visibility,
        "handle": handle, "text": text,
    })


async def _lock_recipients(conn: psycopg.AsyncConnection, users: Collection[int], *, shared: bool) -> None:
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await _rows(
        conn,
        f"SELECT {fn}(%s::int, hashint8(u)) FROM unnest(%s::bigint[]) AS u ORDER BY hashint8(u)",
        (_NOTIFY_LOCKS, sorted(set(users))),
    )


async def _write_notifications(
    conn: psycopg.AsyncConnection, delete: set[tuple[int, int]], insert: list[tuple]
) -> list[Notification]:
    """Delete the (user_id, id) rows ``delete``, and make the rows ``insert`` (what the
    causes say) present if visible, absent if dismissed or cleared, under the recipients'
    shared advisory locks."""
    await _lock_recipients(conn, {u for u, _ in delete} | {r[0] for r in insert}, shared=True)
    if delete:
        users, ids = zip(*sorted(delete))
        await _rows(
            conn,
            "DELETE FROM notifications n USING unnest(%s::bigint[], %s::bigint[]) AS x(u, i)"
            " WHERE n.user_id = x.u AND n.id = x.i",
            (list(users), list(ids)),
        )
    if not insert:
        return []
    cols = [list(c) for c in zip(*insert)]
    # rows of these causes that are there although dismissed or cleared go too
    await _rows(
        conn,
        "DELETE FROM notifications n USING unnest(%s::bigint[], %s::bigint[]) AS x(u, i), users u"
        " WHERE n.user_id = x.u AND n.id = x.i AND u.id = x.u AND (n.id <= u.notifications_cleared_id"
        " OR EXISTS (SELECT FROM notification_dismissals d WHERE d.user_id = x.u AND d.id = x.i))",
        cols[:2],
    )
    rows = await _rows(conn, _INSERT_VISIBLE, cols)
    return sorted((_notification(r) for r in rows), key=lambda n: (n.user_id, n.id))


class PgConversationsStore:
    """Boosts, favourites, notifications, counters and markers on PostgreSQL, mixed into
    ``PgRecordStore`` (which provides ``db`` and ``_next_id``)."""

    db: PgDatabase
    _next_id: Callable[[], int]

    async def _transaction(
        self, fn: Callable[[psycopg.AsyncConnection], Awaitable[T]], *, outbox: bool = False
    ) -> T:
        """Run ``fn(conn)`` in one transaction; again on a deadlock or serialization failure
        (it was rolled back). ``outbox``: wake the outbox's waiters after the commit."""
        for attempt in range(8):
            try:
                async with self.db.connection() as conn:
                    async with conn.transaction():
                        result = await fn(conn)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == 7:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
                continue
            if outbox:
                self.db.outbox_committed()
            return result
        raise AssertionError("unreachable")

    # -- boosts -----------------------------------------------------------------------------
    async def reblog(
        self, user_id: int, user_handle: str, post_id: int, *, visibility: str = "public"
    ) -> tuple[Post, Post, bool]:
        bid = self._next_id()

        async def tx(conn: psycopg.AsyncConnection) -> tuple[Post, Post, bool]:
            found = await _rows(conn, _ORIGINAL, {"post": post_id})
            if not found:
                raise NotFound("Record not found")
            original = Post(*found[0])
            (created,), = await _rows(conn, _BOOST, {
                "id": bid, "u": user_id, "vis": visibility, "o": original.id, "handle": user_handle,
            })
            if created:
                return Post(bid, user_id, user_handle, "", visibility, reblog_of_id=original.id), original, True
            (row,) = await _rows(
                conn,
                f"SELECT {POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
                " WHERE p.reblog_of_id = %s AND p.author_id = %s",
                (original.id, user_id),
            )
            return Post(*row), original, False

        boost, original, created = await self._transaction(tx)
        if created:
            self.db.outbox_committed()
        return boost, original, created

    async def unreblog(self, user_id: int, post_id: int) -> tuple[Post | None, Post]:
        async def tx(conn: psycopg.AsyncConnection) -> tuple[Post | None, Post]:
            found = await _rows(conn, _ORIGINAL, {"post": post_id})
            if not found:
                raise NotFound("Record not found")
            original = Post(*found[0])
            rows = await _rows(
                conn,
                f"SELECT {POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
                " WHERE p.reblog_of_id = %s AND p.author_id = %s FOR UPDATE OF p",
                (original.id, user_id),
            )
            if not rows:
                return None, original
            await delete_post_in(conn, rows[0])
            return Post(*rows[0]), original

        boost, original = await self._transaction(tx)
        if boost is not None:
            self.db.outbox_committed()
        return boost, original

    # -- favourites -------------------------------------------------------------------------
    async def favourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        rows = await self.db.write(
            _FAVOURITE, {"post": post_id, "u": user_id, "id": self._next_id()}, outbox=False
        )
        return self._favoured(rows)

    async def unfavourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        rows = await self.db.write(_UNFAVOURITE, {"post": post_id, "u": user_id}, outbox=False)
        return self._favoured(rows)

    def _favoured(self, rows: list[tuple]) -> tuple[bool, Post]:
        if not rows:
            raise NotFound("Record not found")
        changed = bool(rows[0][-1])
        if changed:
            self.db.outbox_committed()
        return changed, Post(*rows[0][:-1])

    # -- reads ------------------------------------------------------------------------------
    async def post_stats(self, post_ids: Sequence[int], viewer_id: int | None) -> dict[int, PostStats]:
        if not post_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT p.id, p.replies_count, p.reblogs_count, p.favourites_count,"
            " EXISTS (SELECT FROM favourites f WHERE f.user_id = %(v)s AND f.post_id = p.id),"
            " EXISTS (SELECT FROM posts b WHERE b.reblog_of_id = p.id AND b.author_id = %(v)s)"
            " FROM posts p WHERE p.id = ANY(%(ids)s::bigint[])",
            {"v": viewer_id, "ids": list(post_ids)},
        )
        return {r[0]: PostStats(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    async def reply_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {i: [] for i in post_ids}
        if post_ids:
            for parent, rid in await self.db.fetch(
                "SELECT in_reply_to_id, id FROM posts WHERE in_reply_to_id = ANY(%s::bigint[])"
                " ORDER BY in_reply_to_id, id", (list(post_ids),),
            ):
                out[parent].append(rid)
        return out

    async def mention_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {i: [] for i in post_ids}
        if post_ids:
            for pid, uid in await self.db.fetch(
                "SELECT post_id, user_id FROM mentions WHERE post_id = ANY(%s::bigint[])"
                " ORDER BY post_id, user_id", (list(post_ids),),
            ):
                out[pid].append(uid)
        return out

    async def favourites_page(
        self, user_id: int, max_id: int | None, min_id: int | None, limit: int,
        oldest_first: bool = False,
    ) -> list[tuple[int, int]]:
        order = "ASC" if oldest_first else "DESC"
        rows = await self.db.fetch(
            "SELECT id, post_id FROM favourites WHERE user_id = %s AND id < %s AND id > %s"
            f" ORDER BY id {order} LIMIT %s",
            (user_id, _MAX if max_id is None else max_id, 0 if min_id is None else min_id, limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def favourited_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        rows = await self.db.fetch(
            f"SELECT f.id, {_USER_COLS} FROM favourites f JOIN users u ON u.id = f.user_id"
            " WHERE f.post_id = %s AND f.id < %s ORDER BY f.id DESC LIMIT %s",
            (post_id, _MAX if max_id is None else max_id, limit),
        )
        return [(r[0], User(*r[1:])) for r in rows]

    async def reblogged_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        rows = await self.db.fetch(
            f"SELECT b.id, {_USER_COLS} FROM posts b JOIN users u ON u.id = b.author_id"
            " WHERE b.reblog_of_id = %s AND b.id < %s ORDER BY b.id DESC LIMIT %s",
            (post_id, _MAX if max_id is None else max_id, limit),
        )
        return [(r[0], User(*r[1:])) for r in rows]

    # -- notifications ----------------------------------------------------------------------
    async def sync_notifications(
        self, *, post_ids: Sequence[int] = (), favourites: Sequence[tuple[int, int]] = (),
        follows: Sequence[tuple[int, int]] = (),
    ) -> list[Notification]:
        posts = sorted(set(post_ids))
        favs = sorted(set(favourites))
        fols = sorted(set(follows))
        if posts and not favs and not fols:
            # Nothing to write needs no transaction, no locks (5 round trips fewer): what the
            # statement saw is what the records said, and a later change comes as its own event.
            quiet = await self.db.fetchone(_POSTS_QUIET, {"p": posts})
            if quiet is not None and quiet[0]:
                return []

        async def tx(conn: psycopg.AsyncConnection) -> list[Notification]:
            want: list[tuple] = []
            drop: set[tuple[int, int]] = set()
            if posts:
                alive = [r[0] for r in await _rows(
                    conn, "SELECT id FROM posts WHERE id = ANY(%s::bigint[]) ORDER BY id FOR KEY SHARE",
                    (posts,))]
                gone = sorted(set(posts) - set(alive))
                if gone:
                    drop.update((r[0], r[1]) for r in await _rows(
                        conn, "SELECT user_id, id FROM notifications"
                        " WHERE id = ANY(%(g)s::bigint[]) OR post_id = ANY(%(g)s::bigint[])", {"g": gone}))
                if alive:
                    expected = await _rows(
                        conn,
                        "SELECT m.user_id, p.id, 'mention', p.author_id, p.id FROM posts p"
                        " JOIN mentions m ON m.post_id = p.id WHERE p.id = ANY(%(a)s::bigint[])"
                        " AND p.reblog_of_id IS NULL AND m.user_id <> p.author_id"
                        " UNION ALL SELECT o.author_id, b.id, 'reblog', b.author_id, o.id FROM posts b"
                        " JOIN posts o ON o.id = b.reblog_of_id WHERE b.id = ANY(%(a)s::bigint[])"
                        " AND o.author_id <> b.author_id",
                        {"a": alive},
                    )
                    have = await _rows(
                        conn, f"SELECT {_NOTIF_COLS} FROM notifications WHERE id = ANY(%s::bigint[])", (alive,))
                    drop.update((r[0], r[1]) for r in set(have) - set(expected))
                    want.extend(expected)
            if favs:
                users, pids = (list(c) for c in zip(*favs))
                found = {(r[1], r[2]): r for r in await _rows(
                    conn,
                    "SELECT f.id, f.user_id, f.post_id, p.author_id FROM favourites f"
                    " JOIN posts p ON p.id = f.post_id"
                    " JOIN unnest(%s::bigint[], %s::bigint[]) AS c(u, p) ON f.user_id = c.u AND f.post_id = c.p"
                    " ORDER BY f.id FOR KEY SHARE OF f, p",
                    (users, pids),
                )}
                keep = [found[k][0] if k in found else None for k in favs]
                drop.update((r[0], r[1]) for r in await _rows(
                    conn,
                    "SELECT n.user_id, n.id FROM notifications n"
                    " JOIN unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS c(u, p, keep)"
                    " ON n.post_id = c.p AND n.from_user_id = c.u"
                    " WHERE n.type = 'favourite' AND n.id IS DISTINCT FROM c.keep",
                    (users, pids, keep),
                ))
                for (u, p), (fid, _, _, author) in ((k, found[k]) for k in favs if k in found):
                    if author != u:
                        want.append((author, fid, "favourite", u, p))
            if fols:
                followers, followees = (list(c) for c in zip(*fols))
                found_f = {(r[1], r[2]): r[0] for r in await _rows(
                    conn,
                    "SELECT f.id, f.follower_id, f.followee_id FROM follows f"
                    " JOIN unnest(%s::bigint[], %s::bigint[]) AS c(a, b)"
                    " ON f.follower_id = c.a AND f.followee_id = c.b ORDER BY f.id FOR KEY SHARE OF f",
                    (followers, followees),
                )}
                keep = [found_f.get(k) for k in fols]
                drop.update((r[0], r[1]) for r in await _rows(
                    conn,
                    "SELECT n.user_id, n.id FROM notifications n"
                    " JOIN unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS c(a, b, keep)"
                    " ON n.user_id = c.b AND n.from_user_id = c.a"
                    " WHERE n.type = 'follow' AND n.id IS DISTINCT FROM c.keep",
                    (followers, followees, keep),
                ))
                want.extend((b, found_f[(a, b)], "follow", a, None) for a, b in fols
                            if (a, b) in found_f and a != b)
            return await _write_notifications(conn, drop, want)

        return await self._transaction(tx)

    async def notifications_page(
        self, user_id: int, *, types: Collection[str] | None = None,
        exclude_types: Collection[str] = (), from_user_id: int | None = None,
        max_id: int | None = None, min_id: int | None = None, limit: int = 40,
        oldest_first: bool = False,
    ) -> list[Notification]:
        order = "ASC" if oldest_first else "DESC"
        rows = await self.db.fetch(
            f"SELECT {_NOTIF_COLS} FROM notifications WHERE user_id = %(u)s AND id < %(max)s"
            " AND id > %(min)s AND (%(all)s OR type = ANY(%(types)s::text[]))"
            " AND type <> ALL(%(ex)s::text[]) AND (%(from)s::bigint IS NULL OR from_user_id = %(from)s)"
            f" ORDER BY id {order} LIMIT %(n)s",
            {"u": user_id, "max": _MAX if max_id is None else max_id, "min": 0 if min_id is None else min_id,
             "all": types is None, "types": list(types or ()), "ex": list(exclude_types),
             "from": from_user_id, "n": limit},
        )
        return [_notification(r) for r in rows]

    async def notification(self, user_id: int, notification_id: int) -> Notification | None:
        row = await self.db.fetchone(
            f"SELECT {_NOTIF_COLS} FROM notifications WHERE user_id = %s AND id = %s", (user_id, notification_id)
        )
        return _notification(row) if row else None

    async def dismiss_notification(self, user_id: int, notification_id: int) -> bool:
        async def tx(conn: psycopg.AsyncConnection) -> bool:
            await _lock_recipients(conn, [user_id], shared=False)
            rows = await _rows(
                conn,
                "WITH d AS (DELETE FROM notifications WHERE user_id = %(u)s AND id = %(i)s RETURNING 1)"
                " INSERT INTO notification_dismissals (user_id, id) SELECT %(u)s, %(i)s FROM d"
                " ON CONFLICT DO NOTHING RETURNING 1",
                {"u": user_id, "i": notification_id},
            )
            return bool(rows)

        return await self._transaction(tx)

    async def clear_notifications(self, user_id: int) -> int:
        async def tx(conn: psycopg.AsyncConnection) -> int:
            await _lock_recipients(conn, [user_id], shared=False)
            ((count,),) = await _rows(
                conn,
                "WITH d AS (DELETE FROM notifications WHERE user_id = %(u)s RETURNING id),"
                " c AS (UPDATE users SET notifications_cleared_id ="
                "   greatest(notifications_cleared_id, (SELECT max(id) FROM d))"
                "   WHERE id = %(u)s AND EXISTS (SELECT FROM d) RETURNING notifications_cleared_id),"
                " x AS (DELETE FROM notification_dismissals WHERE user_id = %(u)s"
                "   AND id <= (SELECT notifications_cleared_id FROM c))"
                " SELECT count(*) FROM d",
                {"u": user_id},
            )
            return int(count)

        return await self._transaction(tx)

    async def notification_diff(self, user_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        users = sorted(set(user_ids))
        if not users:
            return {}
        # one statement: one snapshot of the records and the table
        rows = await self.db.fetch(
            f"SELECT 'e', v.* FROM ({_VISIBLE}) v UNION ALL"
            f" SELECT 'a', {_NOTIF_COLS} FROM notifications WHERE user_id = ANY(%(r)s::bigint[])",
            {"r": users},
        )
        expected = {tuple(r[1:]) for r in rows if r[0] == "e"}
        actual = {tuple(r[1:]) for r in rows if r[0] == "a"}
        out: dict[int, tuple[int, int]] = {}
        missing: dict[int, int] = {}
        extra: dict[int, int] = {}
        for row in expected - actual:
            missing[row[0]] = missing.get(row[0], 0) + 1
        for row in actual - expected:
            extra[row[0]] = extra.get(row[0], 0) + 1
        for user in missing.keys() | extra.keys():
            out[user] = (missing.get(user, 0), extra.get(user, 0))
        return out

    async def rebuild_notifications(self, user_ids: Sequence[int]) -> int:
        users = sorted(set(user_ids))
        if not users:
            return 0

        async def tx(conn: psycopg.AsyncConnection) -> int:
            # the recipients' locks first: no dismissal or clear of theirs interleaves
            await _lock_recipients(conn, users, shared=True)
            expected = set(await _rows(conn, _VISIBLE, {"r": users}))
            actual = set(await _rows(
                conn, f"SELECT {_NOTIF_COLS} FROM notifications WHERE user_id = ANY(%s::bigint[])", (users,)))
            extra = actual - expected
            inserted = await _write_notifications(
                conn, {(r[0], r[1]) for r in extra}, sorted(expected - actual))
            return len(extra) + len(inserted)

        return await self._transaction(tx)

    # -- post counters (the audit, ``rebuild counters``) -------------------------------------
    async def post_counters(
        self, post_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        if not post_ids:
            return {}
        rows = await self.db.fetch(
            f"SELECT p.id, {_STATS_STORED}, {_STATS_ACTUAL} FROM posts p WHERE p.id = ANY(%s::bigint[])",
            (list(post_ids),),
        )
        return {r[0]: ((r[1], r[2], r[3]), (int(r[4]), int(r[5]), int(r[6]))) for r in rows}

    async def fix_post_counters(self, post_ids: Sequence[int]) -> int:
        """Recount the posts' counters. The rows are locked first (FOR UPDATE), then the
        UPDATE counts in a snapshot taken after the lock: a concurrent favourite, boost or
        reply either committed before (counted) or waits and adds itself after."""
        ids = sorted(set(post_ids))
        if not ids:
            return 0

        async def tx(conn: psycopg.AsyncConnection) -> int:
            await _rows(conn, "SELECT id FROM posts WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE", (ids,))
            cur = await conn.execute(
                f"UPDATE posts p SET (replies_count, reblogs_count, favourites_count) = ({_STATS_ACTUAL})"
                f" WHERE p.id = ANY(%s::bigint[]) AND ({_STATS_STORED}) IS DISTINCT FROM ({_STATS_ACTUAL})",
                (ids,),
            )
            return cur.rowcount

        return await self._transaction(tx)

    # -- markers ----------------------------------------------------------------------------
    async def markers(self, user_id: int, timelines: Sequence[str]) -> dict[str, Marker]:
        if not timelines:
            return {}
        rows = await self.db.fetch(
            "SELECT timeline, last_read_id, version, updated_at FROM markers"
            " WHERE user_id = %s AND timeline = ANY(%s::text[])", (user_id, list(timelines)),
        )
        return {r[0]: Marker(*r) for r in rows}

    async def set_marker(self, user_id: int, timeline: str, last_read_id: str) -> Marker:
        """Save the position, versioned as Mastodon's (Rails' ``lock_version``): 0 when
        first saved, +1 (and a new ``updated_at``) each time it moves, unchanged when saved
        again at the same id."""
        rows = await self.db.write(
            "INSERT INTO markers (user_id, timeline, last_read_id, version, updated_at)"
            " VALUES (%s, %s, %s, 0, %s) ON CONFLICT (user_id, timeline) DO UPDATE SET"
            " last_read_id = excluded.last_read_id,"
            " version = markers.version + (markers.last_read_id <> excluded.last_read_id)::int,"
            " updated_at = CASE WHEN markers.last_read_id = excluded.last_read_id THEN markers.updated_at"
            " ELSE greatest(excluded.updated_at, markers.updated_at) END"
            " RETURNING timeline, last_read_id, version, updated_at",
            (user_id, timeline, last_read_id, time.time()), outbox=False,
        )
        return Marker(*rows[0])
