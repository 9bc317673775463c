"""``GET /api/v1/favourites``: the statuses the caller favourited, newest favourite first,
paged by the favourites' ids (``Link``), as Mastodon pages them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.entrypoints.mastodon._common import api, linked, page, urls, user


async def favourites(request: Request) -> Response:
    uid = await user(request, "read:favourites")
    body, ids = await api(request).conversations.favourites(urls(request), uid, page(request))
    return linked(request, body, ids)


routes = [Route("/api/v1/favourites", favourites, methods=["GET"])]
