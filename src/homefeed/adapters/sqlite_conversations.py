"""The conversations part of the RecordStore on SQLite (docs/conversations.md): boosts,
favourites, the reads behind statuses and threads, notifications as a function of the
records, post counters and read markers.

``SqliteConversationsStore`` is a mixin: ``SqliteRecordStore`` (sqlite_store) inherits it
and provides ``db`` and ``ids``. The post columns and the delete of one post (with its
cascade: boosts, favourites, mentions, counters, events) live here, shared with
``sqlite_store``, which imports them from this module. Every write runs on the single
writer thread, so a counter changed in the transaction of its write is exact, and a
notification sync never interleaves with the write whose records it reads.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Collection, Iterable, Sequence

from homefeed.adapters.sqlite_accounts import _USER_COLS, _user, append_event
from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain import model
from homefeed.domain.errors import NotFound
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import Marker, Notification, Post, PostStats, User

#: A ``Post`` from ``posts p JOIN users u``, in the order of the record's fields.
POST_COLS = (
    "p.id, p.author_id, u.handle, p.text, p.visibility, p.in_reply_to_id,"
    " p.in_reply_to_account_id, p.reblog_of_id"
)
_MAX = (1 << 63) - 1
_IN_CHUNK = 500
_UCOLS = ", ".join("u." + c.strip() for c in _USER_COLS.split(","))

# The notification function of docs/conversations.md for the recipients in ``{r}`` (an IN
# list), before dismissals and the cleared id: (user_id, id, type, from_user_id, post_id).
_EXPECTED = """
SELECT f.followee_id AS user_id, f.id AS id, 'follow' AS type, f.follower_id AS from_user_id,
       NULL AS post_id FROM follows f
 WHERE f.followee_id IN ({r}) AND f.follower_id <> f.followee_id
UNION ALL
SELECT p.author_id, fv.id, 'favourite', fv.user_id, p.id FROM posts p
  JOIN favourites fv ON fv.post_id = p.id
 WHERE p.author_id IN ({r}) AND fv.user_id <> p.author_id
UNION ALL
SELECT o.author_id, b.id, 'reblog', b.author_id, o.id FROM posts o
  JOIN posts b ON b.reblog_of_id = o.id
 WHERE o.author_id IN ({r}) AND b.author_id <> o.author_id
UNION ALL
SELECT m.user_id, p.id, 'mention', p.author_id, p.id FROM mentions m
  JOIN posts p ON p.id = m.post_id
 WHERE m.user_id IN ({r}) AND p.author_id <> m.user_id AND p.reblog_of_id IS NULL
"""
# ... minus what each recipient dismissed or cleared.
_VISIBLE = f"""
SELECT e.user_id, e.id, e.type, e.from_user_id, e.post_id FROM ({_EXPECTED}) e
  JOIN users u ON u.id = e.user_id
 WHERE e.id > u.notifications_cleared_id AND NOT EXISTS (
   SELECT 1 FROM notification_dismissals d WHERE d.user_id = e.user_id AND d.id = e.id)
