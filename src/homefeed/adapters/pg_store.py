"""RecordStore on PostgreSQL: the system of record of the scale-out profile.

Same semantics as ``SqliteRecordStore``. The hot writes (create_user, follow, unfollow,
create_post with its reply and mentions, favourite, unfavourite) are ONE SQL statement each
(data-modifying CTEs), hence one transaction holding the record, the counters and the
outbox event, sent in one round trip and durable when it returns. Writes that must read
before they write several rows (delete_post with a boost cascade, reblog, unreblog, the
notification writes) are one explicit transaction of a few statements, run again on a
deadlock (``PgConversationsStore._transaction``). Readers never block writers (MVCC) and every
hot read (``posts_by_ids``, ``home_post_ids``, ``author_post_ids``, ``follower_ids``) is a
single prepared statement, whatever the number of ids.

Ids come from ``IdGenerator(node=node)``: give each API process its own ``node`` (0..1023)
so that processes never collide. At open the generator's floor is the largest id already
stored, so a restart with a clock that went backwards still never reuses an id.
Follow/unfollow update both users' counters in one ``UPDATE ... WHERE id IN (a, b)``
(``RETURNING`` the new followers count); two opposite follows racing may still deadlock on
those two rows, in which case PostgreSQL aborts one statement and ``PgDatabase.write``
runs it again.

Three jobs are in modules of their own, mixins this class inherits: accounts and OAuth 2
(``pg_accounts``: ``PgAccountsStore``), the audit/rebuild administration (``pg_admin``:
``PgAdminStore``) and conversations: boosts, favourites, notifications, post counters and
markers (``pg_conversations``: ``PgConversationsStore``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable, Sequence

from psycopg import errors as pg_errors

from homefeed.adapters.pg_accounts import (
    _ID_RETRIES,
    _KEY_PKEY,
    _USER_COLS,
    PgAccountsStore,
    _is_pkey_violation,
)
from homefeed.adapters.pg_admin import PgAdminStore
from homefeed.adapters.pg_conversations import POST_COLS, PgConversationsStore, delete_post_in
from homefeed.adapters.pg_db import PgDatabase
from homefeed.domain import model
from homefeed.domain.deployment import Deployment
from homefeed.domain.errors import Conflict, Forbidden, IdempotencyKeyTaken, NotFound
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import Post, User
from homefeed.logging_setup import current_request_id
from homefeed.ports import IdempotencyRecord

_MAX = (1 << 63) - 1
_POST_COLS = POST_COLS


def _with_key(template: str, source: str | None) -> tuple[str, str]:
    """The statement ``template`` without and with the CTE ``k`` (at ``{key}``) that stores
    an idempotency record: a plain INSERT, so a key already stored aborts the whole
    statement (unique violation) and the write with it. ``source``: the CTE whose row the
    record needs (the write stores it only if that row was made); None: always."""
    values = "%(ik)s::text, %(ifp)s::bytea, %(ist)s::int, %(ibody)s::bytea"
    rows = f"SELECT {values} FROM {source}" if source else f"VALUES ({values})"
    cte = f", k AS (INSERT INTO idempotency_keys (scope_key, fingerprint, status, body) {rows})"
    return template.replace("{key}", ""), template.replace("{key}", cte)


_CREATE_USER_TEMPLATE = f"""
WITH u AS (
    INSERT INTO users (id, handle, handle_key, display_name, token_hash)
    VALUES (%(id)s, %(handle)s, %(key)s, %(name)s, %(token)s)
    ON CONFLICT (handle_key) DO NOTHING
    RETURNING id
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.USER_REGISTERED}', jsonb_build_object('user_id', id, 'handle', %(handle)s::text)
    FROM u
){{key}}
SELECT id FROM u
"""
_CREATE_USER, _CREATE_USER_KEYED = _with_key(_CREATE_USER_TEMPLATE, "u")

_FOLLOW_TEMPLATE = f"""
WITH f AS (
    INSERT INTO follows (follower_id, followee_id, id) VALUES (%(a)s, %(b)s, %(id)s)
    ON CONFLICT DO NOTHING
    RETURNING 1
), c AS (
    UPDATE users SET following_count = following_count + (id = %(a)s)::int,
                     followers_count = followers_count + (id = %(b)s)::int
    WHERE id IN (%(a)s, %(b)s) AND EXISTS (SELECT FROM f)
    RETURNING id, followers_count
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.FOLLOWED}', jsonb_build_object(
        'follower_id', %(a)s, 'followee_id', %(b)s,
        'followers_count', (SELECT followers_count FROM c WHERE id = %(b)s))
    FROM f
){{key}}
SELECT EXISTS (SELECT FROM f),
       coalesce((SELECT followers_count FROM c WHERE id = %(b)s),
                (SELECT followers_count FROM users WHERE id = %(b)s), 0)
