"""``/api/v1/timelines/{home,public,tag/:hashtag}``: pages of statuses with a ``Link``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.entrypoints.mastodon._common import api, ids_of, linked, optional_user, page, query, urls, user


async def home(request: Request) -> Response:
    """The hot path: cached statuses spliced as bytes; a warm read runs one statement, the
    page's counters and the reader's flags (``post_stats``)."""
    uid = await user(request, "read:statuses")
    m = api(request)
    posts = await m.home(uid, page(request))
    return linked(request, await m.statuses_bytes(urls(request), posts, uid), ids_of(posts))


async def public(request: Request) -> Response:
    """Public posts of everyone (``local`` accepted: every account is local), from the
    cached public list, never a scan."""
    viewer = await optional_user(request, "read:statuses")
    m = api(request)
    q = query(request) if request.scope.get("query_string") else None
    if q is not None and (q.get_bool("remote") or q.get_bool("only_media")):
        posts = []  # no remote accounts, no media
    else:
        posts = await m.public(page(request))
    return linked(request, await m.statuses_bytes(urls(request), posts, viewer), ids_of(posts))


async def tag(request: Request) -> Response:
    viewer = await optional_user(request, "read:statuses")
    m = api(request)
    posts = await m.tag(request.path_params["hashtag"], page(request))
    return linked(request, await m.statuses_bytes(urls(request), posts, viewer), ids_of(posts))


routes = [
    Route("/api/v1/timelines/home", home, methods=["GET"]),
    Route("/api/v1/timelines/public", public, methods=["GET"]),
    Route("/api/v1/timelines/tag/{hashtag}", tag, methods=["GET"]),
]
