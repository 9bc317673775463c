"""Rate limits per token and per address, end to end: real ``homefeed serve`` processes with
tiny limits, spoken to over HTTP.

Every request comes from 127.0.0.1, which the servers trust as a proxy (the default
``forwarded_allow_ips``), so each test gives its requests client addresses of their own with
``X-Forwarded-For``: tests sharing a server never share an address. Limits are per hour, so
nothing refills while a test runs, except where a test waits for ``Retry-After`` on purpose.

The scale-out part runs two API processes against a scratch PostgreSQL database and a
PRIVATE ``redis-server`` (stopped mid-test to check that the limiter fails open; the shared
Redis is never touched).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.backends import require, scratch_pg_database
from tests.e2e.conftest import (
    BASE_SETTINGS,
    _assert_clean_log,
    _start_server,
    _stop,
    assert_error,
    unique_handle,
)
from tests.e2e.scaleout import PYTHON, ROOT, Proc, _http_ok, _redis_ping, find_binary, free_port, pg_url

TOKEN_BURST = 3
ADDRESS_BURST = 4
OPS_ROUTES = ["/healthz", "/readyz", "/metrics", "/metrics.json", "/dashboard", "/openapi.json"]

_rng = random.Random()


def new_ipv4() -> str:
    """A client address no other test uses (10.0.0.0/8 has 16 million)."""
    n = _rng.getrandbits(24)
    return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"


def new_ipv6_net() -> str:
    """The first 64 bits of an IPv6 address no other test uses (documentation range)."""
    return f"2001:db8:{_rng.getrandbits(16):x}:{_rng.getrandbits(16):x}"


class Client:
    """HTTP calls as a client at address ``via`` (sent as X-Forwarded-For)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=20.0)

    def call(self, method: str, url: str, *, via: str | None = None, token: str | None = None,
             **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        headers["X-Forwarded-For"] = via or new_ipv4()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        r = self.http.request(method, url, headers=headers, **kw)
        assert r.status_code < 500, f"{method} {url} -> {r.status_code}: {r.text[:500]}"
        return r

    def register(self) -> dict[str, Any]:
        r = self.call("POST", "/v1/users", json={"handle": unique_handle("rl")})
        assert r.status_code == 201, r.text
        return r.json()

    def close(self) -> None:
        self.http.close()


def assert_limited(r: httpx.Response, per: str) -> int:
    """A 429 in the documented shape, naming the limit; returns its Retry-After."""
    err = assert_error(r, 429)
    assert err["code"] == "rate_limited"
    assert f"per {per}" in err["message"], err
    retry = r.headers.get("retry-after", "")
    assert retry.isdigit() and int(retry) >= 1, f"Retry-After {retry!r}"
    assert f'"per-{per}"' in r.headers.get("ratelimit-policy", ""), r.headers
    assert r.headers.get("ratelimit") == f'"per-{per}";r=0;t={retry}', r.headers
    return int(retry)


def metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


# --------------------------------------------------------------------------------------------
# the embedded profile (memory limiter): one server, per-token and per-address limits
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory) -> Iterator[Client]:
    s = _start_server(tmp_path_factory, "rate-limited", {
        **BASE_SETTINGS,
        "HOMEFEED_RATE_LIMIT_PER_TOKEN": f"1/h burst {TOKEN_BURST}",
        "HOMEFEED_RATE_LIMIT_PER_ADDRESS": f"1/h burst {ADDRESS_BURST}",
    })
    client = Client(s.base_url)
    yield client
    client.close()
    _stop(s)
    _assert_clean_log(s)


def test_the_request_past_a_tokens_burst_is_refused_and_other_tokens_are_not(limited):
    ana, bob = limited.register(), limited.register()
    # Every request from an address of its own: only the token limit can refuse.
    for _ in range(TOKEN_BURST):
        assert limited.call("GET", "/v1/timelines/home", token=ana["token"]).status_code == 200
    r = limited.call("GET", "/v1/timelines/home", token=ana["token"])
    retry = assert_limited(r, "token")
    assert 3500 < retry <= 3600  # one an hour: the next one in an hour
    # Any route, any spelling of the header: the same token.
    assert_limited(limited.call("GET", f"/v1/users/{bob['handle']}",
                                headers={"Authorization": f"bearer   {ana['token']}"}), "token")
    assert limited.call("GET", "/v1/timelines/home", token=bob["token"]).status_code == 200


