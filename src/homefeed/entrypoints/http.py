"""The HTTP API (ASGI, Starlette routing, orjson bodies).

This layer only decodes requests and encodes answers; every rule lives in the service
layer. Every error is ``{"error": {"code", "message"}}`` with a 4xx status; a 5xx means a
bug or an unavailable backend, never bad input.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.bootstrap import Plan, plan
from homefeed.domain.errors import HomefeedError, InvalidInput, NotFound, Unauthorized
from homefeed.domain.ids import parse_id
from homefeed.entrypoints.openapi import openapi_document
from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.http")

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


def create_app(hf: Homefeed, process_plan: Plan | None = None, manage_lifecycle: bool = True) -> Starlette:
    """The ASGI app over ``hf``. Its lifespan opens the backends and starts what the plan
    gives this process (the embedded profile: the consumers run here)."""
    settings = hf.settings
    if process_plan is None:
        process_plan = plan(settings, "api")
    max_body = settings.max_body_bytes

    async def read_json(request: Request) -> dict[str, Any]:
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
        try:
            data = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise BadJson(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput("request body must be a JSON object")
        return data

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

    async def openapi(request: Request) -> Response:
        return json_response(openapi_document(settings))

    async def register(request: Request) -> Response:
        body = await read_json(request)
        if "handle" not in body:
            raise InvalidInput("handle is required")
        return json_response(await hf.register(body["handle"], body.get("display_name")), 201)

    async def get_user(request: Request) -> Response:
        return json_response(await hf.profile(request.path_params["handle"]))

    async def follow(request: Request) -> Response:
        uid = await caller(request)
        handle = request.path_params["handle"]
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
        uid = await caller(request)
        body = await read_json(request)
        if "text" not in body:
            raise InvalidInput("text is required")
        return json_response(await hf.create_post(uid, body["text"]), 201)

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
        try:
            yield
        finally:
            if manage_lifecycle:
                await hf.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
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
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HomefeedError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    app.state.homefeed = hf
    return app
