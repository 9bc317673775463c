"""``/api/v1/markers``: the caller's read positions in ``home`` and ``notifications``
(``timeline[]=``), and saving them (form ``home[last_read_id]=`` or JSON
``{"home": {"last_read_id": ...}}``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.ids import parse_id
from homefeed.domain.mastodon.conversations import MARKER_TIMELINES
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.entrypoints.mastodon._common import answer, api, params, query, user


async def get(request: Request) -> Response:
    uid = await user(request, "read:statuses")
    timelines = query(request).get_list("timeline")
    return answer(await api(request).conversations.markers(uid, timelines))


async def save(request: Request) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:statuses", params=p)
    positions: dict[str, int] = {}
    for timeline in MARKER_TIMELINES:
        if p.raw(timeline) is None:
            continue
        raw = p.get_params(timeline).raw("last_read_id")
        got = parse_id(str(raw)) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
        if got is None:
            raise MastodonInputError(f"Validation failed: {timeline}[last_read_id] must be an id")
        positions[timeline] = got
    return answer(await api(request).conversations.set_markers(uid, positions))


async def markers(request: Request) -> Response:
    """One route for the path, so that a method it lacks is one 405 naming both."""
    return await (save(request) if request.method == "POST" else get(request))


routes = [Route("/api/v1/markers", markers, methods=["GET", "POST"])]
