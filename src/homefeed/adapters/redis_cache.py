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
import collections
import functools
import inspect
import ssl
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from homefeed.adapters.outage import OutageLog
from homefeed.aio import wait_for

__all__ = ["OUTAGE", "FastLane", "RedisCluster", "connect", "ms", "outage_aware"]


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



# ---------------------------------------------------------------------------------------------
# the hot read path's connection
# ---------------------------------------------------------------------------------------------


class _Resp(asyncio.Protocol):
    """One connection speaking RESP: requests written as they come, replies parsed by
    hiredis and handed to the waiting futures in order (Redis answers a connection's
    commands in the order it got them)."""

    def __init__(self) -> None:
        import hiredis

        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if waiters:
                f = waiters.popleft()
                if not f.done():
                    f.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        err = redis_errors.ConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        while self.waiters:
            f = self.waiters.popleft()
            if not f.done():
                f.set_exception(err)


class FastLane:
    """The hot read path's connection to a standalone Redis (one home read = one script):
    a bare asyncio protocol with the hiredis parser, one connection shared by every request
    of the process (pipelined), no pool checkout, no retry wrapper, no per-command timer.
    redis-py's asyncio client spends ~3-4x the CPU per command (measured: the
    ``issue14_hybrid`` notes), and a home read on the scale-out profile is mostly that.

    What redis-py's client gave and this keeps: a lost connection fails its pending
    requests with ``ConnectionError`` (``outage_aware`` makes that ``Unavailable``) and the
    next call reconnects, once retried at once (the read scripts are idempotent); a server
    that stops answering fails the requests after ``timeout`` seconds (one timer per
    connection, checked every ``timeout / 4``); connecting gives up after
    ``connect_timeout``; NOSCRIPT loads the script and retries. Only ``redis://`` URLs
    (host, port, db, password; no TLS, no Cluster): ``for_url`` answers None otherwise and
    the caller keeps redis-py."""

    def __init__(self, host: str, port: int, db: int, username: str | None, password: str | None,
                 *, timeout: float = 2.0, connect_timeout: float = 1.0) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._proto: _Resp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[_Resp] | None = None
        self._sent: collections.deque[float] = collections.deque()  # send times, for the timer
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False  # by ``close``: no reconnecting after it

    @classmethod
    def for_url(cls, url: str) -> "FastLane | None":
        u = urlsplit(url)
        if u.scheme != "redis" or parse_qs(u.query):
            return None
        path = u.path.strip("/")
        return cls(u.hostname or "127.0.0.1", u.port or 6379, int(path) if path else 0,
                   u.username or None, u.password)

    async def _connect(self) -> _Resp:
        loop = asyncio.get_running_loop()
        _, proto = await wait_for(
            loop.create_connection(_Resp, self.host, self.port), self.connect_timeout)
        setup: list[tuple[Any, ...]] = []
        if self.password is not None:
            setup.append((b"AUTH", self.username, self.password) if self.username else (b"AUTH", self.password))
        if self.db:
            setup.append((b"SELECT", self.db))
        for cmd in setup:
            reply = await wait_for(self._send(proto, cmd), self.connect_timeout)
            if isinstance(reply, Exception):
                proto.transport.close()  # type: ignore[union-attr]
                raise redis_errors.ConnectionError(f"Redis refused {cmd[0]!r}: {reply}")
        return proto

    def _send(self, proto: _Resp, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        import hiredis

        f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        proto.waiters.append(f)
        proto.transport.write(hiredis.pack_command(args))  # type: ignore[union-attr]
        return f

    async def _connection(self) -> _Resp:
        proto = self._proto
        loop = asyncio.get_running_loop()
        if proto is not None and not proto.closed and self._loop is loop:
            return proto
        if self._closed:
            raise redis_errors.ConnectionError("this Redis connection was closed")
        if self._connecting is not None and self._loop is loop:
            return await asyncio.shield(self._connecting)
        self._loop = loop
        self._connecting = loop.create_future()
        try:
            proto = await self._connect()
        except BaseException as exc:
            self._connecting.set_exception(exc)
            self._connecting.exception()  # retrieved: no "never retrieved" warning
            self._connecting = None
            if isinstance(exc, (OSError, asyncio.TimeoutError)):
                raise redis_errors.ConnectionError(f"cannot connect to Redis: {exc!r}") from exc
            raise
        self._proto, self._sent = proto, collections.deque()
        self._connecting.set_result(proto)
        self._connecting = None
        return proto

    def _watch(self) -> None:
        """Close the connection when its oldest unanswered request is ``timeout`` old: its
        requests fail (ConnectionError), the next call reconnects."""
        self._timer = None
        proto = self._proto
        if proto is None or proto.closed or not proto.waiters:
            return
        sent, loop = self._sent, asyncio.get_running_loop()
        while len(sent) > len(proto.waiters):
            sent.popleft()  # answered
        if sent and loop.time() - sent[0] > self.timeout:
            proto.transport.close()  # type: ignore[union-attr]
            return
        self._timer = loop.call_later(self.timeout / 4, self._watch)

    async def call(self, *args: Any) -> Any:
        """One command; its error reply is raised as redis-py's exception for it."""
        for attempt in (0, 1):
            proto = await self._connection()
            loop = asyncio.get_running_loop()
            f = self._send(proto, args)
            self._sent.append(loop.time())
            if self._timer is None:
                self._timer = loop.call_later(self.timeout / 4, self._watch)
            try:
                reply = await f
            except redis_errors.ConnectionError:
                if attempt:
                    raise
                continue
            if isinstance(reply, Exception):
                msg = str(reply)
                if msg.startswith("NOSCRIPT"):
                    raise redis_errors.NoScriptError(msg)
                raise redis_errors.ResponseError(msg)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


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
        try:
            await _subscribe_once(url, channel, on_message, on_reset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_down(exc)
            on_reset(False)
            await asyncio.sleep(0.5)


#: Seconds to connect (and authenticate) a subscription before calling Redis down.
SUBSCRIBE_CONNECT_SECONDS = 1.0


async def _subscribe_once(
    url: str, channel: str, on_message: Callable[[bytes], None], on_reset: Callable[[bool], None],
) -> None:
    """One subscription's connection, read until it fails (``ConnectionError``) or the task
    is cancelled. A plain asyncio stream with hiredis's parser (already a dependency), not
    redis-py's ``PubSub``: cancelling a task blocked in ``PubSub.listen`` did not always end
    it (redis-py 8's pub/sub teardown waits on its lock and on futures that ignore
    ``cancel``), so ``Homefeed.close()`` and ``asyncio.run`` waited forever
    (``homefeed webhooks add`` printed its answer and never exited, 1 run in 5 here). Here
    a cancellation ends the read at once and the connection is aborted: nothing waits.
    ``redis://``, ``rediss://`` and ``unix://`` URLs, with user and password (the db does
    not matter to pub/sub, whose channels are server-wide)."""
    import hiredis

    u = urlsplit(url)
    tls: ssl.SSLContext | None = ssl.create_default_context() if u.scheme == "rediss" else None
    try:
        opening = (asyncio.open_unix_connection(u.path) if u.scheme == "unix"
                   else asyncio.open_connection(u.hostname or "127.0.0.1", u.port or 6379, ssl=tls))
        reader, writer = await wait_for(opening, SUBSCRIBE_CONNECT_SECONDS)
    except (OSError, asyncio.TimeoutError) as exc:
        raise redis_errors.ConnectionError(f"cannot connect to Redis for {channel}: {exc!r}") from exc
    try:
        parser = hiredis.Reader()
        if u.password is not None:
            auth = (b"AUTH", unquote(u.username), unquote(u.password)) if u.username else (b"AUTH", unquote(u.password))
            writer.write(hiredis.pack_command(auth))  # type: ignore[arg-type]
        writer.write(hiredis.pack_command((b"SUBSCRIBE", channel)))  # type: ignore[arg-type]
        while True:
            data = await reader.read(65536)
            if not data:
                raise redis_errors.ConnectionError("Redis closed the subscription's connection")
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if isinstance(reply, Exception):
                    raise redis_errors.ConnectionError(f"Redis refused the subscription: {reply}")
                if not isinstance(reply, list):
                    continue  # AUTH's OK
                kind = reply[0]
                if kind == b"message":
                    on_message(bytes(reply[2]))
                elif kind == b"subscribe":
                    on_reset(True)
    finally:
        writer.transport.abort()  # no flush, no wait: the connection is simply dropped


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
