"""``/api/v1/timelines/{home,public,tag/:hashtag}``: pages of statuses with a ``Link``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from homefeed.domain.mastodon.entities import Urls
from homefeed.domain.mastodon.pagination import Page, parse_limit
from homefeed.entrypoints.accept_encoding import accepts_gzip
from homefeed.entrypoints.mastodon._common import (
    _LIMIT_ONLY,
    JSON,
    api,
    granted,
    ids_of,
    link_of,
    linked,
    optional_user,
    page,
    query,
    urls,
    urls_for,
    user,
)
from homefeed.entrypoints.routes._request import HomefeedApp


async def home(request: Request) -> Response:
    """The hot path: the first page is kept rendered while nothing changes it (a warm read
    runs no SQL: it reads SQLite's wal-index header); other pages are cached statuses spliced as bytes with
    one statement, the page's counters and the reader's flags (``post_stats``)."""
    uid = await user(request, "read:statuses")
    body, ids = await api(request).home_body(urls(request), uid, page(request))
    return linked(request, body, ids)


async def public(request: Request) -> Response:
    """Public posts of everyone (``local`` accepted: every account is local), from the
    cached public list, never a scan."""
    viewer = await optional_user(request, "read:statuses")
    m = api(request)
    q = query(request) if request.scope.get("query_string") else None
    if q is not None and (q.get_bool("remote") or q.get_bool("only_media")):
        posts = []  # no remote accounts, no media
    else:
        posts = await m.public(page(request))
    return linked(request, await m.statuses_bytes(urls(request), posts, viewer), ids_of(posts))


async def tag(request: Request) -> Response:
    viewer = await optional_user(request, "read:statuses")
    m = api(request)
    posts = await m.tag(request.path_params["hashtag"], page(request))
    return linked(request, await m.statuses_bytes(urls(request), posts, viewer), ids_of(posts))


_JSON_TYPE = (b"content-type", JSON.encode())
_VARY = (b"vary", b"Accept-Encoding")
_GZIP = (b"content-encoding", b"gzip")


class HomeRoute:
    """``GET /api/v1/timelines/home`` as a plain ASGI app: the common request (a bearer
    header, no query or ``limit=N`` alone) is answered from the rendered page and its kept
    headers (``MastodonApi.home_rendered``) without building a ``Request`` or a ``Response``;
    anything else (other parameters, ``access_token`` in the query, a malformed header:
    the errors) goes to ``home``. The answer is ``home``'s, byte for byte and header for
    header (``linked``'s ``Link``, then the length and type), plus ``Vary: Accept-Encoding``;
    a kept rendering goes gzip-compressed to a client that accepts it (compressed once per
    rendering: ``Rendered.gzipped``), a 37 KB page becoming ~4 KB: writing the body and its
    kernel copy cost more server CPU than homefeed's own work on a warm read
    (``benchmarks/results/issue14_p16read.md``)."""

    def __init__(self) -> None:
        self.slow = request_response(home)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes = scope["query_string"]
        m = _LIMIT_ONLY.fullmatch(raw) if raw else None
        auth = host = encodings = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                if not auth:
                    auth = value
            elif key == b"host":
                if not host:
                    host = value
            elif key == b"accept-encoding":
                encodings = value if not encodings else encodings + b"," + value
        scheme, _, token = auth.decode("latin-1").partition(" ")
        token = token.strip()
        if (raw and m is None) or scheme.lower() != "bearer" or not token or not host:
            await self.slow(scope, receive, send)
            return
        app: HomefeedApp = scope["app"]
        hf = app.homefeed
        known = hf.known_caller(token)  # (no coroutine when the token is known)
        uid = granted(known if known is not None else await hf.caller(token), _SCOPES)
        page = _PAGES.get(raw)
        if page is None:  # (at most 1,001 queries: nothing, or limit= and 1 to 3 digits)
            page = _PAGES[raw] = Page(limit=parse_limit(m.group(1).decode())) if m is not None else Page()
        where = (scope.get("scheme", "http"), host)
        u = _URLS.get(where)
        if u is None:
            if len(_URLS) > 1000:
                _URLS.clear()
            u = _URLS[where] = urls_for(where[0], host.decode("latin-1"))
        got = app.mastodon.warm_home(u, uid, page)  # the kept rendering: no coroutine
        if got is None:
            got = await app.mastodon.home_rendered(u, uid, page)
        path = scope["path"]
        gz = got.kept and bool(encodings) and accepts_gzip(encodings)
        body = got.gzipped() if gz else got.body
        headers = got.headers.get((u.base, path, raw, gz))
        if headers is None:
            headers = [(b"content-length", b"%d" % len(body)), _JSON_TYPE, _VARY]
            if gz:
                headers.append(_GZIP)
            if got.ids:
                keep = [("limit", raw[6:].decode())] if raw else []
                link = link_of(f"{u.base}{path}", got.ids, keep)
                if link:
                    headers.insert(0, (b"link", link.encode("latin-1")))
            got.headers[(u.base, path, raw, gz)] = headers
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body})


_SCOPES = ("read:statuses",)
#: ``HomeRoute``'s parsed queries, and its ``Urls`` by (scheme, Host header bytes).
_PAGES: dict[bytes, Page] = {}
_URLS: dict[tuple[str, bytes], Urls] = {}

routes = [
    Route("/api/v1/timelines/home", HomeRoute(), methods=["GET"]),
    Route("/api/v1/timelines/public", public, methods=["GET"]),
    Route("/api/v1/timelines/tag/{hashtag}", tag, methods=["GET"]),
]