"""

_NOTIF_COLS = "user_id, id, type, from_user_id, post_id"
_STATS_ACTUAL = (
    "(SELECT count(*) FROM posts r WHERE r.in_reply_to_id = posts.id),"
    " (SELECT count(*) FROM posts b WHERE b.reblog_of_id = posts.id),"
    " (SELECT count(*) FROM favourites f WHERE f.post_id = posts.id)"
)
_STATS_STORED = "replies_count, reblogs_count, favourites_count"


def post_row(conn: sqlite3.Connection, post_id: int) -> tuple | None:
    return conn.execute(
        f"SELECT {POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ?", (post_id,)
    ).fetchone()


def _original_row(conn: sqlite3.Connection, post_id: int) -> tuple:
    """The post ``post_id`` names, or its original if it is a boost; NotFound if none."""
    row = post_row(conn, post_id)
    if row is not None and row[7] is not None:
        row = post_row(conn, row[7])
    if row is None:
        raise NotFound("Record not found")
    return row


def delete_post_row(conn: sqlite3.Connection, row: tuple) -> None:
    """Delete the post ``row`` (POST_COLS) and everything hanging on it, with its events,
    in the caller's transaction: the author's ``posts_count``, the parent's
    ``replies_count`` or the original's ``reblogs_count``; an original's boosts (each a
    delete of its own, with its event), favourites and mentions. Replies stay."""
    post_id, author_id, handle, text, visibility, reply_to, _, reblog_of = row
    if reblog_of is None:
        boosts = conn.execute(
            f"SELECT {POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
            " WHERE p.reblog_of_id = ? ORDER BY p.id", (post_id,),
        ).fetchall()
        for boost in boosts:
            delete_post_row(conn, boost)
        conn.execute("DELETE FROM favourites WHERE post_id = ?", (post_id,))
        conn.execute("DELETE FROM mentions WHERE post_id = ?", (post_id,))
    conn.execute("DELETE FROM posts WHERE id = ?", (post_id,))
    conn.execute("UPDATE users SET posts_count = posts_count - 1 WHERE id = ?", (author_id,))
    if reply_to is not None:
        conn.execute("UPDATE posts SET replies_count = replies_count - 1 WHERE id = ?", (reply_to,))
    if reblog_of is not None:
        conn.execute("UPDATE posts SET reblogs_count = reblogs_count - 1 WHERE id = ?", (reblog_of,))
    append_event(conn, model.POST_DELETED, {
        "post_id": post_id, "author_id": author_id, "reblog_of_id": reblog_of,
        "in_reply_to_id": reply_to, "visibility": visibility,
        # the post as it was: webhooks send it (status.deleted) once it is gone
        "author_handle": handle, "text": text,
    })


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ids = list(dict.fromkeys(ids))
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i : i + _IN_CHUNK]


def _notification(row: tuple) -> Notification:
    return Notification(row[1], row[0], row[2], row[3], row[4])


def _insert_visible(conn: sqlite3.Connection, rows: Iterable[tuple]) -> list[Notification]:
    """Insert those of ``rows`` (_NOTIF_COLS) that are not there yet, not dismissed and
    above the recipient's cleared id, and delete those that are there although dismissed
    or cleared (written behind the store's back); returns the ones inserted."""
    out: list[Notification] = []
    for row in rows:
        conn.execute(
            "DELETE FROM notifications WHERE user_id = ? AND id = ? AND (id <= (SELECT"
            " notifications_cleared_id FROM users WHERE id = ?) OR EXISTS (SELECT 1 FROM"
            " notification_dismissals d WHERE d.user_id = ? AND d.id = ?))",
            (row[0], row[1], row[0], row[0], row[1]),
        )
        cur = conn.execute(
            f"INSERT INTO notifications({_NOTIF_COLS}) SELECT ?, ?, ?, ?, ? FROM users u"
            " WHERE u.id = ? AND ? > u.notifications_cleared_id AND NOT EXISTS ("
            "  SELECT 1 FROM notification_dismissals d WHERE d.user_id = ? AND d.id = ?)"
            " ON CONFLICT DO NOTHING",
            (*row, row[0], row[1], row[0], row[1]),
        )
        if cur.rowcount:
            out.append(_notification(row))
    return out


class SqliteConversationsStore:
    """Boosts, favourites, notifications, counters and markers on SQLite, mixed into
    ``SqliteRecordStore`` (which provides ``db`` and ``ids``)."""

    db: SqliteDatabase
    ids: IdGenerator | None

    # -- boosts -----------------------------------------------------------------------------
    async def reblog(
        self, user_id: int, user_handle: str, post_id: int, *, visibility: str = "public"
    ) -> tuple[Post, Post, bool]:
        ids = self.ids
        assert ids is not None

        def tx(conn: sqlite3.Connection) -> tuple[Post, Post, bool]:
            original = _original_row(conn, post_id)
            oid = original[0]
            row = conn.execute(
                f"SELECT {POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
                " WHERE p.reblog_of_id = ? AND p.author_id = ?", (oid, user_id),
            ).fetchone()
            if row is not None:
                return Post(*row), Post(*original), False
            bid = ids.next_id()
            conn.execute(
                "INSERT INTO posts(id, author_id, text, visibility, reblog_of_id) VALUES (?, ?, '', ?, ?)",
                (bid, user_id, visibility, oid),
            )
            conn.execute("UPDATE users SET posts_count = posts_count + 1 WHERE id = ?", (user_id,))
            conn.execute("UPDATE posts SET reblogs_count = reblogs_count + 1 WHERE id = ?", (oid,))
            append_event(conn, model.POST_CREATED, {
                "post_id": bid, "author_id": user_id, "author_handle": user_handle, "text": "",
                "visibility": visibility, "in_reply_to_id": None, "in_reply_to_account_id": None,
                "reblog_of_id": oid, "mention_ids": [],
            })
            return Post(bid, user_id, user_handle, "", visibility, reblog_of_id=oid), Post(*original), True

        return await self.db.write(tx)

    async def unreblog(self, user_id: int, post_id: int) -> tuple[Post | None, Post]:
        def tx(conn: sqlite3.Connection) -> tuple[Post | None, Post]:
            original = _original_row(conn, post_id)
            row = conn.execute(
                f"SELECT {POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
                " WHERE p.reblog_of_id = ? AND p.author_id = ?", (original[0], user_id),
            ).fetchone()
            if row is None:
                return None, Post(*original)
            delete_post_row(conn, row)
            return Post(*row), Post(*original)

        return await self.db.write(tx)

    # -- favourites -------------------------------------------------------------------------
    async def favourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        ids = self.ids
        assert ids is not None

        def tx(conn: sqlite3.Connection) -> tuple[bool, Post]:
            post = _original_row(conn, post_id)
            fid = ids.next_id()
            cur = conn.execute(
                "INSERT OR IGNORE INTO favourites(id, user_id, post_id) VALUES (?, ?, ?)",
                (fid, user_id, post[0]),
            )
            if cur.rowcount == 0:
                return False, Post(*post)
            conn.execute("UPDATE posts SET favourites_count = favourites_count + 1 WHERE id = ?", (post[0],))
            append_event(conn, model.FAVOURITED, {
                "favourite_id": fid, "user_id": user_id, "post_id": post[0], "author_id": post[1],
            })
            return True, Post(*post)

        return await self.db.write(tx)

    async def unfavourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        def tx(conn: sqlite3.Connection) -> tuple[bool, Post]:
            post = _original_row(conn, post_id)
            row = conn.execute(
                "DELETE FROM favourites WHERE user_id = ? AND post_id = ? RETURNING id", (user_id, post[0])
            ).fetchone()
            if row is None:
                return False, Post(*post)
            conn.execute("UPDATE posts SET favourites_count = favourites_count - 1 WHERE id = ?", (post[0],))
            append_event(conn, model.UNFAVOURITED, {
                "favourite_id": row[0], "user_id": user_id, "post_id": post[0], "author_id": post[1],
            })
            return True, Post(*post)

        return await self.db.write(tx)

    # -- reads ------------------------------------------------------------------------------
    async def post_stats(self, post_ids: Sequence[int], viewer_id: int | None) -> dict[int, PostStats]:
        out: dict[int, PostStats] = {}
        for chunk in _chunks(post_ids):
            for r in self.db.query(
                "SELECT p.id, p.replies_count, p.reblogs_count, p.favourites_count,"
                " EXISTS (SELECT 1 FROM favourites f WHERE f.user_id = ? AND f.post_id = p.id),"
                " EXISTS (SELECT 1 FROM posts b WHERE b.reblog_of_id = p.id AND b.author_id = ?)"
                f" FROM posts p WHERE p.id IN ({_marks(len(chunk))})",
                (viewer_id, viewer_id, *chunk),
            ):
                out[r[0]] = PostStats(r[1], r[2], r[3], bool(r[4]), bool(r[5]))
        return out

    async def reply_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {i: [] for i in post_ids}
        for chunk in _chunks(post_ids):
            for parent, rid in self.db.query(
                f"SELECT in_reply_to_id, id FROM posts WHERE in_reply_to_id IN ({_marks(len(chunk))})"
                " ORDER BY in_reply_to_id, id", chunk,
            ):
                out[parent].append(rid)
        return out

    async def mention_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {i: [] for i in post_ids}
        for chunk in _chunks(post_ids):
            for pid, uid in self.db.query(
                f"SELECT post_id, user_id FROM mentions WHERE post_id IN ({_marks(len(chunk))})"
                " ORDER BY post_id, user_id", chunk,
            ):
                out[pid].append(uid)
        return out

    async def favourites_page(
        self, user_id: int, max_id: int | None, min_id: int | None, limit: int,
        oldest_first: bool = False,
    ) -> list[tuple[int, int]]:
        order = "ASC" if oldest_first else "DESC"
        return [
            (r[0], r[1])
            for r in self.db.query(
                "SELECT id, post_id FROM favourites WHERE user_id = ? AND id < ? AND id > ?"
                f" ORDER BY id {order} LIMIT ?",
                (user_id, _MAX if max_id is None else max_id, 0 if min_id is None else min_id, limit),
            )
        ]

    async def favourited_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        rows = self.db.query(
            f"SELECT f.id, {_UCOLS} FROM favourites f JOIN users u ON u.id = f.user_id"
            " WHERE f.post_id = ? AND f.id < ? ORDER BY f.id DESC LIMIT ?",
            (post_id, _MAX if max_id is None else max_id, limit),
        )
        return [(r[0], _user(r[1:])) for r in rows]

    async def reblogged_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        rows = self.db.query(
            f"SELECT b.id, {_UCOLS} FROM posts b JOIN users u ON u.id = b.author_id"
            " WHERE b.reblog_of_id = ? AND b.id < ? ORDER BY b.id DESC LIMIT ?",
            (post_id, _MAX if max_id is None else max_id, limit),
        )
        return [(r[0], _user(r[1:])) for r in rows]

    # -- notifications ----------------------------------------------------------------------
    async def sync_notifications(
        self, *, post_ids: Sequence[int] = (), favourites: Sequence[tuple[int, int]] = (),
        follows: Sequence[tuple[int, int]] = (),
    ) -> list[Notification]:
        posts = list(dict.fromkeys(post_ids))
        favs = list(dict.fromkeys(favourites))
        fols = list(dict.fromkeys(follows))

        def tx(conn: sqlite3.Connection) -> list[Notification]:
            expected: list[tuple] = []
            for chunk in _chunks(posts):
                marks = _marks(len(chunk))
                alive = {r[0] for r in conn.execute(f"SELECT id FROM posts WHERE id IN ({marks})", chunk)}
                gone = [p for p in chunk if p not in alive]
                if gone:
                    gm = _marks(len(gone))
                    conn.execute(f"DELETE FROM notifications WHERE id IN ({gm}) OR post_id IN ({gm})",
                                 (*gone, *gone))
                if not alive:
                    continue
                live = list(alive)
                lm = _marks(len(live))
                want = conn.execute(
                    f"SELECT m.user_id, p.id, 'mention', p.author_id, p.id FROM posts p"
                    f" JOIN mentions m ON m.post_id = p.id WHERE p.id IN ({lm})"
                    " AND p.reblog_of_id IS NULL AND m.user_id <> p.author_id"
                    " UNION ALL SELECT o.author_id, b.id, 'reblog', b.author_id, o.id FROM posts b"
                    f" JOIN posts o ON o.id = b.reblog_of_id WHERE b.id IN ({lm})"
                    " AND o.author_id <> b.author_id",
                    (*live, *live),
                ).fetchall()
                have = conn.execute(
                    f"SELECT {_NOTIF_COLS} FROM notifications WHERE id IN ({lm})", live
                ).fetchall()
                _delete_rows(conn, set(have) - set(want))
                expected.extend(want)
            for user_id, post_id in favs:
                row = conn.execute(
                    "SELECT f.id, p.author_id FROM favourites f JOIN posts p ON p.id = f.post_id"
                    " WHERE f.user_id = ? AND f.post_id = ?", (user_id, post_id),
                ).fetchone()
                conn.execute(
                    "DELETE FROM notifications WHERE post_id = ? AND type = 'favourite'"
                    " AND from_user_id = ? AND id IS NOT ?",
                    (post_id, user_id, row[0] if row else None),
                )
                if row is not None and row[1] != user_id:
                    expected.append((row[1], row[0], "favourite", user_id, post_id))
            for follower_id, followee_id in fols:
                row = conn.execute(
                    "SELECT id FROM follows WHERE follower_id = ? AND followee_id = ?", (follower_id, followee_id)
                ).fetchone()
                conn.execute(
                    "DELETE FROM notifications WHERE user_id = ? AND from_user_id = ? AND type = 'follow'"
                    " AND id IS NOT ?",
                    (followee_id, follower_id, row[0] if row else None),
                )
                if row is not None and follower_id != followee_id:
                    expected.append((followee_id, row[0], "follow", follower_id, None))
            return _insert_visible(conn, expected)

        return await self.db.write(tx)

    async def notifications_page(
        self, user_id: int, *, types: Collection[str] | None = None,
        exclude_types: Collection[str] = (), from_user_id: int | None = None,
        max_id: int | None = None, min_id: int | None = None, limit: int = 40,
        oldest_first: bool = False,
    ) -> list[Notification]:
        where = ["user_id = ?", "id < ?", "id > ?"]
        params: list = [user_id, _MAX if max_id is None else max_id, 0 if min_id is None else min_id]
        if types is not None:
            where.append(f"type IN ({_marks(len(types))})" if types else "0")
            params.extend(types)
        if exclude_types:
            where.append(f"type NOT IN ({_marks(len(exclude_types))})")
            params.extend(exclude_types)
        if from_user_id is not None:
            where.append("from_user_id = ?")
            params.append(from_user_id)
        order = "ASC" if oldest_first else "DESC"
        rows = self.db.query(
            f"SELECT {_NOTIF_COLS} FROM notifications WHERE {' AND '.join(where)}"
            f" ORDER BY id {order} LIMIT ?", (*params, limit),
        )
        return [_notification(r) for r in rows]

    async def notification(self, user_id: int, notification_id: int) -> Notification | None:
        row = self.db.query_one(
            f"SELECT {_NOTIF_COLS} FROM notifications WHERE user_id = ? AND id = ?", (user_id, notification_id)
        )
        return _notification(row) if row else None

    async def dismiss_notification(self, user_id: int, notification_id: int) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM notifications WHERE user_id = ? AND id = ?", (user_id, notification_id)
            )
            if cur.rowcount == 0:
                return False
            conn.execute(
                "INSERT OR IGNORE INTO notification_dismissals(user_id, id) VALUES (?, ?)",
                (user_id, notification_id),
            )
            return True

        return await self.db.write(tx)

    async def clear_notifications(self, user_id: int) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            count, top = conn.execute(
                "SELECT count(*), coalesce(max(id), 0) FROM notifications WHERE user_id = ?", (user_id,)
            ).fetchone()
            conn.execute("DELETE FROM notifications WHERE user_id = ?", (user_id,))
            conn.execute(
                "UPDATE users SET notifications_cleared_id = max(notifications_cleared_id, ?) WHERE id = ?",
                (top, user_id),
            )
            # dismissals at or below the cleared id are implied by it now
            conn.execute(
                "DELETE FROM notification_dismissals WHERE user_id = ? AND id <= ?"
                " AND id <= (SELECT notifications_cleared_id FROM users WHERE id = ?)",
                (user_id, top, user_id),
            )
            return int(count)

        return await self.db.write(tx)

    def _expected_and_actual(
        self, conn: sqlite3.Connection, users: list[int]
    ) -> tuple[set[tuple], set[tuple]]:
        marks = _marks(len(users))
        visible = _VISIBLE.replace("{r}", marks)
        rows = conn.execute(
            f"SELECT 'e', * FROM ({visible}) UNION ALL"
            f" SELECT 'a', {_NOTIF_COLS} FROM notifications WHERE user_id IN ({marks})",
            (*users, *users, *users, *users, *users),
        ).fetchall()
        expected = {tuple(r[1:]) for r in rows if r[0] == "e"}
        actual = {tuple(r[1:]) for r in rows if r[0] == "a"}
        return expected, actual

    async def notification_diff(self, user_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        assert self.db.reader is not None, "database is not open"
        for chunk in _chunks(user_ids):
            # one statement: one snapshot of the records and the table
            expected, actual = self._expected_and_actual(self.db.reader, chunk)
            _tally(out, expected, actual)
        return out

    async def rebuild_notifications(self, user_ids: Sequence[int]) -> int:
        users = list(dict.fromkeys(user_ids))

        def tx(conn: sqlite3.Connection) -> int:
            # Set-based: one INSERT per chunk, not two statements per missing row. Each
            # statement's journal is released inside the writer's SAVEPOINT, and with the
            # sub-journal in memory a release walks all of it: per-row statements made a
            # rebuild quadratic in the pages it dirtied (the demo world's 316k notifications:
            # 1,300 users/s at first, under 5 users/s by the end).
            changed = 0
            for chunk in _chunks(users):
                expected, actual = self._expected_and_actual(conn, chunk)
                extra = actual - expected
                _delete_rows(conn, extra)
                visible = _VISIBLE.replace("{r}", _marks(len(chunk)))
                changed += len(extra) + conn.execute(
                    f"INSERT INTO notifications({_NOTIF_COLS}) SELECT * FROM ({visible}) v"
                    " WHERE NOT EXISTS (SELECT 1 FROM notifications n"
                    "  WHERE n.user_id = v.user_id AND n.id = v.id)",
                    (*chunk, *chunk, *chunk, *chunk),
                ).rowcount
            return changed

        return await self.db.write(tx)

    # -- post counters (the audit, ``rebuild counters``) -------------------------------------
    async def post_counters(
        self, post_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        out: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = {}
        for chunk in _chunks(post_ids):
            for r in self.db.query(
                f"SELECT id, {_STATS_STORED}, {_STATS_ACTUAL} FROM posts WHERE id IN ({_marks(len(chunk))})",
                chunk,
            ):
                out[r[0]] = ((r[1], r[2], r[3]), (r[4], r[5], r[6]))
        return out

    async def fix_post_counters(self, post_ids: Sequence[int]) -> int:
        ids = list(post_ids)

        def tx(conn: sqlite3.Connection) -> int:
            changed = 0
            for chunk in _chunks(ids):
                changed += conn.execute(
                    f"UPDATE posts SET ({_STATS_STORED}) = ({_STATS_ACTUAL})"
                    f" WHERE id IN ({_marks(len(chunk))}) AND ({_STATS_STORED}) IS NOT ({_STATS_ACTUAL})",
                    chunk,
                ).rowcount
            return changed

        return await self.db.write(tx)

    # -- markers ----------------------------------------------------------------------------
    async def markers(self, user_id: int, timelines: Sequence[str]) -> dict[str, Marker]:
        names = list(dict.fromkeys(timelines))
        if not names:
            return {}
        rows = self.db.query(
            "SELECT timeline, last_read_id, version, updated_at FROM markers"
            f" WHERE user_id = ? AND timeline IN ({_marks(len(names))})", (user_id, *names),
        )
        return {r[0]: Marker(*r) for r in rows}

    async def set_marker(self, user_id: int, timeline: str, last_read_id: str) -> Marker:
        """Save the position, versioned as Mastodon's (Rails' ``lock_version``): 0 when
        first saved, +1 (and a new ``updated_at``) each time it moves, unchanged when saved
        again at the same id."""
        now = time.time()

        def tx(conn: sqlite3.Connection) -> Marker:
            row = conn.execute(
                "INSERT INTO markers(user_id, timeline, last_read_id, version, updated_at)"
                " VALUES (?, ?, ?, 0, ?) ON CONFLICT (user_id, timeline) DO UPDATE SET"
                " last_read_id = excluded.last_read_id,"
                " version = markers.version + (markers.last_read_id <> excluded.last_read_id),"
                " updated_at = CASE WHEN markers.last_read_id = excluded.last_read_id"
                " THEN markers.updated_at ELSE excluded.updated_at END"
                " RETURNING timeline, last_read_id, version, updated_at",
                (user_id, timeline, last_read_id, now),
            ).fetchone()
            return Marker(*row)

        return await self.db.write(tx)


def _delete_rows(conn: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    conn.executemany("DELETE FROM notifications WHERE user_id = ? AND id = ?", ((r[0], r[1]) for r in rows))


def _tally(out: dict[int, tuple[int, int]], expected: set[tuple], actual: set[tuple]) -> None:
    missing: dict[int, int] = {}
    extra: dict[int, int] = {}
    for row in expected - actual:
        missing[row[0]] = missing.get(row[0], 0) + 1
    for row in actual - expected:
        extra[row[0]] = extra.get(row[0], 0) + 1
    for user in missing.keys() | extra.keys():
        out[user] = (missing.get(user, 0), extra.get(user, 0))
