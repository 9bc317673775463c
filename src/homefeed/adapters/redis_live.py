"""LiveBus on Redis pub/sub (channel ``homefeed:<deployment>:live``): the scale-out
profile's workers publish live updates there and every API process subscribes, so that any
API process can hold any reader's stream. Pub/sub over TCP keeps the order of one
publisher's messages, and costs one round trip per message, whatever the number of API
processes: what the delivery delay needs (``benchmarks/streaming_delay.py``).

Pub/sub delivers only to connected subscribers: a message published while an API process
is not subscribed is lost for it (counted, logged once per outage), which is Mastodon's
streaming contract too (a client re-reads its timeline with ``since_id`` after a gap)."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, ClassVar

from homefeed.adapters.redis_cache import connect, subscribe_forever
from homefeed.domain.deployment import Deployment

log = logging.getLogger("homefeed.streaming")


class RedisLiveBus:
    backend: ClassVar[str] = "redis"

    def __init__(self, url: str, deployment: Callable[[], Awaitable[Deployment]]) -> None:
        self._url = url
        self._deployment = deployment
        self._channel: str | None = None
        self._client: Any = None

    async def _name(self) -> str:
        if self._channel is None:
            self._channel = f"homefeed:{(await self._deployment()).id}:live"
        return self._channel

    async def publish(self, message: bytes) -> None:
        if self._client is None:
            self._client, _ = connect(self._url)
        await self._client.publish(await self._name(), message)

    def listened(self) -> bool:
        """Always True: listeners in other processes are not known here."""
        return True

    async def listen(
        self, on_message: Callable[[bytes], None], on_reset: Callable[[bool], None]
    ) -> None:
        down = False

        def reset(subscribed: bool) -> None:
            nonlocal down
            if subscribed and down:
                log.warning("live bus resubscribed; streams carry updates again")
            down = not subscribed
            on_reset(subscribed)

        def went_down(exc: Exception) -> None:
            if not down:
                log.warning("live bus down (%s); open streams miss updates until it is back", exc)

        await subscribe_forever(self._url, await self._name(), on_message, reset, went_down)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
