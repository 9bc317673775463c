"""TokenRevocations on Redis pub/sub: the scale-out profile's API processes share a Redis
(CACHE_URL; the process plan refuses several API processes without one), so a revocation is
published there and every API process drops the token from its in-process cache.

Pub/sub delivers only to connected subscribers: while a process's subscription is down it
may miss announcements, so it caches no token then (each request reads the record store),
and each (re)subscription clears its whole token cache once Redis has confirmed the
subscription (a token read after the confirmation sees the revocation in the record store,
or gets its announcement)."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, ClassVar

import redis.asyncio as aioredis

from homefeed.adapters.redis_cache import subscribe_forever
from homefeed.domain.deployment import Deployment

log = logging.getLogger("homefeed.oauth")


class RedisTokenRevocations:
    backend: ClassVar[str] = "redis"

    def __init__(self, url: str, deployment: Callable[[], Awaitable[Deployment]]) -> None:
        self._url = url
        self._deployment = deployment
        self._channel: str | None = None
        self._client: aioredis.Redis | None = None

    async def _name(self) -> str:
        if self._channel is None:
            self._channel = f"homefeed:{(await self._deployment()).id}:tokens-revoked"
        return self._channel

    async def announce(self, token_hash: bytes) -> None:
        if self._client is None:
            self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=1.0, socket_timeout=2.0)
        await self._client.publish(await self._name(), token_hash)

    async def listen(
        self, on_revoked: Callable[[bytes], None], on_reset: Callable[[bool], None]
    ) -> None:
        def down(exc: Exception) -> None:  # while down, every token is read from the record store
            log.warning("token revocation channel down (%s); reconnecting", exc)

        await subscribe_forever(self._url, await self._name(), on_revoked, on_reset, down)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
