"""The RateLimiter port (``homefeed.ports.RateLimiter``), against every adapter: in-process
memory and Redis (under a key prefix of the test's own).

Both adapters take an injected clock (integer microseconds), so no test sleeps: time is
moved by hand. The property test drives each adapter and an oracle with the same random
requests and clock steps and wants the same answer, to the microsecond, every time. The
oracle is GCRA in its other classic form, the *leaky bucket*: a level of debt (microseconds)
that drains as time passes; a request fits if its cost does not take the level past
``burst * T``. The adapters keep a TAT instead; the two forms must agree exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.adapters.memory_ratelimit import MIN_SWEEP, MemoryRateLimiter, interval_us
from homefeed.ports import RateLimiter
from tests.backends import REDIS_URL, needs, unique

T = TypeVar("T")

START_US = 1_700_000_000_000_000  # a realistic epoch time in microseconds (Redis uses TIME)


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@dataclass
class Clock:
    """Integer microseconds, moved by the test."""

    now: int = START_US

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1_000_000)


Opener = Callable[[Clock], contextlib.AbstractAsyncContextManager]


def memory_limiter() -> Opener:
    @contextlib.asynccontextmanager
    async def opener(clock: Clock) -> AsyncIterator[RateLimiter]:
        limiter = MemoryRateLimiter(clock=clock)
        try:
            yield limiter
        finally:
            await limiter.close()

    return opener


@dataclass
class RedisPrefixes:
    used: list[str] = field(default_factory=list)

    def drop_all(self) -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            for prefix in self.used:
                keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()


def redis_limiter(prefixes: RedisPrefixes) -> Opener:
    from homefeed.adapters.redis_ratelimit import RedisRateLimiter

    prefix = unique("hfrl")
    prefixes.used.append(prefix)

    @contextlib.asynccontextmanager
    async def opener(clock: Clock) -> AsyncIterator[RateLimiter]:
        limiter = RedisRateLimiter(REDIS_URL, prefix=prefix, clock=clock)
        try:
            yield limiter
        finally:
            await limiter.close()

    return opener


@pytest.fixture(params=[pytest.param("memory", id="memory"),
                        pytest.param("redis", id="redis", marks=needs("redis"))])
def limiter(request: pytest.FixtureRequest):
    if request.param == "memory":
        yield memory_limiter()
        return
    prefixes = RedisPrefixes()
    try:
        yield redis_limiter(prefixes)
    finally:
        prefixes.drop_all()


def key() -> str:
    return "k:" + uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------------------------
# the promises, one by one
# --------------------------------------------------------------------------------------------


def test_a_burst_then_one_request_per_interval(limiter):
    async def body() -> None:
        clock = Clock()
        async with limiter(clock) as rl:
            k = key()
            assert [await rl.hit(k, 10, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
            assert await rl.hit(k, 10, 3) == pytest.approx(0.1)  # 10/s: the next in 100 ms
            clock.advance(0.099999)
            assert await rl.hit(k, 10, 3) == pytest.approx(0.000001)
            clock.advance(0.000001)
            assert await rl.hit(k, 10, 3) == 0.0
            assert await rl.hit(k, 10, 3) == pytest.approx(0.1)

    run(body())


def test_a_refused_request_counts_nothing(limiter):
    async def body() -> None:
        clock = Clock()
        async with limiter(clock) as rl:
            k = key()
            await rl.hit(k, 1, 1)
            waits = [await rl.hit(k, 1, 1) for _ in range(5)]
            assert waits == [1.0] * 5  # refusals do not push the next allowed time further
            clock.advance(1.0)
            assert await rl.hit(k, 1, 1) == 0.0

    run(body())


def test_an_idle_key_refills_up_to_its_burst_only(limiter):
    async def body() -> None:
        clock = Clock()
        async with limiter(clock) as rl:
            k = key()
            for _ in range(2):
                await rl.hit(k, 2, 2)
            clock.advance(3600)  # an hour idle: a full burst again, not 7200 requests
            assert [await rl.hit(k, 2, 2) for _ in range(3)] == [0.0, 0.0, 0.5]

    run(body())


def test_keys_are_independent(limiter):
    async def body() -> None:
        clock = Clock()
        async with limiter(clock) as rl:
            a, b = key(), key()
            assert await rl.hit(a, 1, 1) == 0.0
            assert await rl.hit(a, 1, 1) == 1.0
            assert await rl.hit(b, 1, 1) == 0.0

    run(body())


def test_a_cost_takes_that_many_requests(limiter):
    async def body() -> None:
        clock = Clock()
        async with limiter(clock) as rl:
            k = key()
            assert await rl.hit(k, 4, 3, cost=2) == 0.0
            assert await rl.hit(k, 4, 3, cost=2) == pytest.approx(0.25)  # one left: needs 2
            assert await rl.hit(k, 4, 3, cost=1) == 0.0

    run(body())


def test_slow_rates_answer_long_exact_waits(limiter):
    async def body() -> None:
        clock = Clock()
        async with limiter(clock) as rl:
            k = key()
            assert await rl.hit(k, 1 / 3600, 1) == 0.0  # 1 an hour
            clock.advance(600)
            assert await rl.hit(k, 1 / 3600, 1) == pytest.approx(3000.0)

    run(body())


@pytest.mark.parametrize("rate, burst, cost", [(0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, 2, 3), (1, 2, 0)])
def test_impossible_arguments_are_refused_loudly(limiter, rate, burst, cost):
    async def body() -> None:
        async with limiter(Clock()) as rl:
            with pytest.raises(ValueError):
                await rl.hit(key(), rate, burst, cost)

    run(body())


# --------------------------------------------------------------------------------------------
# against the oracle
# --------------------------------------------------------------------------------------------


class LeakyBucket:
    """The oracle: per key, a level of debt in microseconds and when it was last drained."""

    def __init__(self) -> None:
        self.level: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def hit(self, key: str, rate: float, burst: int, cost: int, now: int) -> float:
        t = max(1, round(1_000_000 / rate))
        level = max(0, self.level.get(key, 0) - (now - self.last.get(key, now)))
        self.level[key], self.last[key] = level, now
        over = level + cost * t - burst * t
        if over > 0:
            return over / 1_000_000
        self.level[key] = level + cost * t
        return 0.0


RATES = [1 / 3600, 0.5, 1, 3, 7, 10, 100, 333, 1000, 1_000_000]

@st.composite
def request(draw: st.DrawFn) -> tuple[int, float, int, int, int]:
    """(key index, rate, burst, cost, microseconds since the previous request). The step is
    often a few intervals give or take a microsecond: where an off-by-one would show."""
    rate = draw(st.sampled_from(RATES))
    burst = draw(st.integers(1, 5))
    cost = draw(st.integers(1, burst))
    t = max(1, round(1_000_000 / rate))
    near_boundary = st.builds(lambda k, d: max(0, k * t + d), st.integers(0, 3), st.integers(-2, 2))
    dt = draw(st.one_of(st.integers(0, 3_000_000), near_boundary))
    return draw(st.integers(0, 2)), rate, burst, cost, dt


requests = st.lists(request(), min_size=1, max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests)
def test_agrees_with_a_leaky_bucket_to_the_microsecond(limiter, steps):
    async def body() -> None:
        clock = Clock()
        oracle = LeakyBucket()
        keys = [key() for _ in range(3)]
        async with limiter(clock) as rl:
            for i, (k, rate, burst, cost, dt) in enumerate(steps):
                clock.now += dt
                if dt % 3 == 0 and i + 1 < len(steps):
                    # Two limits of one request: this step and the next key, in one call.
                    k2, rate2, burst2 = steps[i + 1][:3]
                    got = await rl.hit_many([(keys[k], rate, burst), (keys[k2], rate2, burst2)])
                    want = [oracle.hit(keys[k], rate, burst, 1, clock.now),
                            oracle.hit(keys[k2], rate2, burst2, 1, clock.now)]
                else:
                    got = await rl.hit(keys[k], rate, burst, cost)
                    want = oracle.hit(keys[k], rate, burst, cost, clock.now)
                assert got == want, f"step {i}: {steps[: i + 1]}"

    run(body())


def test_interval_is_whole_microseconds():
    assert interval_us(10) == 100_000
    assert interval_us(3) == 333_333
    assert interval_us(1e9) == 1  # never 0: a key would never fill
    with pytest.raises(ValueError):
        interval_us(float("nan"))


# --------------------------------------------------------------------------------------------
# adapter-specific: memory stays bounded, Redis keys expire and use the server's clock
# --------------------------------------------------------------------------------------------


def test_memory_forgets_keys_whose_time_has_passed():
    """100 seconds of 1,000 new clients a second, each key meaningful for 100 ms: the table
    holds about the keys of the last second (at most twice as many, between two sweeps),
    not the 100,000 seen."""
    clock = Clock()
    rl = MemoryRateLimiter(clock=clock)
    biggest = 0
    for second in range(100):
        clock.advance(1.0)
        for i in range(1_000):
            rl.hit_now(f"{second}:{i}", 10, 1)
            biggest = max(biggest, len(rl))
    assert biggest <= 2 * 1_000 + MIN_SWEEP
    assert rl.evicted == 0  # swept because their time had passed, none forgotten early


def test_memory_is_bounded_by_max_keys_whatever_the_traffic():
    """A million distinct addresses, each still limited (a TAT an hour ahead): the table
    never holds more than max_keys; the oldest are forgotten (they start over)."""
    clock = Clock()
    rl = MemoryRateLimiter(max_keys=5_000, clock=clock)
    sizes = []
    for i in range(200_000):
        rl.hit_now(f"a{i}", 1 / 3600, 5)
        if i % 997 == 0:
            sizes.append(len(rl))
    assert max(sizes) <= 5_000 and len(rl) <= 5_000
    assert rl.evicted >= 195_000
    # The newest keys are still limited exactly.
    for _ in range(4):
        rl.hit_now("a199999", 1 / 3600, 5)
    assert rl.hit_now("a199999", 1 / 3600, 5) == pytest.approx(3600.0)


@needs("redis")
def test_redis_keys_live_until_their_tat_and_use_the_server_clock():
    from homefeed.adapters.redis_ratelimit import RedisRateLimiter

    prefixes = RedisPrefixes([unique("hfrl")])

    async def body() -> None:
        rl = RedisRateLimiter(REDIS_URL, prefix=prefixes.used[0])  # clock: Redis TIME
        try:
            k = key()
            assert await rl.hit(k, 1 / 60, 2) == 0.0
            ttl_ms = await rl.client.pttl(rl.key(k))
            assert 0 < ttl_ms <= 60_000  # gone when its TAT has passed
            assert await rl.hit(k, 1 / 60, 2) == 0.0
            wait = await rl.hit(k, 1 / 60, 2)
            assert 50 < wait <= 60  # a minute minus the moments since the first hit
            assert 60_000 < await rl.client.pttl(rl.key(k)) <= 120_000
            # A server that forgot the script (restart, SCRIPT FLUSH) gets it again.
            rl._sha = "0" * 40
            assert await rl.hit(key(), 1, 1) == 0.0
        finally:
            await rl.close()

    try:
        run(body())
    finally:
        prefixes.drop_all()


@needs("redis")
def test_redis_keys_carry_a_cluster_hash_tag():
    from homefeed.adapters.redis_ratelimit import RedisRateLimiter

    rl = RedisRateLimiter(REDIS_URL, prefix="hf")
    assert rl.key("t:abc") == "hf:rl:{t:abc}"
    with pytest.raises(ValueError):
        RedisRateLimiter(REDIS_URL, prefix="h{f}")
    run(rl.close())


def test_hit_many_is_hit_one_after_the_other_in_one_call(limiter):
    async def body() -> None:
        clock = Clock()
        async with limiter(clock) as rl:
            a, b = key(), key()
            assert await rl.hit_many([(a, 1, 2), (b, 1, 1)]) == [0.0, 0.0]
            assert await rl.hit_many([(a, 1, 2), (b, 1, 1)]) == [0.0, 1.0]  # b refused alone
            assert await rl.hit_many([(a, 1, 2), (a, 1, 2)]) == [1.0, 1.0]  # a used up
            clock.advance(1.0)
            assert await rl.hit_many([(b, 1, 1), (a, 1, 2), (a, 1, 2)]) == [0.0, 0.0, 1.0]
            assert await rl.hit_many([]) == []

    run(body())
