"""``/api/v1/notifications``: the caller's notifications (``types[]``, ``exclude_types[]``,
``account_id``, paging with ``Link``), one of them, dismiss one, clear all, and the unread
count (Mastodon 4.3: newer than the ``notifications`` marker)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.errors import NotFound
from homefeed.domain.ids import parse_id
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.pagination import parse_limit, parse_page
from homefeed.domain.mastodon.params import Params
from homefeed.entrypoints.mastodon._common import answer, api, linked, params, query, urls, user

#: Mastodon 4.1+: 40 notifications a page by default, 80 at most.
DEFAULT_LIMIT = 40
MAX_LIMIT = 80


def _filters(q: Params) -> tuple[list[str], list[str], int | None]:
    account = q.raw("account_id")
    from_user = None
    if account is not None and account != "":
        from_user = parse_id(account) if isinstance(account, str) else None
        if from_user is None:
            raise MastodonInputError("Validation failed: account_id must be an account id")
    return q.get_list("types"), q.get_list("exclude_types"), from_user


async def index(request: Request) -> Response:
    uid = await user(request, "read:notifications")
    q = query(request)
    types, exclude, from_user = _filters(q)
    pg = parse_page(q.as_dict(), DEFAULT_LIMIT, MAX_LIMIT)
    body, ids = await api(request).conversations.notifications(urls(request), uid, pg, types, exclude, from_user)
    return linked(request, body, ids)


def _id(request: Request) -> int:
    got = parse_id(request.path_params["id"])
    if got is None:
        raise NotFound("Record not found")
    return got


async def one(request: Request) -> Response:
    uid = await user(request, "read:notifications")
    return answer(await api(request).conversations.notification(urls(request), uid, _id(request)))


async def dismiss(request: Request) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:notifications", params=p)
    await api(request).conversations.dismiss(uid, _id(request))
    return answer({})


async def clear(request: Request) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:notifications", params=p)
    await api(request).conversations.clear(uid)
    return answer({})


async def unread_count(request: Request) -> Response:
    uid = await user(request, "read:notifications")
    q = query(request)
    types, exclude, from_user = _filters(q)
    limit = parse_limit(q.raw("limit"), 100, 1000)
    count = await api(request).conversations.unread_count(uid, limit, types, exclude, from_user)
    return answer({"count": count})


routes = [
    Route("/api/v1/notifications", index, methods=["GET"]),
    Route("/api/v1/notifications/unread_count", unread_count, methods=["GET"]),
    Route("/api/v1/notifications/clear", clear, methods=["POST"]),
    Route("/api/v1/notifications/{id:digits}", one, methods=["GET"]),
    Route("/api/v1/notifications/{id:digits}/dismiss", dismiss, methods=["POST"]),
]
