"""``/api/v1/accounts``: lookup, one account, its statuses, followers and following,
follow and unfollow, relationships. (Registration and credentials: the accounts work.)"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.errors import NotFound
from homefeed.domain.ids import parse_id
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.pagination import parse_limit, parse_page
from homefeed.entrypoints.mastodon._common import (
    answer, api, ids_of, linked, optional_user, page, params, query, urls, user,
)


def _id(request: Request) -> int:
    got = parse_id(request.path_params["id"])
    if got is None:
        raise NotFound("Record not found")
    return got


async def lookup(request: Request) -> Response:
    acct = query(request).get_str("acct")
    if not acct:
        raise MastodonInputError("Validation failed: acct is required")
    return answer(await api(request).lookup(urls(request), acct))


async def get(request: Request) -> Response:
    return answer(await api(request).account(urls(request), _id(request)))


async def statuses(request: Request) -> Response:
    viewer = await optional_user(request, "read:statuses")
    m = api(request)
    q = query(request)
    if q.get_bool("only_media") or q.get_bool("pinned"):
        posts = []  # homefeed has no media and no pinned posts
        await m.user_by_id(_id(request))
    else:
        posts = await m.author(_id(request), page(request))
    return linked(request, await m.statuses_bytes(urls(request), posts, viewer), ids_of(posts))


async def _follows(request: Request, followers: bool) -> Response:
    q = query(request)
    pg = parse_page(q.as_dict())
    accounts, ids = await api(request).follows_page(
        urls(request), _id(request), followers, parse_limit(q.raw("limit"), 40, 80), pg.max_id)
    return linked(request, accounts, ids)


async def followers(request: Request) -> Response:
    return await _follows(request, True)


async def following(request: Request) -> Response:
    return await _follows(request, False)


async def follow(request: Request) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:follows", "follow", params=p)
    return answer(await api(request).follow(uid, _id(request), True))


async def unfollow(request: Request) -> Response:
    p, _ = await params(request)
    uid = await user(request, "write:follows", "follow", params=p)
    return answer(await api(request).follow(uid, _id(request), False))


async def relationships(request: Request) -> Response:
    uid = await user(request, "read:follows")
    ids = [i for i in (parse_id(v) for v in query(request).get_list("id")) if i is not None]
    return answer(await api(request).relationships(uid, ids[:40]))


routes = [
    Route("/api/v1/accounts/lookup", lookup, methods=["GET"]),
    Route("/api/v1/accounts/relationships", relationships, methods=["GET"]),
    Route("/api/v1/accounts/{id:digits}", get, methods=["GET"]),
    Route("/api/v1/accounts/{id:digits}/statuses", statuses, methods=["GET"]),
    Route("/api/v1/accounts/{id:digits}/followers", followers, methods=["GET"]),
    Route("/api/v1/accounts/{id:digits}/following", following, methods=["GET"]),
    Route("/api/v1/accounts/{id:digits}/follow", follow, methods=["POST"]),
    Route("/api/v1/accounts/{id:digits}/unfollow", unfollow, methods=["POST"]),
]
