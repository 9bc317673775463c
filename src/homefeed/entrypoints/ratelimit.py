"""Rate limits per bearer token and per client address: a pure ASGI middleware.

Every ``/v1/...`` request is counted against two limits, each on when configured
(``HOMEFEED_RATE_LIMIT_PER_TOKEN``, ``HOMEFEED_RATE_LIMIT_PER_ADDRESS``):

- per token: the bearer token as the API reads it (``Authorization: Bearer <token>``), by a
  hash of its own: no database lookup, and an invalid token is limited like a valid one;
- per address: the client address (uvicorn replaces it with the ``X-Forwarded-For`` one
  when the peer is in ``forwarded_allow_ips``); an IPv6 address counts by its /64, the block
  one subscriber gets, so that walking through one's own /64 is not a way around the limit.

A request over either limit is answered ``429`` with ``Retry-After`` (whole seconds, rounded
up, at least 1: the longer of the two waits when both refuse), ``RateLimit-Policy`` and
``RateLimit`` (draft-ietf-httpapi-ratelimit-headers) and the usual error body; it never
reaches the application, so it changes nothing. Each limit counts the requests it allows:
one refused by the token limit still counts against its address, as it did reach us from
there. Operations routes (``/healthz``, ``/readyz``, ``/metrics``, the dashboard,
``/openapi.json``, ``/admin/*``) are never limited: monitoring must see a service that is
busy refusing.

The limiter fails open: if it raises (Redis down), the request goes through, the failure is
counted (``homefeed_rate_limiter_errors_total``) and logged at most once a minute, and the
limiter is not asked again for ``cooldown`` seconds, then by one request at a time, so that
an outage costs one failed call a second, not one (or one timeout) per request.

``create_app`` adds this middleware only when a limit is configured: off, it costs nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from homefeed.config import RateLimit
from homefeed.entrypoints import metrics as obs
from homefeed.ports import RateLimiter

log = logging.getLogger("homefeed.ratelimit")

#: Only the API is limited; everything else is operations.
LIMITED_PREFIX = "/v1/"
#: Failure messages at most this often.
LOG_EVERY_SECONDS = 60.0


def token_key(headers: Any) -> str | None:
    """``"t:" + hash`` of the bearer token in ``headers`` (ASGI pairs), as the API parses it
    (so ``bearer``/``Bearer`` and extra spaces are the same token); None if there is none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            if not token or scheme.lower() != b"bearer":
                return None
            # A hash of its own (not the store's token hash): keys in Redis give nothing away.
            return "t:" + hashlib.blake2b(token, digest_size=16, person=b"homefeed-rl").hexdigest()
    return None


def address_key(client: tuple[str, int] | None) -> str | None:
    """``"a:" + the client address``; an IPv6 address by its /64 (an IPv4-mapped one as the
    IPv4 address). None when there is no address (a Unix socket)."""
    if not client or not client[0]:
        return None
    host = client[0]
    if ":" not in host:
        return "a:" + host
    try:
        ip = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return "a:" + host[:64]  # not an address (a proxy's placeholder): counted as given
    if ip.ipv4_mapped is not None:
        return "a:" + str(ip.ipv4_mapped)
    return f"a:{int(ip) >> 64:016x}::/64"


def retry_after(wait: float) -> int:
    """Whole seconds, rounded up, at least 1 (``Retry-After`` has no fractions)."""
    return max(1, math.ceil(round(wait, 6)))


def policy_item(name: str, limit: RateLimit) -> str:
    """One ``RateLimit-Policy`` item: a quota of ``burst`` that refills completely in
    ``burst / rate`` seconds (the window ``w``)."""
    return f'"{name}";q={limit.burst};w={max(1, math.ceil(limit.burst / limit.rate))}'


