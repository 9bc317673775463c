"""``/api/v2/search``: accounts (exact username), hashtags, and statuses with the word
semantics of ``/v1/search``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.pagination import parse_limit
from homefeed.entrypoints.mastodon._common import answer, api, optional_user, query, urls

KINDS = ("accounts", "statuses", "hashtags")


async def search(request: Request) -> Response:
    viewer = await optional_user(request, "read:search")
    q = query(request)
    text = q.get_str("q") or ""
    kind = q.get_str("type") or None
    if kind is not None and kind not in KINDS:
        raise MastodonInputError("Validation failed: type must be accounts, statuses or hashtags")
    limit = parse_limit(q.raw("limit"), 20, 40)
    offset = q.get_int("offset") or 0
    if offset < 0:
        raise MastodonInputError("Validation failed: offset must be >= 0")
    offset = min(offset, 80)
    return answer(await api(request).search(urls(request), text, kind, limit, offset, viewer))


routes = [Route("/api/v2/search", search, methods=["GET"])]
