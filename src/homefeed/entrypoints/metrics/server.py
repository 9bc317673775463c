"""A metrics server for processes that serve no HTTP API (``homefeed worker``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from homefeed.aio import wait_for
from homefeed.entrypoints.metrics.prometheus import CONTENT_TYPE, prometheus_text
from homefeed.entrypoints.metrics.sampler import Sampler
from homefeed.entrypoints.metrics.jsonview import snapshot, snapshot_json

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.metrics")


class MetricsServer:
    """``GET /metrics`` and ``GET /metrics.json`` on a port of its own (HTTP/1.0, one
    request per connection), plus the background sampler.

        server = await MetricsServer.start(hf, "0.0.0.0", 9101, role="worker")
        ...
        await server.close()
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    async def start(cls, hf: Homefeed, host: str, port: int, *, role: str = "worker") -> "MetricsServer":
        self = cls(Sampler(hf, role=role))
        self._server = await asyncio.start_server(self._handle, host, port)
        self._task = asyncio.create_task(self.sampler.run(), name="metrics-sampler")
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await wait_for(reader.readline(), 5)
            while True:  # skip the headers
                h = await wait_for(reader.readline(), 5)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) >= 2 and parts[0] == "GET" and path == "/metrics":
                body, ctype, status = (await prometheus_text(self.sampler)).encode(), CONTENT_TYPE, "200 OK"
            elif len(parts) >= 2 and parts[0] == "GET" and path == "/metrics.json":
                body, ctype, status = snapshot_json(await snapshot(self.sampler)), "application/json", "200 OK"
            else:
                body = b'{"error":{"code":"not_found","message":"GET /metrics or /metrics.json"}}'
                ctype, status = "application/json", "404 Not Found"
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("metrics server: request failed")
        finally:
            writer.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
