"""A durable post's CPU in two parts, inside the process, beside a home read's: the request
(``POST /v1/posts`` answered 201: validation, the commit of the post and its outbox event,
the author's own timeline) and the consumers' work for it afterwards (fan-out, indexing,
notifications, webhooks, mail: fetched from the outbox, applied, acknowledged).

One embedded ``Homefeed`` on a copy of a demo world, driven through the ASGI app (no HTTP
server), as ``inproc_post_cost.py``. Each round: the consumers are stopped, ``--concurrency``
tasks send ``--n`` posts (rotating tokens) — the **request** part —, then the consumers are
started and ``Homefeed.drain`` waits until every one has applied them — the **consumers**
part —, then ``--n`` warm home reads one at a time. For each part: the event loop thread's
CPU (``time.thread_time``) and the whole process's (``time.process_time``: the SQLite writer
thread too), per post; medians over rounds.

    .venv/bin/python benchmarks/inproc_post_split.py --world /tmp/hf14world
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from inproc_post_cost import call, scope_for

ROOT = Path(__file__).resolve().parent.parent


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True, help="a data dir made by `homefeed demo --no-serve`")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to measure")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=3000, help="posts per round (home reads: the same)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=1000)
    args = ap.parse_args()
    sys.path.insert(0, str(args.src))

    from homefeed.bootstrap import open_homefeed
    from homefeed.config import Settings
    from homefeed.entrypoints.http import create_app

    tmp = Path(tempfile.mkdtemp(prefix="hf14split-"))
    for f in args.world.iterdir():
        if f.name.startswith("homefeed.db"):
            shutil.copy(f, tmp / f.name)
    lines = (args.world / "demo-tokens.tsv").read_text().splitlines()[1 : args.tokens + 1]
    tokens = [line.split("\t")[1].encode() for line in lines]
    hf = await open_homefeed(Settings(data_dir=tmp))
    counter = itertools.count()
    try:
        app = create_app(hf, manage_lifecycle=False)
        names = hf.consumers.running

        async def posts(n: int) -> None:
            start = next(counter) + 1

            async def worker() -> None:
                while (i := next(counter)) < start + n:
                    body = b'{"text":"inproc post number %d about timelines and fan-out"}' % i
                    status = await call(app, scope_for("POST", "/v1/posts", tokens[i % len(tokens)], True), body)
                    if status != 201:
                        raise SystemExit(f"a post answered {status}")

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))

        async def homes(n: int) -> None:
            for i in range(n):
                status = await call(app, scope_for("GET", "/v1/timelines/home", tokens[i % len(tokens)], False)
                                    | {"query_string": b"limit=20"}, b"")
                if status != 200:
                    raise SystemExit(f"a home read answered {status}")

        await homes(max(args.n, len(tokens)))  # every reader's page kept, the token cache warm
        await posts(500)
        await hf.drain(timeout=120)
        got: dict[str, list[float]] = {k: [] for k in ("request_loop", "request_all", "consumers_loop",
                                                       "consumers_all", "home_loop")}
        for r in range(args.rounds):
            await hf.consumers.stop()
            t0, p0 = time.thread_time(), time.process_time()
            await posts(args.n)
            got["request_loop"].append((time.thread_time() - t0) / args.n * 1e6)
            got["request_all"].append((time.process_time() - p0) / args.n * 1e6)
            hf.consumers.start(names)
            t0, p0 = time.thread_time(), time.process_time()
            await hf.drain(timeout=120)
            got["consumers_loop"].append((time.thread_time() - t0) / args.n * 1e6)
            got["consumers_all"].append((time.process_time() - p0) / args.n * 1e6)
            t0 = time.thread_time()
            await homes(args.n)
            got["home_loop"].append((time.thread_time() - t0) / args.n * 1e6)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in got.items()) + " µs", flush=True)
        med = {k: statistics.median(v) for k, v in got.items()}
        print(f"\nsource {args.src}; median of {args.rounds} rounds x {args.n} posts, CPU µs per post (home: per read):")
        print("| part | event loop | whole process |")
        print("|---|---|---|")
        print(f"| request (answered 201) | {med['request_loop']:.1f} | {med['request_all']:.1f} |")
        print(f"| consumers (applied) | {med['consumers_loop']:.1f} | {med['consumers_all']:.1f} |")
        print(f"| home read | {med['home_loop']:.1f} | |")
        print(f"request / home read (event loop): {med['request_loop'] / med['home_loop']:.2f}; "
              f"consumers / home read: {med['consumers_loop'] / med['home_loop']:.2f}")
    finally:
        await hf.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
