"""The ``Observe`` middleware: every HTTP request gets a request id, is timed and counted by
route template and status, and is access-logged; an exception escaping the app is answered
with the usual 500 JSON error here. Pure ASGI (no ``BaseHTTPMiddleware``): it sits on every
request, so it must cost next to nothing.

A streaming response (``text/event-stream``: the streaming API's SSE) is not a request that
takes long: it is a connection held open for minutes or hours. Timed as a request it would
fill the top buckets of the latency histograms, count as in flight for its whole life and
be logged as slow when it ends. So once its 200 goes out it leaves ``in_flight`` and is not
recorded nor logged as a request; the ``StreamHub`` counts it instead (open streams, opened,
closed, slow disconnects: ``homefeed_streaming_*`` in ``/metrics``). WebSocket connections
never pass through here (``scope["type"]`` is ``websocket``) and are counted by the hub too."""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homefeed.entrypoints import metrics as obs
from homefeed.logging_setup import (
    access_log_mode,
    request_id as request_id_var,
    request_id_of,
    slow_request_seconds,
)

log = logging.getLogger("homefeed.http")
access_log = logging.getLogger("homefeed.access")

JSON = "application/json"

_INTERNAL_ERROR = orjson.dumps({"error": {"code": "internal", "message": "internal error"}})
_ERROR_HEADERS = [(b"content-type", JSON.encode()), (b"content-length", str(len(_INTERNAL_ERROR)).encode())]


class Observe:
    """Pure ASGI middleware around every HTTP request: a request id (the client's sane
    ``X-Request-Id``, else a fresh one) set for the request's logs and events and returned in
    the ``X-Request-Id`` response header; latency recorded by (method, route template,
    status); requests in flight; the access log (see ``homefeed.logging_setup``). An
    exception that escapes the app is answered here with the usual 500 JSON error, so it is
    counted and carries the request id too."""

    def __init__(self, app: ASGIApp, recorder: obs.Recorder | None = None) -> None:
        self.app = app
        self.recorder = recorder or obs.RECORDER
        self.log_mode = access_log_mode()
        self.slow = slow_request_seconds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope["headers"])
        reset_token = request_id_var.set(rid)
        rid_header = (b"x-request-id", rid.encode())
        status = 0
        streaming = False
        rec = self.recorder

        async def send_with_id(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                if status == 200:
                    for key, value in headers:
                        if key == b"content-type" and value.startswith(b"text/event-stream"):
                            rec.in_flight -= 1  # a stream now, counted by the StreamHub
                            streaming = True
                            break
                message["headers"] = [*headers, rid_header]
            await send(message)

        rec.in_flight += 1
        t0 = perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            status = status or 499  # the client went away (nginx's "client closed request")
            raise
        except Exception:
            if status:
                raise  # the response has begun: nothing better to send
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await send_with_id({"type": "http.response.start", "status": 500, "headers": list(_ERROR_HEADERS)})
            await send_with_id({"type": "http.response.body", "body": _INTERNAL_ERROR})
        finally:
            t1 = perf_counter()
            route = scope.get("route")
            template = route.path if route is not None else obs.UNMATCHED
            method = scope["method"]
            if method not in obs.METHODS:
                method = "OTHER"
            mode = self.log_mode
            if streaming:  # not a request: only its end, and only in the full access log
                if mode == "all":
                    access_log.info(
                        "%s %s stream ended after %.1f s", method, scope["path"], t1 - t0,
                        extra={"method": method, "route": template, "path": scope["path"],
                               "status": status, "stream": True, "seconds": round(t1 - t0, 1)},
                    )
            else:
                rec.in_flight -= 1
                rec.observe_request(method, template, status or 500, t1 - t0, t1)
                if mode != "off" and (mode == "all" or method not in ("GET", "HEAD") or status >= 500
                                      or not status or t1 - t0 >= self.slow):
                    access_log.info(
                        "%s %s %d", method, scope["path"], status or 500,
                        extra={"method": method, "route": template, "path": scope["path"],
                               "status": status or 500, "ms": round((t1 - t0) * 1000, 2)},
                    )
            request_id_var.reset(reset_token)
