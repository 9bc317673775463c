"""CPU of a durable post inside the process, beside a home read's, same run: issue 14's
"posts ≥ 0.5 × home reads" without the HTTP server and without the machine's noise.

Over HTTP both a post and a home read are bound by the one event-loop thread (py-spy:
the loop is busy ~90% of the time under ``wrk -c32`` posts, the SQLite writer thread ~50%).
So the event loop's CPU per request is what decides the ratio of their rates. This script
measures it on one embedded ``Homefeed`` (consumers running: fan-out, indexer, notifier,
webhooks, mailer), through the ASGI app:

- ``post``: ``--concurrency`` tasks send ``POST /v1/posts`` (rotating tokens) until
  ``--n`` are answered 201, then wait until every consumer has applied them
  (``Homefeed.drain``); the event loop's CPU (``time.thread_time`` of this thread, which
  runs the loop) over all of that, per post, so each post carries its whole fan-out,
  indexing and acknowledgements. ``post_all`` is the same with every thread's CPU
  (``time.process_time``: the SQLite writer thread too);
- ``home``: ``GET /v1/timelines/home?limit=20``, warm, rotating tokens, one at a time.

Rounds alternate the order; the answer is the median per figure and the median of the
same-round ratios ``home / post`` (≈ posts/s ÷ home reads/s where the loop is the bound).

``--split`` measures a post in two parts instead: each round stops the consumers, sends the
posts (the **request**: answered 201, the post and its outbox event committed, the author's
own timeline), then starts the consumers and waits until every one has applied them (the
**consumers**: fan-out, indexing, notifications, webhooks, mail), then reads homes; each
part's loop and process CPU per post.

    .venv/bin/python benchmarks/inproc_post_cost.py --world /tmp/hf14world
    .venv/bin/python benchmarks/inproc_post_cost.py --world /tmp/hf14world --src /path/to/other/tree
    .venv/bin/python benchmarks/inproc_post_cost.py --world /tmp/hf14world --split --n 3000
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def scope_for(method: str, path: str, token: bytes, body: bool) -> dict[str, Any]:
    p, _, q = path.partition("?")
    headers = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*"),
               (b"authorization", b"Bearer " + token)]
    if body:
        headers.append((b"content-type", b"application/json"))
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": p, "raw_path": p.encode(), "root_path": "",
            "query_string": q.encode(), "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080)}


async def call(app: Any, scope: dict[str, Any], body: bytes) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True, help="a data dir made by `homefeed demo --no-serve`")
    ap.add_argument("--src", type=Path, default=ROOT / "src", help="the source tree to measure")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000, help="posts per round (home reads: the same)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--split", action="store_true", help="the request and the consumers' work apart")
    args = ap.parse_args()
    sys.path.insert(0, str(args.src))

    from homefeed.bootstrap import open_homefeed
    from homefeed.config import Settings
    from homefeed.entrypoints.http import create_app

    tmp = Path(tempfile.mkdtemp(prefix="hf14post-"))
    for f in args.world.iterdir():
        if f.name.startswith("homefeed.db"):
            shutil.copy(f, tmp / f.name)
    lines = (args.world / "demo-tokens.tsv").read_text().splitlines()[1 : args.tokens + 1]
    tokens = [line.split("\t")[1].encode() for line in lines]
    hf = await open_homefeed(Settings(data_dir=tmp))
    counter = itertools.count()
    try:
        app = create_app(hf, manage_lifecycle=False)

        async def posts(n: int, drain: bool = True) -> None:
            bad: list[int] = []

            async def worker() -> None:
                while (i := next(counter)) is not None:
                    if i >= start + n:
                        return
                    body = b'{"text":"inproc post number %d about timelines and fan-out"}' % i
                    s = await call(app, scope_for("POST", "/v1/posts", tokens[i % len(tokens)], True), body)
                    if s != 201:
                        bad.append(s)

            start = next(counter) + 1
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            if drain:
                await hf.drain(timeout=120)
            if bad:
                raise SystemExit(f"{len(bad)} posts not answered 201 (e.g. {bad[0]})")

        async def homes(n: int) -> None:
            for i in range(n):
                s = await call(app, scope_for("GET", "/v1/timelines/home", tokens[i % len(tokens)], False)
                               | {"query_string": b"limit=20"}, b"")
                if s != 200:
                    raise SystemExit(f"home read answered {s}")

        await homes(max(args.n, len(tokens)))  # warm the timelines, the token and handle caches
        await posts(min(args.n, 500))
        if args.split:
            await split(hf, posts, homes, args.rounds, args.n, args.src)
            return
        loop_us: dict[str, list[float]] = {"post": [], "post_all": [], "home": []}
        ratios: list[float] = []
        for r in range(args.rounds):
            got: dict[str, float] = {}
            for name in (["post", "home"] if r % 2 == 0 else ["home", "post"]):
                t0, p0 = time.thread_time(), time.process_time()
                await (posts(args.n) if name == "post" else homes(args.n))
                got[name] = (time.thread_time() - t0) / args.n * 1e6
                if name == "post":
                    got["post_all"] = (time.process_time() - p0) / args.n * 1e6
            for k, v in got.items():
                loop_us[k].append(v)
            ratios.append(got["home"] / got["post"])
            print(f"round {r + 1}: post {got['post']:.0f} µs loop ({got['post_all']:.0f} all threads),"
                  f" home {got['home']:.0f} µs", flush=True)
        print(f"\nsource {args.src}; median of {args.rounds} rounds x {args.n}:")
        print("| figure | CPU µs/request |")
        print("|---|---|")
        for k, us in loop_us.items():
            print(f"| {k} | {statistics.median(us):.1f} |")
        print(f"home / post loop CPU (≈ posts/s ÷ home reads/s): {statistics.median(ratios):.2f}")
    finally:
        await hf.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def split(hf: Any, posts: Any, homes: Any, rounds: int, n: int, src: Path) -> None:
    """``--split``: each round, the posts with the consumers stopped, then the consumers'
    work for them, then the home reads; CPU per post of each part (module docstring)."""
    names = hf.consumers.running
    got: dict[str, list[float]] = {k: [] for k in ("request_loop", "request_all", "consumers_loop",
                                                   "consumers_all", "home_loop")}
    for r in range(rounds):
        await hf.consumers.stop()
        t0, p0 = time.thread_time(), time.process_time()
        await posts(n, drain=False)
        got["request_loop"].append((time.thread_time() - t0) / n * 1e6)
        got["request_all"].append((time.process_time() - p0) / n * 1e6)
        hf.consumers.start(names)
        t0, p0 = time.thread_time(), time.process_time()
        await hf.drain(timeout=120)
        got["consumers_loop"].append((time.thread_time() - t0) / n * 1e6)
        got["consumers_all"].append((time.process_time() - p0) / n * 1e6)
        t0 = time.thread_time()
        await homes(n)
        got["home_loop"].append((time.thread_time() - t0) / n * 1e6)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in got.items()) + " µs", flush=True)
    med = {k: statistics.median(v) for k, v in got.items()}
    print(f"\nsource {src}; median of {rounds} rounds x {n} posts, CPU µs per post (home: per read):")
    print("| part | event loop | whole process |")
    print("|---|---|---|")
    print(f"| request (answered 201) | {med['request_loop']:.1f} | {med['request_all']:.1f} |")
    print(f"| consumers (applied) | {med['consumers_loop']:.1f} | {med['consumers_all']:.1f} |")
    print(f"| home read | {med['home_loop']:.1f} | |")
    print(f"request / home read (event loop): {med['request_loop'] / med['home_loop']:.2f}; "
          f"consumers / home read: {med['consumers_loop'] / med['home_loop']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
