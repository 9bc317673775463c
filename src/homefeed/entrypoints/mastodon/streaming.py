"""Mastodon's streaming API: server-sent events at ``/api/v1/streaming/{user,
user/notification,public,public/local,hashtag,hashtag/local}``, the same streams over a
WebSocket at ``/api/v1/streaming`` (``subscribe``/``unsubscribe`` messages), and
``/api/v1/streaming/health``. The routing of live updates is the ``StreamHub``'s
(``service_layer/streaming.py``); this module speaks the protocols.

Both endpoints are plain ASGI apps, so that an idle connection costs only its task, one
watcher for the client's going away, and a small ``Stream`` (the benchmark measures it).
The 200 and its headers go out before the first event (with a ``:)`` comment, as Mastodon
does), once the process is subscribed to the live bus, so nothing published after the
answer is missed; an idle stream gets ``:thump`` every ``stream_heartbeat_seconds``.
A WebSocket's heartbeat is a ping frame at the same interval, as Mastodon's (whose clients
ignore unknown text messages no better than unknown events): ASGI has no message for a ping,
so the server sends them (``homefeed serve`` sets uvicorn's ``ws_ping_interval`` and
``ws_ping_timeout`` to ``stream_heartbeat_seconds``), and closes (1011) a connection whose
client has not answered by the next one; the app then sees it leave and forgets its stream.

Auth, as Mastodon: ``Authorization: Bearer``, the ``access_token`` parameter, or (WebSocket)
``Sec-WebSocket-Protocol`` (echoed back as the accepted subprotocol). ``user`` needs ``read``
or ``read:statuses``, ``user:notification`` ``read`` or ``read:notifications``; the public
and hashtag streams may be read anonymously.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from homefeed.aio import wait_for
from homefeed.domain.errors import HomefeedError, Unauthorized
from homefeed.domain.mastodon.entities import API_ERRORS
from homefeed.domain.mastodon.scopes import covers
from homefeed.entrypoints.routes._request import HomefeedApp
from homefeed.service_layer.services import hash_token
from homefeed.service_layer.streaming import (
    HASHTAG, HASHTAG_LOCAL, NOTIFICATIONS, PRIVATE, PUBLIC, PUBLIC_LOCAL, REVOKED, STREAMS,
    TOO_SLOW, USER, Stream, StreamHub, Sub,
)

log = logging.getLogger("homefeed.streaming")

#: SSE path -> stream name.
SSE_PATHS = {
    "/api/v1/streaming/user": USER,
    "/api/v1/streaming/user/notification": NOTIFICATIONS,
    "/api/v1/streaming/public": PUBLIC,
    "/api/v1/streaming/public/local": PUBLIC_LOCAL,
    "/api/v1/streaming/hashtag": HASHTAG,
    "/api/v1/streaming/hashtag/local": HASHTAG_LOCAL,
}
#: Scopes of which one is needed, per stream (any token sent must be valid and hold them).
SCOPES = {USER: ("read", "read:statuses"), NOTIFICATIONS: ("read", "read:notifications")}
_READ = ("read", "read:statuses")
#: Kernel send buffer of a streaming socket: small, so that a client that reads nothing
#: is noticed (its queue fills) after ~100 KB rather than megabytes of kernel memory.
SEND_BUFFER = 32 * 1024
#: Seconds to wait for the live bus's subscription before answering anyway.
SUBSCRIBE_WAIT = 2.0
MAX_TAG = 100

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"private, no-store"),
    (b"x-accel-buffering", b"no"),  # a proxy in front must not buffer the stream
]


class StreamError(Exception):
    """A stream request refused: Mastodon's ``{"error": ...}`` with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _app(scope: Scope) -> HomefeedApp:
    app: HomefeedApp = scope["app"]
    return app


def hub_of(scope: Scope) -> StreamHub:
    app = _app(scope)
    hub = app.homefeed.streams
    if hub.api is None:
        hub.api = app.mastodon  # the app's Mastodon views render the statuses
    return hub


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def token_of(scope: Scope, query: Any, websocket: bool) -> str | None:
    header = _header(scope, b"authorization")
    if header:
        kind, _, bearer = header.partition(" ")
        if kind.lower() != "bearer" or not bearer.strip():
            raise StreamError(401, API_ERRORS[401])
        return bearer.strip()
    token = query.get("access_token")
    if token:
        return str(token)
    if websocket:
        protocol = _header(scope, b"sec-websocket-protocol")
        if protocol:
            return protocol.split(",")[0].strip() or None
    return None


