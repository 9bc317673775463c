"""CORS for browser apps on other origins: ``/api/*``, ``/oauth/token``, ``/oauth/revoke``
(``HOMEFEED_CORS_ORIGINS``, default ``*`` as Mastodon). A preflight is answered here."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
_EXPOSE = b"Link, X-RateLimit-Reset, X-RateLimit-Limit, X-RateLimit-Remaining, X-Request-Id, Idempotent-Replayed"


def cors_path(path: str) -> bool:
    return path.startswith("/api/") or path in ("/oauth/token", "/oauth/revoke")


class Cors:
    def __init__(self, app: ASGIApp, origins: str = "*") -> None:
        self.app = app
        self.any = origins.strip() in ("", "*")
        self.allowed = {o.strip().rstrip("/") for o in origins.split(",") if o.strip()}

    def _origin(self, scope: Scope) -> bytes | None:
        origin = None
        for k, v in scope["headers"]:
            if k == b"origin":
                origin = v
        if self.any:
            return b"*"
        if origin is not None and origin.decode("latin-1").rstrip("/") in self.allowed:
            return origin
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not cors_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        allow = self._origin(scope)
        headers = dict(scope["headers"])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            out = [(b"vary", b"Origin")]
            if allow is not None:
                out += [
                    (b"access-control-allow-origin", allow),
                    (b"access-control-allow-methods", _METHODS),
                    (b"access-control-allow-headers",
                     headers.get(b"access-control-request-headers", b"Authorization, Content-Type, Idempotency-Key")),
                    (b"access-control-max-age", b"1728000"),
                ]
            await send({"type": "http.response.start", "status": 200 if allow else 403, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            return
        if allow is None:
            await self.app(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      (b"access-control-allow-origin", allow),
                                      (b"access-control-expose-headers", _EXPOSE),
                                      (b"vary", b"Origin")]
            await send(message)

        await self.app(scope, receive, with_cors)
