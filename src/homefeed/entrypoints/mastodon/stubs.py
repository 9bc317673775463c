"""What web clients call at start, answered empty in the right shape until a feature fills
it: custom emojis, preferences, filters, lists, follow requests, announcements,
blocks, mutes, trending tags."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.mastodon.entities import preferences_entity
from homefeed.entrypoints.mastodon._common import answer, user


async def custom_emojis(request: Request) -> Response:
    return answer([])


async def trends_tags(request: Request) -> Response:
    return answer([])


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