async def who(scope: Scope, token: str | None, name: str) -> tuple[int | None, bytes | None]:
    """(user id, token hash) of the token, checked for stream ``name``; (None, None) for an
    anonymous reader of a public stream."""
    if token is None:
        if name in PRIVATE:
            raise StreamError(401, API_ERRORS[401])
        return None, None
    try:
        caller = await _app(scope).homefeed.caller(token)
    except Unauthorized:
        raise StreamError(401, API_ERRORS[401]) from None
    if not any(covers(caller.scopes, s) for s in SCOPES.get(name, _READ)):
        raise StreamError(403, API_ERRORS[403])
    if name in PRIVATE and caller.user_id is None:
        raise StreamError(403, "This action needs a user's token")
    return caller.user_id, hash_token(token)


def subscription(name: Any, tag: Any) -> Sub:
    """The subscription asked for, or StreamError (400) naming what is wrong."""
    if name not in STREAMS:
        raise StreamError(400, "Unknown stream type")
    if name in (HASHTAG, HASHTAG_LOCAL):
        if not isinstance(tag, str) or not tag.strip().lstrip("#"):
            raise StreamError(400, "No tag for stream provided")
        tag = tag.strip().lstrip("#")
        if len(tag) > MAX_TAG:
            raise StreamError(400, "The tag is too long")
        return name, tag
    return name, None


def _transport_of(send: Callable[..., Any]) -> Any:
    """The connection under ``send``: the server's send is wrapped by each middleware (a
    closure over the next one), and at the bottom is uvicorn's bound method, whose object
    holds the asyncio transport. Only used to abort a connection whose client reads nothing
    (ASGI has no message for that, and the server is stuck writing to it); None elsewhere."""
    stack: list[Callable[..., Any]] = [send]
    seen: set[int] = set()
    while stack and len(seen) < 50:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        transport = getattr(getattr(fn, "__self__", None), "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            return transport
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if callable(value):
                stack.append(value)
    return None


def _prepare(stream: Stream, send: Send) -> None:
    transport = _transport_of(send)
    if transport is None:
        return
    stream.on_abort = transport.abort
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status,
                    media_type="application/json; charset=utf-8")


# -- server-sent events ----------------------------------------------------------------------


async def _until_disconnect(receive: Receive, stream: Stream) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.close("the client left")


