"""Bytes per cached timeline entry, memory adapter and Redis adapter (issue 14: "memory per
cached timeline entry: reported for memory and Redis; goal <= 16 bytes embedded").

Both caches get the same timelines: ``--lists`` home timelines of ``--cap`` realistic ids
(Snowflake ids of today, 8-byte integers), filled two ways:

* ``installed``: one ``install`` of ``cap`` ids per list (a rebuild);
* ``pushed``: an empty list fed by ``cap + cap // 8`` fan-out pushes (so every list went
  through growth and trimming, what a running server holds).

Memory adapter: ``tracemalloc`` traced bytes of the cache object's allocations (lists, their
``_IdList`` records and ``array('q')`` buffers, the OrderedDict) divided by the entries.
Beside it, the same ids as a Python ``list`` of ints (what the cache would cost without the
compact array). Redis: a private ``redis-server`` (stopped afterwards); ``MEMORY USAGE key
SAMPLES 0`` summed over the lists, and the server's ``used_memory`` growth, each divided by
the entries.

The read path: ``slice(limit=20)`` calls/s on the array layout beside the same slice on a
Python list of ints (interleaved rounds, medians): the home read is hot, so the compact
layout must not cost it.

    .venv/bin/python benchmarks/memory_per_entry.py [--lists 2000] [--cap 800] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from bisect import bisect_left
from typing import Any

from homefeed.adapters.memory_cache import MemoryTimelineCache
from homefeed.adapters.redis_timeline_cache import RedisTimelineCache
from homefeed.bench.micro import RedisServer
from homefeed.domain.ids import IdGenerator


def _ids(n: int) -> list[int]:
    gen = IdGenerator(node=3)
    return [gen.next_id() for _ in range(n)]


async def _fill(cache: Any, lists: int, cap: int, how: str, ids: list[int]) -> int:
    keys = list(range(1, lists + 1))
    if how == "installed":
        for k in keys:
            await cache.install("home", k, ids[:cap], 0)
    else:
        for k in keys:
            await cache.install("home", k, [], 0)
        for i in ids[: cap + cap // 8]:
            await cache.push("home", keys, i)
    return lists * cap


def memory_bytes(lists: int, cap: int, how: str, ids: list[int]) -> dict[str, float]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cache = MemoryTimelineCache(cap=cap, max_lists=lists + 10)
    entries = asyncio.run(_fill(cache, lists, cap, how, ids))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    stored = sum(len(l.ids) for l in cache._lists["home"].values())
    assert stored == entries, (stored, entries)
    # the same ids as Python lists of ints (ints above 2**30 are separate 32-byte objects)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    as_lists = {k: [int(str(x)) for x in l.ids] for k, l in cache._lists["home"].items()}
    used_lists = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del as_lists
    return {"bytes_per_entry": used / entries, "list_of_ints_bytes_per_entry": used_lists / entries,
            "entries": entries}


def redis_bytes(lists: int, cap: int, how: str, ids: list[int]) -> dict[str, float]:
    with RedisServer() as srv:
        async def go() -> dict[str, float]:
            cache = RedisTimelineCache(srv.url, cap=cap, prefix="mem", top_if_unknown=0)
            try:
                before = int((await cache.client.info("memory"))["used_memory"])
                entries = await _fill(cache, lists, cap, how, ids)
                after = int((await cache.client.info("memory"))["used_memory"])
                total = 0
                for k in range(1, lists + 1):
                    total += int(await cache.client.memory_usage(cache._key("home", k), samples=0))
                encoding = await cache.client.object("encoding", cache._key("home", 1))
                return {"bytes_per_entry": total / entries, "used_memory_bytes_per_entry": (after - before) / entries,
                        "entries": entries, "encoding": encoding.decode() if isinstance(encoding, bytes) else encoding}
            finally:
                await cache.close()

        return asyncio.run(go())


def _drive(coro: Any) -> Any:
    """Run a coroutine that never suspends (every memory-cache method) without an event loop,
    so that the loop's own cost does not drown the slice."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the coroutine suspended")


def slice_rates(cap: int, ids: list[int], rounds: int, seconds: float) -> dict[str, float]:
    """Calls/s, interleaved rounds, medians: ``MemoryTimelineCache.slice`` (newest 20, and 20
    below a cursor) on its ``array('q')`` lists; and the core steps of that slice (bisect,
    slice, to a list, reverse) on the array beside the same steps on a Python list of ints."""
    cache = MemoryTimelineCache(cap=cap)
    _drive(cache.install("home", 1, ids[:cap], 0))
    arr = cache._lists["home"][1].ids
    as_list = arr.tolist()
    cursor = ids[cap // 2]

    def core_array(before: int | None) -> list[int]:
        end = len(arr) if before is None else bisect_left(arr, before)
        out = arr[max(0, end - 20):end].tolist()
        out.reverse()
        return out

    def core_list(before: int | None) -> list[int]:
        end = len(as_list) if before is None else bisect_left(as_list, before)
        out = as_list[max(0, end - 20):end]
        out.reverse()
        return out

    assert core_array(cursor) == core_list(cursor) == _drive(cache.slice("home", 1, cursor, 20)).ids

    def run(fn: Any) -> float:
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(1000):
                fn()
            n += 1000
        return n / (time.perf_counter() - t0)

    parts = (
        ("cache_slice_newest", lambda: _drive(cache.slice("home", 1, None, 20))),
        ("cache_slice_cursor", lambda: _drive(cache.slice("home", 1, cursor, 20))),
        ("core_array_newest", lambda: core_array(None)),
        ("core_list_newest", lambda: core_list(None)),
        ("core_array_cursor", lambda: core_array(cursor)),
        ("core_list_cursor", lambda: core_list(cursor)),
    )
    per: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, fn in parts:
            per.setdefault(name, []).append(run(fn))
        for pos in ("newest", "cursor"):
            per.setdefault(f"array_vs_list_{pos}", []).append(
                per[f"core_array_{pos}"][-1] / per[f"core_list_{pos}"][-1])
    return {k: statistics.median(v) for k, v in per.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lists", type=int, default=2000)
    ap.add_argument("--cap", type=int, default=800)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    ids = _ids(a.cap + a.cap // 8)
    out: dict[str, Any] = {"load_average": os.getloadavg(), "lists": a.lists, "cap": a.cap}
    for how in ("installed", "pushed"):
        out[f"memory_{how}"] = memory_bytes(a.lists, a.cap, how, ids)
        out[f"redis_{how}"] = redis_bytes(a.lists, a.cap, how, ids)
    out["slice_calls_per_s"] = slice_rates(a.cap, ids, a.rounds, a.seconds)
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