"""
_FOLLOW, _FOLLOW_KEYED = _with_key(_FOLLOW_TEMPLATE, None)

_UNFOLLOW = f"""
WITH f AS (
    DELETE FROM follows WHERE follower_id = %(a)s AND followee_id = %(b)s
    RETURNING 1
), c AS (
    UPDATE users SET following_count = following_count - (id = %(a)s)::int,
                     followers_count = followers_count - (id = %(b)s)::int
    WHERE id IN (%(a)s, %(b)s) AND EXISTS (SELECT FROM f)
    RETURNING id, followers_count
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.UNFOLLOWED}', jsonb_build_object(
        'follower_id', %(a)s, 'followee_id', %(b)s,
        'followers_count', (SELECT followers_count FROM c WHERE id = %(b)s))
    FROM f
)
SELECT EXISTS (SELECT FROM f),
       coalesce((SELECT followers_count FROM c WHERE id = %(b)s),
                (SELECT followers_count FROM users WHERE id = %(b)s), 0)
"""

# A reply locks its parent FOR KEY SHARE (a concurrent delete of the parent waits, or has
# won and the reply is NotFound: no row from p) and counts itself on it; mentions are stored
# for the existing users named, the author left out.
_CREATE_POST_TEMPLATE = f"""
WITH parent AS (
    SELECT id, author_id FROM posts WHERE id = %(reply)s::bigint FOR KEY SHARE
), p AS (
    INSERT INTO posts (id, author_id, text, visibility, in_reply_to_id, in_reply_to_account_id)
    SELECT %(id)s, %(author)s, %(text)s, %(visibility)s, %(reply)s::bigint, (SELECT author_id FROM parent)
    WHERE %(reply)s::bigint IS NULL OR EXISTS (SELECT FROM parent)
    RETURNING id, in_reply_to_account_id
), r AS (
    UPDATE posts SET replies_count = replies_count + 1
    WHERE id = (SELECT id FROM parent) AND EXISTS (SELECT FROM p)
), m AS (
    INSERT INTO mentions (post_id, user_id)
    SELECT p.id, u.id FROM p, users u WHERE u.id = ANY(%(mentions)s::bigint[]) AND u.id <> %(author)s
    RETURNING user_id
), c AS (
    UPDATE users SET posts_count = posts_count + 1 WHERE id = %(author)s AND EXISTS (SELECT FROM p)
), o AS (
    INSERT INTO outbox (type, data) SELECT '{model.POST_CREATED}', jsonb_build_object(
        'post_id', p.id, 'author_id', %(author)s,
        'author_handle', %(handle)s::text, 'text', %(text)s::text,
        'visibility', %(visibility)s::text, 'in_reply_to_id', %(reply)s::bigint,
        'in_reply_to_account_id', p.in_reply_to_account_id, 'reblog_of_id', NULL,
        'mention_ids', (SELECT coalesce(jsonb_agg(user_id ORDER BY user_id), '[]'::jsonb) FROM m))
        || jsonb_strip_nulls(jsonb_build_object('request_id', %(rid)s::text))
    FROM p
){{key}}
SELECT in_reply_to_account_id FROM p
"""
_CREATE_POST, _CREATE_POST_KEYED = _with_key(_CREATE_POST_TEMPLATE, "p")

_FOLLOW_PAGE = """
SELECT f.id, {cols} FROM follows f JOIN users u ON u.id = f.{other}
WHERE f.{by} = %s AND f.id < %s ORDER BY f.id DESC LIMIT %s
"""

# The home timeline from the records: for each followee (and the user), its newest posts
# below the cursor from posts_by_author, then the newest of those. Bounded work
# (followees x limit index entries), whatever the size of the posts table.
_HOME_POST_IDS = """
SELECT p.id
FROM (SELECT followee_id AS a FROM follows WHERE follower_id = %(u)s UNION SELECT %(u)s) s
CROSS JOIN LATERAL (
    SELECT id FROM posts WHERE author_id = s.a AND id < %(before)s ORDER BY id DESC LIMIT %(n)s
) p
ORDER BY p.id DESC LIMIT %(n)s
"""

_RECOUNT = """
UPDATE users u SET
    followers_count = coalesce(fr.c, 0),
    following_count = coalesce(fg.c, 0),
    posts_count     = coalesce(pc.c, 0)
