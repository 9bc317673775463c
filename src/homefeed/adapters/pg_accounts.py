"""The accounts and OAuth 2 part of the RecordStore on PostgreSQL: accounts with a password
and an email, profile updates, OAuth apps, authorization codes and access tokens.

``PgAccountsStore`` is a mixin: ``PgRecordStore`` (pg_store) inherits it and provides ``db``
and ``_next_id``. The users columns and the id-collision check live here, shared with
``pg_store``, which imports them from this module.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable, Sequence

from psycopg import errors as pg_errors

from homefeed.adapters.pg_db import PgDatabase
from homefeed.domain import model
from homefeed.domain.errors import Conflict
from homefeed.domain.model import User
from homefeed.domain.oauth import AccessToken, AuthCode, OAuthApp

_USER_COLS = "u.id, u.handle, u.display_name, u.followers_count, u.following_count, u.posts_count, u.note"
# A primary-key collision means an id was issued twice (see report on IdGenerator floors):
# take a fresh id and try again, a bounded number of times.
_ID_RETRIES = 5
_KEY_PKEY = "idempotency_keys_pkey"


def _is_pkey_violation(exc: pg_errors.UniqueViolation) -> bool:
    """An id issued twice (not an idempotency key already stored: see ``pg_store._key_taken``)."""
    name = exc.diag.constraint_name or ""
    return name.endswith("_pkey") and name != _KEY_PKEY


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


class PgAccountsStore:
    """Accounts and OAuth 2 on PostgreSQL, mixed into ``PgRecordStore`` (which provides
    ``db`` and ``_next_id``)."""

    db: PgDatabase
    _next_id: Callable[[], int]

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
