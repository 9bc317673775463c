"""Rate-limit settings (``rate_limit_per_token``, ``rate_limit_per_address``,
``forwarded_allow_ips``) and the keys the middleware counts by; and the middleware failing
open, in process, with a limiter that raises."""

from __future__ import annotations

import asyncio
import logging

import pytest

from homefeed.config import ENV_PREFIX, RateLimit, Settings, parse_rate_limit
from homefeed.entrypoints.metrics import Recorder
from homefeed.entrypoints.ratelimit import RateLimits, address_key, retry_after, token_key


@pytest.mark.parametrize("text, count, period, burst", [
    ("100/s", 100, 1, 100),
    ("6000/min", 6000, 60, 6000),
    ("100/s burst 200", 100, 1, 200),
    (" 5 / H  BURST 2 ", 5, 3600, 2),
    ("1/day", 1, 86400, 1),
    ("30/minute burst 1", 30, 60, 1),
])
def test_a_limit_is_a_count_per_period_with_an_optional_burst(text, count, period, burst):
    limit = parse_rate_limit(text)
    assert (limit.count, limit.period, limit.burst) == (count, period, burst)
    assert limit.rate == count / period


@pytest.mark.parametrize("text", ["", "0", " 0 ", "off"])
def test_empty_or_zero_is_no_limit(text):
    assert parse_rate_limit(text) is None


@pytest.mark.parametrize("text", ["100", "fast", "100/fortnight", "100/s burst", "100/s burst 0",
                                  "0/s", "-1/s", "1.5/s", "100/s 200", "2000000/s"])
def test_anything_else_is_refused_at_startup_naming_the_setting(text):
    with pytest.raises(ValueError) as exc:
        Settings.from_env({ENV_PREFIX + "RATE_LIMIT_PER_ADDRESS": text})
    assert "rate_limit_per_address" in str(exc.value)


def test_limits_are_off_by_default_and_read_from_the_environment():
    assert Settings().token_limit is None and Settings().address_limit is None
    s = Settings.from_env({ENV_PREFIX + "RATE_LIMIT_PER_TOKEN": "10/s burst 50"})
    assert s.token_limit == RateLimit(10, 1, 50, "10/s burst 50")


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1,::1", "10.0.0.0/8, 192.168.1.7", "*", "fd00::/8"])
def test_forwarded_allow_ips_takes_addresses_networks_or_star(value):
    assert Settings.from_env({ENV_PREFIX + "FORWARDED_ALLOW_IPS": value}).forwarded_allow_ips == value


@pytest.mark.parametrize("value", ["proxy.local", "10.0.0.0/33", "127.0.0.1;10.0.0.1"])
def test_forwarded_allow_ips_refuses_what_uvicorn_would_silently_ignore(value):
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        Settings.from_env({ENV_PREFIX + "FORWARDED_ALLOW_IPS": value})


def test_a_token_is_counted_as_the_api_reads_it():
    def key(value: bytes) -> str | None:
        return token_key([(b"host", b"x"), (b"authorization", value)])

    assert key(b"Bearer abc") == key(b"bearer   abc ") == key(b"BEARER abc")
    assert key(b"Bearer abc") != key(b"Bearer abd")
    assert key(b"Basic abc") is None and key(b"Bearer ") is None
    assert token_key([(b"host", b"x")]) is None
    assert "abc" not in key(b"Bearer abc")  # the token itself is never a key


def test_an_address_is_counted_as_itself_and_ipv6_by_its_64():
    assert address_key(("203.0.113.9", 1)) == "a:203.0.113.9"
    assert address_key(("2001:db8:1:2::1", 1)) == address_key(("2001:db8:1:2:ffff::9", 2))
    assert address_key(("2001:db8:1:2::1", 1)) != address_key(("2001:db8:1:3::1", 1))
    assert address_key(("::ffff:203.0.113.9", 1)) == "a:203.0.113.9"
    assert address_key(None) is None


@pytest.mark.parametrize("wait, seconds", [(0.000001, 1), (0.5, 1), (1.0, 1), (1.000001, 2), (3599.9, 3600)])
def test_retry_after_is_whole_seconds_rounded_up_at_least_one(wait, seconds):
    assert retry_after(wait) == seconds


class Broken:
    """A limiter whose backend is down."""

    backend = "fake"
    answers_now = False
    calls = 0

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        self.calls += 1
        raise ConnectionError("redis is gone")

    async def close(self) -> None: ...


