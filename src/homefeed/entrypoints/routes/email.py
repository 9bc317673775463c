"""``/email/unsubscribe/{token}``: the one-click unsubscribe link of notification emails
(RFC 8058). A mail client POSTs to it (``List-Unsubscribe-Post: List-Unsubscribe=One-Click``)
and the person gets no more notification mail. A GET (a person following the link, or a
mail scanner fetching it) only shows a page with the button that POSTs: a link fetched by
a scanner must not unsubscribe anybody."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from homefeed.domain.errors import NotFound
from homefeed.entrypoints.routes._request import service

_MAX_TOKEN = 64


def _token(request: Request) -> str:
    token = request.path_params["token"]
    if not 1 <= len(token) <= _MAX_TOKEN or not all(c.isalnum() or c in "-_" for c in token):
        raise NotFound("no such unsubscribe link")
    return token


async def unsubscribe_page(request: Request) -> Response:
    token = html.escape(_token(request))
    return HTMLResponse(
        "<!doctype html><html><head><title>Unsubscribe</title></head><body>"
        "<p>Stop the notification emails of homefeed?</p>"
        f"<form method=\"post\" action=\"/email/unsubscribe/{token}\">"
        "<button type=\"submit\">Unsubscribe</button></form></body></html>")


async def unsubscribe(request: Request) -> Response:
    from homefeed.bootstrap import mail_store

    if not await mail_store(service(request)).opt_out(_token(request)):
        raise NotFound("no such unsubscribe link")
    return HTMLResponse("<!doctype html><html><body><p>Done: no more notification emails.</p></body></html>")


routes = [
    Route("/email/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
    Route("/email/unsubscribe/{token}", unsubscribe, methods=["POST"]),
]
