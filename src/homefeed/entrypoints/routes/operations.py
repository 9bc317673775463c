"""For operators and their tools: liveness, readiness, metrics and the live dashboard. The
figures themselves come from ``entrypoints/metrics.py`` and the page from ``dashboard.py``;
these handlers only answer them. Never rate limited (they are not under ``/v1``)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from homefeed.entrypoints import metrics as obs
from homefeed.entrypoints import dashboard as dashboard_page
from homefeed.entrypoints.routes._request import JSON, HomefeedApp, json_response, service

def _sampler(request: Request) -> obs.Sampler:
    app: HomefeedApp = request.scope["app"]
    return app.sampler


class Healthz:
    """``GET /healthz``, as a bare ASGI endpoint: no ``Request`` or ``Response`` object,
    and the body encoded once per lag snapshot (``Homefeed.health`` hands out the same dict
    until it is renewed), since load balancers and monitors call it many times a second and
    it should cost about what a bare route costs (issue 14). Starlette still matches it by
    method (405 otherwise), and ``Observe`` still times it and adds the request id."""

    def __init__(self) -> None:
        self._last: tuple[object, bytes, list[tuple[bytes, bytes]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app: HomefeedApp = scope["app"]
        body = await app.homefeed.health()
        last = self._last
        if last is None or last[0] is not body:
            raw = orjson.dumps(body)
            last = self._last = (body, raw, [(b"content-type", b"application/json"),
                                             (b"content-length", str(len(raw)).encode())])
        await send({"type": "http.response.start", "status": 200, "headers": list(last[2])})
        await send({"type": "http.response.body", "body": last[1]})


healthz = Healthz()


async def readyz(request: Request) -> Response:
    """200 when every backend answers, else 503 naming the ones that do not (a load
    balancer takes the process out of rotation; ``/healthz`` stays 200)."""
    hf = service(request)
    checks = await hf.readiness()
    kinds = hf.backends()
    failing = [name for name, c in checks.items() if not c["ok"]]
    body = {
        "status": "not_ready" if failing else "ready",
        "failing": failing,
        "backends": {name: {"backend": kinds.get(name, name), **c} for name, c in checks.items()},
    }
    return json_response(body, 503 if failing else 200)


async def metrics(request: Request) -> Response:
    return Response(await obs.prometheus_text(_sampler(request)), media_type=obs.CONTENT_TYPE)


async def metrics_json(request: Request) -> Response:
    return Response(obs.snapshot_json(await obs.snapshot(_sampler(request))), media_type=JSON,
                    headers={"Cache-Control": "no-store"})


async def dashboard(request: Request) -> Response:
    return HTMLResponse(dashboard_page.page(), headers={
        "Cache-Control": "no-store", "Content-Security-Policy": dashboard_page.PAGE_CSP})


async def dashboard_asset(request: Request) -> Response:
    """``/dashboard.css``, ``/dashboard.js``: the page's own files, from the package."""
    name = request.url.path.lstrip("/")
    content, etag = dashboard_page.asset(name)
    headers = {"Cache-Control": dashboard_page.ASSET_CACHE_CONTROL, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=dashboard_page.ASSETS[name], headers=headers)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/metrics.json", metrics_json, methods=["GET"]),
    Route("/dashboard", dashboard, methods=["GET"]),
    *(Route(f"/{name}", dashboard_asset, methods=["GET"]) for name in dashboard_page.ASSETS),
]
