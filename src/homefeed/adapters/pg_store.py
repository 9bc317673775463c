"""RecordStore on PostgreSQL: the system of record of the scale-out profile.

Same semantics as ``SqliteRecordStore``. Every write is ONE SQL statement (data-modifying
CTEs), hence one transaction holding the record, the counters and the outbox event, sent in
one round trip and durable when it returns. Readers never block writers (MVCC) and every
hot read (``posts_by_ids``, ``home_post_ids``, ``author_post_ids``, ``follower_ids``) is a
single prepared statement, whatever the number of ids.

Ids come from ``IdGenerator(node=node)``: give each API process its own ``node`` (0..1023)
so that processes never collide. At open the generator's floor is the largest id already
stored, so a restart with a clock that went backwards still never reuses an id.
Follow/unfollow update both users' counters in one ``UPDATE ... WHERE id IN (a, b)``
(``RETURNING`` the new followers count); two opposite follows racing may still deadlock on
those two rows, in which case PostgreSQL aborts one statement and ``PgDatabase.write``
runs it again.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar, Iterable, Sequence

from psycopg import errors as pg_errors

from homefeed.adapters.pg_db import PgDatabase
from homefeed.domain import model
from homefeed.domain.deployment import Deployment
from homefeed.domain.errors import Conflict, Forbidden, IdempotencyKeyTaken, NotFound
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import Post, User
from homefeed.domain.oauth import AccessToken, AuthCode, OAuthApp
from homefeed.logging_setup import current_request_id
from homefeed.ports import IdempotencyRecord

_MAX = (1 << 63) - 1
_USER_COLS = "u.id, u.handle, u.display_name, u.followers_count, u.following_count, u.posts_count, u.note"
_POST_COLS = "p.id, p.author_id, u.handle, p.text, p.visibility"
# A primary-key collision means an id was issued twice (see report on IdGenerator floors):
# take a fresh id and try again, a bounded number of times.
_ID_RETRIES = 5
_KEY_PKEY = "idempotency_keys_pkey"


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

_CREATE_POST_TEMPLATE = f"""
WITH p AS (
    INSERT INTO posts (id, author_id, text, visibility)
    VALUES (%(id)s, %(author)s, %(text)s, %(visibility)s)
), c AS (
    UPDATE users SET posts_count = posts_count + 1 WHERE id = %(author)s
){{key}}
INSERT INTO outbox (type, data) VALUES ('{model.POST_CREATED}', jsonb_build_object(
    'post_id', %(id)s, 'author_id', %(author)s,
    'author_handle', %(handle)s::text, 'text', %(text)s::text,
    'visibility', %(visibility)s::text)
    || jsonb_strip_nulls(jsonb_build_object('request_id', %(rid)s::text)))
"""
_CREATE_POST, _CREATE_POST_KEYED = _with_key(_CREATE_POST_TEMPLATE, None)

# p (a plain read) and d share the statement's snapshot. If d deletes nothing although p
# saw the post by this author, a concurrent delete won: NotFound, as if it came first.
_DELETE_POST = f"""
WITH p AS (
    SELECT author_id FROM posts WHERE id = %(id)s
), d AS (
    DELETE FROM posts WHERE id = %(id)s AND author_id = %(by)s
    RETURNING id, author_id, text, visibility
), c AS (
    UPDATE users SET posts_count = posts_count - 1 WHERE id = (SELECT author_id FROM d)
    RETURNING handle
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.POST_DELETED}', jsonb_build_object('post_id', id, 'author_id', author_id)
    FROM d
)
SELECT (SELECT author_id FROM p), (SELECT text FROM d), (SELECT handle FROM c),
       EXISTS (SELECT FROM d), (SELECT visibility FROM d)
"""

_CREATE_ACCOUNT = f"""
WITH u AS (
    INSERT INTO users (id, handle, handle_key, display_name, token_hash, email, email_key, password_hash)
    VALUES (%(id)s, %(handle)s, %(key)s, %(name)s, %(token)s, %(email)s, lower(%(email)s), %(pw)s)
    ON CONFLICT (handle_key) DO NOTHING
    RETURNING id
), t AS (
    INSERT INTO oauth_tokens (token_hash, refresh_hash, app_id, user_id, scopes, created_at, expires_at)
    SELECT %(th)s, %(rh)s, %(app)s, id, %(scopes)s, %(at)s, %(exp)s FROM u
), o AS (
    INSERT INTO outbox (type, data)
    SELECT '{model.USER_REGISTERED}', jsonb_build_object('user_id', id, 'handle', %(handle)s::text)
    FROM u
)
SELECT id FROM u
"""

_TOKEN_COLS = "token_hash, app_id, user_id, scopes, created_at, expires_at, refresh_hash, revoked_at"
_INSERT_TOKEN = (
    "INSERT INTO oauth_tokens (token_hash, refresh_hash, app_id, user_id, scopes, created_at,"
    " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_ROTATE_TOKEN = f"""
