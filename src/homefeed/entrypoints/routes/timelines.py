"""Pages of posts, newest first: the caller's home timeline and one user's posts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.entrypoints.routes._request import caller, json_response, list_params, service


async def home(request: Request) -> Response:
    """The hot path: a warm read is served from the caches and runs no SQL."""
    uid = await caller(request)
    limit, before = list_params(request)
    return json_response(await service(request).home_timeline(uid, limit, before))


async def user_posts(request: Request) -> Response:
    limit, before = list_params(request)
    return json_response(await service(request).user_posts(request.path_params["handle"], limit, before))


routes = [
    Route("/v1/timelines/home", home, methods=["GET"]),
    Route("/v1/users/{handle}/posts", user_posts, methods=["GET"]),
]
