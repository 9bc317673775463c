"""A JetStream fetch while the client is not connected waits out its timeout, yielding.

nats-py runs the disconnected callback (which clears ``_connected``) some time after its
client stopped being connected. In between, a fetch used to return ``[]`` at once without
yielding to the event loop, and a consumer's loop, fetching again, spun: the process's loop
stopped, with a PostgreSQL transaction of its notifier left open, and that held back every
outbox on the cluster until the process was killed (seen in CI during a NATS restart under
load). The state between the client going away and the callback is set up here by hand:
the client object stands for nats-py's, of which only ``is_connected`` is read."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from homefeed.adapters.jetstream import JetStreamEventStream


def test_a_fetch_while_disconnected_waits_its_timeout_and_lets_the_loop_run() -> None:
    async def main() -> None:
        stream = JetStreamEventStream("nats://127.0.0.1:1")
        stream._nc = SimpleNamespace(is_connected=False)  # type: ignore[assignment]
        stream._connected.set()  # the disconnected callback has not run yet
        turns = 0

        async def ticker() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        t0 = time.monotonic()
        got = await stream.fetch("fanout", 10, timeout=0.3)
        waited = time.monotonic() - t0
        tick.cancel()
        assert got == []
        assert waited >= 0.25, f"returned after {waited:.3f} s instead of waiting for a connection"
        assert turns > 2, "the fetch did not let the event loop run"

        # Connected again (the reconnected callback sets the event): no wait.
        stream._nc.is_connected = True
        assert await stream._wait_connected(5.0)

    asyncio.run(main())