class EventStreamEndpoint:
    """``GET /api/v1/streaming/<stream>``: ``text/event-stream``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        path = scope["path"].rstrip("/")
        try:
            sub = subscription(SSE_PATHS[path], request.query_params.get("tag"))
            user_id, token_hash = await who(scope, token_of(scope, request.query_params, False), sub[0])
        except StreamError as exc:
            await _error(exc.status, exc.message)(scope, receive, send)
            return
        hub = hub_of(scope)
        await hub.start(SUBSCRIBE_WAIT)
        stream = hub.open(user_id, token_hash, _urls(request), websocket=False)
        del request  # an idle stream keeps only what it needs (benchmarks/streaming_delay.py)
        stream.subs.add(sub)
        _prepare(stream, send)
        watcher = asyncio.ensure_future(_until_disconnect(receive, stream))
        heartbeat = _app(scope).homefeed.settings.stream_heartbeat_seconds
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await send({"type": "http.response.body", "body": b":)\n\n", "more_body": True})
            while stream.closed is None:
                frames = await stream.next(heartbeat)
                if stream.closed is not None:
                    break
                stream.sending = True
                try:
                    await send({"type": "http.response.body", "more_body": True,
                                "body": b"".join(frames) if frames else b":thump\n\n"})
                finally:
                    stream.sending = False
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            stream.close("the response ended")


def _urls(request: Request) -> Any:
    from homefeed.entrypoints.mastodon._common import urls

    return urls(request)


async def health(request: Request) -> Response:
    return PlainTextResponse("OK")


# -- WebSocket -------------------------------------------------------------------------------


class WebSocketEndpoint:
    """``/api/v1/streaming``: Mastodon's multiplexed WebSocket. Client messages
    ``{"type": "subscribe"|"unsubscribe", "stream": NAME, "tag"?: TAG}``; server messages
    ``{"stream": [NAME(, TAG)], "event": EVENT, "payload": STRING}``, or ``{"error",
    "status"}`` for a refused message. A plain GET (no upgrade) is a 400."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await _error(400, "This is a WebSocket endpoint: connect with Upgrade: websocket"
                         )(scope, receive, send)
            return
        from starlette.datastructures import QueryParams

        query = QueryParams(scope.get("query_string", b""))
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            token = token_of(scope, query, True)
            first = query.get("stream")
            sub = subscription(first, query.get("tag")) if first else None
            user_id, token_hash = await who(scope, token, sub[0] if sub else PUBLIC)
        except StreamError as exc:
            await _refuse(scope, send, exc)
            return
        hub = hub_of(scope)
        await hub.start(SUBSCRIBE_WAIT)
        from starlette.requests import HTTPConnection

        from homefeed.entrypoints.mastodon._common import urls

        stream = hub.open(user_id, token_hash, urls(HTTPConnection(scope)), websocket=True)  # type: ignore[arg-type]
        if sub is not None:
            stream.subs.add(sub)
        protocol = _header(scope, b"sec-websocket-protocol")
        accept: dict[str, Any] = {"type": "websocket.accept"}
        if protocol and token is not None and query.get("access_token") is None \
                and _header(scope, b"authorization") is None:
            accept["subprotocol"] = protocol.split(",")[0].strip()
        await send(accept)
        _prepare(stream, send)
        reader = asyncio.ensure_future(_read_messages(scope, receive, stream, token))
        try:
            while stream.closed is None:
                frames = await stream.next(3600.0)
                for frame in frames:
                    if stream.closed is not None:
                        break
                    stream.sending = True
                    try:
                        await send({"type": "websocket.send", "text": frame.decode()})
                    finally:
                        stream.sending = False
            reason = stream.closed
            if reason != "the client left":
                code = 1013 if reason == TOO_SLOW else 1008 if reason == REVOKED else 1001
                try:
                    await wait_for(send({"type": "websocket.close", "code": code,
                                                 "reason": (reason or "")[:120]}), 2.0)
                except Exception:
                    pass
        finally:
            reader.cancel()
            stream.close("the client left")


async def _refuse(scope: Scope, send: Send, exc: StreamError) -> None:
    """Refuse the upgrade: an HTTP answer with Mastodon's error where the server allows it
    (the ASGI WebSocket Denial Response extension), else a close (403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = orjson.dumps({"error": exc.message})
        await send({"type": "websocket.http.response.start", "status": exc.status,
                    "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})


async def _read_messages(scope: Scope, receive: Receive, stream: Stream, token: str | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            stream.close("the client left")
            return
        raw = message.get("text") or message.get("bytes") or b""
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict) or data.get("type") not in ("subscribe", "unsubscribe"):
                raise StreamError(400, "Unknown message type")
            sub = subscription(data.get("stream"), data.get("tag"))
            if data["type"] == "subscribe":
                if sub[0] in PRIVATE:
                    user_id, _ = await who(scope, token, sub[0])
                    if user_id != stream.user_id:
                        raise StreamError(401, API_ERRORS[401])
                stream.subs.add(sub)
            else:
                stream.subs.discard(sub)
                if sub[1] is not None:  # a tag ignoring case
                    stream.subs -= {s for s in stream.subs if s[0] == sub[0] and (s[1] or "").lower() == sub[1].lower()}
        except orjson.JSONDecodeError:
            stream.deliver(orjson.dumps({"error": "Invalid JSON", "status": 400}))
        except StreamError as exc:
            stream.deliver(orjson.dumps({"error": exc.message, "status": exc.status}))
        except HomefeedError as exc:
            stream.deliver(orjson.dumps({"error": exc.message, "status": exc.status}))


class _EitherRoute(Route):
    """A route that takes the WebSocket upgrade of its path as well as plain HTTP (so the
    route list holds plain ``Route`` objects only, and the OpenAPI check sees it)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "websocket":
            match = self.path_regex.match(scope["path"])
            if match:
                return Match.FULL, {"endpoint": self.endpoint, "path_params": {}}
            return Match.NONE, {}
        return super().matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await super().handle(scope, receive, send)


_SSE = EventStreamEndpoint()

routes = [
    Route("/api/v1/streaming/health", health, methods=["GET"]),
    *(Route(path, _SSE, methods=["GET"]) for path in SSE_PATHS),
    _EitherRoute("/api/v1/streaming", WebSocketEndpoint(), methods=["GET"]),
]
