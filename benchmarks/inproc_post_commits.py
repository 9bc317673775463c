"""Durable posts in process, counted: commits per post, writes per commit, the consumers'
outbox reads and acknowledgements per post, loop CPU per post, posts/s and post latency.
Issue 14's posts goal, seen from the SQLite writer's side (``benchmarks/results/issue14_p15posts.md``).

The ASGI app of one embedded ``Homefeed`` (consumers running), ``--concurrency`` tasks
posting with ``--tokens`` rotating users until ``--n`` posts are answered 201, then
``drain``; ``SqliteDatabase._commit_batch`` and the outbox stream's reads and acks are
wrapped to count them (in this process only). Run it against two trees, alternately:

    .venv/bin/python benchmarks/inproc_post_commits.py --world /tmp/hf14world
    .venv/bin/python benchmarks/inproc_post_commits.py --world /tmp/hf14world --src /path/to/base/src
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def q(xs: list[float], p: float) -> float:
    return sorted(xs)[int(p * (len(xs) - 1))] if xs else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True, help="a data dir made by `homefeed demo --no-serve`")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to measure")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval, seconds (the GIL's; Python's default 0.005)")
    ap.add_argument("--settle-gc", action="store_true", help="as a served process does (processes.settle_gc)")
    ap.add_argument("--slice", type=float, default=None,
                    help="loop_slice.SLICE (consumers.SLICE and fts5_index.TOKENIZE_SLICE before it), seconds")
    args = ap.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    sys.path.insert(0, str(args.src))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from inproc_post_cost import call, scope_for

    from homefeed.adapters import fts5_index, outbox_stream, sqlite_db
    from homefeed.service_layer import consumers

    try:  # one knob since homefeed.loop_slice; two before it (older trees)
        from homefeed import loop_slice as slicing
    except ImportError:
        slicing = None  # type: ignore[assignment]
    if args.slice is not None:
        if slicing is not None:
            slicing.SLICE = args.slice
        else:
            consumers.SLICE = fts5_index.TOKENIZE_SLICE = args.slice  # type: ignore[attr-defined]
    from homefeed.bootstrap import open_homefeed
    from homefeed.config import Settings
    from homefeed.entrypoints.http import create_app

    counts: collections.Counter[str] = collections.Counter()
    commit_ms: list[float] = []
    batch_sizes: list[int] = []
    commit_batch = sqlite_db.SqliteDatabase._commit_batch
    read = outbox_stream.OutboxEventStream._read
    ack = outbox_stream.OutboxEventStream.ack

    def timed_commit(self: Any, conn: Any, batch: list[Any]) -> None:
        t = time.perf_counter()
        commit_batch(self, conn, batch)
        commit_ms.append((time.perf_counter() - t) * 1e3)
        batch_sizes.append(len(batch))

    def counted_read(self: Any, after: int, max_events: int) -> Any:
        counts["outbox reads"] += 1
        return read(self, after, max_events)

    async def counted_ack(self: Any, consumer: str, events: Any) -> None:
        counts["acks"] += 1
        await ack(self, consumer, events)

    sqlite_db.SqliteDatabase._commit_batch = timed_commit  # type: ignore[method-assign]
    outbox_stream.OutboxEventStream._read = counted_read  # type: ignore[method-assign]
    outbox_stream.OutboxEventStream.ack = counted_ack  # type: ignore[method-assign]

    tmp = Path(tempfile.mkdtemp(prefix="hf14commits-"))
    for f in args.world.iterdir():
        if f.name.startswith("homefeed.db"):
            shutil.copy(f, tmp / f.name)
    lines = (args.world / "demo-tokens.tsv").read_text().splitlines()[1 : args.tokens + 1]
    tokens = [line.split("\t")[1].encode() for line in lines]
    hf = await open_homefeed(Settings(data_dir=tmp))
    if args.settle_gc:
        from homefeed.entrypoints.processes import settle_gc
        settle_gc()
    try:
        app = create_app(hf, manage_lifecycle=False)
        latency: list[float] = []

        for i in range(len(tokens)):  # warm every poster's home timeline, as over HTTP
            await call(app, scope_for("GET", "/v1/timelines/home", tokens[i], False)
                       | {"query_string": b"limit=20"}, b"")

        async def posts(first: int, n: int) -> None:
            counter = itertools.count(first)

            async def worker() -> None:
                while (i := next(counter)) < first + n:
                    body = b'{"text":"inproc post number %d about timelines and fan-out"}' % i
                    t = time.perf_counter()
                    s = await call(app, scope_for("POST", "/v1/posts", tokens[i % len(tokens)], True), body)
                    latency.append((time.perf_counter() - t) * 1e3)
                    if s != 201:
                        raise SystemExit(f"a post answered {s}")

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))

        await posts(0, 300)  # warm-up
        await hf.drain(timeout=120)
        for kept in (counts, commit_ms, batch_sizes, latency):
            kept.clear()
        t0, c0 = time.perf_counter(), time.thread_time()
        await posts(300, args.n)
        t1 = time.perf_counter()
        await hf.drain(timeout=120)
        t2, c2 = time.perf_counter(), time.thread_time()
        n = args.n
        print(f"switch interval {sys.getswitchinterval() * 1e3:g} ms, gc threshold {__import__('gc').get_threshold()},"
              f" slice {getattr(slicing or consumers, 'SLICE', None)}")
        print(f"source {args.src}: {n} posts answered in {t1 - t0:.2f} s ({n / (t1 - t0):,.0f}/s), drained"
              f" {t2 - t1:.2f} s later; loop CPU {1e6 * (c2 - c0) / n:.0f} µs/post")
        print(f"commits/post {len(commit_ms) / n:.3f}, writes/commit {statistics.mean(batch_sizes):.1f},"
              f" outbox reads/post {counts['outbox reads'] / n:.2f}, acks/post {counts['acks'] / n:.2f}")
        print(f"commit batch ms median {q(commit_ms, .5):.2f} p90 {q(commit_ms, .9):.2f} p99 {q(commit_ms, .99):.2f};"
              f" writer busy {sum(commit_ms) / 1e3 / (t2 - t0):.0%} of the time")
        print(f"post latency ms median {q(latency, .5):.1f} p90 {q(latency, .9):.1f} p99 {q(latency, .99):.1f}")
    finally:
        await hf.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