def test_an_invalid_token_is_limited_too(limited):
    token = "not-a-token-" + unique_handle()
    statuses = [limited.call("GET", "/v1/timelines/home", token=token).status_code
                for _ in range(TOKEN_BURST)]
    assert statuses == [401] * TOKEN_BURST
    assert_limited(limited.call("GET", "/v1/timelines/home", token=token), "token")


def test_the_request_past_an_addresss_burst_is_refused_and_other_addresses_are_not(limited):
    user = limited.register()
    here, there = new_ipv4(), new_ipv4()
    for _ in range(ADDRESS_BURST):
        assert limited.call("GET", f"/v1/users/{user['handle']}", via=here).status_code == 200
    assert_limited(limited.call("GET", f"/v1/users/{user['handle']}", via=here), "address")
    # A fresh token does not get the address more requests...
    fresh = limited.register()
    assert_limited(limited.call("GET", "/v1/timelines/home", via=here, token=fresh["token"]), "address")
    # ... and the address limit is the address's only.
    assert limited.call("GET", f"/v1/users/{user['handle']}", via=there).status_code == 200
    assert limited.call("GET", "/v1/timelines/home", via=there, token=fresh["token"]).status_code == 200


def test_an_ipv6_client_counts_by_its_64(limited):
    net, other = new_ipv6_net(), new_ipv6_net()
    statuses = [limited.call("GET", "/v1/search/posts?q=x", via=f"{net}::{i + 1:x}").status_code
                for i in range(ADDRESS_BURST)]
    assert statuses == [200] * ADDRESS_BURST
    assert_limited(limited.call("GET", "/v1/search/posts?q=x", via=f"{net}:ffff:1:2:3"), "address")
    assert limited.call("GET", "/v1/search/posts?q=x", via=f"{other}::1").status_code == 200


def test_a_refused_post_creates_nothing(limited):
    author = limited.register()
    made = [limited.call("POST", "/v1/posts", token=author["token"], json={"text": f"kept {i}"})
            for i in range(TOKEN_BURST)]
    assert [r.status_code for r in made] == [201] * TOKEN_BURST
    refused = limited.call("POST", "/v1/posts", token=author["token"], json={"text": "refused"})
    assert_limited(refused, "token")
    profile = limited.call("GET", f"/v1/users/{author['handle']}").json()
    assert profile["posts_count"] == TOKEN_BURST
    posts = limited.call("GET", f"/v1/users/{author['handle']}/posts").json()["posts"]
    assert sorted(p["text"] for p in posts) == sorted(f"kept {i}" for i in range(TOKEN_BURST))


def test_operations_routes_are_never_limited(limited):
    user = limited.register()
    here = new_ipv4()
    for _ in range(ADDRESS_BURST + 1):  # the address and the token both used up
        limited.call("GET", "/v1/timelines/home", via=here, token=user["token"])
    assert_error(limited.call("GET", "/v1/timelines/home", via=here, token=user["token"]), 429)
    for path in OPS_ROUTES:
        for _ in range(ADDRESS_BURST + 2):
            r = limited.call("GET", path, via=here, token=user["token"])
            assert r.status_code == 200, f"{path} -> {r.status_code}"
    for _ in range(ADDRESS_BURST + 2):
        r = limited.call("POST", "/admin/audit", via=here, token="wrong-admin-token", json={})
        assert r.status_code == 401, r.text


def test_refusals_are_counted_in_the_metrics(limited):
    before = metric(limited.call("GET", "/metrics").text, "homefeed_rate_limited_total", '{scope="address"}')
    here = new_ipv4()
    for _ in range(ADDRESS_BURST + 2):
        limited.call("GET", "/v1/search/posts?q=metrics", via=here)
    after = metric(limited.call("GET", "/metrics").text, "homefeed_rate_limited_total", '{scope="address"}')
    assert after == before + 2


# --------------------------------------------------------------------------------------------
# waiting Retry-After; forwarded_allow_ips
# --------------------------------------------------------------------------------------------


