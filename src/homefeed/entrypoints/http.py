"""The HTTP API (ASGI, Starlette routing, orjson bodies).

This layer only decodes requests and encodes answers; every rule lives in the service
layer. Every error is ``{"error": {"code", "message"}}`` with a 4xx status; a 5xx means a
bug or an unavailable backend, never bad input.

Operations: ``/healthz`` (cheap liveness, consumer lag), ``/readyz`` (200 only when every
backend answers; 503 naming the ones that do not), ``/metrics`` (Prometheus text format),
``/metrics.json`` (the same figures and the last five minutes, for the dashboard and
``homefeed status``) and ``/dashboard`` (a live page). Every request goes through
:class:`Observe`: its latency is recorded by route template and status, and it gets a request
id (``X-Request-Id``) that its log lines and the events it writes carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from time import perf_counter
from typing import Any, AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homefeed.bootstrap import Plan, plan
from homefeed.domain.errors import HomefeedError, InvalidInput, NotFound, Unauthorized
from homefeed.domain.ids import parse_id
from homefeed.entrypoints import metrics as obs
from homefeed.entrypoints.dashboard import DASHBOARD_HTML
from homefeed.entrypoints.openapi import openapi_document
from homefeed.logging_setup import (
    access_log_mode,
    clean_request_id,
    new_request_id,
    request_id as request_id_var,
    slow_request_seconds,
)
from homefeed.service_layer.idempotency import (
    ANONYMOUS,
    REPLAYED_HEADER,
    IdempotentRequest,
    Write,
    check_key,
)
from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.http")
access_log = logging.getLogger("homefeed.access")

JSON = "application/json"


class PayloadTooLarge(HomefeedError):
    code = "payload_too_large"
    status = 413


class BadJson(HomefeedError):
    code = "invalid_json"
    status = 400


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return Response(
        orjson.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


_INTERNAL_ERROR = orjson.dumps({"error": {"code": "internal", "message": "internal error"}})
_ERROR_HEADERS = [(b"content-type", JSON.encode()), (b"content-length", str(len(_INTERNAL_ERROR)).encode())]


class Observe:
    """Pure ASGI middleware around every HTTP request: a request id (the client's sane
    ``X-Request-Id``, else a fresh one) set for the request's logs and events and returned in
    the ``X-Request-Id`` response header; latency recorded by (method, route template,
    status); requests in flight; the access log (see ``homefeed.logging_setup``). An
    exception that escapes the app is answered here with the usual 500 JSON error, so it is
    counted and carries the request id too."""

    def __init__(self, app: ASGIApp, recorder: obs.Recorder | None = None) -> None:
        self.app = app
        self.recorder = recorder or obs.RECORDER
        self.log_mode = access_log_mode()
        self.slow = slow_request_seconds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                rid = clean_request_id(value)
                break
        if rid is None:
            rid = new_request_id()
        reset_token = request_id_var.set(rid)
        rid_header = (b"x-request-id", rid.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        rec = self.recorder
        rec.in_flight += 1
        t0 = perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            status = status or 499  # the client went away (nginx's "client closed request")
            raise
        except Exception:
            if status:
                raise  # the response has begun: nothing better to send
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await send_with_id({"type": "http.response.start", "status": 500, "headers": list(_ERROR_HEADERS)})
            await send_with_id({"type": "http.response.body", "body": _INTERNAL_ERROR})
        finally:
            t1 = perf_counter()
            rec.in_flight -= 1
            route = scope.get("route")
            template = route.path if route is not None else obs.UNMATCHED
            method = scope["method"]
            if method not in obs.METHODS:
                method = "OTHER"
            rec.observe_request(method, template, status or 500, t1 - t0, t1)
            mode = self.log_mode
            if mode != "off" and (mode == "all" or method not in ("GET", "HEAD") or status >= 500
                                  or not status or t1 - t0 >= self.slow):
                access_log.info(
                    "%s %s %d", method, scope["path"], status or 500,
                    extra={"method": method, "route": template, "path": scope["path"],
                           "status": status or 500, "ms": round((t1 - t0) * 1000, 2)},
                )
            request_id_var.reset(reset_token)


_BACKEND_KINDS = {
    "store": ("postgresql", "sqlite"),
    "cache": ("redis", "memory"),
    "stream": ("jetstream", "outbox"),
    "search": ("postgresql", "fts5"),
}


def _middleware(hf: Homefeed, observe: bool) -> list[Middleware]:
    """Observe (outermost: it times and counts every answer, 429s included), then the rate
    limits, only when one is configured (off, they cost nothing)."""
    from homefeed.bootstrap import build_rate_limiter

    stack = [Middleware(Observe)] if observe else []
    limiter = build_rate_limiter(hf.settings)
    if limiter is not None:
        from homefeed.entrypoints.ratelimit import RateLimits

        hf.resources.append(limiter)  # closed with the other connections
        stack.append(Middleware(RateLimits, limiter=limiter, per_token=hf.settings.token_limit,
                                per_address=hf.settings.address_limit))
    return stack


def create_app(hf: Homefeed, process_plan: Plan | None = None, manage_lifecycle: bool = True,
               observe: bool = True) -> Starlette:
    """The ASGI app over ``hf``. Its lifespan opens the backends and starts what the plan
    gives this process (the embedded profile: the consumers run here). ``observe=False``
    leaves out the request middleware (for measuring what it costs)."""
    settings = hf.settings
    hf.consumers.on_applied = obs.observe_fanout_event  # fan-out delay, where consumers run here
    sampler = obs.Sampler(hf, role="api")
    backend_kind = {
        "store": _BACKEND_KINDS["store"][0 if settings.database_url else 1],
        "cache": _BACKEND_KINDS["cache"][0 if settings.cache_url else 1],
        "stream": _BACKEND_KINDS["stream"][0 if settings.bus_url else 1],
        "search": _BACKEND_KINDS["search"][0 if settings.database_url else 1],
    }
    if process_plan is None:
        process_plan = plan(settings, "api")
    max_body = settings.max_body_bytes

    async def read_json(request: Request) -> dict[str, Any]:
        return parse_json(await read_body(request))

    async def read_body(request: Request) -> bytes:
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
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadJson(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput("request body must be a JSON object")
        return data

    def idempotency_key(request: Request) -> str | None:
        """The request's ``Idempotency-Key`` (None: not sent); 400 if malformed."""
        return check_key(request.headers.getlist("idempotency-key"))

    async def once(request: Request, key: str, scope: str, raw_body: bytes, status: int,
                   write: Write) -> Response:
        """Run ``write`` at most once for ``key`` (see service_layer.idempotency); a replay
        is the first answer, marked ``Idempotent-Replayed: true``."""
        keyed = IdempotentRequest.of(scope, key, request.method, request.url.path, raw_body, status)
        reply = await hf.idempotency.run(keyed, write)
        headers = {REPLAYED_HEADER: "true"} if reply.replayed else None
        return Response(reply.body, status_code=reply.status, media_type=JSON, headers=headers)

    async def caller(request: Request) -> int:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <token>' (the token from POST /v1/users)")
        return await hf.authenticate(token.strip())

    def list_params(request: Request) -> tuple[int | None, int | None]:
        q = request.query_params
        limit: int | None = None
        raw_limit = q.get("limit")
        if raw_limit is not None:
            if not raw_limit.isascii() or not raw_limit.isdigit() or len(raw_limit) > 4:
                raise InvalidInput("limit must be an integer from 1 to 100")
            limit = int(raw_limit)
        before: int | None = None
        raw_before = q.get("before")
        if raw_before is not None:
            before = parse_id(raw_before)
            if before is None:
                raise InvalidInput("before must be a cursor from a 'next' field (a positive id)")
        return limit, before

    # -- routes ---------------------------------------------------------------------------
    async def healthz(request: Request) -> Response:
        return json_response(await hf.health())

    async def readyz(request: Request) -> Response:
        checks = await hf.readiness()
        failing = [name for name, c in checks.items() if not c["ok"]]
        body = {
            "status": "not_ready" if failing else "ready",
            "failing": failing,
            "backends": {name: {"backend": backend_kind.get(name, name), **c} for name, c in checks.items()},
        }
        return json_response(body, 503 if failing else 200)

    async def metrics(request: Request) -> Response:
        return Response(await obs.prometheus_text(sampler), media_type=obs.CONTENT_TYPE)

    async def metrics_json(request: Request) -> Response:
        return Response(obs.snapshot_json(await obs.snapshot(sampler)), media_type=JSON,
                        headers={"Cache-Control": "no-store"})

    async def dashboard(request: Request) -> Response:
        return HTMLResponse(DASHBOARD_HTML, headers={"Cache-Control": "no-store"})

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document(settings))

    async def register(request: Request) -> Response:
        key = idempotency_key(request)
        raw = await read_body(request)
        body = parse_json(raw)
        if "handle" not in body:
            raise InvalidInput("handle is required")
        handle, name = body["handle"], body.get("display_name")
        if key is None:
            return json_response(await hf.register(handle, name), 201)
        return await once(request, key, ANONYMOUS, raw, 201,
                          lambda keyed: hf.register(handle, name, once=keyed))

    async def get_user(request: Request) -> Response:
        return json_response(await hf.profile(request.path_params["handle"]))

    async def follow(request: Request) -> Response:
        key = idempotency_key(request) if request.method == "POST" else None
        uid = await caller(request)
        handle = request.path_params["handle"]
        if key is not None:
            return await once(request, key, str(uid), await read_body(request), 200,
                              lambda keyed: hf.follow(uid, handle, once=keyed))
        if request.method == "POST":
            return json_response(await hf.follow(uid, handle))
        return json_response(await hf.unfollow(uid, handle))

    async def followers(request: Request) -> Response:
        limit, before = list_params(request)
        return json_response(await hf.followers(request.path_params["handle"], limit, before))

    async def following(request: Request) -> Response:
        limit, before = list_params(request)
        return json_response(await hf.following(request.path_params["handle"], limit, before))

    async def create_post(request: Request) -> Response:
        key = idempotency_key(request)
        uid = await caller(request)
        raw = await read_body(request)
        body = parse_json(raw)
        if "text" not in body:
            raise InvalidInput("text is required")
        if key is None:
            return json_response(await hf.create_post(uid, body["text"]), 201)
        return await once(request, key, str(uid), raw, 201,
                          lambda keyed: hf.create_post(uid, body["text"], once=keyed))

    async def post_item(request: Request) -> Response:
        if request.method == "DELETE":
            uid = await caller(request)
            post_id = parse_id(request.path_params["post_id"])
            if post_id is None:
                raise NotFound("no such post")
            await hf.delete_post(uid, post_id)
            return Response(status_code=204)
        post_id = parse_id(request.path_params["post_id"])
        if post_id is None:
            raise NotFound("no such post")
        return json_response(await hf.get_post(post_id))

    async def home(request: Request) -> Response:
        uid = await caller(request)
        limit, before = list_params(request)
        return json_response(await hf.home_timeline(uid, limit, before))

    async def user_posts(request: Request) -> Response:
        limit, before = list_params(request)
        return json_response(await hf.user_posts(request.path_params["handle"], limit, before))

    async def search(request: Request) -> Response:
        limit, before = list_params(request)
        q = request.query_params.get("q")
        if q is None:
            raise InvalidInput("q is required")
        return json_response(await hf.search(q, limit, before))

    async def admin_op(request: Request) -> Response:
        """Operations that must run inside the serving process (its in-process cache and
        consumers): audit of timelines, rebuild, replay. Bearer: the admin token."""
        from homefeed.entrypoints import ops

        ops.check_admin(settings, request.headers.get("authorization"))
        return json_response(await ops.admin(hf, request.path_params["op"], await read_json(request)))

    # -- errors ---------------------------------------------------------------------------
    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HomefeedError)
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return error_response(exc.status, exc.code, exc.message, headers)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_lifecycle:
            await hf.start(
                consumers=process_plan.consumers,
                relay=process_plan.relay,
                exclusive=process_plan.exclusive,
            )
        sampling = asyncio.create_task(sampler.run(), name="metrics-sampler")
        try:
            yield
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sampling
            if manage_lifecycle:
                await hf.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/metrics.json", metrics_json, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/users", register, methods=["POST"]),
        Route("/v1/users/{handle}", get_user, methods=["GET"]),
        Route("/v1/users/{handle}/follow", follow, methods=["POST", "DELETE"]),
        Route("/v1/users/{handle}/followers", followers, methods=["GET"]),
        Route("/v1/users/{handle}/following", following, methods=["GET"]),
        Route("/v1/users/{handle}/posts", user_posts, methods=["GET"]),
        Route("/v1/posts", create_post, methods=["POST"]),
        Route("/v1/posts/{post_id}", post_item, methods=["GET", "DELETE"]),
        Route("/v1/timelines/home", home, methods=["GET"]),
        Route("/v1/search/posts", search, methods=["GET"]),
        Route("/admin/{op}", admin_op, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=_middleware(hf, observe),
        lifespan=lifespan,
        exception_handlers={
            HomefeedError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    app.state.homefeed = hf
    app.state.sampler = sampler
    return app
