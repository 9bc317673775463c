"""The HTTP API (ASGI, Starlette routing, orjson bodies): ``create_app`` assembles the
routes (``entrypoints/routes/``, one module per resource), the middleware (``Observe``, then
the rate limits) and the lifespan (open the backends, start what the process plan gives this
process).

This layer only decodes requests and encodes answers; every rule lives in the service
layer. Every error is ``{"error": {"code", "message"}}`` with a 4xx status (the codes:
``domain/errors.py``); a 5xx means a bug or an unavailable backend, never bad input.

Operations: ``/healthz`` (cheap liveness, consumer lag), ``/readyz`` (200 only when every
backend answers; 503 naming the ones that do not), ``/metrics`` (Prometheus text format),
``/metrics.json`` (the same figures and the last five minutes, for the dashboard and
``homefeed status``) and ``/dashboard`` (a live page); for people, the web client at ``/`` (``entrypoints/web``),
``/about`` and ``/docs``.
Every request goes through :class:`~homefeed.entrypoints.observe.Observe`: its latency is
recorded by route template and status, and it gets a request id (``X-Request-Id``) that its
log lines and the events it writes carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Mapping

import orjson

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router, WebSocketRoute
from starlette.types import Receive, Scope, Send

from homefeed.bootstrap import Plan, plan
from homefeed.domain.errors import HomefeedError
from homefeed.domain.mastodon.entities import API_ERRORS
from homefeed.entrypoints import metrics as obs
from homefeed.entrypoints.observe import Observe
from homefeed.entrypoints.mastodon import accounts_auth, oauth as mastodon_oauth
from homefeed.entrypoints.mastodon import timelines as mastodon_timelines
from homefeed.entrypoints.mastodon.routes import ROUTES as MASTODON_ROUTES
from homefeed.entrypoints.routes import about, admin, email, operations, posts, search, timelines, users
from homefeed.entrypoints.web import routes as web_client
from homefeed.entrypoints.routes._request import HomefeedApp, error_response, json_response
from homefeed.service_layer.accounts import TooManyAttempts
from homefeed.service_layer.mastodon import MastodonApi
from homefeed.service_layer.oauth import OAuthError
from homefeed.service_layer.services import Homefeed

__all__ = ["ROUTES", "Observe", "create_app", "error_response", "json_response"]

log = logging.getLogger("homefeed.http")

#: Every route of the app, one module per resource (see ``entrypoints/routes/``); no two
#: overlap, so the order is only the order of reading, and of matching: Starlette tries
#: routes in turn (about 0.5 µs per route that does not match), so the hot reads (both home
#: timelines) come first: 15 and 18 routes were tried before them, ~8 µs of a home read's
#: CPU (benchmarks/RESULTS.md, "issue 14").
ROUTES: list[BaseRoute] = [
    *timelines.routes,
    *mastodon_timelines.routes,
    *about.routes,
    *operations.routes,
    *users.routes,
    *posts.routes,
    *search.routes,
    *admin.routes,
    *email.routes,
    *mastodon_oauth.routes, *accounts_auth.routes,
    *MASTODON_ROUTES,
    *web_client.routes,  # the web client's pages last: people, not programs, read them
]

class StaticPathRouter(Router):
    """Starlette's router, with the routes of fixed paths found by one dict lookup.

    Starlette tries routes in turn, ~0.4-0.5 us each that does not match: ``/healthz`` was
    the 10th route (~35% of its in-process CPU, cProfile), ``POST /v1/posts`` later still.
    Here a request whose (method, path) a parameterless ``Route`` answers goes straight to
    it. The table holds exactly what the linear scan would pick: an entry is made only when
    no route before it matches the same method and path (checked at build time with the
    routes' own ``matches``), and only ahead of the first route whose match cannot be
    decided from the path and method alone (a ``Host``); everything else (path parameters,
    405s, redirects, 404s, a ``root_path``) takes Starlette's scan. The table is built at
    the first request and rebuilt when the route list is replaced or changes length (routes
    appended by a test before serving); reordering routes in place after serving has begun
    is not noticed."""

    _table: dict[tuple[str, str], Route]
    _built_for: tuple[int, int] = (0, -1)

    def _build(self) -> dict[tuple[str, str], Route]:
        table: dict[tuple[str, str], Route] = {}
        for i, route in enumerate(self.routes):
            if not isinstance(route, (Route, Mount, WebSocketRoute)):
                break  # its match depends on more than the path: stop here
            if not isinstance(route, Route) or route.param_convertors or not route.methods:
                continue
            for method in route.methods:
                probe = {"type": "http", "path": route.path, "root_path": "", "method": method}
                if route.matches(probe)[0] is not Match.FULL:
                    continue
                if any(r.matches(probe)[0] is Match.FULL for r in self.routes[:i]):
                    continue
                table.setdefault((method, route.path), route)
        self._table = table
        self._built_for = (id(self.routes), len(self.routes))
        return table

    def static_route(self, method: str, path: str) -> Route | None:
        """The route the scan would pick for an ``http`` request of ``method`` and ``path``
        (no ``root_path``), when that is decided by method and path alone; else None."""
        table = self._table if self._built_for == (id(self.routes), len(self.routes)) else self._build()
        return table.get((method, path))

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            table = self._table if self._built_for == (id(self.routes), len(self.routes)) else self._build()
            route = table.get((scope["method"], scope["path"]))
            if route is not None:  # what the scan would do on its FULL match
                if "router" not in scope:
                    scope["router"] = self
                scope["route"] = route
                scope["endpoint"] = route.endpoint
                scope["path_params"] = dict(scope.get("path_params", {}))
                await route.handle(scope, receive, send)
                return
        await super().app(scope, receive, send)


#: Codes of the errors Starlette raises itself (routing, malformed requests).
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _mastodon_path(request: Request) -> bool:
    """Routes whose errors use Mastodon's shape, ``{"error": "..."}`` (its clients read it)."""
    path = request.url.path
    return path.startswith("/api/") or path.startswith("/oauth/")


def mastodon_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """Mastodon's wording for 401, 403, 404; ``Validation failed: ...`` for a 422."""
    if status in (401, 403, 404) or (status >= 500 and status in API_ERRORS):
        text = API_ERRORS[status]
    elif status == 422 and not message.startswith("Validation failed"):
        text = f"Validation failed: {message}"
    else:
        text = message
    return Response(orjson.dumps({"error": text}), status_code=status,
                    media_type="application/json", headers=headers)


def mastodon_refusal(exc: HomefeedError) -> Response:
    """A refused request on a Mastodon route: an OAuth error keeps its RFC 6749 code
    (``{"error", "error_description"}``), a throttled log-in says when to retry, and a taken
    username or email is 422, as Mastodon answers it; the rest as ``mastodon_error``."""
    if isinstance(exc, OAuthError):
        return Response(orjson.dumps({"error": exc.code, "error_description": exc.message}),
                        status_code=exc.status, media_type="application/json")
    if isinstance(exc, TooManyAttempts):
        return mastodon_error(429, exc.message, {"Retry-After": str(exc.retry_after)})
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return mastodon_error(422 if exc.status == 409 else exc.status, exc.message, headers)


async def on_domain_error(request: Request, exc: Exception) -> Response:
    """A refused request: its code and status; a 503 says when to retry."""
    assert isinstance(exc, HomefeedError)
    if _mastodon_path(request):
        return mastodon_refusal(exc)
    headers = {"Retry-After": "1"} if exc.status == 503 else None
    return error_response(exc.status, exc.code, exc.message, headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (404 unmatched, 405 wrong method...) in the one error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    if _mastodon_path(request):
        return mastodon_error(exc.status_code, str(exc.detail), exc.headers)
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    if _mastodon_path(request):
        return mastodon_error(500, "internal error")
    return error_response(500, "internal", "internal error")


def _middleware(hf: Homefeed, observe: bool) -> list[Middleware]:
    """Observe (outermost: it times and counts every answer, 429s included), then the rate
    limits, only when one is configured (off, they cost nothing)."""
    from homefeed.bootstrap import build_rate_limiter

    from homefeed.entrypoints.mastodon.cors import Cors

    stack = [Middleware(Observe)] if observe else []
    stack.append(Middleware(Cors, origins=hf.settings.cors_origins))
    limiter = build_rate_limiter(hf.settings)
    if limiter is not None:
        from homefeed.entrypoints.ratelimit import RateLimits

        hf.resources.append(limiter)  # closed with the other connections
        stack.append(Middleware(RateLimits, limiter=limiter, per_token=hf.settings.token_limit,
                                per_address=hf.settings.address_limit))
    return stack


def create_app(hf: Homefeed, process_plan: Plan | None = None, manage_lifecycle: bool = True,
               observe: bool = True) -> HomefeedApp:
    """The ASGI app over ``hf``. Its lifespan opens the backends and starts what the plan
    gives this process (the embedded profile: the consumers run here). ``observe=False``
    leaves out the request middleware (for measuring what it costs). Handlers find ``hf``
    and the metrics sampler on the app (``routes._request.service``)."""
    hf.consumers.on_applied = obs.observe_fanout_event  # fan-out delay, where consumers run here
    sampler = obs.Sampler(hf, role="api")
    the_plan = process_plan if process_plan is not None else plan(hf.settings, "api")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_lifecycle:
            await hf.start(
                consumers=the_plan.consumers,
                relay=the_plan.relay,
                exclusive=the_plan.exclusive,
                scheduler=True,
            )
        sampling = asyncio.create_task(sampler.run(), name="metrics-sampler")
        try:
            yield
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sampling
            if manage_lifecycle:
                await hf.close()

    app = HomefeedApp(
        routes=list(ROUTES),
        middleware=_middleware(hf, observe),
        lifespan=lifespan,
        exception_handlers={
            HomefeedError: on_domain_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    router = app.router = StaticPathRouter(app.router.routes, lifespan=lifespan)
    if observe:
        from homefeed.entrypoints.hot import HotPath

        app.hot_path_factory = lambda stack: HotPath.of(stack, router)
    app.homefeed = hf
    app.sampler = sampler
    app.mastodon = MastodonApi(hf)
    app.state.homefeed = hf  # as before, for whoever looks there
    app.state.sampler = sampler
    return app
