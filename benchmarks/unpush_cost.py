"""What the fan-out's check for parallel workers costs (``FeedManager.unpush_unfollowed``).

Where several workers share the fan-out consumer (JetStream), each batch's pushes are
followed by a second read of the authors' followers, to take a post back from anyone who
unfollowed its author while it was pushed (``Consumers.parallel``). This measures the fan-out
of the same batches with the check and without it, alternately, in one process: a copy of a
demo world (SQLite, the memory timeline cache, every reader's home cached first), batches of
``--batch`` new posts by random authors, each batch applied ``--rounds`` times each way
(a fan-out applied again changes nothing: pushes are idempotent). Figures: CPU µs per post of
``Consumers.fan_out``, median of the rounds, and the ratio.

    .venv/bin/homefeed demo --no-serve --data-dir /tmp/hf14world        # once
    .venv/bin/python benchmarks/unpush_cost.py --world /tmp/hf14world

The scale-out profile's stores (PostgreSQL, Redis; the world loaded into a scratch database,
which the benchmark writes to): ``--database-url`` and ``--cache-url``, with ``--world`` the
data dir holding that world's ``demo-tokens.tsv``. Redis's own CPU is reported beside.

    createdb unpush_bench
    HOMEFEED_DATABASE_URL=postgresql://postgres@127.0.0.1/unpush_bench \
        .venv/bin/homefeed demo --no-serve --data-dir /tmp/hfpg
    .venv/bin/python benchmarks/unpush_cost.py --world /tmp/hfpg \
        --database-url postgresql://postgres@127.0.0.1/unpush_bench --cache-url redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.service_layer.consumers import FANOUT


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--readers", type=int, default=3000, help="home timelines cached before (the pushes' targets)")
    ap.add_argument("--database-url", default="", help="PostgreSQL holding the world (default: a copy of its SQLite file)")
    ap.add_argument("--cache-url", default="", help="Redis (default: the in-process cache)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="unpush-"))
    redis_cpu = None
    try:
        if not args.database_url:
            for f in args.world.iterdir():
                if f.name.startswith("homefeed.db"):
                    shutil.copy(f, tmp / f.name)
        if args.cache_url:
            import redis

            r = redis.Redis.from_url(args.cache_url)
            r.flushdb()

            def redis_cpu() -> float:
                info = r.info("cpu")
                return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        hf = await open_homefeed(Settings(data_dir=tmp, sqlite_synchronous="NORMAL", database_url=args.database_url,
                                          cache_url=args.cache_url), run_consumers=False)
        try:
            handles = [line.split("\t")[0] for line in (args.world / "demo-tokens.tsv").read_text().splitlines()]
            users = []
            for h in handles[: max(args.readers, 1000)]:
                u = await hf.store.user_by_handle(h)
                assert u is not None, h
                users.append(u.id)
            rng = random.Random(14)
            for uid in users[: args.readers]:
                await hf.home_timeline(uid)
            stale = await hf.stream.fetch(FANOUT, 1_000_000, timeout=0)
            if stale:
                await hf.stream.ack(FANOUT, stale)
            c = hf.consumers
            per_post: dict[bool, list[float]] = {False: [], True: []}
            redis_per_post: dict[bool, list[float]] = {False: [], True: []}
            first: list[float] = []  # the first fan-out of each batch (no check): new ids
            for _ in range(args.batches):
                for _ in range(args.batch):
                    await hf.create_post(rng.choice(users), "a post about fan-out and timelines")
                events = await hf.stream.fetch(FANOUT, args.batch, timeout=0)
                c.parallel = False
                t0 = time.process_time()
                await c.fan_out(events)  # once, to warm the caches the same way for both
                first.append((time.process_time() - t0) / len(events) * 1e6)
                for _ in range(args.rounds):
                    for parallel in (False, True):
                        c.parallel = parallel
                        r0 = redis_cpu() if redis_cpu else 0.0
                        t0 = time.process_time()
                        await c.fan_out(events)
                        per_post[parallel].append((time.process_time() - t0) / len(events) * 1e6)
                        if redis_cpu:
                            redis_per_post[parallel].append((redis_cpu() - r0) / len(events) * 1e6)
                await hf.stream.ack(FANOUT, events)
            without, with_ = statistics.median(per_post[False]), statistics.median(per_post[True])
            print(f"fan-out of {args.batches} batches of {args.batch} posts, {args.rounds} rounds each way,"
                  f" {args.readers} home timelines cached:")
            print(f"  first fan-out of each batch:   {statistics.median(first):7.1f} µs of CPU per post (new ids)")
            print(f"  one worker (no check):        {without:7.1f} µs of CPU per post")
            print(f"  parallel workers (the check): {with_:7.1f} µs of CPU per post")
            print(f"  ratio: {with_ / without:.2f}; pushes taken back: {hf.feed.counters['unpushed']}")
            if redis_cpu:
                print(f"  Redis CPU µs per post: {statistics.median(redis_per_post[False]):.1f} without,"
                      f" {statistics.median(redis_per_post[True]):.1f} with the check")
        finally:
            await hf.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
