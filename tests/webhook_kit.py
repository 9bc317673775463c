"""A real webhook receiver for tests: an HTTP/1.1 server on 127.0.0.1 in a thread of its own
(so that in-process tests and tests of a server subprocess use it alike), recording every
request as it arrived, answering as the test says (fail the first attempts of each message,
a fixed status, ...), and checking signatures with the ``standardwebhooks`` library, as a
receiver would."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from standardwebhooks.webhooks import Webhook

from tests.waiting import wait_until


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A sender killed mid-request (the fault scenarios) is no error of the receiver's:
        not printed; anything else is."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def msg_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """``answer(request, attempt_of_this_id) -> status``; default 200."""

    def __init__(self, answer: Callable[[Received, int], int] | None = None) -> None:
        self.answer = answer or (lambda r, n: 200)
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                probe = Received(self.path, headers, body, 0)
                with receiver._lock:
                    n = receiver._attempts[headers.get("webhook-id", "")] = \
                        receiver._attempts.get(headers.get("webhook-id", ""), 0) + 1
                status = receiver.answer(probe, n)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, headers, body, status))
                self.send_response(status)
                if status in (204, 304):
                    self.end_headers()
                    return
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forget what was received (a receiver shared by several tests or examples)."""
        with self._lock:
            self.requests.clear()
            self._attempts.clear()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def delivered(self) -> dict[str, Received]:
        """webhook-id -> the request that was answered 2xx (the first, if several)."""
        out: dict[str, Received] = {}
        for r in self.snapshot():
            if 200 <= r.status < 300:
                out.setdefault(r.msg_id, r)
        return out

    def wait_for(self, done: Callable[[list[Received]], bool], timeout: float = 60.0,
                 what: str = "the expected webhooks") -> list[Received]:
        """Wait (liveness, not a timing check) until ``done(requests)``."""
        return wait_until(self.snapshot, done, timeout, what,
                          lambda got: [(r.msg_id, r.status, r.json.get("type")) for r in got])


def verify(secret: str, r: Received) -> dict[str, Any]:
    """The payload, once ``standardwebhooks`` verified the signature (raises otherwise)."""
    return Webhook(secret).verify(r.body, r.headers)  # type: ignore[no-any-return]
