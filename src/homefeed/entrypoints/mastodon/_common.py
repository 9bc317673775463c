"""What every Mastodon handler does alike: the service, the caller (bearer header or
``access_token`` parameter) with the route's scope, the merged parameters (query + form or
JSON body), paging and the ``Link`` header, and answers as JSON."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

from homefeed.domain.errors import Unauthorized
from homefeed.domain.mastodon.entities import Urls
from homefeed.domain.mastodon.pagination import PAGE_PARAMS, Page, link_header, parse_limit, parse_page
from homefeed.domain.mastodon.params import Params
from homefeed.domain.model import Caller, Post
from homefeed.entrypoints.routes._request import HomefeedApp, read_body, service
from homefeed.service_layer.mastodon import MastodonApi
from homefeed.service_layer.services import Homefeed, require_scope

JSON = "application/json; charset=utf-8"


class _Digits(Convertor):
    """``{id:digits}``: a path segment of decimal digits, kept as a string. Ids are digits,
    so ``/api/v1/accounts/verify_credentials`` (the accounts work) never matches
    ``/api/v1/accounts/{id}``, whatever the order of the routes."""

    regex = "[0-9]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("digits", _Digits())


def api(request: Request) -> MastodonApi:
    """The Mastodon views of this app's Homefeed (their caches live as long as the app;
    ``create_app`` makes it)."""
    app: HomefeedApp = request.scope["app"]
    return app.mastodon


def hf_of(request: Request) -> Homefeed:
    return service(request)


_URLS: dict[tuple[str, str], Urls] = {}


def urls(request: Request) -> Urls:
    """URLs from the scheme, host and port the client used (one ``Urls`` per host, kept)."""
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return urls_for(scope.get("scheme", "http"), host)


def urls_for(scheme: str, host: str) -> Urls:
    key = (scheme, host)
    got = _URLS.get(key)
    if got is None:
        if len(_URLS) > 1000:
            _URLS.clear()
        got = _URLS[key] = Urls(f"{key[0]}://{host}")
    return got


def _token(request: Request, params: Params | None) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, bearer = header.partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            raise Unauthorized("The access token is invalid")
        return bearer.strip()
    token: str | None = request.query_params.get("access_token")
    if not token and params is not None:
        raw = params.raw("access_token")
        token = raw if isinstance(raw, str) else None
    return token or None


async def caller(request: Request, params: Params | None = None) -> Caller | None:
    token = _token(request, params)
    if token is None:
        return None
    return await service(request).caller(token)


async def user(request: Request, *scopes: str, params: Params | None = None) -> int:
    """The acting user's id; 401 without a valid token, 403 outside ``scopes``."""
    who = await caller(request, params)
    if who is None:
        raise Unauthorized("The access token is invalid")
    return granted(who, scopes)


def granted(who: Caller, scopes: tuple[str, ...]) -> int:
    """``who``'s user id if it holds one of ``scopes`` (raises otherwise)."""
    key = (who.scopes, scopes)
    if who.user_id is not None and _GRANTED.get(key):
        return who.user_id
    uid = require_scope(who, *scopes)  # raises outside the scopes
    if len(_GRANTED) > 10_000:
        _GRANTED.clear()
    _GRANTED[key] = True
    return uid


#: (granted scopes, alternatives) already found to cover: the check costs microseconds
#: that the home timeline's hot path does not need to pay on every read.
_GRANTED: dict[tuple[frozenset[str], tuple[str, ...]], bool] = {}


async def optional_user(request: Request, *scopes: str) -> int | None:
    """For reads Mastodon allows anonymously: the user when a token is sent."""
    who = await caller(request)
    if who is None or who.user_id is None:  # no token, or an app's own: an anonymous read
        return None
    return require_scope(who, *scopes)


def query(request: Request) -> Params:
    return Params.from_pairs(request.query_params.multi_items())


async def params(request: Request) -> tuple[Params, bytes]:
    """Query merged with the body (form-encoded or JSON), and the raw body."""
    raw = await read_body(request)
    body = Params.from_body(request.headers.get("content-type"), raw) if raw else Params()
    return query(request).merged(body), raw


_LIMIT_ONLY = re.compile(rb"limit=([0-9]{1,3})")
_SAFE = re.compile(r"[A-Za-z0-9_.~\-\[\]]*")


def page(request: Request) -> Page:
    """The paging parameters; the common ``?limit=N`` (or nothing) without parsing a query."""
    raw = request.scope.get("query_string", b"")
    if not raw:
        return Page()
    m = _LIMIT_ONLY.fullmatch(raw)
    if m is not None:
        return Page(limit=parse_limit(m.group(1).decode()))
    return parse_page(query(request).as_dict())


def answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def linked(request: Request, body: bytes | Any, ids: list[int]) -> Response:
    """A list answer with Mastodon's ``Link`` header (next first, then prev): exactly what
    ``pagination.link_header`` writes, built directly when no parameter needs escaping."""
    raw = request.scope.get("query_string", b"")
    if not raw:
        keep: list[tuple[str, str]] = []
    elif _LIMIT_ONLY.fullmatch(raw):
        keep = [("limit", raw[6:].decode())]
    else:
        keep = [(k, v) for k, v in request.query_params.multi_items()
                if k != "access_token" and k not in PAGE_PARAMS]
    if not ids:
        return answer(body)
    link = link_of(f"{urls(request).base}{request.scope['path']}", ids, keep)
    return answer(body, headers={"Link": link} if link else None)


def link_of(base: str, ids: list[int], keep: list[tuple[str, str]]) -> str:
    """The ``Link`` header of a non-empty page of ``ids`` at ``base`` (the URL without its
    query), keeping the parameters ``keep``."""
    if all(_SAFE.fullmatch(k) and _SAFE.fullmatch(v) for k, v in keep):
        prefix = "".join(f"{k}={v}&" for k, v in keep)
        return (f'<{base}?{prefix}max_id={ids[-1]}>; rel="next", '
                f'<{base}?{prefix}min_id={ids[0]}>; rel="prev"')
    return link_header(base, ids, keep) or ""


def ids_of(posts: list[Post]) -> list[int]:
    return [p.id for p in posts]
