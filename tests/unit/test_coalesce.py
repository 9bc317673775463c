"""``CoalescingTransport``: what one turn of the event loop writes reaches the real transport
in one call, in order; closing sends what is pending first, aborting drops it. A real
uvicorn server on it is exercised by every e2e test (``homefeed serve`` uses it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvloop

from homefeed.entrypoints.coalesce import CoalescingTransport


class Recorder(asyncio.Transport):
    """A transport that records the calls it gets (what reached the socket, in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, lines: Any) -> None:
        self.calls.append(("writelines", [bytes(x) for x in lines]))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Any:
    lp = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    yield lp
    lp.close()


def test_one_turns_writes_go_out_in_one_call_in_order(loop: asyncio.AbstractEventLoop) -> None:
    async def go() -> list[tuple[str, Any]]:
        real = Recorder()
        t = CoalescingTransport(real, loop)
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        t.write(b"")  # nothing, and no call for it
        t.write(b"hello")
        assert real.calls == [] and t.get_write_buffer_size() == 43
        await asyncio.sleep(0)
        t.write(b"next")  # a later turn: a call of its own
        await asyncio.sleep(0)
        return real.calls

    assert loop.run_until_complete(go()) == [
        ("writelines", [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", b"hello"]),
        ("write", b"next"),
    ]


def test_close_sends_what_is_pending_and_abort_drops_it(loop: asyncio.AbstractEventLoop) -> None:
    async def go() -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        closed, aborted = Recorder(), Recorder()
        a, b = CoalescingTransport(closed, loop), CoalescingTransport(aborted, loop)
        for t in (a, b):
            t.writelines([b"head", b"body"])
        a.close()
        b.abort()
        a.write(b"after close")  # dropped: the real transport is closing
        await asyncio.sleep(0)
        return closed.calls, aborted.calls

    closed, aborted = loop.run_until_complete(go())
    assert closed == [("writelines", [b"head", b"body"]), ("close", None)]
    assert aborted == [("abort", None)]


def test_everything_else_is_the_real_transports(loop: asyncio.AbstractEventLoop) -> None:
    t = CoalescingTransport(Recorder(), loop)
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)
    assert t.is_closing() is False
