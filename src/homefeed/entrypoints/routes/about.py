"""What this server is, for people and for tools: ``/about`` (a page saying what this is,
with links; ``/`` is the web client, ``entrypoints/web``), ``/docs`` (the API for people)
and ``/openapi.json`` (the API for tools). Both pages come from ``entrypoints/apidocs.py``
and are rendered once, then served from memory."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from homefeed.entrypoints.apidocs import docs_page, index_page, page_csp
from homefeed.entrypoints.openapi import openapi_document
from homefeed.entrypoints.routes._request import json_response, service

#: ``/docs`` rendered, by the only setting the document depends on (``max_post_length``).
_DOCS_HTML: dict[int, str] = {}


async def index(request: Request) -> Response:
    page = index_page()
    return HTMLResponse(page, headers={"Content-Security-Policy": page_csp(page)})


async def docs(request: Request) -> Response:
    settings = service(request).settings
    page = _DOCS_HTML.get(settings.max_post_length)
    if page is None:
        page = _DOCS_HTML[settings.max_post_length] = docs_page(openapi_document(settings))
    return HTMLResponse(page, headers={"Content-Security-Policy": page_csp(page)})


async def openapi(request: Request) -> Response:
    return json_response(openapi_document(service(request).settings))


routes = [
    Route("/about", index, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