class RateLimits:
    """The ASGI middleware (see the module docstring). Starlette: ``Middleware(RateLimits,
    limiter=..., per_token=..., per_address=...)``."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, per_token: RateLimit | None = None,
                 per_address: RateLimit | None = None, *, recorder: obs.Recorder | None = None,
                 cooldown: float = 1.0) -> None:
        self.app = app
        self.limiter = limiter
        self.per_token = per_token
        self.per_address = per_address
        self.recorder = recorder or obs.RECORDER
        self.cooldown = cooldown
        #: A limiter that never waits (in memory) answers ``hit_now``: the same answer
        #: without a coroutine per call, on every request.
        self._hit_now = limiter.hit_now if limiter.answers_now else None
        #: The limiter's last call failed: it is not asked again before ``_skip_until``
        #: (monotonic), and then by one request at a time (``_probing``).
        self._failing = False
        self._skip_until = 0.0
        self._probing = False
        self._unchecked_since_log = 0
        self._logged_at = -1e9

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        refused = await self._check(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        await self._refuse(send, *refused)

    async def _check(self, scope: Scope) -> tuple[str, RateLimit, float] | None:
        """Count the request; (the refusing limit's name, the limit, the wait) or None. While
        the limiter is failing, one request at most asks it again (after ``cooldown``); the
        others go through unchecked meanwhile, rather than all wait for a dead server."""
        if self._failing:
            if self._probing or time.monotonic() < self._skip_until:
                self._unchecked()
                return None
            self._probing = True
        try:
            refused = await self._count(scope)
        except Exception as exc:  # noqa: BLE001 - fail open, whatever the limiter's failure
            self._failed(exc)
            return None
        finally:
            self._probing = False
        if self._failing:
            self._failing = False
            log.info("rate limiter answering again (%d requests went unchecked)",
                     self._unchecked_since_log)
            self._unchecked_since_log = 0
        return refused

    async def _count(self, scope: Scope) -> tuple[str, RateLimit, float] | None:
        """Both limits, each counting the request if it allows it (in one call to the
        limiter: one round trip to Redis); the longer wait wins."""
        by_address, by_token = self.per_address, self.per_token
        address = address_key(scope.get("client")) if by_address is not None else None
        token = token_key(scope["headers"]) if by_token is not None else None
        wait_address = wait_token = 0.0
        # (each key is set only with its limit; the type checker is told so by the pairs)
        now = self._hit_now
        if now is not None:
            if address is not None and by_address is not None:
                wait_address = now(address, by_address.rate, by_address.burst)
            if token is not None and by_token is not None:
                wait_token = now(token, by_token.rate, by_token.burst)
        elif address is not None and by_address is not None and token is not None and by_token is not None:
            wait_address, wait_token = await self.limiter.hit_many(
                [(address, by_address.rate, by_address.burst), (token, by_token.rate, by_token.burst)])
        elif address is not None and by_address is not None:
            wait_address = await self.limiter.hit(address, by_address.rate, by_address.burst)
        elif token is not None and by_token is not None:
            wait_token = await self.limiter.hit(token, by_token.rate, by_token.burst)
        if wait_token > 0 and wait_token >= wait_address and by_token is not None:
            return "token", by_token, wait_token
        if wait_address > 0 and by_address is not None:
            return "address", by_address, wait_address
        return None

    def _unchecked(self) -> None:
        self.recorder.rate_limiter_errors += 1
        self._unchecked_since_log += 1

    def _failed(self, exc: Exception) -> None:
        """Let the request through, keep the limiter out of the way for ``cooldown``
        seconds, log now and then."""
        self._unchecked()
        now = time.monotonic()
        self._skip_until = now + self.cooldown
        self._failing = True
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning("rate limiter failed, requests go through unchecked (%d so far): %s: %s",
                        self._unchecked_since_log, type(exc).__name__, exc)

    async def _refuse(self, send: Send, name: str, limit: RateLimit, wait: float) -> None:
        self.recorder.rate_limited[name] = self.recorder.rate_limited.get(name, 0) + 1
        seconds = retry_after(wait)
        body = orjson.dumps({"error": {
            "code": "rate_limited",
            "message": f"too many requests per {name} (limit {limit.text}); retry in {seconds} s",
        }})
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(seconds).encode()),
            (b"ratelimit-policy", policy_item(f"per-{name}", limit).encode()),
            (b"ratelimit", f'"per-{name}";r=0;t={seconds}'.encode()),
        ]})
        await send({"type": "http.response.body", "body": body})
