"""RecordStore on SQLite: the system of record of the embedded profile.

Every write function below runs on the writer thread inside one transaction that also
appends the event describing it to the ``outbox`` table.
"""

from __future__ import annotations

import sqlite3
import time
from typing import ClassVar, Iterable, Sequence

import orjson

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain import model
from homefeed.domain.errors import Conflict, Forbidden, NotFound
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import Post, User
from homefeed.logging_setup import current_request_id
from homefeed.ports import IdempotencyKeyTaken, IdempotencyRecord

_USER_COLS = "id, handle, display_name, followers_count, following_count, posts_count"
# SQLite limits host parameters per statement; chunk IN (...) lists below this.
_IN_CHUNK = 500


def _user(row: tuple) -> User:
    return User(*row)


def append_event(conn: sqlite3.Connection, type_: str, data: dict) -> None:
    conn.execute("INSERT INTO outbox(type, data) VALUES (?, ?)", (type_, orjson.dumps(data)))


def remember(conn: sqlite3.Connection, record: IdempotencyRecord | None, created: object) -> None:
    """Store the answer to ``record``'s key inside the caller's write transaction; a key
    already stored (even expired: the purge removes those) rolls the write back."""
    if record is None:
        return
    try:
        conn.execute(
            "INSERT INTO idempotency_keys(scope_key, fingerprint, status, body, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (record.scope_key, record.fingerprint, record.status, record.render(created), time.time()),
        )
    except sqlite3.IntegrityError:
        raise IdempotencyKeyTaken("this Idempotency-Key is already used") from None


