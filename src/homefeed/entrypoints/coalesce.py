"""uvicorn's httptools protocol, writing a response's head and body in one send.

uvicorn writes the status line and headers (``http.response.start``) and then the body
(``http.response.body``) as two ``transport.write`` calls: two ``send`` system calls and two
TCP segments per response, each waking the client. Profiled under posts, the write of the
head alone was ~7% of the server's samples (the kernel's loopback path runs in the sender's
system call), the body's ~3% (``benchmarks/RESULTS.md``, ninth pass).

``CoalescingTransport`` keeps what is written during one turn of the event loop and hands
it to the real transport at the end of that turn, in one ``writelines`` (uvloop sends a
list in one ``writev``). An ASGI app sends its start and its body in one turn unless it
awaits something in between, so a whole response leaves in one system call; a streamed
response still leaves chunk by chunk, a turn later at most. Closing sends what is pending
first; ``abort`` drops it, as the real transport's would. Everything else is the real
transport's (flow control included: the bytes reach it within the turn).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes of one loop turn go out together (module docstring)."""

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
