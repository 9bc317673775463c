"""The accounts and OAuth 2 part of the RecordStore on SQLite: accounts with a password and
an email, profile updates, OAuth apps, authorization codes and access tokens.

``SqliteAccountsStore`` is a mixin: ``SqliteRecordStore`` (sqlite_store) inherits it and
provides ``db`` and ``ids``. The users columns and the outbox append live here, shared with
``sqlite_store``, which imports them from this module.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Sequence

import orjson

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain import model
from homefeed.domain.errors import Conflict
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import User
from homefeed.domain.oauth import AccessToken, AuthCode, OAuthApp

_USER_COLS = "id, handle, display_name, followers_count, following_count, posts_count, note"


def _user(row: tuple) -> User:
    return User(*row)


def append_event(conn: sqlite3.Connection, type_: str, data: dict) -> None:
    conn.execute("INSERT INTO outbox(type, data) VALUES (?, ?)", (type_, orjson.dumps(data)))


class SqliteAccountsStore:
    """Accounts and OAuth 2 on SQLite, mixed into ``SqliteRecordStore`` (which provides
    ``db`` and ``ids``; every write runs on the writer thread, as there)."""

    db: SqliteDatabase
    ids: IdGenerator | None

    # -- accounts and OAuth 2 --------------------------------------------------------------
    async def create_account(
        self, handle: str, display_name: str, email: str, password_hash: str, token: AccessToken,
    ) -> User:
        ids = self.ids
        assert ids is not None

        def tx(conn: sqlite3.Connection) -> User:
            key = handle.lower()
            if conn.execute("SELECT 1 FROM users WHERE handle_key = ?", (key,)).fetchone():
                raise Conflict(f"handle {handle!r} is taken")
            if conn.execute("SELECT 1 FROM users WHERE email_key = ?", (email.lower(),)).fetchone():
                raise Conflict("this email is already registered")
            uid = ids.next_id()
            conn.execute(
                "INSERT INTO users(id, handle, handle_key, display_name, token_hash, email,"
                " email_key, password_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                # The /v1 token column holds an unguessable hash no token has: this user's
                # tokens are OAuth tokens.
                (uid, handle, key, display_name, _no_token(), email, email.lower(), password_hash),
            )
            _insert_token(conn, token, uid)
            append_event(conn, model.USER_REGISTERED, {"user_id": uid, "handle": handle})
            return User(uid, handle, display_name)

        return await self.db.write(tx)

    async def login_of(self, login: str) -> tuple[int, str | None] | None:
        key = login.lower()
        row = self.db.query_one(
            "SELECT id, password_hash FROM users WHERE handle_key = ? OR email_key = ?"
            " ORDER BY email_key = ? DESC LIMIT 1",
            (key, key, key),
        )
        return (row[0], row[1]) if row else None

    async def set_password(self, user_id: int, password_hash: str, email: str | None = None) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            if email is not None:
                other = conn.execute("SELECT id FROM users WHERE email_key = ?", (email.lower(),)).fetchone()
                if other and other[0] != user_id:
                    raise Conflict("this email is already registered")
                conn.execute(
                    "UPDATE users SET email = ?, email_key = ? WHERE id = ?", (email, email.lower(), user_id)
                )
            cur = conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
            return cur.rowcount > 0

        return await self.db.write(tx)

    async def update_profile(
        self, user_id: int, display_name: str | None, note: str | None
    ) -> User | None:
        def tx(conn: sqlite3.Connection) -> User | None:
            row = conn.execute(
                f"UPDATE users SET display_name = coalesce(?, display_name), note = coalesce(?, note)"
                f" WHERE id = ? RETURNING {_USER_COLS}",
                (display_name, note, user_id),
            ).fetchone()
            return _user(row) if row else None

        return await self.db.write(tx)

    async def create_app(
        self, name: str, website: str | None, redirect_uris: Sequence[str],
        scopes: frozenset[str], client_id: str, secret_hash: bytes,
    ) -> OAuthApp:
        ids = self.ids
        assert ids is not None
        app = OAuthApp(ids.next_id(), name, website, tuple(redirect_uris), frozenset(scopes),
                       client_id, secret_hash)

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO oauth_apps(id, name, website, redirect_uris, scopes, client_id,"
                " secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (app.id, name, website, "\n".join(app.redirect_uris), " ".join(sorted(app.scopes)),
                 client_id, secret_hash, time.time()),
            )

        await self.db.write(tx)
        return app

    async def app_by_client_id(self, client_id: str) -> OAuthApp | None:
        row = self.db.query_one(
            "SELECT id, name, website, redirect_uris, scopes, client_id, secret_hash"
            " FROM oauth_apps WHERE client_id = ?", (client_id,),
        )
        return _app(row) if row else None

    async def create_code(self, code: AuthCode) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO oauth_codes(code_hash, app_id, user_id, scopes, redirect_uri,"
                " challenge, challenge_method, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (code.code_hash, code.app_id, code.user_id, " ".join(sorted(code.scopes)),
                 code.redirect_uri, code.challenge, code.challenge_method, code.expires_at),
            )

        await self.db.write(tx)

    async def take_code(self, code_hash: bytes) -> AuthCode | None:
        def tx(conn: sqlite3.Connection) -> AuthCode | None:
            row = conn.execute(
                "DELETE FROM oauth_codes WHERE code_hash = ? RETURNING code_hash, app_id, user_id,"
                " scopes, redirect_uri, challenge, challenge_method, expires_at", (code_hash,),
            ).fetchone()
            if row is None:
                return None
            return AuthCode(bytes(row[0]), row[1], row[2], frozenset(row[3].split()), row[4],
                            row[5], row[6], row[7])

        return await self.db.write(tx)

    async def create_token(self, token: AccessToken) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            _insert_token(conn, token, token.user_id)

        await self.db.write(tx)

    async def access_token(self, token_hash: bytes) -> AccessToken | None:
        row = self.db.query_one(f"SELECT {_TOKEN_COLS} FROM oauth_tokens WHERE token_hash = ?", (token_hash,))
        return _token(row) if row else None

    async def rotate_token(
        self, refresh_hash: bytes, app_id: int, new_hash: bytes, new_refresh_hash: bytes, now: float,
    ) -> tuple[AccessToken, bytes] | None:
        def tx(conn: sqlite3.Connection) -> tuple[AccessToken, bytes] | None:
            row = conn.execute(
                "UPDATE oauth_tokens SET revoked_at = ? WHERE refresh_hash = ? AND app_id = ?"
                f" AND revoked_at IS NULL RETURNING {_TOKEN_COLS}",
                (now, refresh_hash, app_id),
            ).fetchone()
            if row is None:
                return None
            old = _token(row)
            new = AccessToken(new_hash, old.app_id, old.user_id, old.scopes, now, None, new_refresh_hash)
            _insert_token(conn, new, old.user_id)
            return new, old.token_hash

        return await self.db.write(tx)

    async def revoke_token(self, token_hash: bytes, app_id: int) -> bytes | None:
        def tx(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "UPDATE oauth_tokens SET revoked_at = ? WHERE (token_hash = ? OR refresh_hash = ?)"
                " AND app_id = ? AND revoked_at IS NULL RETURNING token_hash",
                (time.time(), token_hash, token_hash, app_id),
            ).fetchone()
            return bytes(row[0]) if row else None

        return await self.db.write(tx)


_TOKEN_COLS = "token_hash, app_id, user_id, scopes, created_at, expires_at, refresh_hash, revoked_at"


def _no_token() -> bytes:
    import secrets

    return b"\x00" + secrets.token_bytes(31)


def _insert_token(conn: sqlite3.Connection, token: AccessToken, user_id: int | None) -> None:
    conn.execute(
        "INSERT INTO oauth_tokens(token_hash, refresh_hash, app_id, user_id, scopes, created_at,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (token.token_hash, token.refresh_hash, token.app_id, user_id, " ".join(sorted(token.scopes)),
         token.created_at, token.expires_at),
    )


def _token(row: tuple) -> AccessToken:
    return AccessToken(bytes(row[0]), row[1], row[2], frozenset(row[3].split()), row[4], row[5],
                       bytes(row[6]) if row[6] is not None else None, row[7] is not None)


def _app(row: tuple) -> OAuthApp:
    return OAuthApp(row[0], row[1], row[2], tuple(u for u in row[3].split("\n") if u),
                    frozenset(row[4].split()), row[5], bytes(row[6]))
