"""``/v1/search/posts``: posts holding every word of ``q`` (word rules: ``domain/text.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.domain.errors import InvalidInput
from homefeed.entrypoints.routes._request import json_response, list_params, service


async def search(request: Request) -> Response:
    limit, before = list_params(request)
    q = request.query_params.get("q")
    if q is None:
        raise InvalidInput("q is required")
    return json_response(await service(request).search(q, limit, before))


routes = [
    Route("/v1/search/posts", search, methods=["GET"]),
]
