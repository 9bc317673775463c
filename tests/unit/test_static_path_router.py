"""``StaticPathRouter`` (entrypoints/http.py) picks, for every request, the route Starlette's
linear scan would pick: same route, same status, same scope, on homefeed's real route list
and on lists built to trip a lookup table (overlaps, a parameter route first, a mount)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings, strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router

from homefeed.entrypoints.http import ROUTES, StaticPathRouter

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def scanned(routes: list[BaseRoute], method: str, path: str) -> BaseRoute | None:
    """What Starlette's scan picks: the first FULL match, else the first PARTIAL (a 405)."""
    scope = {"type": "http", "path": path, "root_path": "", "method": method}
    partial = None
    for r in routes:
        m, _ = r.matches(scope)
        if m is Match.FULL:
            return r
        if m is Match.PARTIAL and partial is None:
            partial = r
    return partial


def routed(router: Router, method: str, path: str) -> tuple[Any, int]:
    """The route the router put in the scope and the status it answered."""
    scope: dict[str, Any] = {"type": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                             "method": method, "query_string": b"", "headers": [], "app": object()}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        try:
            await router.app(scope, receive, send)
        except Exception as exc:  # a 405 raised as HTTPException (scope has "app")
            sent.append({"type": "http.response.start", "status": getattr(exc, "status_code", 500)})

    asyncio.run(main())
    return scope.get("route"), sent[0]["status"]


def _ok(request: Request) -> Response:
    return PlainTextResponse(request.scope["route"].path)


def _static_paths(routes: list[BaseRoute]) -> list[str]:
    return [r.path for r in routes if isinstance(r, Route) and not r.param_convertors]


def test_every_static_route_of_homefeed_is_found_as_the_scan_finds_it():
    plain = [Route(r.path, _ok, methods=r.methods) if isinstance(r, Route) else r for r in ROUTES]
    fast, slow = StaticPathRouter(plain), Router(plain)
    paths = _static_paths(plain)
    assert "/healthz" in paths and "/v1/posts" in paths
    for path in paths:
        for method in METHODS:
            want = scanned(plain, method, path)
            got_route, got_status = routed(fast, method, path)
            slow_route, slow_status = routed(slow, method, path)
            assert got_route is want is slow_route, (method, path)
            assert got_status == slow_status, (method, path)
    assert fast._table[("GET", "/healthz")].path == "/healthz"


def test_an_earlier_parameter_route_still_wins():
    routes: list[BaseRoute] = [Route("/a/{x}", _ok, methods=["GET"]), Route("/a/b", _ok, methods=["GET", "POST"]),
                               Mount("/m", routes=[Route("/x", _ok)]), Route("/m/x", _ok, methods=["GET"])]
    fast = StaticPathRouter(routes)
    assert routed(fast, "GET", "/a/b")[0] is routes[0]  # the scan's pick, not the exact path
    assert routed(fast, "POST", "/a/b")[0] is routes[1]
    assert routed(fast, "GET", "/m/x")[0].path == "/x"  # the mount comes first: its inner route
    assert ("GET", "/a/b") not in fast._table and ("POST", "/a/b") in fast._table


def test_routes_added_before_serving_are_seen():
    routes: list[BaseRoute] = [Route("/one", _ok, methods=["GET"])]
    fast = StaticPathRouter(routes)
    assert routed(fast, "GET", "/one")[1] == 200
    late = Route("/two", _ok, methods=["GET"])
    fast.routes.append(late)
    assert routed(fast, "GET", "/two") == (late, 200)
    fast.routes.insert(0, Route("/{any}", _ok, methods=["GET"]))
    assert routed(fast, "GET", "/two")[0] is fast.routes[0]


SEGMENTS = st.sampled_from(["a", "b", "{x}", "{y:int}", "1", "healthz"])


@settings(max_examples=150, deadline=None)
@given(
    paths=st.lists(st.lists(SEGMENTS, min_size=1, max_size=3), min_size=1, max_size=8),
    methods=st.lists(st.sets(st.sampled_from(["GET", "POST", "DELETE"]), min_size=1), min_size=8, max_size=8),
    probe=st.tuples(st.sampled_from(METHODS), st.lists(st.sampled_from(["a", "b", "1", "healthz", "z"]),
                                                       min_size=1, max_size=3)),
)
def test_random_route_lists_route_as_the_scan(paths, methods, probe):
    routes: list[BaseRoute] = []
    for segs, ms in zip(paths, methods):
        try:
            routes.append(Route("/" + "/".join(segs), _ok, methods=sorted(ms)))
        except (ValueError, AssertionError):  # a path naming one parameter twice
            continue
    method, segs = probe
    path = "/" + "/".join(segs)
    fast_route, fast_status = routed(StaticPathRouter(routes), method, path)
    slow_route, slow_status = routed(Router(routes, redirect_slashes=True), method, path)
    assert fast_route is slow_route and fast_status == slow_status


def test_the_app_answers_through_it():
    import httpx

    app = Starlette(routes=[Route("/healthz", _ok, methods=["GET"])])
    app.router = StaticPathRouter(app.router.routes)

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return [await c.get("/healthz"), await c.head("/healthz"), await c.post("/healthz"),
                    await c.get("/nope")]

    get, head, post, nope = asyncio.run(main())
    assert get.text == "/healthz" and head.status_code == 200
    assert post.status_code == 405 and nope.status_code == 404
