"""Pages of posts, newest first: the caller's home timeline and one user's posts."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from homefeed.domain.errors import Unauthorized
from homefeed.entrypoints.routes._request import HomefeedApp, caller, json_response, list_params, service
from homefeed.service_layer.services import MAX_LIMIT


async def home(request: Request) -> Response:
    """A warm read is served from the caches and runs no SQL (any page, any parameters)."""
    uid = await caller(request)
    limit, before = list_params(request)
    return json_response(await service(request).home_timeline(uid, limit, before))


#: ``limit=N`` alone, N of at most as many digits as ``list_params`` reads as a number.
_LIMIT_ONLY = re.compile(rb"limit=([0-9]{1,%d})" % (len(str(MAX_LIMIT)) + 1))
_NO_TOKEN = "send 'Authorization: Bearer <token>' (the token from POST /v1/users)"
_CONTENT_TYPE = (b"content-type", b"application/json")


class HomeRoute:
    """``GET /v1/timelines/home``, the hottest route, as a plain ASGI app: the first page
    (no ``before``; ``limit`` or nothing) is the caller's kept page as bytes
    (``Homefeed.home_timeline_body``), answered without building a ``Request``, a
    ``Response`` or the per-request exception wrapper (errors raised here reach the app's
    exception handlers all the same). Anything else goes to ``home``. Same answers, byte for
    byte: the same token rules as ``caller`` and the same limit rules as ``list_params``."""

    def __init__(self) -> None:
        self.slow = request_response(home)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope["query_string"]
        limit: int | None = None
        if raw:
            m = _LIMIT_ONLY.fullmatch(raw)
            if m is None:
                await self.slow(scope, receive, send)
                return
            limit = int(m.group(1))
        header = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        scheme, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(_NO_TOKEN)
        app: HomefeedApp = scope["app"]
        hf = app.homefeed
        body = hf.warm_home_body(token, limit)  # all in memory: no coroutine
        if body is None:
            uid = await hf.authenticate(token, "read")
            body = await hf.home_timeline_body(uid, limit)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body)), _CONTENT_TYPE]})
        await send({"type": "http.response.body", "body": body})


async def user_posts(request: Request) -> Response:
    limit, before = list_params(request)
    return json_response(await service(request).user_posts(request.path_params["handle"], limit, before))


routes = [
    Route("/v1/timelines/home", HomeRoute(), methods=["GET"]),
    Route("/v1/users/{handle}/posts", user_posts, methods=["GET"]),
]
