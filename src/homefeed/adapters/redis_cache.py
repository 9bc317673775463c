"""What the two Redis caches share: the client made from a URL, and the outage handling that
turns Redis's connection errors into ``Unavailable``. The caches themselves are
``redis_timeline_cache.RedisTimelineCache`` and ``redis_post_cache.RedisPostCache`` (also
importable from here, the path they had before the split); their design notes are in the
README ("Scale-out profile") and at the top of ``lua/timeline_lib.lua``.

``OUTAGE`` lives here, in one place, because both caches report to it: one warning per
Redis outage, not one per cache.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from homefeed.adapters.outage import OutageLog

__all__ = ["OUTAGE", "RedisCluster", "connect", "ms", "outage_aware"]


def ms(seconds: float) -> int:
    """Seconds as the milliseconds of a PX / PEXPIRE (at least 1: 0 would mean "no TTL")."""
    return max(1, int(seconds * 1000))


# ---------------------------------------------------------------------------------------------
# outages
# ---------------------------------------------------------------------------------------------

#: Errors that say Redis cannot serve now, not that a command is wrong: the connection
#: (refused, reset, timed out; BusyLoadingError is one), a cluster without a quorum or
#: resharding, a primary demoted to a read-only replica by a failover. OSError and
#: TimeoutError: what the asyncio client may let through from its socket.
_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    OSError,
    asyncio.TimeoutError,
)

#: Redis, as this process sees it: both caches share it (one warning per outage).
OUTAGE = OutageLog("Redis")

_C = TypeVar("_C", bound=type)


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if OUTAGE.since is not None and OUTAGE.recently_failed():
            raise OUTAGE.skipped()  # failed a moment ago: the caller's fallback, at once
        try:
            result = await fn(*args, **kwargs)
        except _DOWN as exc:
            raise OUTAGE.failed(exc) from exc
        if OUTAGE.since is not None:
            OUTAGE.succeeded()
        return result

    return call


def outage_aware(cls: _C) -> _C:
    """Class decorator: every public coroutine method raises ``Unavailable`` (503) instead
    of a Redis connection error, and reports the outage. Within 0.25 s of a failure a call
    fails at once without trying, so that reads falling back to the record store do not each
    wait for a refused connection (Redis is still tried a few times a second, and its return
    is noticed)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and name != "close" and inspect.iscoroutinefunction(member):
            setattr(cls, name, _guarded(member))
    return cls


# ---------------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------------

#: Query parameters of a ``redis://`` URL that name something besides a connection setting.
_URL_EXTRAS = ("client_name", "username", "password")
_SSL_URL_PARAMETERS = ("ssl_ca_certs", "ssl_ca_path", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile",
                       "ssl_ciphers", "ssl_password")


def url_parameters(url: str) -> list[str]:
    """The query parameters redis-py takes in ``url``: the ones it parses, and the ones it
    hands to the connection class of the URL's scheme that this class accepts."""
    from redis.asyncio import connection as rc

    scheme = urlsplit(url).scheme
    cls = {"rediss": rc.SSLConnection, "unix": rc.UnixDomainSocketConnection}.get(scheme, rc.Connection)
    takes = {name for c in cls.__mro__ if "__init__" in vars(c)
             for name in inspect.signature(vars(c)["__init__"]).parameters}
    candidates = [*rc.URL_QUERY_ARGUMENT_PARSERS, *_URL_EXTRAS,
                  *(_SSL_URL_PARAMETERS if scheme == "rediss" else ())]
    return sorted({n for n in candidates if n in takes or n == "max_connections"})


def check_url(url: str) -> None:
    """Refuse a query parameter redis-py does not take: it would hand it to its connection
    class, which fails (a TypeError) only at the first connection, long after start."""
    accepted = url_parameters(url)
    for name in parse_qs(urlsplit(url).query, keep_blank_values=True):
        if name not in accepted:
            raise ValueError(f"unknown parameter {name!r} in the Redis URL; known: {', '.join(accepted)}")


def connect(url_or_client: Any) -> tuple[Any, bool]:
    """(client, owned): from a URL (then the cache owns its client) or a ``redis.asyncio``
    client of the caller's, which must answer bytes (``decode_responses=False``, the
    default)."""
    if isinstance(url_or_client, str):
        check_url(url_or_client)
        # A restarted server (or an idle timeout) leaves pooled connections closed: retry a
        # command on a fresh connection rather than fail the request. Every script here is
        # idempotent, so a command that may have run once is safe to send again.
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # Bounded: a stopped server refuses at once, a hung or unreachable one is given up
        # on after these (redis-py's defaults are 5 s each, times the retries). A timed-out
        # command is not retried: the timeout already is the bound.
        return aioredis.Redis.from_url(
            url_or_client,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            retry_on_error=[RedisConnectionError],
        ), True
    client = url_or_client
    if isinstance(client, RedisCluster):
        kwargs = client.get_connection_kwargs()
    elif isinstance(client, aioredis.Redis):
        kwargs = client.connection_pool.connection_kwargs
    else:
        kwargs = {}  # a client of another shape (a proxy, a fake): trusted to answer bytes
    if kwargs.get("decode_responses"):
        raise ValueError("the Redis client must be made with decode_responses=False")
    return client, False



async def subscribe_forever(
    url: str, channel: str, on_message: Callable[[bytes], None],
    on_reset: Callable[[bool], None], on_down: Callable[[Exception], None],
) -> None:
    """Run until cancelled: subscribe to ``channel`` and call ``on_message`` with each
    message; ``on_reset(True)`` each time the subscription is (re)made, and, when the
    connection fails, ``on_down(exc)`` then ``on_reset(False)`` before reconnecting. Pub/sub
    delivers only to connected subscribers: what is published while down is missed, which
    is what ``on_reset`` tells the listener (the token revocations and the live bus)."""
    while True:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=1.0)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                kind = message.get("type")
                if kind == "message":
                    on_message(bytes(message["data"]))
                elif kind == "subscribe":
                    on_reset(True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_down(exc)
            on_reset(False)
            await asyncio.sleep(0.5)
        finally:
            try:
                await pubsub.aclose()
                await client.aclose()
            except Exception:
                pass


def __getattr__(name: str) -> Any:
    """The caches, from the module that held them before the split. Imported on first use:
    they import this module, so importing them here at the top would be a cycle."""
    if name == "RedisTimelineCache":
        from homefeed.adapters.redis_timeline_cache import RedisTimelineCache

        return RedisTimelineCache
    if name == "RedisPostCache":
        from homefeed.adapters.redis_post_cache import RedisPostCache

        return RedisPostCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
