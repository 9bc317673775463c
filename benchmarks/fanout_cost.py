"""The fan-out side (issue 14): write cost per post against the author's follower count, with
and without the celebrity threshold. Chart: ``benchmarks/charts/fanout_cost.png``.

One world in a scratch SQLite store: ``max(--followers)`` users, and one author per follower
count (10, 100, 1k, 10k, 100k by default) followed by users 1..N, every follower's home
timeline cached (the worst case: every follower active). Each post goes through the fan-out
service itself, ``FeedManager.fan_out_post`` (the follower ids from the record store, then
the cache pushes: public list, author list, then the followers' home lists unless the author
is a celebrity), as the fan-out consumer calls it, without the outbox around it.

Two caches: ``redis`` (a private ``redis-server``, stopped afterwards; the scale-out cache)
and ``memory`` (the embedded profile's in-process cache). Two rules: ``push`` (no
celebrities: every post is pushed to every follower) and ``threshold`` (authors with at
least ``--threshold`` followers are celebrities: their posts go to their author list only
and are pulled at read time). Per post: this process's CPU (``time.process_time``), Redis's
CPU (``used_cpu_user + used_cpu_sys``), wall time and timeline writes (lists that took the
id). Rounds are interleaved (every count and rule once per round); figures are medians.

    .venv/bin/python benchmarks/fanout_cost.py [--followers 10,100,1000,10000,100000]
        [--threshold 10000] [--rounds 3] [--json benchmarks/results/issue14_fanout_cost.json]
        [--chart benchmarks/charts/fanout_cost.png]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from homefeed.bench.micro import RedisServer, _redis_cpu_s
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import Post

AUTHOR_BASE = 10_000_000


async def _world(hf: Any, counts: list[int]) -> dict[int, int]:
    """Users 1..max(counts), author AUTHOR_BASE + N followed by users 1..N; returns N -> id."""
    n_users = max(counts)
    authors = {n: AUTHOR_BASE + n for n in counts}

    def user(i: int) -> tuple[int, str, str, bytes]:
        return (i, f"u{i}", f"u{i}", hashlib.sha256(b"fc%d" % i).digest())

    users = [user(i) for i in range(1, n_users + 1)] + [user(a) for a in authors.values()]
    follows = []
    fid = 1
    for n, a in authors.items():
        for f in range(1, n + 1):
            follows.append((f, a, fid))
            fid += 1
    await hf.store.bulk_load(users, follows, [])
    return authors


async def _warm(cache: Any, n_users: int, first_id: int) -> None:
    """Every follower's home timeline cached (one id in it)."""
    batch = []
    for u in range(1, n_users + 1):
        batch.append(cache.install("home", u, [first_id], 0))
        if len(batch) >= 32:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)