def test_a_failing_limiter_lets_requests_through_counts_them_and_logs_once(caplog):
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limiter, recorder = Broken(), Recorder()
    mw = RateLimits(app, limiter, per_token=parse_rate_limit("1/h"), recorder=recorder, cooldown=3600)
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/v1/timelines/home", "client": ("10.0.0.1", 1),
             "headers": [(b"authorization", b"Bearer t")]}
    with caplog.at_level(logging.WARNING, logger="homefeed.ratelimit"):
        for _ in range(5):
            asyncio.run(mw(dict(scope), receive, send))
    assert len(reached) == 5  # every request went through
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * 5
    assert limiter.calls == 1  # then left alone for the cooldown
    assert recorder.rate_limiter_errors == 5
    assert len([r for r in caplog.records if "rate limiter failed" in r.getMessage()]) == 1


class Flaky:
    """A limiter that fails, hangs or answers, as the test says."""

    backend = "fake"
    answers_now = False

    def __init__(self) -> None:
        self.mode = "fail"
        self.calls = 0
        self.release = asyncio.Event()

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        self.calls += 1
        if self.mode == "hang":
            await self.release.wait()
            raise TimeoutError("no answer")
        if self.mode == "fail":
            raise ConnectionError("refused")
        return 0.0

    async def close(self) -> None: ...


def test_while_failing_one_request_at_a_time_asks_the_limiter_again(caplog):
    passed = []

    async def app(scope, receive, send):
        passed.append(scope["path"])

    limiter, recorder = Flaky(), Recorder()
    mw = RateLimits(app, limiter, per_token=parse_rate_limit("1/h"), recorder=recorder, cooldown=0.0)
    scope = {"type": "http", "path": "/v1/posts", "client": ("10.0.0.1", 1),
             "headers": [(b"authorization", b"Bearer t")]}

    async def body() -> None:
        async def nothing(*a):
            return {"type": "http.request", "body": b""}

        await mw(dict(scope), nothing, nothing)  # fails: the limiter is now "failing"
        limiter.mode = "hang"
        probe = asyncio.create_task(mw(dict(scope), nothing, nothing))
        await asyncio.sleep(0)  # the probe is waiting on the limiter
        assert limiter.calls == 2
        for _ in range(10):  # meanwhile: through, unchecked, without asking
            await mw(dict(scope), nothing, nothing)
        assert limiter.calls == 2 and len(passed) == 11
        limiter.mode = "answer"
        limiter.release.set()
        await probe  # that probe timed out: still failing
        await mw(dict(scope), nothing, nothing)  # the next one asks, and gets an answer
        assert limiter.calls == 3
        await mw(dict(scope), nothing, nothing)
        assert limiter.calls == 4  # checked again, every request

    with caplog.at_level(logging.INFO, logger="homefeed.ratelimit"):
        asyncio.run(body())
    assert len(passed) == 14
    assert recorder.rate_limiter_errors == 12  # 2 failures + 10 skipped
    assert any("answering again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("per_token, per_address, refused_by, retry", [
    ("1/h", "1/min", "token", "3600"),
    ("1/min", "1/h", "address", "3600"),
    ("1/min", "1/min burst 2", "token", "60"),
])
def test_when_both_limits_refuse_the_longer_wait_wins(per_token, per_address, refused_by, retry):
    from homefeed.adapters.memory_ratelimit import MemoryRateLimiter

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    clock = [1_000_000]
    mw = RateLimits(app, MemoryRateLimiter(clock=lambda: clock[0]), per_token=parse_rate_limit(per_token),
                    per_address=parse_rate_limit(per_address), recorder=Recorder())
    scope = {"type": "http", "path": "/v1/posts", "client": ("10.0.0.1", 1),
             "headers": [(b"authorization", b"Bearer t")]}
    answers: list[dict] = []

    async def send(message):
        answers.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def body() -> None:
        for _ in range(3):
            await mw(dict(scope), receive, send)

    asyncio.run(body())
    starts = [m for m in answers if m["type"] == "http.response.start"]
    assert starts[0]["status"] == 200 and starts[-1]["status"] == 429
    headers = dict(starts[-1]["headers"])
    assert headers[b"retry-after"] == retry.encode()
    assert f"per {refused_by}".encode() in answers[-1]["body"]
