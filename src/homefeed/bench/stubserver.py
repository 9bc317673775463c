"""A tiny loopback HTTP server with a controllable delay and stall, to test and calibrate the
load generator without homefeed.

Why it exists: the generator's claims (requests leave on schedule whatever the latency;
latency is charged from the due time when the server stalls) must be checked against a
server whose behaviour is known exactly. It is also how to learn the generator's own ceiling
on a machine (point it at a stub with no delay and raise the rate until generator lag
appears) before blaming homefeed for a number.

It runs its own event loop in a background thread, so that a test process can host it
next to a generator; a stall is a ``stop the world`` of the stub only (an asyncio event that
every response waits on), not of the process.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import httptools

__all__ = ["Arrival", "StubServer"]

_BODY = b'{"ok":true}'


@dataclass(frozen=True)
class Arrival:
    """One request as the stub saw it: when it was complete (``time.perf_counter()``), its
    method, path (with query), headers (names lower-cased) and body."""

    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _RequestHandler:
    """httptools callbacks collecting the requests that arrive on one connection."""

    __slots__ = ("parser", "url", "headers", "body", "complete")

    def __init__(self) -> None:
        self.parser: httptools.HttpRequestParser | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = b""
        self.complete: list[Arrival] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.complete.append(
            Arrival(time.perf_counter(), self.parser.get_method().decode(), self.url.decode(),
                    self.headers, self.body)
        )
        self.url, self.headers, self.body = b"", {}, b""


class StubServer:
    """Answers every request ``<status> {"ok":true}`` after ``delay_s``.

    If ``stall_at_request`` is set, the request with that 1-based number starts a stall of
    ``stall_s`` seconds during which *no* response leaves (those in flight and those
    arriving wait), like a server stopped by a long GC pause or a lock.

    Use as a context manager; ``url`` is ``http://127.0.0.1:<port>`` (an ephemeral port).
    """

    def __init__(
        self,
        delay_s: float = 0.0,
        stall_at_request: int | None = None,
        stall_s: float = 0.0,
        host: str = "127.0.0.1",
        status: int = 200,
    ) -> None:
        self.delay_s = delay_s
        self.status = status
        self.stall_at_request = stall_at_request
        self.stall_s = stall_s
        self.host = host
        self.port = 0
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def __enter__(self) -> "StubServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stub-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stub server did not start")
        if self._error:
            raise RuntimeError("stub server failed to start") from self._error

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        running = asyncio.Event()
        running.set()
        writers: set[asyncio.StreamWriter] = set()

        async def stall() -> None:
            running.clear()
            await asyncio.sleep(self.stall_s)
            running.set()

        async def respond(writer: asyncio.StreamWriter, n: int) -> None:
            if self.stall_at_request is not None and n == self.stall_at_request:
                asyncio.ensure_future(stall())
                await asyncio.sleep(0)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            await running.wait()
            writer.write(
                b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (self.status, len(_BODY), _BODY)
            )

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            cb = _RequestHandler()
            parser = cb.parser = httptools.HttpRequestParser(cb)
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    parser.feed_data(data)
                    # Requests on one connection are answered in order (HTTP/1.1).
                    arrived, cb.complete = cb.complete, []
                    for arrival in arrived:
                        with self._lock:
                            self.arrivals.append(arrival)
                            n = len(self.arrivals)
                        await respond(writer, n)
            except (ConnectionError, httptools.HttpParserError):
                pass
            except asyncio.CancelledError:
                # The stub is shutting down with this request still held (stalled).
                pass
            finally:
                writers.discard(writer)
                writer.close()

        server = await asyncio.start_server(handle, self.host, 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            for w in list(writers):
                w.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m homefeed.bench.stubserver --seconds 60``: serve on loopback for a bounded
    time (printing the URL), e.g. to find the load generator's own ceiling on a machine."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m homefeed.bench.stubserver")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each response")
    p.add_argument("--stall-at", type=int, default=None, help="request number that stalls")
    p.add_argument("--stall", type=float, default=0.0, help="stall length, seconds")
    p.add_argument("--seconds", type=float, default=60.0, help="serve this long, then exit")
    args = p.parse_args(argv)
    with StubServer(args.delay, args.stall_at, args.stall) as stub:
        print(stub.url, flush=True)
        try:
            time.sleep(args.seconds)
        except KeyboardInterrupt:
            pass
        print(f"{stub.count} requests", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