def test_after_retry_after_the_request_passes_and_untrusted_forwarding_is_ignored(tmp_path_factory):
    """One request a second per address, and 127.0.0.1 NOT trusted as a proxy: every
    X-Forwarded-For is ignored, so all requests share 127.0.0.1's limit."""
    s = _start_server(tmp_path_factory, "rate-limited-fast", {
        **BASE_SETTINGS,
        "HOMEFEED_RATE_LIMIT_PER_ADDRESS": "1/s burst 1",
        "HOMEFEED_FORWARDED_ALLOW_IPS": "10.9.9.9",
    })
    client = Client(s.base_url)
    try:
        # Requests from "different addresses" in quick succession: one of them is refused
        # (the first few may pass if this machine is slower than one request a second).
        refused = None
        for _ in range(10):
            r = client.call("GET", "/v1/search/posts?q=wait")
            if r.status_code == 429:
                refused = r
                break
            assert r.status_code == 200, r.text
        assert refused is not None, "ten requests in a row passed a limit of 1/s"
        retry = assert_limited(refused, "address")
        assert retry == 1
        time.sleep(retry)
        assert client.call("GET", "/v1/search/posts?q=wait").status_code == 200
    finally:
        client.close()
        _stop(s)
    _assert_clean_log(s)


# --------------------------------------------------------------------------------------------
# the scale-out profile: two API processes share one limit in Redis; Redis down: fail open
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def two_apis_on_redis(workdir: Path, settings: dict[str, str]) -> Iterator[tuple[Proc, list[Proc], list[str]]]:
    """A private redis-server, a scratch PostgreSQL database (migrated) and two ``homefeed
    serve`` processes on them; everything stopped (the database dropped) afterwards. Yields
    the Redis process, the API processes and their base URLs."""
    require("postgresql")
    redis_bin = find_binary("redis-server")
    log_dir = workdir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    redis = Proc("redis", [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)],
                 dict(os.environ), log_dir, ready=lambda p: _redis_ping(redis_port))
    procs = [redis]
    with scratch_pg_database() as dsn:
        try:
            redis.start()
            env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
            env.update({
                "HOMEFEED_DATABASE_URL": pg_url(dsn),
                "HOMEFEED_CACHE_URL": f"redis://127.0.0.1:{redis_port}/0",
                "HOMEFEED_DATA_DIR": str(workdir / "unused-data-dir"),
                "HOMEFEED_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                **settings,
            })
            r = subprocess.run([PYTHON, "-m", "homefeed", "migrate"], cwd=str(ROOT), env=env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            ports = [free_port(), free_port()]
            apis = [Proc(f"api{i}", [PYTHON, "-m", "homefeed", "serve", "--host", "127.0.0.1",
                                     "--port", str(port)], env, log_dir,
                         ready=lambda p, port=port: _http_ok(f"http://127.0.0.1:{port}/healthz"))
                    for i, port in enumerate(ports)]
            procs += apis
            for p in apis:
                p.start(wait=False)
            for p in apis:
                p.wait_ready()
            yield redis, apis, [f"http://127.0.0.1:{port}" for port in ports]
        except BaseException:
            for p in procs:
                print(p.log_tail())
            raise
        finally:
            for p in reversed(procs):
                p.stop()


@pytest.mark.slow
def test_api_processes_share_one_limit_in_redis_and_fail_open_without_it(tmp_path):
    burst = 4
    with two_apis_on_redis(tmp_path, {"HOMEFEED_RATE_LIMIT_PER_TOKEN": f"1/h burst {burst}"}) as (redis, apis, urls):
        clients = [Client(url) for url in urls]
        try:
            user = clients[0].register()
            profile = f"/v1/users/{user['handle']}"
            # The burst, spread over both processes: one limit, not one per process.
            for k in range(burst):
                assert clients[k % 2].call("GET", profile, token=user["token"]).status_code == 200
            for c in clients:
                assert_limited(c.call("GET", profile, token=user["token"]), "token")

            # Redis goes away: the limiter cannot answer, so requests go through (fail open).
            redis.stop()
            for _ in range(3):
                assert clients[0].call("GET", profile, token=user["token"]).status_code == 200
            text = clients[0].call("GET", "/metrics").text
            assert metric(text, "homefeed_rate_limiter_errors_total") >= 3
            assert metric(text, "homefeed_rate_limited_total", '{scope="token"}') >= 1
            assert apis[0].log_text().count("rate limiter failed") == 1  # logged once, not per request

            # Redis is back (empty): the limit holds again, from a fresh burst.
            redis.start()
            deadline = time.monotonic() + 30
            passed = 0
            while True:
                r = clients[0].call("GET", profile, token=user["token"])
                if r.status_code == 429:
                    assert_limited(r, "token")
                    break
                assert r.status_code == 200, r.text
                passed += 1
                assert time.monotonic() < deadline, "the limiter never came back after Redis restarted"
                time.sleep(0.1)
            assert passed >= burst
        finally:
            for c in clients:
                c.close()
