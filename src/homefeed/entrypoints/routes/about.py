"""What this server is, for tools: ``/openapi.json`` (the API document)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.entrypoints.openapi import openapi_document
from homefeed.entrypoints.routes._request import json_response, service


async def openapi(request: Request) -> Response:
    return json_response(openapi_document(service(request).settings))


routes = [
    Route("/openapi.json", openapi, methods=["GET"]),
]
