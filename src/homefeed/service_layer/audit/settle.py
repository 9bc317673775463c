"""Waiting for the events in flight: a difference is reported only if it is still there
once the consumers have applied every event committed before it was first seen."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from homefeed.service_layer.audit import probes
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
        behind = await _wait_outbox(parts["source"], ["relay"], deadline, stall)
        if behind:
            return behind
    stream: Any = hf.stream
    bus = probes.bus_consumer_stats(stream)
    if bus is not None:
        return await _wait_jetstream(bus, names, deadline, stall)
    return await _wait_outbox(stream, names, deadline, stall)


async def _wait_outbox(stream: Any, names: Sequence[str], deadline: float, stall: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    mark = await probes.outbox_mark(stream)
    last: dict[str, Any] = {}
    moved = loop.time()
    while True:
        positions = {n: await stream.position(n) for n in names}
        behind = [n for n in names if positions[n] < mark]
        if not behind:
            return {}
        if positions != last:
            last, moved = positions, loop.time()
        now = loop.time()
        if now >= deadline or now - moved >= stall:
            out = {}
            for n in behind:
                out[n] = (mark - positions[n]) if isinstance(mark, int) else await stream.lag(n)
            return out
        await asyncio.sleep(0.02)


async def _wait_jetstream(stream: Any, names: Sequence[str], deadline: float, stall: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    mark = (await stream.stream_state())["last_seq"]
    last: dict[str, Any] = {}
    moved = loop.time()
    while True:
        stats = {n: await stream.consumer_stats(n) for n in names}
        floors = {n: s["stream_seq_acked"] for n, s in stats.items()}
        behind = [n for n in names if floors[n] < mark]
        if not behind:
            return {}
        if floors != last:
            last, moved = floors, loop.time()
        now = loop.time()
        if now >= deadline or now - moved >= stall:
            return {n: stats[n]["pending"] + stats[n]["ack_pending"] for n in behind}
        await asyncio.sleep(0.02)

