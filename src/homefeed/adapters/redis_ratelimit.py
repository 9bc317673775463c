"""Rate limiter on Redis (scale-out profile): the same GCRA as ``memory_ratelimit``, shared
by every API process that talks to the same Redis, so N processes enforce ONE limit.

One key per limited client, ``<prefix>:rl:{<key>}``: a string holding its TAT (integer
microseconds), with a TTL that ends when the TAT passes (after which the key means nothing:
Redis drops it, memory stays bounded by the clients active in the last ``burst / rate``
seconds, and ``volatile-*`` eviction policies may take it). The braces are a Cluster hash
tag: the one key a call touches decides its slot, so the script runs on any Cluster node.

One call = one Lua script (``lua/gcra.lua``; EVALSHA; EVAL once if the server forgot it) =
one round trip, atomic: two processes hitting the same key at once cannot both take the
last token. A request checked against both limits (token and address) sends both keys in
that one call (``hit_many``; on a Cluster, where they live in different slots, two calls at
once).

The clock is Redis's own (``TIME``) unless a ``clock`` is given (tests): API processes on
machines whose clocks disagree still share one consistent limit. (With a clock of the
caller's, Redis's expiry runs on another clock than the TATs, so keys are then kept at least
an hour: a key that expires late is harmless, one that expires early would forget a client.)

Failing fast matters more here than anywhere else: the HTTP layer lets a request through
when the limiter raises (fail open), so a request must never wait long for a Redis that is
gone. The adapter therefore makes its OWN client, with short socket timeouts and no retries,
rather than share the caches' client (which retries with back-off for up to a second, the
right choice for a timeline read, the wrong one in front of every request). That costs one
more small connection pool per process.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Callable, ClassVar, Sequence

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from homefeed.adapters.memory_ratelimit import check_args, interval_us
from homefeed.adapters.redis_cache import check_url
from homefeed.adapters.redis_lua import lua_source


def _client(url: str, timeout: float) -> Any:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    check_url(url)
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class RedisRateLimiter:
    """See the module docstring. ``url_or_client``: a ``redis://`` URL (the limiter owns a
    fail-fast client) or a ``redis.asyncio`` client, standalone or cluster (then its
    timeouts are the caller's business). ``clock``: integer microseconds, for tests;
    None uses the server's clock."""

    backend: ClassVar[str] = "redis"
    #: Every answer is a round trip: ``hit_now`` cannot answer.
    answers_now: ClassVar[bool] = False

    def hit_now(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        raise NotImplementedError("a Redis limiter answers only through a round trip: await hit")

    def __init__(self, url_or_client: Any, prefix: str = "hf", *, timeout: float = 0.5,
                 clock: Callable[[], int] | None = None) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain braces (they are Redis Cluster hash tags)")
        if isinstance(url_or_client, str):
            self.client, self._owned = _client(url_or_client, timeout), True
        else:
            self.client, self._owned = url_or_client, False
        self.clock = clock
        self._cluster = isinstance(self.client, RedisCluster)
        self._min_ttl_ms = 0 if clock is None else 3_600_000
        self._prefix = prefix + ":rl:{"
        self._src = lua_source("gcra").encode()
        self._sha = hashlib.sha1(self._src).hexdigest()

    def key(self, key: str) -> str:
        return self._prefix + key + "}"

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        check_args(burst, cost)
        return (await self._run([self.key(key)], [interval_us(rate), burst, cost]))[0]

    async def hit_many(self, hits: Sequence[tuple[str, float, int]]) -> list[float]:
        """One script call for all the keys (one round trip) on a standalone server; on a
        Cluster, where the keys live in different slots, one call per key, all at once."""
        for _, _, burst in hits:
            check_args(burst, 1)
        if self._cluster:
            return list(await asyncio.gather(*(self.hit(k, rate, burst) for k, rate, burst in hits)))
        args: list[Any] = []
        for _, rate, burst in hits:
            args += (interval_us(rate), burst, 1)
        return await self._run([self.key(k) for k, _, _ in hits], args)

    async def _run(self, keys: list[str], per_key_args: list[Any]) -> list[float]:
        args = (len(keys), *keys, "" if self.clock is None else self.clock(), self._min_ttl_ms,
                *per_key_args)
        try:
            waits = await self.client.execute_command("EVALSHA", self._sha, *args)
        except NoScriptError:  # a restarted server, SCRIPT FLUSH: EVAL caches it again
            waits = await self.client.execute_command("EVAL", self._src, *args)
        return [int(w) / 1_000_000 for w in waits]

    async def close(self) -> None:
        if self._owned:
            await self.client.aclose()
