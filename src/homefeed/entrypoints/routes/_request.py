"""What every handler does the same way: find the service, read and decode the body (size
limit, UTF-8, JSON object), authenticate the caller, read list parameters, run a keyed write
at most once, and encode the answer.

Kept in one module so that a rule of the wire format (64 KiB bodies, the bearer scheme, the
``limit``/``before`` parameters, the idempotency wrapper) is written once and every route,
today's and the Mastodon API's, gets it by calling these. Nothing here knows a resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from homefeed.domain.errors import BadJson, InvalidInput, PayloadTooLarge, Unauthorized
from homefeed.domain.ids import parse_id
from homefeed.service_layer.idempotency import (
    REPLAYED_HEADER,
    IdempotentRequest,
    Write,
    check_key,
)
from homefeed.service_layer.services import MAX_LIMIT, Homefeed

if TYPE_CHECKING:
    from homefeed.entrypoints.hot import HotPath
    from homefeed.entrypoints.metrics import Sampler
    from homefeed.service_layer.mastodon import MastodonApi

JSON = "application/json"
#: The paths ``entrypoints/hot.py`` serves in one layer (kept here: checked on every request).
HOT_PATHS = frozenset({"/healthz", "/v1/timelines/home", "/api/v1/timelines/home"})
#: Longest ``limit`` value read as a number: more digits cannot be in range (and a huge
#: string of digits is refused before ``int()`` spends time on it).
_LIMIT_DIGITS = len(str(MAX_LIMIT)) + 1


class HomefeedApp(Starlette):
    """The ASGI app ``create_app`` makes: a Starlette app carrying the service its handlers
    call. A typed attribute rather than ``app.state``: a ``State`` lookup costs about 0.9 us
    (a Python ``__getattr__``), twice per home read; this one, 0.1 us."""

    homefeed: Homefeed
    #: The metrics sampler of this process (``/metrics``, ``/metrics.json``).
    sampler: Sampler
    #: The Mastodon API's views (statuses and accounts cached as JSON bytes).
    mastodon: MastodonApi
    #: Makes the hot path (``entrypoints/hot.py``) for the middleware stack once it is
    #: built; None: every request takes the stack.
    hot_path_factory: Callable[[ASGIApp], HotPath | None] | None = None
    hot: HotPath | None = None
    #: Wraps the lifespan's ``send`` (``homefeed serve`` keeps the start-up failure's
    #: exception): a hook here instead of a wrapper app around every request.
    lifespan_send: Callable[[Send], Send] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Starlette's ``__call__``, with ``/healthz`` and both home timelines (GET, HEAD)
        taken by the hot path when there is one (the same work as the stack, in one layer)."""
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
            factory = self.hot_path_factory
            self.hot = factory(self.middleware_stack) if factory is not None else None
        hot = self.hot
        kind = scope["type"]
        if hot is not None and kind == "http" and scope["path"] in HOT_PATHS and not scope.get("root_path"):
            route = hot.route(scope)
            if route is not None:
                await hot.serve(route, scope, receive, send)
                return
        elif kind == "lifespan" and self.lifespan_send is not None:
            send = self.lifespan_send(send)
        await self.middleware_stack(scope, receive, send)


def service(request: Request) -> Homefeed:
    """The application the handlers call (set by ``create_app``), so that a handler is a
    plain module-level function that can be read and tested alone."""
    app: HomefeedApp = request.scope["app"]
    return app.homefeed


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> Response:
    """The one error shape, ``{"error": {"code", "message"}}`` (codes: ``domain/errors.py``)."""
    return Response(
        orjson.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


async def read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``max_body_bytes``: by its
    declared length before reading anything, else while streaming (chunked bodies)."""
    max_body = service(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise PayloadTooLarge(f"request body is larger than {max_body} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise PayloadTooLarge(f"request body is larger than {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object. Not JSON is 400 ``invalid_json``, with the offset of the
    first bad byte when the body is not UTF-8 (orjson itself only says "str is not valid
    UTF-8: surrogates not allowed", which no client author can act on). The UTF-8 check
    runs only after orjson has refused the body: valid bodies pay nothing for it."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise BadJson(f"request body is not valid UTF-8 at byte {bad.start}") from None
        raise BadJson(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data


async def read_json(request: Request) -> dict[str, Any]:
    return parse_json(await read_body(request))


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (None: not sent); 400 if malformed."""
    return check_key(request.headers.getlist("idempotency-key"))


async def once(request: Request, key: str, scope: str, raw_body: bytes, status: int,
               write: Write) -> Response:
    """Run ``write`` at most once for ``key`` (see service_layer.idempotency); a replay is
    the first answer, byte for byte, marked ``Idempotent-Replayed: true``."""
    keyed = IdempotentRequest.of(scope, key, request.method, request.url.path, raw_body, status)
    reply = await service(request).idempotency.run(keyed, write)
    headers = {REPLAYED_HEADER: "true"} if reply.replayed else None
    return Response(reply.body, status_code=reply.status, media_type=JSON, headers=headers)


async def caller(request: Request) -> int:
    """The id of the user whose bearer token the request carries; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>' (the token from POST /v1/users)")
    return await service(request).authenticate(token.strip(), _v1_scope(request))


def _v1_scope(request: Request) -> str:
    """The OAuth scope a ``/v1`` request needs when it carries an OAuth token (a ``/v1``
    token holds every scope): reads ``read``, follows ``write:follows``, other writes
    ``write:statuses``."""
    if request.method in ("GET", "HEAD"):
        return "read"
    if request.scope["path"].endswith("/follow"):  # not request.url: building it is ~3% of a post
        return "write:follows"
    return "write:statuses"


def list_params(request: Request) -> tuple[int | None, int | None]:
    """``limit`` and ``before`` of a list request, None where not given. The range of
    ``limit`` is checked by the service (``check_limit``); here only its form."""
    q = request.query_params
    limit: int | None = None
    raw_limit = q.get("limit")
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or len(raw_limit) > _LIMIT_DIGITS:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}")
        limit = int(raw_limit)
    before: int | None = None
    raw_before = q.get("before")
    if raw_before is not None:
        before = parse_id(raw_before)
        if before is None:
            raise InvalidInput("before must be a cursor from a 'next' field (a positive id)")
    return limit, before
