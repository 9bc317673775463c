"""``require_scope`` (Mastodon's scope rule at the route) and ``Homefeed.caller`` (token ->
Caller) with a stub store: /v1 tokens carry every scope, OAuth tokens their own; unknown,
revoked, expired and session tokens are 401; a known token is answered from memory, and
``forget_token`` (a revocation) makes the next call read the store again."""

from __future__ import annotations

import asyncio
import time

import pytest

from homefeed.domain.errors import Forbidden, Unauthorized
from homefeed.domain.model import Caller
from homefeed.domain.oauth import AccessToken
from homefeed.service_layer.services import FULL_SCOPES, Homefeed, hash_token, require_scope
from homefeed.service_layer.streaming import StreamHub


def test_require_scope():
    c = Caller(7, 1, frozenset({"read"}))
    assert require_scope(c, "read:statuses") == 7
    with pytest.raises(Forbidden):
        require_scope(c, "write:statuses")
    w = Caller(7, 1, frozenset({"write:statuses"}))
    assert require_scope(w, "write:statuses") == 7
    with pytest.raises(Forbidden):
        require_scope(w, "write:follows")
    assert require_scope(Caller(7, 1, frozenset({"follow"})), "write:follows") == 7
    assert require_scope(Caller(7, 1, frozenset({"profile"})), "read:accounts", "profile") == 7
    with pytest.raises(Forbidden):  # an app's own token acts for nobody
        require_scope(Caller(None, 1, frozenset({"read"})), "read")
    assert require_scope(Caller(7, None, FULL_SCOPES), "write:follows") == 7


class StubStore:
    def __init__(self) -> None:
        self.v1: dict[bytes, int] = {}
        self.oauth: dict[bytes, AccessToken] = {}
        self.reads = 0

    async def user_id_by_token_hash(self, h: bytes) -> int | None:
        self.reads += 1
        return self.v1.get(h)

    async def access_token(self, h: bytes) -> AccessToken | None:
        self.reads += 1
        return self.oauth.get(h)


def make() -> tuple[Homefeed, StubStore]:
    hf = Homefeed.__new__(Homefeed)  # only what caller() uses
    store = StubStore()
    hf.store = store  # type: ignore[assignment]
    hf._callers = {}
    hf._token_epoch = 0
    hf._cache_tokens = True
    hf.revocations = None
    hf.streams = StreamHub(hf, None)  # a revocation also closes the token's open streams
    return hf, store


def test_caller_resolves_both_kinds_and_caches():
    async def main():
        hf, store = make()
        store.v1[hash_token("v1")] = 5
        store.oauth[hash_token("oa")] = AccessToken(hash_token("oa"), 3, 6, frozenset({"read"}), time.time())
        assert await hf.caller("v1") == Caller(5, None, FULL_SCOPES)
        assert await hf.caller("oa") == Caller(6, 3, frozenset({"read"}))
        reads = store.reads
        for _ in range(5):
            await hf.caller("oa")
            await hf.caller("v1")
        assert store.reads == reads  # warm: no store read
        # revoked elsewhere: the record says so, and the announcement drops the entry
        store.oauth[hash_token("oa")] = AccessToken(hash_token("oa"), 3, 6, frozenset({"read"}), time.time(),
                                                    revoked=True)
        hf.forget_token(hash_token("oa"))
        with pytest.raises(Unauthorized):
            await hf.caller("oa")

    asyncio.run(main())


@pytest.mark.parametrize("token", [None, "", "unknown", "expired", "session"])
def test_caller_refuses(token):
    async def main():
        hf, store = make()
        store.oauth[hash_token("expired")] = AccessToken(hash_token("expired"), 3, 6, frozenset({"read"}),
                                                         time.time() - 10, time.time() - 1)
        store.oauth[hash_token("session")] = AccessToken(hash_token("session"), 0, 6, frozenset(), time.time())
        with pytest.raises(Unauthorized):
            await hf.caller(token)

    asyncio.run(main())


def test_no_caching_while_the_channel_is_down():
    async def main():
        hf, store = make()
        store.oauth[hash_token("oa")] = AccessToken(hash_token("oa"), 3, 6, frozenset({"read"}), time.time())
        hf.forget_all_tokens(False)
        await hf.caller("oa")
        await hf.caller("oa")
        assert store.reads == 4  # v1 lookup + oauth lookup, twice
        hf.forget_all_tokens(True)
        await hf.caller("oa")
        await hf.caller("oa")
        assert store.reads == 6

    asyncio.run(main())
