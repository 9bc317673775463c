"""``/v1/users``: registration, profiles, follows and the follow lists."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.errors import InvalidInput
from homefeed.entrypoints.routes._request import (
    caller,
    idempotency_key,
    json_response,
    list_params,
    once,
    parse_json,
    read_body,
    service,
)
from homefeed.service_layer.idempotency import ANONYMOUS


async def register(request: Request) -> Response:
    """201 the new user and its token. Registration has no caller, so its idempotency keys
    share one scope (``ANONYMOUS``)."""
    hf = service(request)
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
    return json_response(await service(request).profile(request.path_params["handle"]))


async def follow(request: Request) -> Response:
    """Follow (POST, which may carry an idempotency key) or unfollow (DELETE) the user in
    the path; both answer ``{"following": bool}`` and are idempotent by themselves."""
    hf = service(request)
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
    return json_response(await service(request).followers(request.path_params["handle"], limit, before))


async def following(request: Request) -> Response:
    limit, before = list_params(request)
    return json_response(await service(request).following(request.path_params["handle"], limit, before))


routes = [
    Route("/v1/users", register, methods=["POST"]),
    Route("/v1/users/{handle}", get_user, methods=["GET"]),
    Route("/v1/users/{handle}/follow", follow, methods=["POST", "DELETE"]),
    Route("/v1/users/{handle}/followers", followers, methods=["GET"]),
    Route("/v1/users/{handle}/following", following, methods=["GET"]),
]
