"""A revoked OAuth token is 401 at once on EVERY API process of the scale-out profile
(two API processes, PostgreSQL, Redis, NATS): each process caches tokens in memory (a warm
read runs no SQL), so the revocation is announced on Redis pub/sub and every process drops
the token; while the channel is down no token is cached, and a resubscription clears the
cache. Also: a token made on one process works on the other at once (one user model)."""

from __future__ import annotations

import time

import httpx

from tests.e2e.scaleout import deployment

SCOPES = "read write follow push"


def _me(c: httpx.Client, token: str) -> int:
    return c.get("/api/v1/accounts/verify_credentials", headers={"Authorization": "Bearer " + token}).status_code


def _home(c: httpx.Client, token: str) -> int:
    return c.get("/v1/timelines/home", headers={"Authorization": "Bearer " + token}).status_code


def test_revocation_reaches_every_process_at_once(tmp_path):
    with deployment(tmp_path, workers=1) as dep:
        a, b = dep.client(0), dep.client(1)
        app = a.post("/api/v1/apps", json={"client_name": "t", "redirect_uris": "urn:ietf:wg:oauth:2.0:oob",
                                           "scopes": SCOPES}).json()
        creds = {"client_id": app["client_id"], "client_secret": app["client_secret"]}
        app_tok = b.post("/oauth/token", data={"grant_type": "client_credentials", "scope": SCOPES, **creds}).json()
        r = b.post("/api/v1/accounts", headers={"Authorization": "Bearer " + app_tok["access_token"]},
                   data={"username": "scaleuser", "email": "scale@example.org", "password": "a long password",
                         "agreement": "1"})
        assert r.status_code == 200, r.text

        def login() -> str:
            r = a.post("/oauth/token", data={"grant_type": "password", "username": "scale@example.org",
                                             "password": "a long password", "scope": SCOPES, **creds})
            assert r.status_code == 200, r.text
            return r.json()["access_token"]

        # a failed log-in counts in the shared (Redis) limiter
        r = b.post("/oauth/token", data={"grant_type": "password", "username": "scaleuser",
                                         "password": "wrong password", "scope": SCOPES, **creds})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

        for rounds in range(3):
            token = login()
            for c in (a, b, a, b):  # both processes have it cached now
                assert _me(c, token) == 200 and _home(c, token) == 200
            revoker, other = (a, b) if rounds % 2 == 0 else (b, a)
            assert revoker.post("/oauth/revoke", data={"token": token, **creds}).status_code == 200
            # at once: no sleep between the revocation's answer and these reads
            assert _home(other, token) == 401
            assert _me(other, token) == 401
            assert _home(revoker, token) == 401

        # a refresh revokes the old access token: everywhere, at once
        r = a.post("/oauth/token", data={"grant_type": "password", "username": "scaleuser",
                                         "password": "a long password", "scope": SCOPES, **creds})
        token, refresh = r.json()["access_token"], r.json()["refresh_token"]
        assert _me(a, token) == 200 and _me(b, token) == 200
        r = a.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh, **creds})
        assert r.status_code == 200
        assert _me(b, token) == 401 and _me(a, token) == 401
        assert _me(b, r.json()["access_token"]) == 200

        # the channel goes down and comes back: nothing stale survives
        token = login()
        assert _me(a, token) == 200 and _me(b, token) == 200
        dep.redis.restart()
        deadline = time.monotonic() + 20
        while True:  # the timeline cache needs Redis too: wait until reads work again
            if b.get("/v1/timelines/home", headers={"Authorization": "Bearer " + token}).status_code == 200:
                break
            assert time.monotonic() < deadline, "Redis did not come back"
            time.sleep(0.2)
        assert a.post("/oauth/revoke", data={"token": token, **creds}).status_code == 200
        assert _me(b, token) == 401 and _me(a, token) == 401

        # failed log-ins count against one allowance shared by every process
        statuses = [(a, b)[i % 2].post("/oauth/token", data={
            "grant_type": "password", "username": "scaleuser", "password": "wrong password",
            "scope": SCOPES, **creds}).status_code for i in range(12)]
        assert 429 in statuses, statuses
