"""The hottest routes (``GET /healthz`` and both home timelines) through ONE layer instead of
the middleware stack's five.

Every request normally passes Starlette's ``ServerErrorMiddleware``, ``Observe``, ``Cors``,
the rate limits when configured, ``ExceptionMiddleware`` (which builds a ``Request``), the
router and ``Route.handle``: five coroutines in, and each response message out through four
``send`` wrappers. In process that is ~2.5 µs of a request; over HTTP, where the server's own
work runs between requests and the caches are cold, the same Python costs 2-3x more: the
whole stack cost 11-14 µs of server CPU per ``wrk`` request, against the bare route's ~32 µs
in all (``benchmarks/results/issue14_p15http.md``).

``HotPath.serve`` does, for a fixed set of (method, path), exactly what those layers do, in
one coroutine and one ``send`` wrapper, using the stack's own instances (so their settings
and their state, e.g. the rate limiter's fail-open cooldown, are the same ones):

- ``Observe``: the request id (the client's sane one, else a fresh one) in the context
  variable and the ``X-Request-Id`` header, requests in flight, the latency recorded by
  (method, route template, status), the access log's rule, and an exception escaping the
  route answered with the usual 500 (after it is logged);
- ``Cors``: its three headers on ``/api/`` paths for an allowed origin (only GET and HEAD
  are taken here: a preflight goes to the stack);
- ``RateLimits`` when configured: the same ``_check`` and ``_refuse`` on ``/v1/`` paths;
- ``ExceptionMiddleware``: a raised exception goes to the app's handler for it (status
  handlers first for an ``HTTPException``), answered through the same ``send``;
- the router: ``scope["route"]``, ``endpoint``, ``router``, ``path_params`` as its scan sets
  them, and ``starlette.exception_handlers`` for handlers that build a ``Request``.

Headers come out in the stack's order (the route's, then CORS's, then ``X-Request-Id``).
The app uses it only when its middleware stack is exactly ``Observe``, ``Cors`` and, if
configured, ``RateLimits`` (``HotPath.of``); anything else (another middleware, ``observe``
off) keeps the full stack for every request. Only routes whose match is decided by method
and path are taken (``StaticPathRouter.static_route``: the very route the scan would pick).
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, Any

from starlette._exception_handler import _lookup_exception_handler
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homefeed.entrypoints import metrics as obs
from homefeed.entrypoints.mastodon.cors import _EXPOSE, Cors, cors_path
from homefeed.entrypoints.observe import _ERROR_HEADERS, _INTERNAL_ERROR, Observe, access_log, log
from homefeed.entrypoints.ratelimit import LIMITED_PREFIX, RateLimits
from homefeed.entrypoints.routes._request import HOT_PATHS
from homefeed.logging_setup import request_id as request_id_var, request_id_of

if TYPE_CHECKING:
    from homefeed.entrypoints.http import StaticPathRouter

class HotPath:
    """One layer doing the middleware stack's work for ``HOT_PATHS`` (module docstring)."""

    paths = HOT_PATHS

    def __init__(self, router: StaticPathRouter, observe: Observe, cors: Cors, limits: RateLimits | None,
                 exceptions: ExceptionMiddleware) -> None:
        self.router = router
        self.observe = observe
        self.cors = cors
        self.limits = limits
        self.handlers = (exceptions._exception_handlers, exceptions._status_handlers)

    @classmethod
    def of(cls, stack: ASGIApp, router: StaticPathRouter) -> HotPath | None:
        """The hot path for this middleware stack, or None unless it is exactly
        ServerErrorMiddleware > Observe > Cors > [RateLimits] > ExceptionMiddleware > router."""
        layers: list[Any] = []
        app: Any = stack
        while app is not router:
            layers.append(app)
            app = getattr(app, "app", None)
            if app is None:
                return None
        kinds = [type(layer) for layer in layers]
        if kinds == [ServerErrorMiddleware, Observe, Cors, ExceptionMiddleware]:
            return cls(router, layers[1], layers[2], None, layers[3])
        if kinds == [ServerErrorMiddleware, Observe, Cors, RateLimits, ExceptionMiddleware]:
            return cls(router, layers[1], layers[2], layers[3], layers[4])
        return None

    def route(self, scope: Scope) -> Route | None:
        return self.router.static_route(scope["method"], scope["path"])

    async def serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id_of(scope["headers"])
        reset_token = request_id_var.set(rid)
        path: str = scope["path"]
        extra = [(b"x-request-id", rid.encode())]
        if cors_path(path):
            allow = self.cors._origin(scope)
            if allow is not None:
                extra = [(b"access-control-allow-origin", allow), (b"access-control-expose-headers", _EXPOSE),
                         (b"vary", b"Origin"), extra[0]]
        status = 0

        async def send_hot(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        scope["router"] = self.router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        scope["starlette.exception_handlers"] = self.handlers
        rec = self.observe.recorder
        rec.in_flight += 1
        template = route.path
        t0 = perf_counter()
        try:
            try:
                limits = self.limits
                refused = await limits._check(scope) if limits is not None and path.startswith(LIMITED_PREFIX) else None
                if refused is None:
                    await route.app(scope, receive, send_hot)
                else:  # refused before routing in the stack too: counted as unmatched there
                    template = obs.UNMATCHED
                    await limits._refuse(send_hot, *refused)  # type: ignore[union-attr]
            except Exception as exc:  # ExceptionMiddleware's part
                handler = None
                if isinstance(exc, HTTPException):
                    handler = self.handlers[1].get(exc.status_code)
                if handler is None:
                    handler = _lookup_exception_handler(self.handlers[0], exc)
                if handler is None or status:
                    raise
                call: Any = handler  # homefeed's handlers are async and take a Request
                response = await call(Request(scope, receive), exc)
                if response is not None:
                    await response(scope, receive, send_hot)
                exc.__traceback__ = None
        except asyncio.CancelledError:
            status = status or 499
            raise
        except Exception:  # Observe's part
            if status:
                raise
            log.exception("unhandled error on %s %s", scope["method"], path)
            await send_hot({"type": "http.response.start", "status": 500, "headers": list(_ERROR_HEADERS)})
            await send_hot({"type": "http.response.body", "body": _INTERNAL_ERROR})
        finally:
            t1 = perf_counter()
            method = scope["method"]
            if method not in obs.METHODS:
                method = "OTHER"
            rec.in_flight -= 1
            rec.observe_request(method, template, status or 500, t1 - t0, t1)
            mode = self.observe.log_mode
            if mode != "off" and (mode == "all" or method not in ("GET", "HEAD") or status >= 500
                                  or not status or t1 - t0 >= self.observe.slow):
                access_log.info(
                    "%s %s %d", method, path, status or 500,
                    extra={"method": method, "route": template, "path": path,
                           "status": status or 500, "ms": round((t1 - t0) * 1000, 2)},
                )
            request_id_var.reset(reset_token)