class SqliteRecordStore:
    backend: ClassVar[str] = "sqlite"

    def __init__(self, db: SqliteDatabase, node: int = 0) -> None:
        self.db = db
        self._node = node
        self.ids: IdGenerator | None = None

    async def open(self) -> None:
        self.db.open()
        floor = self.db.query_value(
            "SELECT max(m) FROM (SELECT max(id) AS m FROM posts UNION ALL SELECT max(id) FROM users"
            " UNION ALL SELECT max(id) FROM follows)"
        )
        self.ids = IdGenerator(node=self._node, floor=floor or 0)

    async def close(self) -> None:
        self.db.close()

    # -- writes ---------------------------------------------------------------------------
    async def create_user(
        self, handle: str, display_name: str, token_hash: bytes,
        *, idempotency: IdempotencyRecord | None = None,
    ) -> User:
        ids = self.ids
        assert ids is not None

        def tx(conn: sqlite3.Connection) -> User:
            key = handle.lower()
            if conn.execute("SELECT 1 FROM users WHERE handle_key = ?", (key,)).fetchone():
                raise Conflict(f"handle {handle!r} is taken")
            uid = ids.next_id()
            conn.execute(
                "INSERT INTO users(id, handle, handle_key, display_name, token_hash)"
                " VALUES (?, ?, ?, ?, ?)",
                (uid, handle, key, display_name, token_hash),
            )
            append_event(conn, model.USER_REGISTERED, {"user_id": uid, "handle": handle})
            user = User(uid, handle, display_name)
            remember(conn, idempotency, user)
            return user

        return await self.db.write(tx)

    async def follow(
        self, follower_id: int, followee_id: int, *, idempotency: IdempotencyRecord | None = None
    ) -> tuple[bool, int]:
        ids = self.ids
        assert ids is not None

        def tx(conn: sqlite3.Connection) -> tuple[bool, int]:
            remember(conn, idempotency, None)
            cur = conn.execute(
                "INSERT OR IGNORE INTO follows(follower_id, followee_id, id) VALUES (?, ?, ?)",
                (follower_id, followee_id, ids.next_id()),
            )
            if cur.rowcount == 0:
                return False, _count(conn, followee_id)
            conn.execute(
                "UPDATE users SET following_count = following_count + 1 WHERE id = ?",
                (follower_id,),
            )
            count = conn.execute(
                "UPDATE users SET followers_count = followers_count + 1 WHERE id = ?"
                " RETURNING followers_count",
                (followee_id,),
            ).fetchone()[0]
            append_event(
                conn,
                model.FOLLOWED,
                {"follower_id": follower_id, "followee_id": followee_id, "followers_count": count},
            )
            return True, count

        return await self.db.write(tx)

    async def unfollow(self, follower_id: int, followee_id: int) -> tuple[bool, int]:
        def tx(conn: sqlite3.Connection) -> tuple[bool, int]:
            cur = conn.execute(
                "DELETE FROM follows WHERE follower_id = ? AND followee_id = ?",
                (follower_id, followee_id),
            )
            if cur.rowcount == 0:
                return False, _count(conn, followee_id)
            conn.execute(
                "UPDATE users SET following_count = following_count - 1 WHERE id = ?",
                (follower_id,),
            )
            count = conn.execute(
                "UPDATE users SET followers_count = followers_count - 1 WHERE id = ?"
                " RETURNING followers_count",
                (followee_id,),
            ).fetchone()[0]
            append_event(
                conn,
                model.UNFOLLOWED,
                {"follower_id": follower_id, "followee_id": followee_id, "followers_count": count},
            )
            return True, count

        return await self.db.write(tx)

    async def create_post(
        self, author_id: int, author_handle: str, text: str,
        *, idempotency: IdempotencyRecord | None = None,
    ) -> Post:
        ids = self.ids
        assert ids is not None
        trace = {"request_id": rid} if (rid := current_request_id()) else {}

        def tx(conn: sqlite3.Connection) -> Post:
            pid = ids.next_id()
            conn.execute(
                "INSERT INTO posts(id, author_id, text) VALUES (?, ?, ?)", (pid, author_id, text)
            )
            conn.execute(
                "UPDATE users SET posts_count = posts_count + 1 WHERE id = ?", (author_id,)
            )
            append_event(
                conn,
                model.POST_CREATED,
                {"post_id": pid, "author_id": author_id, "author_handle": author_handle, "text": text, **trace},
            )
            post = Post(pid, author_id, author_handle, text)
            remember(conn, idempotency, post)
            return post

        return await self.db.write(tx)

    async def delete_post(self, post_id: int, by_user_id: int) -> Post:
        def tx(conn: sqlite3.Connection) -> Post:
            row = conn.execute(
                "SELECT p.id, p.author_id, u.handle, p.text FROM posts p"
                " JOIN users u ON u.id = p.author_id WHERE p.id = ?",
                (post_id,),
            ).fetchone()
            if row is None:
                raise NotFound("no such post")
            if row[1] != by_user_id:
                raise Forbidden("you can delete only your own posts")
            conn.execute("DELETE FROM posts WHERE id = ?", (post_id,))
            conn.execute(
                "UPDATE users SET posts_count = posts_count - 1 WHERE id = ?", (by_user_id,)
            )
            append_event(conn, model.POST_DELETED, {"post_id": post_id, "author_id": row[1]})
            return Post(*row)

        return await self.db.write(tx)

    # -- reads ----------------------------------------------------------------------------
    async def user_by_id(self, user_id: int) -> User | None:
        row = self.db.query_one(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def user_by_handle(self, handle: str) -> User | None:
        row = self.db.query_one(
            f"SELECT {_USER_COLS} FROM users WHERE handle_key = ?", (handle.lower(),)
        )
        return _user(row) if row else None

    async def user_id_by_token_hash(self, token_hash: bytes) -> int | None:
        row = self.db.query_one("SELECT id FROM users WHERE token_hash = ?", (token_hash,))
        return row[0] if row else None

    async def followers_page(
        self, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]:
        return self._follow_page("followee_id", "follower_id", user_id, before, limit)

    async def following_page(
        self, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]:
        return self._follow_page("follower_id", "followee_id", user_id, before, limit)

    def _follow_page(
        self, by: str, other: str, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]:
        cols = ", ".join("u." + c.strip() for c in _USER_COLS.split(","))
        rows = self.db.query(
            f"SELECT f.id, {cols} FROM follows f JOIN users u ON u.id = f.{other}"
            f" WHERE f.{by} = ? AND f.id < ? ORDER BY f.id DESC LIMIT ?",
            (user_id, before if before is not None else _MAX, limit),
        )
        return [(r[0], _user(r[1:])) for r in rows]

    async def follower_ids(self, user_id: int) -> list[int]:
        return [
            r[0] for r in self.db.query("SELECT follower_id FROM follows WHERE followee_id = ?", (user_id,))
        ]

    async def following_ids(self, user_id: int) -> list[int]:
        return [
            r[0] for r in self.db.query("SELECT followee_id FROM follows WHERE follower_id = ?", (user_id,))
        ]

    async def followers_count(self, user_id: int) -> int:
        row = self.db.query_one("SELECT followers_count FROM users WHERE id = ?", (user_id,))
        return row[0] if row else 0

    async def celebrity_ids(self, threshold: int) -> list[int]:
        return [
            r[0] for r in self.db.query("SELECT id FROM users WHERE followers_count >= ?", (threshold,))
        ]

    async def posts_by_ids(self, ids: Sequence[int]) -> list[Post]:
        out: list[Post] = []
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = list(ids[i : i + _IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            out.extend(
                Post(*r)
                for r in self.db.query(
                    "SELECT p.id, p.author_id, u.handle, p.text FROM posts p"
                    f" JOIN users u ON u.id = p.author_id WHERE p.id IN ({marks})",
                    chunk,
                )
            )
        return out

    async def author_post_ids(self, author_id: int, before: int | None, limit: int) -> list[int]:
        return [
            r[0]
            for r in self.db.query(
                "SELECT id FROM posts WHERE author_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (author_id, before if before is not None else _MAX, limit),
            )
        ]

    async def home_post_ids(self, user_id: int, before: int | None, limit: int) -> list[int]:
        return [
            r[0]
            for r in self.db.query(
                "SELECT id FROM posts WHERE author_id IN"
                " (SELECT followee_id FROM follows WHERE follower_id = ? UNION ALL SELECT ?)"
                " AND id < ? ORDER BY id DESC LIMIT ?",
                (user_id, user_id, before if before is not None else _MAX, limit),
            )
        ]

    async def user_posts(self, author_id: int, before: int | None, limit: int) -> list[Post]:
        return [
            Post(*r)
            for r in self.db.query(
                "SELECT p.id, p.author_id, u.handle, p.text FROM posts p"
                " JOIN users u ON u.id = p.author_id"
                " WHERE p.author_id = ? AND p.id < ? ORDER BY p.id DESC LIMIT ?",
                (author_id, before if before is not None else _MAX, limit),
            )
        ]

    async def posts_after(self, after_id: int, limit: int) -> list[Post]:
        """Posts in id order, for batch jobs that walk the whole table."""
        return [
            Post(*r)
            for r in self.db.query(
                "SELECT p.id, p.author_id, u.handle, p.text FROM posts p"
                " JOIN users u ON u.id = p.author_id WHERE p.id > ? ORDER BY p.id LIMIT ?",
                (after_id, limit),
            )
        ]

    async def bulk_load(
        self,
        users: Iterable[tuple[int, str, str, bytes]],
        follows: Iterable[tuple[int, int, int]],
        posts: Iterable[tuple[int, int, str]],
    ) -> None:
        """Load a world in one transaction, bypassing the outbox (a batch job: the derived
        stores are rebuilt afterwards), then recompute every counter from the records."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO users(id, handle, handle_key, display_name, token_hash)"
                " VALUES (?, ?, lower(?), ?, ?)",
                ((i, h, h, d, t) for i, h, d, t in users),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO follows(follower_id, followee_id, id) VALUES (?, ?, ?)", follows
            )
            conn.executemany("INSERT INTO posts(id, author_id, text) VALUES (?, ?, ?)", posts)
            recount_users(conn)

        await self.db.write(tx)
        await self.open()  # the id generator must start above the loaded ids

    async def count_users(self) -> int:
        return int(self.db.query_value("SELECT count(*) FROM users"))

    async def max_post_id(self) -> int:
        return int(self.db.query_value("SELECT coalesce(max(id), 0) FROM posts"))

    # -- idempotency keys -------------------------------------------------------------------
    async def idempotent_reply(
        self, scope_key: str, max_age_seconds: float
    ) -> tuple[bytes, int, bytes] | None:
        row = self.db.query_one(
            "SELECT fingerprint, status, body FROM idempotency_keys"
            " WHERE scope_key = ? AND created_at >= ?",
            (scope_key, time.time() - max_age_seconds),
        )
        return (bytes(row[0]), row[1], bytes(row[2])) if row else None

    async def purge_idempotency_keys(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds

        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (cutoff,)).rowcount

        return await self.db.write(tx)

    # -- administration (audit, rebuild) ----------------------------------------------------
    async def user_ids_after(self, after_id: int, limit: int) -> list[int]:
        return [r[0] for r in self.db.query("SELECT id FROM users WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))]

    async def sample_user_ids(self, n: int) -> list[int]:
        return [r[0] for r in self.db.query("SELECT id FROM users ORDER BY random() LIMIT ?", (n,))]

    async def counters(
        self, user_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        out: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = {}
        for i in range(0, len(user_ids), _IN_CHUNK):
            chunk = list(user_ids[i : i + _IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            for r in self.db.query(f"SELECT id, {_STORED}, {_ACTUAL} FROM users WHERE id IN ({marks})", chunk):
                out[r[0]] = ((r[1], r[2], r[3]), (r[4], r[5], r[6]))
        return out

    async def fix_counters(self, user_ids: Sequence[int]) -> int:
        """Recount the users' counters in one write transaction (the single writer: no
        follow or post of theirs can interleave). Returns how many users changed."""
        ids = list(user_ids)

        def tx(conn: sqlite3.Connection) -> int:
            changed = 0
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                changed += conn.execute(
                    f"UPDATE users SET ({_STORED}) = ({_ACTUAL})"
                    f" WHERE id IN ({marks}) AND ({_STORED}) IS NOT ({_ACTUAL})",
                    chunk,
                ).rowcount
            return changed

        return await self.db.write(tx)


_MAX = (1 << 63) - 1
_STORED = "followers_count, following_count, posts_count"
_ACTUAL = (
    "(SELECT count(*) FROM follows WHERE followee_id = users.id),"
    " (SELECT count(*) FROM follows WHERE follower_id = users.id),"
    " (SELECT count(*) FROM posts WHERE author_id = users.id)"
)


def _count(conn: sqlite3.Connection, user_id: int) -> int:
    row = conn.execute("SELECT followers_count FROM users WHERE id = ?", (user_id,)).fetchone()
    return row[0] if row else 0


def recount_users(conn: sqlite3.Connection) -> None:
    """Set every user's counters from the records (the counters are derived data)."""
    conn.execute(
        "UPDATE users SET"
        " followers_count = (SELECT count(*) FROM follows WHERE followee_id = users.id),"
        " following_count = (SELECT count(*) FROM follows WHERE follower_id = users.id),"
        " posts_count = (SELECT count(*) FROM posts WHERE author_id = users.id)"
    )
