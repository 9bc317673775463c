"""What web clients call at start, answered empty in the right shape until a feature fills
it: custom emojis, preferences, filters, lists, follow requests, announcements,
blocks, mutes. And the trending tags, which are real: the ``trends`` job's last result."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.mastodon.entities import preferences_entity
from homefeed.entrypoints.mastodon._common import answer, hf_of, urls, user


async def custom_emojis(request: Request) -> Response:
    return answer([])


async def trends_tags(request: Request) -> Response:
    """``GET /api/v1/trends/tags``: no authentication, as Mastodon. ``limit`` (default 10,
    at most 20) and ``offset`` page through the list the ``trends`` job stored last (see
    ``service_layer.jobs.trends``): every API process serves the same list, from the system
    of record, as soon as a run returns."""
    from homefeed.domain.mastodon.entities import TagHistoryDay, tag_entity
    from homefeed.domain.mastodon.pagination import parse_limit
    from homefeed.service_layer.jobs import trends

    limit = parse_limit(request.query_params.get("limit"), default=10, maximum=20)
    offset = parse_limit(request.query_params.get("offset"), default=0, maximum=1_000_000)
    hf = hf_of(request)
    stored = await trends.stored(hf.job_store) if hf.job_store is not None else []
    u = urls(request)
    return answer([
        tag_entity(t["name"], u, [TagHistoryDay(h["day"], h["uses"], h["accounts"]) for h in t["history"]])
        for t in stored[offset:offset + limit]
    ])


async def announcements(request: Request) -> Response:
    await user(request, "read")
    return answer([])


async def preferences(request: Request) -> Response:
    await user(request, "read:accounts")
    return answer(preferences_entity())


def _empty(scope: str):
    async def handler(request: Request) -> Response:
        await user(request, scope)
        return answer([])
    return handler


routes = [
    Route("/api/v1/custom_emojis", custom_emojis, methods=["GET"]),
    Route("/api/v1/trends/tags", trends_tags, methods=["GET"]),
    Route("/api/v1/announcements", announcements, methods=["GET"]),
    Route("/api/v1/preferences", preferences, methods=["GET"]),
    Route("/api/v2/filters", _empty("read:filters"), methods=["GET"]),
    Route("/api/v1/lists", _empty("read:lists"), methods=["GET"]),
    Route("/api/v1/follow_requests", _empty("read:follows"), methods=["GET"]),
    Route("/api/v1/blocks", _empty("read:blocks"), methods=["GET"]),
    Route("/api/v1/mutes", _empty("read:mutes"), methods=["GET"]),
]