FROM users x
LEFT JOIN (SELECT followee_id AS id, count(*) AS c FROM follows GROUP BY 1) fr ON fr.id = x.id
LEFT JOIN (SELECT follower_id AS id, count(*) AS c FROM follows GROUP BY 1) fg ON fg.id = x.id
LEFT JOIN (SELECT author_id AS id, count(*) AS c FROM posts GROUP BY 1) pc ON pc.id = x.id
WHERE u.id = x.id
  AND (u.followers_count, u.following_count, u.posts_count)
      IS DISTINCT FROM (coalesce(fr.c, 0), coalesce(fg.c, 0), coalesce(pc.c, 0))
"""


def _before(before: int | None) -> int:
    return before if before is not None else _MAX


def _key_taken(exc: pg_errors.UniqueViolation) -> bool:
    return exc.diag.constraint_name == _KEY_PKEY


def _keyed(sql: str, keyed_sql: str, params: dict[str, Any], record: IdempotencyRecord | None,
           created: object) -> tuple[str, dict[str, Any]]:
    """The statement to run and its parameters, with ``record``'s answer rendered from
    ``created`` (known before the statement runs: ids are made here, not by the database)."""
    if record is None:
        return sql, params
    return keyed_sql, {
        **params, "ik": record.scope_key, "ifp": record.fingerprint,
        "ist": record.status, "ibody": record.render(created),
    }


class PgRecordStore(PgAccountsStore, PgAdminStore, PgConversationsStore):
    backend: ClassVar[str] = "postgresql"
    def __init__(self, db: PgDatabase, node: int | None = 0) -> None:
        """``node=None`` claims a node id from the database, so that any number of API
        processes on any number of machines make ids that never collide (1,024 claims
        before the sequence wraps around; a restarted process claims anew)."""
        self.db = db
        self._node = node
        self.ids: IdGenerator | None = None

    async def open(self) -> None:
        await self.db.open()
        if self._node is None:
            claimed = await self.db.fetchone("SELECT nextval('homefeed_node_seq') % 1024")
            assert claimed is not None, "nextval answers one row"
            self._node = int(claimed[0])
        row = await self.db.fetchone(
            "SELECT greatest((SELECT max(id) FROM posts), (SELECT max(id) FROM users),"
            " (SELECT max(id) FROM follows), (SELECT max(id) FROM favourites))"
        )
        self.ids = IdGenerator(node=self._node, floor=(row[0] if row else None) or 0)

    async def close(self) -> None:
        await self.db.close()

    async def deployment(self) -> Deployment:
        """Which deployment this database is (generated by ``migrate``): it names the
        deployment's NATS stream and subjects, so deployments never share them."""
        row = await self.db.fetchone("SELECT id, legacy_bus_names FROM deployment")
        if row is None:
            raise RuntimeError("the deployment row is missing: run `homefeed migrate`")
        return Deployment(str(row[0]), bool(row[1]))

    def _next_id(self) -> int:
        ids = self.ids
        if ids is None:
            raise RuntimeError("PgRecordStore is not open")
        return ids.next_id()

    # -- writes ---------------------------------------------------------------------------
    async def create_user(
        self, handle: str, display_name: str, token_hash: bytes,
        *, idempotency: IdempotencyRecord | None = None,
    ) -> User:
        for attempt in range(_ID_RETRIES):
            uid = self._next_id()
            user = User(uid, handle, display_name)
            sql, params = _keyed(_CREATE_USER, _CREATE_USER_KEYED, {
                "id": uid, "handle": handle, "key": handle.lower(),
                "name": display_name, "token": token_hash,
            }, idempotency, user)
            try:
                rows = await self.db.write(sql, params, outbox=False)
            except pg_errors.UniqueViolation as exc:
                if _key_taken(exc):
                    raise IdempotencyKeyTaken("this Idempotency-Key is already used") from None
                if _is_pkey_violation(exc) and attempt < _ID_RETRIES - 1:
                    continue
                raise Conflict("this token is already registered") from exc
            if not rows:
                raise Conflict(f"handle {handle!r} is taken")
            self.db.outbox_committed()
            return user
        raise AssertionError("unreachable")

    async def follow(
        self, follower_id: int, followee_id: int, *, idempotency: IdempotencyRecord | None = None
    ) -> tuple[bool, int]:
        sql, params = _keyed(
            _FOLLOW, _FOLLOW_KEYED, {"a": follower_id, "b": followee_id, "id": self._next_id()},
            idempotency, None,
        )
        try:
            rows = await self.db.write(sql, params, outbox=False)
        except pg_errors.UniqueViolation as exc:
            if _key_taken(exc):
                raise IdempotencyKeyTaken("this Idempotency-Key is already used") from None
            raise
        changed, count = rows[0]
        if changed:
            self.db.outbox_committed()
        return bool(changed), count

    async def unfollow(self, follower_id: int, followee_id: int) -> tuple[bool, int]:
        rows = await self.db.write(_UNFOLLOW, {"a": follower_id, "b": followee_id}, outbox=False)
        changed, count = rows[0]
        if changed:
            self.db.outbox_committed()
        return bool(changed), count

    async def create_post(
        self, author_id: int, author_handle: str, text: str,
        *, idempotency: IdempotencyRecord | None = None, visibility: str = "public",
        in_reply_to_id: int | None = None, mention_ids: Sequence[int] = (),
    ) -> Post:
        mentions = sorted(set(mention_ids))
        for attempt in range(_ID_RETRIES):
            pid = self._next_id()
            # the answer an idempotency key stores needs the parent's author: read it first
            # (the statement itself decides, under its lock, whether the parent exists)
            reply_to_account = None
            if in_reply_to_id is not None and idempotency is not None:
                row = await self.db.fetchone("SELECT author_id FROM posts WHERE id = %s", (in_reply_to_id,))
                reply_to_account = row[0] if row else None
            post = Post(pid, author_id, author_handle, text, visibility, in_reply_to_id, reply_to_account)
            sql, params = _keyed(_CREATE_POST, _CREATE_POST_KEYED, {
                "id": pid, "author": author_id, "handle": author_handle, "text": text,
                "visibility": visibility, "reply": in_reply_to_id, "mentions": mentions,
                "rid": current_request_id(),
            }, idempotency, post)
            try:
                rows = await self.db.write(sql, params, outbox=False)
            except pg_errors.UniqueViolation as exc:
                if _key_taken(exc):
                    raise IdempotencyKeyTaken("this Idempotency-Key is already used") from None
                if _is_pkey_violation(exc) and attempt < _ID_RETRIES - 1:
                    continue
                raise
            if not rows:
                raise NotFound("Record not found")
            self.db.outbox_committed()
            return Post(pid, author_id, author_handle, text, visibility, in_reply_to_id, rows[0][0])
        raise AssertionError("unreachable")

    async def delete_post(self, post_id: int, by_user_id: int) -> Post:
        async def tx(conn: Any) -> Post:
            cur = await conn.execute(
                f"SELECT {_POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
                " WHERE p.id = %s FOR UPDATE OF p", (post_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound("no such post")
            if row[1] != by_user_id:
                raise Forbidden("you can delete only your own posts")
            await delete_post_in(conn, row)
            return Post(*row)

        return await self._transaction(tx, outbox=True)

    # -- reads ----------------------------------------------------------------------------
    async def user_by_id(self, user_id: int) -> User | None:
        row = await self.db.fetchone(f"SELECT {_USER_COLS} FROM users u WHERE u.id = %s", (user_id,))
        return User(*row) if row else None

    async def user_by_handle(self, handle: str) -> User | None:
        row = await self.db.fetchone(
            f"SELECT {_USER_COLS} FROM users u WHERE u.handle_key = %s", (handle.lower(),)
        )
        return User(*row) if row else None

    async def user_id_by_token_hash(self, token_hash: bytes) -> int | None:
        row = await self.db.fetchone("SELECT id FROM users WHERE token_hash = %s", (token_hash,))
        return row[0] if row else None

    async def followers_page(
        self, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]:
        return await self._follow_page("followee_id", "follower_id", user_id, before, limit)

    async def following_page(
        self, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]:
        return await self._follow_page("follower_id", "followee_id", user_id, before, limit)

    async def _follow_page(
        self, by: str, other: str, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]:
        rows = await self.db.fetch(
            _FOLLOW_PAGE.format(cols=_USER_COLS, by=by, other=other),
            (user_id, _before(before), limit),
        )
        return [(r[0], User(*r[1:])) for r in rows]

    async def follower_ids(self, user_id: int) -> list[int]:
        rows = await self.db.fetch("SELECT follower_id FROM follows WHERE followee_id = %s", (user_id,))
        return [r[0] for r in rows]

    async def follower_ids_of(self, user_ids: Sequence[int]) -> dict[int, list[int]]:
        if not user_ids:
            return {}
        rows = await self.db.fetch(
            "SELECT followee_id, array_agg(follower_id) FROM follows"
            " WHERE followee_id = ANY(%s::bigint[]) GROUP BY followee_id",
            (list(dict.fromkeys(user_ids)),),
        )
        return {r[0]: list(r[1]) for r in rows}

    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        # A primary-key probe (follower_id, followee_id) per candidate. The LATERAL ... LIMIT 1
        # forces that nested loop: with EXISTS or = ANY the planner hashed or filtered every
        # follower of the author (a 300,000-follower author, 10,000 candidates: a hash join
        # over 300,000 rows, 404 ms, against 303 ms of probes at load 20, and the probes' cost
        # does not grow with the followers).
        if not candidates:
            return []
        rows = await self.db.fetch(
            "SELECT c FROM unnest(%s::bigint[]) AS c CROSS JOIN LATERAL"
            " (SELECT 1 FROM follows f WHERE f.follower_id = c AND f.followee_id = %s LIMIT 1) AS x",
            (list(dict.fromkeys(candidates)), user_id),
        )
        return [r[0] for r in rows]

    async def following_ids(self, user_id: int) -> list[int]:
        rows = await self.db.fetch("SELECT followee_id FROM follows WHERE follower_id = %s", (user_id,))
        return [r[0] for r in rows]

    async def followers_count(self, user_id: int) -> int:
        row = await self.db.fetchone("SELECT followers_count FROM users WHERE id = %s", (user_id,))
        return row[0] if row else 0

    async def celebrity_ids(self, threshold: int) -> list[int]:
        rows = await self.db.fetch("SELECT id FROM users WHERE followers_count >= %s", (threshold,))
        return [r[0] for r in rows]

    async def posts_by_ids(self, ids: Sequence[int]) -> list[Post]:
        if not ids:
            return []
        rows = await self.db.fetch(
            f"SELECT {_POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
            " WHERE p.id = ANY(%s::bigint[])",
            (list(ids),),
        )
        return [Post(*r) for r in rows]

    async def present_post_ids(self, ids: Sequence[int]) -> set[int]:
        if not ids:
            return set()
        rows = await self.db.fetch("SELECT id FROM posts WHERE id = ANY(%s::bigint[])", (list(ids),))
        return {r[0] for r in rows}

    async def author_post_ids(self, author_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.fetch(
            "SELECT id FROM posts WHERE author_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (author_id, _before(before), limit),
        )
        return [r[0] for r in rows]

    async def public_post_ids(self, before: int | None, limit: int) -> list[int]:
        rows = await self.db.fetch(
            "SELECT id FROM posts WHERE visibility = 'public' AND reblog_of_id IS NULL"
            " AND (in_reply_to_account_id IS NULL OR in_reply_to_account_id = author_id)"
            " AND id < %s ORDER BY id DESC LIMIT %s",
            (_before(before), limit),
        )
        return [r[0] for r in rows]

    async def home_post_ids(self, user_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.fetch(
            _HOME_POST_IDS, {"u": user_id, "before": _before(before), "n": limit}
        )
        return [r[0] for r in rows]

    async def user_posts(self, author_id: int, before: int | None, limit: int) -> list[Post]:
        rows = await self.db.fetch(
            f"SELECT {_POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
            " WHERE p.author_id = %s AND p.id < %s ORDER BY p.id DESC LIMIT %s",
            (author_id, _before(before), limit),
        )
        return [Post(*r) for r in rows]

    async def posts_after(self, after_id: int, limit: int) -> list[Post]:
        """Posts in id order, for batch jobs that walk the whole table."""
        rows = await self.db.fetch(
            f"SELECT {_POST_COLS} FROM posts p JOIN users u ON u.id = p.author_id"
            " WHERE p.id > %s ORDER BY p.id LIMIT %s",
            (after_id, limit),
        )
        return [Post(*r) for r in rows]

    async def count_users(self) -> int:
        row = await self.db.fetchone("SELECT count(*) FROM users")
        return int(row[0]) if row else 0

    async def bulk_load(
        self,
        users: Iterable[tuple[int, str, str, bytes]],
        follows: Iterable[tuple[int, int, int]],
        posts: Iterable[tuple[int, int, str]],
    ) -> None:
        """Load a world in one transaction with COPY, bypassing the outbox (a batch job: the
        derived stores are rebuilt afterwards), then recompute every counter and the
        follows' notifications from the records. Duplicate follows are ignored, as in SQLite. While it runs, its open
        transaction holds back outbox delivery (see pg_outbox): load before serving."""
        async with self.db.connection() as conn:
            async with conn.transaction():
                cur = conn.cursor()
                async with cur.copy(
                    "COPY users (id, handle, handle_key, display_name, token_hash) FROM STDIN"
                ) as cp:
                    for uid, handle, name, token in users:
                        await cp.write_row((uid, handle, handle.lower(), name, token))
                await cur.execute(
                    "CREATE TEMP TABLE follows_load (follower_id bigint, followee_id bigint,"
                    " id bigint) ON COMMIT DROP",
                    prepare=False,
                )
                async with cur.copy("COPY follows_load (follower_id, followee_id, id) FROM STDIN") as cp:
                    for follow in follows:
                        await cp.write_row(follow)
                await cur.execute(
                    "INSERT INTO follows (follower_id, followee_id, id)"
                    " SELECT follower_id, followee_id, id FROM follows_load ON CONFLICT DO NOTHING",
                    prepare=False,
                )
                # Notifications are a function of the records (docs/conversations.md): a
                # loaded follow notifies its followee, as the notifier would have.
                await cur.execute(
                    "INSERT INTO notifications (user_id, id, type, from_user_id, post_id)"
                    " SELECT f.followee_id, f.id, 'follow', f.follower_id, NULL"
                    " FROM follows_load l JOIN follows f ON f.follower_id = l.follower_id"
                    "  AND f.followee_id = l.followee_id"
                    " JOIN users u ON u.id = f.followee_id"
                    " WHERE f.follower_id <> f.followee_id AND f.id > u.notifications_cleared_id"
                    " AND NOT EXISTS (SELECT FROM notification_dismissals d"
                    "  WHERE d.user_id = f.followee_id AND d.id = f.id)"
                    " ON CONFLICT DO NOTHING",
                    prepare=False,
                )
                async with cur.copy("COPY posts (id, author_id, text) FROM STDIN") as cp:
                    for post in posts:
                        await cp.write_row(post)
                await cur.execute(_RECOUNT, prepare=False)
            # statistics for the planner, and the visibility map for index-only scans
            await conn.execute("VACUUM (ANALYZE) users, follows, posts, notifications", prepare=False)
        await self.open()  # the id generator must start above the loaded ids

    async def recount_users(self) -> None:
        """Set every user's counters from the records (the counters are derived data)."""
        await self.db.write(_RECOUNT, outbox=False)

    async def max_post_id(self) -> int:
        row = await self.db.fetchone("SELECT coalesce(max(id), 0) FROM posts")
        return row[0] if row else 0

    # -- idempotency keys -------------------------------------------------------------------
    async def idempotent_reply(
        self, scope_key: str, max_age_seconds: float
    ) -> tuple[bytes, int, bytes] | None:
        row = await self.db.fetchone(
            "SELECT fingerprint, status, body FROM idempotency_keys"
            " WHERE scope_key = %s AND created_at >= now() - make_interval(secs => %s::float8)",
            (scope_key, float(max_age_seconds)),
        )
        return (bytes(row[0]), row[1], bytes(row[2])) if row else None

    async def purge_idempotency_keys(self, older_than_seconds: float) -> int:
        rows = await self.db.write(
            "WITH d AS (DELETE FROM idempotency_keys"
            " WHERE created_at < now() - make_interval(secs => %s::float8) RETURNING 1)"
            " SELECT count(*) FROM d",
            (float(older_than_seconds),),
            outbox=False,
        )
        return int(rows[0][0]) if rows else 0
