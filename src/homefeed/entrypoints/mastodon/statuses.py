"""``/api/v1/statuses``: post (form or JSON, ``Idempotency-Key``), read, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.errors import NotFound
from homefeed.domain.ids import parse_id
from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.entrypoints.mastodon._common import answer, api, optional_user, params, urls, user
from homefeed.entrypoints.routes._request import idempotency_key, once

#: The visibilities homefeed has; the others are refused with a sentence saying so.
OFFERED = ("public", "unlisted")


async def create(request: Request) -> Response:
    key = idempotency_key(request)
    p, raw = await params(request)
    uid = await user(request, "write:statuses", params=p)
    text = p.get_str("status")
    if text is None:
        raise MastodonInputError("Validation failed: Text can't be blank")
    visibility = p.get_str("visibility") or "public"
    if visibility not in OFFERED:
        if visibility in ("private", "direct"):
            raise MastodonInputError(
                f"Validation failed: visibility {visibility!r} is not supported here"
                " (homefeed has public and unlisted posts only)")
        raise MastodonInputError("Validation failed: visibility must be public or unlisted")
    m = api(request)
    u = urls(request)
    if key is None:
        return answer(await m.create(u, uid, text, visibility))
    return await once(request, key, f"mastodon:{uid}", raw, 200,
                      lambda keyed: m.create(u, uid, text, visibility, keyed))


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
    return answer(await m.status_bytes(urls(request), post, viewer is not None))


routes = [
    Route("/api/v1/statuses", create, methods=["POST"]),
    Route("/api/v1/statuses/{id:digits}", item, methods=["GET", "DELETE"]),
]