def run(kind: str, counts: list[int], threshold: int, rounds: int, budget_s: float) -> dict[str, Any]:
    from homefeed.bootstrap import build
    from homefeed.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="hf-fanout-cost-"))
    srv = RedisServer() if kind == "redis" else None
    try:
        if srv is not None:
            srv.__enter__()
        settings = Settings(data_dir=tmp, cache_url=srv.url if srv else "",
                            cache_max_timelines=max(counts) + 1000, celebrity_threshold=threshold)

        async def go() -> dict[str, Any]:
            hf = build(settings)
            await hf.start(run_consumers=False)
            try:
                feed = hf.feed
                cache = feed.cache
                if kind == "redis":
                    cache.top_if_unknown = 0  # a fresh server: no list predates the top
                authors = await _world(hf, counts)
                gen = IdGenerator(node=5)
                await _warm(cache, max(counts), gen.next_id())
                celebs = {rule: ([a for n, a in authors.items() if n >= threshold] if rule == "threshold" else [])
                          for rule in ("push", "threshold")}
                per: dict[tuple[str, int], dict[str, list[float]]] = {}
                for _ in range(rounds):
                    for rule in ("push", "threshold"):
                        await cache.set_celebrities(celebs[rule])
                        feed.threshold = threshold if rule == "threshold" else (1 << 62)
                        for n, a in authors.items():
                            posts = 0
                            writes = 0
                            c0 = time.process_time()
                            r0 = _redis_cpu_s(await cache.client.info("cpu")) if kind == "redis" else 0.0
                            t0 = time.perf_counter()
                            while posts < 3 or (time.perf_counter() - t0 < budget_s and posts < 2000):
                                p = Post(gen.next_id(), a, f"u{a}", "fan-out cost post")
                                writes += 2 + await feed.fan_out_post(p)  # public + author lists
                                posts += 1
                            wall = time.perf_counter() - t0
                            cpu = time.process_time() - c0
                            rcpu = (_redis_cpu_s(await cache.client.info("cpu")) - r0) if kind == "redis" else 0.0
                            d = per.setdefault((rule, n), {})
                            for k, v in (("process_cpu_us_per_post", cpu / posts * 1e6),
                                         ("redis_cpu_us_per_post", rcpu / posts * 1e6),
                                         ("cpu_us_per_post", (cpu + rcpu) / posts * 1e6),
                                         ("wall_ms_per_post", wall / posts * 1e3),
                                         ("timeline_writes_per_post", writes / posts),
                                         ("posts", float(posts))):
                                d.setdefault(k, []).append(v)
                out = []
                for (rule, n), d in sorted(per.items()):
                    row: dict[str, Any] = {"rule": rule, "followers": n}
                    row.update({k: statistics.median(v) for k, v in d.items()})
                    c = row["cpu_us_per_post"]
                    row["cpu_us_per_write"] = c / row["timeline_writes_per_post"]
                    out.append(row)
                return {"cache": kind, "threshold": threshold, "rows": out}
            finally:
                await hf.close()

        return asyncio.run(go())
    finally:
        if srv is not None:
            srv.__exit__()
        shutil.rmtree(tmp, ignore_errors=True)


def chart(results: list[dict[str, Any]], path: Path, command: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for res in results:
        for rule, style in (("push", "-o"), ("threshold", "--s")):
            rows = [r for r in res["rows"] if r["rule"] == rule]
            xs = [r["followers"] for r in rows]
            label = f"{res['cache']} cache, " + (
                "no threshold (push all)" if rule == "push" else f"celebrity threshold {res['threshold']:,}")
            ax1.plot(xs, [r["cpu_us_per_post"] / 1000 for r in rows], style, label=label)
            if res["cache"] == results[0]["cache"]:
                ax2.plot(xs, [r["timeline_writes_per_post"] for r in rows], style,
                         label="no threshold" if rule == "push" else f"threshold {res['threshold']:,}")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("author's followers (all with a cached timeline)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("CPU per post, ms (process + Redis)")
    ax1.set_title("fan-out CPU per post")
    ax2.set_ylabel("timeline writes per post")
    ax2.set_title("timeline writes per post")
    fig.suptitle(command, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--followers", default="10,100,1000,10000,100000")
    ap.add_argument("--threshold", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of posts per count, rule and round")
    ap.add_argument("--caches", default="redis,memory")
    ap.add_argument("--json")
    ap.add_argument("--chart")
    a = ap.parse_args(argv)
    counts = [int(x) for x in a.followers.split(",")]
    load = os.getloadavg()
    results = [run(k, counts, a.threshold, a.rounds, a.budget) for k in a.caches.split(",")]
    out = {"load_average_before": load, "load_average_after": os.getloadavg(), "results": results,
           "command": "python benchmarks/fanout_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    for res in results:
        print(f"{res['cache']} cache, threshold {res['threshold']:,}:")
        print(f"  {'rule':9s} {'followers':>9s} {'writes/post':>11s} {'proc µs':>10s} {'redis µs':>10s}"
              f" {'total µs':>10s} {'µs/write':>8s} {'wall ms':>8s}")
        for r in res["rows"]:
            print(f"  {r['rule']:9s} {r['followers']:>9,} {r['timeline_writes_per_post']:>11,.0f}"
                  f" {r['process_cpu_us_per_post']:>10,.0f} {r['redis_cpu_us_per_post']:>10,.0f}"
                  f" {r['cpu_us_per_post']:>10,.0f} {r['cpu_us_per_write']:>8.2f} {r['wall_ms_per_post']:>8.1f}")
    print(f"load average before {load}, after {out['load_average_after']}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    if a.chart:
        print("chart:", chart(results, Path(a.chart), out["command"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
