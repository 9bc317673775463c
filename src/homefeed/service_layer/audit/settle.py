"""Waiting for the events in flight: a difference is reported only if it is still there
once the consumers have applied every event committed before it was first seen."""

from __future__ import annotations

import asyncio
from typing import Sequence

from homefeed.ports import EventStream, StreamPosition
from homefeed.service_layer.services import Homefeed


async def wait_caught_up(hf: Homefeed, timeout: float = 30.0, stall: float = 5.0) -> dict[str, int]:
    """Wait until every consumer has applied every event committed before this call (for
    a bus: relayed first). Returns {} once they have, else how far behind each one still
    is when ``timeout`` passed or nothing moved for ``stall`` seconds. Only reads."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    names = list(hf.consumers.handlers)
    parts = hf.relay_parts
    if "sink" in parts:  # outbox -> relay -> bus
        behind = await _wait_acked(parts["source"], ["relay"], deadline, stall)
        if behind:
            return behind
    return await _wait_acked(hf.stream, names, deadline, stall)


async def _wait_acked(stream: EventStream, names: Sequence[str], deadline: float, stall: float) -> dict[str, int]:
    """Wait until every consumer of ``names`` has acknowledged up to where the stream ends
    now (PostgreSQL: the newest committed row, not the end of the deliverable prefix, which
    running transactions anywhere in the cluster hold back)."""
    loop = asyncio.get_running_loop()
    mark = await stream.end_position()
    last: dict[str, StreamPosition] = {}
    moved = loop.time()
    while True:
        positions = {n: await stream.acked_position(n) for n in names}
        behind = [n for n in names if positions[n] < mark]
        if not behind:
            return {}
        if positions != last:
            last, moved = positions, loop.time()
        now = loop.time()
        if now >= deadline or now - moved >= stall:
            return {n: await stream.lag(n) for n in behind}
        await asyncio.sleep(0.02)
