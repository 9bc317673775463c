"""Contract: the record store's accounts and OAuth 2 records, on every RecordStore adapter
(SQLite, PostgreSQL): accounts with an email and a password hash and their first token in
one transaction, log-in lookup by handle or email ignoring case, apps, one-use codes,
tokens, rotation and revocation."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from homefeed.domain import model
from homefeed.domain.errors import Conflict
from homefeed.domain.oauth import AccessToken, AuthCode

from .conftest import run, wait_for_events
from .test_record_store import handle, new_user, token


def h() -> bytes:
    return os.urandom(32)


async def new_app(store, scopes=frozenset({"read", "write"})):
    return await store.create_app("app", "https://example.org", ["urn:ietf:wg:oauth:2.0:oob", "https://a.example/cb"],
                                  scopes, os.urandom(16).hex(), h())


def tok(app_id: int, user_id: int | None = None, scopes=frozenset({"read"}), **kw) -> AccessToken:
    return AccessToken(h(), app_id, user_id, scopes, time.time(), kw.get("expires_at"), kw.get("refresh_hash", h()))


def test_apps_round_trip(records):
    async def main():
        async with records() as r:
            app = await new_app(r.store)
            got = await r.store.app_by_client_id(app.client_id)
            assert got == app
            assert got.redirect_uris == ("urn:ietf:wg:oauth:2.0:oob", "https://a.example/cb")
            assert await r.store.app_by_client_id("nope") is None

    run(main())


def test_create_account_with_its_token_in_one_transaction(records):
    async def main():
        async with records() as r:
            app = await new_app(r.store)
            name = handle("acct")
            first = tok(app.id, scopes=frozenset({"read", "write"}))
            user = await r.store.create_account(name, "Name", f"{name}@Example.org", "$argon2id$x", first)
            assert await r.store.user_by_handle(name) == user
            stored = await r.store.access_token(first.token_hash)
            assert stored is not None and stored.user_id == user.id and stored.app_id == app.id
            assert stored.scopes == frozenset({"read", "write"}) and not stored.revoked
            for login in (name, name.upper(), f"{name}@example.org", f"{name.upper()}@EXAMPLE.ORG"):
                assert await r.store.login_of(login) == (user.id, "$argon2id$x")
            assert await r.store.login_of("nobody@example.org") is None
            await wait_for_events(r.stream, "oauth-contract", lambda es: any(
                e.type == model.USER_REGISTERED and e.data.get("user_id") == user.id for e in es), r.delivery_timeout)

    run(main())


def test_taken_handle_or_email_conflicts_and_changes_nothing(records):
    async def main():
        async with records() as r:
            app = await new_app(r.store)
            name = handle("dup")
            await r.store.create_account(name, name, f"{name}@example.org", "pw", tok(app.id))
            lost = tok(app.id)
            with pytest.raises(Conflict):
                await r.store.create_account(name.upper(), "x", f"other{name}@example.org", "pw", lost)
            other = handle("dup")
            with pytest.raises(Conflict):
                await r.store.create_account(other, "x", f"{name.upper()}@EXAMPLE.org", "pw", lost)
            assert await r.store.user_by_handle(other) is None
            assert await r.store.access_token(lost.token_hash) is None
            count = await r.store.count_users()
            v1 = await new_user(r.store)  # /v1 users have no email: many may coexist
            assert await r.store.count_users() == count + 1
            assert await r.store.login_of(v1.handle) == (v1.id, None)

    run(main())


def test_set_password_and_update_profile(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            assert await r.store.set_password(u.id, "hash1", f"{u.handle}@example.org")
            assert await r.store.login_of(f"{u.handle}@EXAMPLE.org") == (u.id, "hash1")
            assert not await r.store.set_password(u.id + 10**9, "hash")
            v = await new_user(r.store)
            with pytest.raises(Conflict):
                await r.store.set_password(v.id, "h", f"{u.handle}@example.org")
            after = await r.store.update_profile(u.id, None, "my bio")
            assert after is not None and after.note == "my bio" and after.display_name == u.display_name
            after = await r.store.update_profile(u.id, "New", None)
            assert after.display_name == "New" and after.note == "my bio"
            assert await r.store.user_by_id(u.id) == after
            assert await r.store.update_profile(u.id + 10**9, "x", None) is None

    run(main())


def test_codes_are_used_once_even_concurrently(records):
    async def main():
        async with records() as r:
            app = await new_app(r.store)
            u = await new_user(r.store)
            code = AuthCode(h(), app.id, u.id, frozenset({"read"}), "urn:ietf:wg:oauth:2.0:oob", "c" * 43, "S256",
                            time.time() + 600)
            await r.store.create_code(code)
            got = await asyncio.gather(*(r.store.take_code(code.code_hash) for _ in range(5)))
            assert [g for g in got if g is not None] == [code]
            assert await r.store.take_code(code.code_hash) is None

    run(main())


def test_tokens_rotate_and_revoke(records):
    async def main():
        async with records() as r:
            app, other = await new_app(r.store), await new_app(r.store)
            u = await new_user(r.store)
            t = tok(app.id, u.id, frozenset({"read", "write:statuses"}))
            await r.store.create_token(t)
            assert await r.store.access_token(t.token_hash) == t
            assert await r.store.rotate_token(t.refresh_hash, other.id, h(), h(), time.time()) is None
            new_hash, new_refresh = h(), h()
            rotated = await r.store.rotate_token(t.refresh_hash, app.id, new_hash, new_refresh, time.time())
            assert rotated is not None and rotated[1] == t.token_hash
            new = rotated[0]
            assert new.token_hash == new_hash and new.user_id == u.id
            assert new.scopes == t.scopes and new.refresh_hash == new_refresh
            assert (await r.store.access_token(t.token_hash)).revoked
            assert await r.store.rotate_token(t.refresh_hash, app.id, h(), h(), time.time()) is None
            # revocation: only by the owning app, by access or refresh token, once
            assert await r.store.revoke_token(new_hash, other.id) is None
            assert await r.store.revoke_token(new_refresh, app.id) == new_hash
            assert (await r.store.access_token(new_hash)).revoked
            assert await r.store.revoke_token(new_hash, app.id) is None
            app_only = tok(app.id)
            await r.store.create_token(app_only)
            assert (await r.store.access_token(app_only.token_hash)).user_id is None
            assert await r.store.access_token(h()) is None

    run(main())
