"""Hybrid against pull as the book draws it: home-read cost against the reader's followees,
on the scale-out profile (PostgreSQL holding the posts, Redis the timeline and post caches).

World (loaded with ``bulk_load`` into a scratch database ``hf14hvp`` on the PostgreSQL at
127.0.0.1:5432, dropped and made again each run; Redis database 14, flushed): 5,000
authors with ``--posts-per-author`` posts each (spread over 30 days), and one reader per
followee count (10, 100, 1,000, 5,000) following the first N authors. The celebrity
threshold stays above every author's follower count, so hybrid pushes everything.

Two ``Homefeed``s are open on the same database at once: ``feed_strategy=pull`` (every read
is the record store's query over the followees) and ``hybrid`` (the cached home list in
Redis, posts from the Redis post cache). Each reader's timeline is warmed by one read per
strategy. Then each round reads ``--reads`` pages of 20 per (reader, strategy), in a
rotated order, one at a time, and counts **server CPU per read**: this process's CPU time
(the API's work: Python, the drivers) plus the CPU time of the PostgreSQL backends serving
the scratch database (``/proc/<pid>/stat``, the server's own work). Redis's CPU is not
counted (the Redis server is shared with other users here; its work per hybrid read is two
LRANGE-like commands and one MGET). Wall time per read (serial, so it is latency, not
throughput) is reported too. The answer: median over rounds, the ratio pull / hybrid, and a
chart (``--chart``).

    .venv/bin/python benchmarks/hybrid_vs_pull.py --chart benchmarks/charts/hybrid_vs_pull.png

Needs the PostgreSQL (trust auth) and Redis of the test machine; touches only ``hf14hvp``
and Redis db 14.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS

SHIFT = NODE_BITS + SEQ_BITS
PG = "postgresql://postgres@127.0.0.1:5432"
DB = "hf14hvp"
REDIS = "redis://127.0.0.1:6379/14"
TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


async def setup(authors: int, per_author: int, readers: list[int]) -> None:
    async with await psycopg.AsyncConnection.connect(PG + "/postgres", autocommit=True) as c:
        await c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await c.execute(f"CREATE DATABASE {DB}")
    from homefeed.adapters.pg_schema import migrate_url

    await migrate_url(f"{PG}/{DB}")
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS)
    await r.flushdb()
    await r.aclose()

    now_ms = int(time.time() * 1000) - EPOCH_MS
    base = now_ms - 40 * 86400 * 1000
    n_users = authors + len(readers)
    uids = [((base + i) << SHIFT) | (1 << SEQ_BITS) for i in range(n_users)]
    users = [(u, f"u{i}", f"u{i}", bytes(32 - len(str(i))) + str(i).encode()) for i, u in enumerate(uids)]
    follows = []
    k = 0
    for j, n in enumerate(readers):
        reader = uids[authors + j]
        for a in range(n):
            follows.append((reader, uids[a], ((base + 100_000 + (k >> SEQ_BITS)) << SHIFT) | (3 << SEQ_BITS) | (k & 0xFFF)))
            k += 1
    span = 30 * 86400 * 1000
    total = authors * per_author
    posts = []
    for p in range(total):  # round robin over authors, time ascending
        ms = now_ms - span + p * (span // total)
        posts.append((((ms) << SHIFT) | (2 << SEQ_BITS) | (p & 0xFFF), uids[p % authors],
                      f"post {p} about timelines"))
    hf = build(Settings(database_url=f"{PG}/{DB}", cache_url=REDIS, celebrity_threshold=10**9))
    await hf.start(run_consumers=False)
    try:
        await hf.store.bulk_load(users, follows, posts)  # type: ignore[attr-defined]
    finally:
        await hf.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--followees", default="10,100,1000,5000")
    ap.add_argument("--posts-per-author", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reads", type=int, default=200, help="reads per (reader, strategy) per round")
    ap.add_argument("--chart", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    levels = [int(x) for x in args.followees.split(",")]
    authors = max(levels)
    t = time.perf_counter()
    await setup(authors, args.posts_per_author, levels)
    print(f"world: {authors} authors x {args.posts_per_author} posts, readers following {levels};"
          f" loaded in {time.perf_counter() - t:.1f} s", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="hf14hvp-"))
    hfs = {}
    for s in ("pull", "hybrid"):
        hfs[s] = build(Settings(data_dir=tmp, database_url=f"{PG}/{DB}", cache_url=REDIS,
                                celebrity_threshold=10**9, feed_strategy=s))
        await hfs[s].start(run_consumers=False)
    try:
        async with await psycopg.AsyncConnection.connect(f"{PG}/{DB}", autocommit=True) as c:
            readers = {}
            for j, n in enumerate(levels):
                cur = await c.execute("SELECT id FROM users WHERE handle = %s", (f"u{authors + j}",))
                readers[n] = (await cur.fetchone())[0]  # type: ignore[index]
            for s, hf in hfs.items():  # warm: hybrid builds each cached home list here
                for n, uid in readers.items():
                    page = await hf.home_timeline(uid, limit=20)
                    assert len(page["posts"]) == 20, (s, n, len(page["posts"]))
            # the same page from both strategies
            for n, uid in readers.items():
                a = [p["id"] for p in (await hfs["pull"].home_timeline(uid, limit=20))["posts"]]
                b = [p["id"] for p in (await hfs["hybrid"].home_timeline(uid, limit=20))["posts"]]
                assert a == b, f"pull and hybrid disagree at {n} followees"
            cpu: dict[tuple[str, int], list[float]] = {}
            wall: dict[tuple[str, int], list[float]] = {}
            combos = [(s, n) for n in levels for s in hfs]
            for r in range(args.rounds):
                order = combos[r % len(combos):] + combos[: r % len(combos)]
                for s, n in order:
                    cur = await c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (DB,))
                    pids = [row[0] for row in await cur.fetchall()]
                    hf, uid = hfs[s], readers[n]
                    b0, p0, w0 = backend_cpu(pids), time.process_time(), time.perf_counter()
                    for _ in range(args.reads):
                        await hf.home_timeline(uid, limit=20)
                    w1, p1, b1 = time.perf_counter(), time.process_time(), backend_cpu(pids)
                    cpu.setdefault((s, n), []).append(((p1 - p0) + (b1 - b0)) / args.reads * 1e6)
                    wall.setdefault((s, n), []).append((w1 - w0) / args.reads * 1e6)
                print(f"round {r + 1} done", flush=True)
    finally:
        for hf in hfs.values():
            await hf.close()

    print(f"\nhome read of 20 posts, scale-out (PostgreSQL + Redis), median of {args.rounds} rounds x {args.reads} reads:")
    print("| followees | pull CPU µs/read | hybrid CPU µs/read | pull / hybrid (CPU) | pull wall µs | hybrid wall µs |")
    print("|---|---|---|---|---|---|")
    table = []
    for n in levels:
        pc, hc = statistics.median(cpu[("pull", n)]), statistics.median(cpu[("hybrid", n)])
        ratio = statistics.median(a / b for a, b in zip(cpu[("pull", n)], cpu[("hybrid", n)]))
        pw, hw = statistics.median(wall[("pull", n)]), statistics.median(wall[("hybrid", n)])
        table.append({"followees": n, "pull_cpu_us": pc, "hybrid_cpu_us": hc, "ratio": ratio,
                      "pull_wall_us": pw, "hybrid_wall_us": hw})
        print(f"| {n:,} | {pc:,.0f} | {hc:,.0f} | {ratio:.1f}x | {pw:,.0f} | {hw:,.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "cpu": {f"{s}:{n}": v for (s, n), v in cpu.items()}}, indent=1))
    if args.chart:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(levels, [row["pull_cpu_us"] for row in table], "o-", label="pull")
        ax.plot(levels, [row["hybrid_cpu_us"] for row in table], "s-", label="hybrid")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("accounts the reader follows")
        ax.set_ylabel("server CPU per home read (µs)")
        ax.set_title("home read, 20 posts: PostgreSQL + Redis")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.chart, dpi=100)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    asyncio.run(main())
