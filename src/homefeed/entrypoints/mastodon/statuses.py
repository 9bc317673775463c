"""``/api/v1/statuses``: post (form or JSON, ``Idempotency-Key``, ``in_reply_to_id``), read,
delete; a status's thread (``context``), favourite and boost it, and who did."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.errors import NotFound
from homefeed.domain.ids import parse_id
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.pagination import parse_limit, parse_page
from homefeed.entrypoints.mastodon._common import (
    answer, api, linked, optional_user, params, query, urls, user,
)
from homefeed.entrypoints.routes._request import idempotency_key, once

#: The visibilities homefeed has; the others are refused with a sentence saying so.
OFFERED = ("public", "unlisted")


def _visibility(value: str | None) -> str:
    visibility = value or "public"
    if visibility not in OFFERED:
        if visibility in ("private", "direct"):
            raise MastodonInputError(
                f"Validation failed: visibility {visibility!r} is not supported here"
                " (homefeed has public and unlisted posts only)")
        raise MastodonInputError("Validation failed: visibility must be public or unlisted")
    return visibility


def _reply_to(value: Any) -> int | None:
    """``in_reply_to_id``: absent or empty, not a reply; anything that names no status is
    404, as Mastodon answers a reply to a status it cannot find (with "Record not found":
    every Mastodon 404 here has that wording, ``entrypoints/http.py``)."""
    if value is None or value == "":
        return None
    got = parse_id(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if got is None:
        raise NotFound("Record not found")
    return got


async def create(request: Request) -> Response:
    key = idempotency_key(request)
    p, raw = await params(request)
    uid = await user(request, "write:statuses", params=p)
    text = p.get_str("status")
    if text is None:
        raise MastodonInputError("Validation failed: Text can't be blank")
    visibility = _visibility(p.get_str("visibility"))
    reply_to = _reply_to(p.raw("in_reply_to_id"))
    m = api(request)
    u = urls(request)
    if key is None:
        return answer(await m.create(u, uid, text, visibility, in_reply_to_id=reply_to))
    return await once(request, key, f"mastodon:{uid}", raw, 200,
                      lambda keyed: m.create(u, uid, text, visibility, keyed, in_reply_to_id=reply_to))


def _id(request: Request) -> int:
    got = parse_id(request.path_params["id"])
    if got is None:
        raise NotFound("Record not found")
    return got


async def item(request: Request) -> Response:
    m = api(request)
    if request.method == "DELETE":
        uid = await user(request, "write:statuses")
        return answer(await m.delete(urls(request), uid, _id(request)))
    viewer = await optional_user(request, "read:statuses")
    post = await m.get_post(_id(request))
    return answer(await m.status_bytes(urls(request), post, viewer))


async def context(request: Request) -> Response:
    viewer = await optional_user(request, "read:statuses")
    return answer(await api(request).conversations.context(urls(request), _id(request), viewer))


async def _favourite(request: Request, on: bool) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:favourites", params=p)
    return answer(await api(request).conversations.favourite(urls(request), uid, _id(request), on))


async def favourite(request: Request) -> Response:
    return await _favourite(request, True)


async def unfavourite(request: Request) -> Response:
    return await _favourite(request, False)


async def reblog(request: Request) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:statuses", params=p)
    visibility = _visibility(p.get_str("visibility"))
    return answer(await api(request).conversations.reblog(urls(request), uid, _id(request), visibility))


async def unreblog(request: Request) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:statuses", params=p)
    return answer(await api(request).conversations.unreblog(urls(request), uid, _id(request)))


async def _who(request: Request, favourites: bool) -> Response:
    """Accounts, newest action first; ``Link`` next by the action's id (no ``prev``: these
    lists page backwards only)."""
    await optional_user(request, "read:accounts")
    q = query(request)
    pg = parse_page(q.as_dict())
    limit = parse_limit(q.raw("limit"), 40, 80)
    c = api(request).conversations
    fetch = c.favourited_by if favourites else c.reblogged_by
    accounts, ids = await fetch(urls(request), _id(request), pg.max_id, limit)
    response = linked(request, accounts, ids)
    link = response.headers.get("link")
    if link:  # keep only rel="next": no min_id paging here
        response.headers["link"] = link.split(", <", 1)[0]
    return response


async def favourited_by(request: Request) -> Response:
    return await _who(request, True)


async def reblogged_by(request: Request) -> Response:
    return await _who(request, False)


routes = [
    Route("/api/v1/statuses", create, methods=["POST"]),
    Route("/api/v1/statuses/{id:digits}", item, methods=["GET", "DELETE"]),
    Route("/api/v1/statuses/{id:digits}/context", context, methods=["GET"]),
    Route("/api/v1/statuses/{id:digits}/favourite", favourite, methods=["POST"]),
    Route("/api/v1/statuses/{id:digits}/unfavourite", unfavourite, methods=["POST"]),
    Route("/api/v1/statuses/{id:digits}/reblog", reblog, methods=["POST"]),
    Route("/api/v1/statuses/{id:digits}/unreblog", unreblog, methods=["POST"]),
    Route("/api/v1/statuses/{id:digits}/favourited_by", favourited_by, methods=["GET"]),
    Route("/api/v1/statuses/{id:digits}/reblogged_by", reblogged_by, methods=["GET"]),
]