WITH old AS (
    UPDATE oauth_tokens SET revoked_at = %(now)s
    WHERE refresh_hash = %(rh)s AND app_id = %(app)s AND revoked_at IS NULL
    RETURNING token_hash AS old_hash, app_id, user_id, scopes
), new AS (
    INSERT INTO oauth_tokens (token_hash, refresh_hash, app_id, user_id, scopes, created_at)
    SELECT %(th)s, %(nrh)s, app_id, user_id, scopes, %(now)s FROM old
    RETURNING {_TOKEN_COLS}
)
SELECT {_TOKEN_COLS}, (SELECT old_hash FROM old) FROM new
"""


def _token(row: tuple) -> AccessToken:
    return AccessToken(bytes(row[0]), row[1], row[2], frozenset(row[3].split()), row[4], row[5],
                       bytes(row[6]) if row[6] is not None else None, row[7] is not None)


def _app(row: tuple) -> OAuthApp:
    return OAuthApp(row[0], row[1], row[2], tuple(u for u in row[3].split("\n") if u),
                    frozenset(row[4].split()), row[5], bytes(row[6]))


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


# A user's counters recomputed from the records (u: the users row).
_ACTUAL = (
    "(SELECT count(*) FROM follows WHERE followee_id = u.id),"
    " (SELECT count(*) FROM follows WHERE follower_id = u.id),"
    " (SELECT count(*) FROM posts WHERE author_id = u.id)"
)


def _before(before: int | None) -> int:
    return before if before is not None else _MAX


def _is_pkey_violation(exc: pg_errors.UniqueViolation) -> bool:
    """An id issued twice (not an idempotency key already stored: see ``_key_taken``)."""
    name = exc.diag.constraint_name or ""
    return name.endswith("_pkey") and name != _KEY_PKEY


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


class PgRecordStore:
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
            " (SELECT max(id) FROM follows))"
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
    ) -> Post:
        for attempt in range(_ID_RETRIES):
            pid = self._next_id()
            post = Post(pid, author_id, author_handle, text, visibility)
            sql, params = _keyed(_CREATE_POST, _CREATE_POST_KEYED, {
                "id": pid, "author": author_id, "handle": author_handle, "text": text,
                "visibility": visibility,
                "rid": current_request_id(),
            }, idempotency, post)
            try:
                await self.db.write(sql, params)
            except pg_errors.UniqueViolation as exc:
                if _key_taken(exc):
                    raise IdempotencyKeyTaken("this Idempotency-Key is already used") from None
                if _is_pkey_violation(exc) and attempt < _ID_RETRIES - 1:
                    continue
                raise
            return post
        raise AssertionError("unreachable")

    async def delete_post(self, post_id: int, by_user_id: int) -> Post:
        rows = await self.db.write(_DELETE_POST, {"id": post_id, "by": by_user_id}, outbox=False)
        author_id, text, handle, deleted, visibility = rows[0]
        if deleted:
            self.db.outbox_committed()
            return Post(post_id, by_user_id, handle or "", text, visibility or "public")
        if author_id is not None and author_id != by_user_id:
            raise Forbidden("you can delete only your own posts")
        raise NotFound("no such post")

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

    async def author_post_ids(self, author_id: int, before: int | None, limit: int) -> list[int]:
        rows = await self.db.fetch(
            "SELECT id FROM posts WHERE author_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
            (author_id, _before(before), limit),
        )
        return [r[0] for r in rows]

    async def public_post_ids(self, before: int | None, limit: int) -> list[int]:
        rows = await self.db.fetch(
            "SELECT id FROM posts WHERE visibility = 'public' AND id < %s ORDER BY id DESC LIMIT %s",
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
        derived stores are rebuilt afterwards), then recompute every counter from the
        records. Duplicate follows are ignored, as in SQLite. While it runs, its open
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
                async with cur.copy("COPY posts (id, author_id, text) FROM STDIN") as cp:
                    for post in posts:
                        await cp.write_row(post)
                await cur.execute(_RECOUNT, prepare=False)
            # statistics for the planner, and the visibility map for index-only scans
            await conn.execute("VACUUM (ANALYZE) users, follows, posts", prepare=False)
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

    # -- accounts and OAuth 2 --------------------------------------------------------------
    async def create_account(
        self, handle: str, display_name: str, email: str, password_hash: str, token: AccessToken,
    ) -> User:
        for attempt in range(_ID_RETRIES):
            uid = self._next_id()
            try:
                rows = await self.db.write(_CREATE_ACCOUNT, {
                    "id": uid, "handle": handle, "key": handle.lower(), "name": display_name,
                    # The /v1 token column holds a hash no token has: this user's tokens are
                    # OAuth tokens.
                    "token": b"\x00" + secrets.token_bytes(31), "email": email, "pw": password_hash,
                    "th": token.token_hash, "rh": token.refresh_hash, "app": token.app_id,
                    "scopes": " ".join(sorted(token.scopes)), "at": token.created_at,
                    "exp": token.expires_at,
                }, outbox=False)
            except pg_errors.UniqueViolation as exc:
                if exc.diag.constraint_name == "users_by_email":
                    raise Conflict("this email is already registered") from None
                if _is_pkey_violation(exc) and exc.diag.constraint_name == "users_pkey" and attempt < _ID_RETRIES - 1:
                    continue
                raise Conflict("this token is already registered") from exc
            if not rows:
                raise Conflict(f"handle {handle!r} is taken")
            self.db.outbox_committed()
            return User(uid, handle, display_name)
        raise AssertionError("unreachable")

    async def login_of(self, login: str) -> tuple[int, str | None] | None:
        row = await self.db.fetchone(
            "SELECT id, password_hash FROM users WHERE handle_key = lower(%(k)s) OR email_key = lower(%(k)s)"
            " ORDER BY email_key = lower(%(k)s) DESC NULLS LAST LIMIT 1", {"k": login},
        )
        return (row[0], row[1]) if row else None

    async def set_password(self, user_id: int, password_hash: str, email: str | None = None) -> bool:
        try:
            rows = await self.db.write(
                "UPDATE users SET password_hash = %(pw)s, email = coalesce(%(e)s, email),"
                " email_key = coalesce(lower(%(e)s), email_key) WHERE id = %(id)s RETURNING 1",
                {"pw": password_hash, "e": email, "id": user_id}, outbox=False,
            )
        except pg_errors.UniqueViolation:
            raise Conflict("this email is already registered") from None
        return bool(rows)

    async def update_profile(
        self, user_id: int, display_name: str | None, note: str | None
    ) -> User | None:
        rows = await self.db.write(
            "UPDATE users u SET display_name = coalesce(%s, display_name), note = coalesce(%s, note)"
            f" WHERE id = %s RETURNING {_USER_COLS}", (display_name, note, user_id), outbox=False,
        )
        return User(*rows[0]) if rows else None

    async def create_app(
        self, name: str, website: str | None, redirect_uris: Sequence[str],
        scopes: frozenset[str], client_id: str, secret_hash: bytes,
    ) -> OAuthApp:
        app = OAuthApp(self._next_id(), name, website, tuple(redirect_uris), frozenset(scopes),
                       client_id, secret_hash)
        await self.db.write(
            "INSERT INTO oauth_apps (id, name, website, redirect_uris, scopes, client_id,"
            " secret_hash, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (app.id, name, website, "\n".join(app.redirect_uris), " ".join(sorted(app.scopes)),
             client_id, secret_hash, time.time()), outbox=False,
        )
        return app

    async def app_by_client_id(self, client_id: str) -> OAuthApp | None:
        row = await self.db.fetchone(
            "SELECT id, name, website, redirect_uris, scopes, client_id, secret_hash"
            " FROM oauth_apps WHERE client_id = %s", (client_id,),
        )
        return _app(row) if row else None

    async def create_code(self, code: AuthCode) -> None:
        await self.db.write(
            "INSERT INTO oauth_codes (code_hash, app_id, user_id, scopes, redirect_uri, challenge,"
            " challenge_method, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (code.code_hash, code.app_id, code.user_id, " ".join(sorted(code.scopes)),
             code.redirect_uri, code.challenge, code.challenge_method, code.expires_at), outbox=False,
        )

    async def take_code(self, code_hash: bytes) -> AuthCode | None:
        rows = await self.db.write(
            "DELETE FROM oauth_codes WHERE code_hash = %s RETURNING code_hash, app_id, user_id,"
            " scopes, redirect_uri, challenge, challenge_method, expires_at", (code_hash,), outbox=False,
        )
        if not rows:
            return None
        r = rows[0]
        return AuthCode(bytes(r[0]), r[1], r[2], frozenset(r[3].split()), r[4], r[5], r[6], r[7])

    async def create_token(self, token: AccessToken) -> None:
        await self.db.write(_INSERT_TOKEN, (
            token.token_hash, token.refresh_hash, token.app_id, token.user_id,
            " ".join(sorted(token.scopes)), token.created_at, token.expires_at,
        ), outbox=False)

    async def access_token(self, token_hash: bytes) -> AccessToken | None:
        row = await self.db.fetchone(f"SELECT {_TOKEN_COLS} FROM oauth_tokens WHERE token_hash = %s", (token_hash,))
        return _token(row) if row else None

    async def rotate_token(
        self, refresh_hash: bytes, app_id: int, new_hash: bytes, new_refresh_hash: bytes, now: float,
    ) -> tuple[AccessToken, bytes] | None:
        rows = await self.db.write(_ROTATE_TOKEN, {
            "now": now, "rh": refresh_hash, "app": app_id, "th": new_hash, "nrh": new_refresh_hash,
        }, outbox=False)
        return (_token(rows[0][:8]), bytes(rows[0][8])) if rows else None

    async def revoke_token(self, token_hash: bytes, app_id: int) -> bytes | None:
        rows = await self.db.write(
            "UPDATE oauth_tokens SET revoked_at = %(now)s WHERE (token_hash = %(h)s OR refresh_hash = %(h)s)"
            " AND app_id = %(app)s AND revoked_at IS NULL RETURNING token_hash",
            {"now": time.time(), "h": token_hash, "app": app_id}, outbox=False,
        )
        return bytes(rows[0][0]) if rows else None
