"""Routes of the web client: the shell at every address the client shows, and its assets
under ``/web/<version>/<name>`` (see the package docstring)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from homefeed.domain.errors import NotFound
from homefeed.entrypoints import web
from homefeed.entrypoints.accept_encoding import accepts_gzip
from homefeed.entrypoints.mastodon import _common  # noqa: F401  (registers the {id:digits} convertor)

#: The addresses the client routes itself (each answers the same shell): home, the public
#: and local timelines, notifications, search, a hashtag, a profile, its follow lists, a
#: thread, and where the OAuth log-in comes back to.
CLIENT_PATHS = (
    "/",
    "/public",
    "/public/local",
    "/notifications",
    "/search",
    "/tags/{tag}",
    "/@{username}",
    "/@{username}/followers",
    "/@{username}/following",
    "/@{username}/{status_id:digits}",
    "/auth/callback",
)


def _answer(request: Request, asset: web.Asset, cache_control: str, extra: dict[str, str]) -> Response:
    headers = {"Cache-Control": cache_control, "ETag": asset.etag, "Vary": "Accept-Encoding",
               "X-Content-Type-Options": "nosniff", **extra}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    if accepts_gzip(request.headers.get("accept-encoding", "").encode("latin-1")):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def app_shell(request: Request) -> Response:
    """Every client route: the same page; the client reads the address and draws it."""
    return _answer(request, web.shell(), web.SHELL_CACHE_CONTROL,
                   {"Content-Security-Policy": web.CSP, "Referrer-Policy": "same-origin"})


async def asset(request: Request) -> Response:
    """``/web/<version>/<name>``: a module or the style sheet of the current version (an old
    version's name answers 404: its files are not the ones it named)."""
    found = web.assets().get(request.path_params["name"])
    if found is None or request.path_params["version"] != web.version():
        raise NotFound("no such file of the web client (reload the page for the current version)")
    return _answer(request, found, web.ASSET_CACHE_CONTROL, {})


routes: list[BaseRoute] = [
    *(Route(path, app_shell, methods=["GET"]) for path in CLIENT_PATHS),
    Route("/web/{version}/{name}", asset, methods=["GET"]),
]
