"""``/v1/posts``: write, read and delete one post."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.errors import InvalidInput, NotFound
from homefeed.domain.ids import parse_id
from homefeed.entrypoints.routes._request import (
    caller,
    idempotency_key,
    json_response,
    once,
    parse_json,
    read_body,
    service,
)


async def create_post(request: Request) -> Response:
    """201 the post, once it is durable; ``in_reply_to_id`` makes it a reply (404 when no
    such post exists). The text rules are the service's (``domain/text.py``): this only
    decodes."""
    hf = service(request)
    key = idempotency_key(request)
    uid = await caller(request)
    raw = await read_body(request)
    body = parse_json(raw)
    if "text" not in body:
        raise InvalidInput("text is required")
    reply_to = _reply_to(body.get("in_reply_to_id"))
    if key is None:
        return json_response(await hf.create_post(uid, body["text"], in_reply_to_id=reply_to), 201)
    return await once(request, key, str(uid), raw, 201,
                      lambda keyed: hf.create_post(uid, body["text"], once=keyed, in_reply_to_id=reply_to))


def _reply_to(value: object) -> int | None:
    """``in_reply_to_id``: absent or null, not a reply; a post id (a string of digits, as
    ids are written everywhere in ``/v1``) otherwise."""
    if value is None:
        return None
    got = parse_id(value) if isinstance(value, str) else None
    if got is None:
        raise InvalidInput("in_reply_to_id must be a post id (a string of digits)")
    return got


def _post_id(request: Request) -> int:
    """The path's post id; anything that is not an id is a post that does not exist (404),
    not bad input: ``/v1/posts/abc`` names nothing."""
    post_id = parse_id(request.path_params["post_id"])
    if post_id is None:
        raise NotFound("no such post")
    return post_id


async def get_post(request: Request) -> Response:
    return json_response(await service(request).get_post(_post_id(request)))


async def delete_post(request: Request) -> Response:
    """204; only the author may delete (403 otherwise). Authentication comes first, so an
    anonymous request is 401 whatever the id."""
    uid = await caller(request)
    await service(request).delete_post(uid, _post_id(request))
    return Response(status_code=204)


async def post_item(request: Request) -> Response:
    """One route for the path, so that a method it lacks is one 405 naming both methods."""
    if request.method == "DELETE":
        return await delete_post(request)
    return await get_post(request)


routes = [
    Route("/v1/posts", create_post, methods=["POST"]),
    Route("/v1/posts/{post_id}", post_item, methods=["GET", "DELETE"]),
]
