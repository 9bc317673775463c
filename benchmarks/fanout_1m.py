"""Fan-out delay of a 1,000,000-follower post under the push strategy (issue 14: "p99 < 1 s"),
measured directly through the fan-out service, without the HTTP server and the polling
probes of ``homefeed bench fanout`` (whose 1M world takes long to build on a busy machine).

The world: a scratch SQLite store (kept in ``--dir`` and reused when present) with
``--followers`` users all following one author (the 1M world's ``u0``, without the rest of
its power-law graph: the fan-out of ``u0``'s post reads only ``u0``'s followers). ``--active``
of them, spread evenly, have a cached home timeline (the bench's 10,000 active followers).

Each round: a post by the author goes through ``FeedManager.fan_out_post`` with the push
strategy (as the fan-out consumer calls it); the delay is from the call to its return, i.e.
to the moment the last follower's timeline holds the post (the consumer's fetch and the
reader's poll add a few ms on top in the HTTP bench), and this process's CPU over it (the
figure a busy machine distorts least). Split, in CPU: ``follower_ids`` (the record store)
and the cache pushes (pushed again after the round: the same lookups, nothing taken). Caches: ``memory`` (embedded, what ``bench fanout`` runs) and
``redis`` (a private ``redis-server``, stopped afterwards). p50/p99/max over ``--rounds``.

Two paths, interleaved round by round in the same run (same-run ratios): ``small``, the
fan-out from the small side (``FeedManager._home_targets``: the users with a cached home
timeline, ``TimelineCache.home_keys``, then which of them follow the author,
``RecordStore.followers_among``), and ``old``, every follower read and pushed (forced by
raising ``small_side_min``; ``--old-path`` runs only that one). The small side's split:
``home_keys`` and ``followers_among`` done again after the round.

    .venv/bin/python benchmarks/fanout_1m.py [--dir /tmp/hf1m] [--followers 1000000]
        [--active 10000] [--rounds 15] [--caches memory,redis] [--paths small,old]
        [--old-path] [--small-side-ratio R] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from homefeed.bench.micro import RedisServer, _redis_cpu_s
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import Post

AUTHOR = 1


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _load(hf: Any, followers: int) -> None:
    if await hf.store.count_users() >= followers + 1:
        return
    users = ((i, f"u{i}", f"u{i}", i.to_bytes(32, "big")) for i in range(1, followers + 2))
    follows = ((f, AUTHOR, f) for f in range(2, followers + 2))
    await hf.store.bulk_load(users, follows, [])


def run(cache_kind: str, directory: Path, followers: int, active: int, rounds: int,
        paths: list[str], ratio: float | None = None) -> list[dict[str, Any]]:
    from homefeed.bootstrap import build
    from homefeed.config import Settings

    srv = RedisServer() if cache_kind == "redis" else None
    try:
        if srv is not None:
            srv.__enter__()
        settings = Settings(data_dir=directory, cache_url=srv.url if srv else "", feed_strategy="push",
                            cache_max_timelines=max(active, 1000) + 1000)

        async def go() -> list[dict[str, Any]]:
            hf = build(settings)
            await hf.start(run_consumers=False)
            try:
                t0 = time.perf_counter()
                await _load(hf, followers)
                load_s = time.perf_counter() - t0
                feed, cache = hf.feed, hf.feed.cache
                if cache_kind == "redis":
                    cache.top_if_unknown = 0  # a fresh private server
                gen = IdGenerator(node=7)
                first = gen.next_id()
                step = max(1, followers // active)
                act = list(range(2, followers + 2, step))[:active]
                for i in range(0, len(act), 32):
                    await asyncio.gather(*(cache.install("home", u, [first], 0) for u in act[i:i + 32]))
                small_min = feed.small_side_min
                if ratio is not None:  # the small side however many cached timelines there are
                    feed.small_side_ratio = ratio
                    small_min = 0

                def use(path: str) -> None:
                    feed.small_side_min = small_min if path == "small" else 1 << 62

                for path in paths:  # warm-up (on Redis the first small side seeds the registry)
                    use(path)
                    await feed.fan_out_post(Post(gen.next_id(), AUTHOR, "u1", "warm-up"))
                m: dict[str, dict[str, list[float]]] = {
                    p: {k: [] for k in ("total", "cpu", "rcpu", "a", "b", "la")} for p in paths}
                taken = {p: 0 for p in paths}

                async def redis_cpu() -> float:
                    return _redis_cpu_s(await cache.client.info("cpu")) if cache_kind == "redis" else 0.0

                n_fol = 0
                for r in range(rounds):
                    for path in paths if r % 2 == 0 else paths[::-1]:  # interleaved, alternating order
                        use(path)
                        x = m[path]
                        x["la"].append(os.getloadavg()[0])
                        p = Post(gen.next_id(), AUTHOR, "u1", "a post to a million followers")
                        smalls = feed.counters["small_side_fanouts"]
                        r0 = await redis_cpu()
                        c0, t0 = time.process_time(), time.perf_counter()
                        taken[path] = await feed.fan_out_post(p)
                        x["total"].append(time.perf_counter() - t0)
                        x["cpu"].append(time.process_time() - c0)
                        x["rcpu"].append(await redis_cpu() - r0)
                        assert (feed.counters["small_side_fanouts"] > smalls) == (path == "small"), path
                        # the split, done again (the same lookups, nothing taken)
                        t1 = time.process_time()
                        if path == "small":
                            live = await cache.home_keys(1 << 40)
                            t2 = time.process_time()
                            ids = await hf.store.followers_among(AUTHOR, live)
                        else:
                            ids = await hf.store.follower_ids(AUTHOR)
                            n_fol = len(ids)
                            t2 = time.process_time()
                            await cache.push("home", ids, p.id)  # already there, same work
                        t3 = time.process_time()
                        x["a"].append(t2 - t1)
                        x["b"].append(t3 - t2)
                        await asyncio.sleep(0.05)
                ms = lambda xs, q: _pct(xs, q) * 1000  # noqa: E731
                out = []
                for path in paths:
                    x = m[path]
                    out.append({"cache": cache_kind, "path": path, "followers": n_fol or followers,
                                "active": len(act), "taken": taken[path], "rounds": rounds, "load_s": load_s,
                                "delay_ms": {"p50": ms(x["total"], 0.5), "p99": ms(x["total"], 0.99),
                                             "max": max(x["total"]) * 1000},
                                "process_cpu_ms": {"p50": ms(x["cpu"], 0.5), "max": max(x["cpu"]) * 1000},
                                "redis_cpu_ms": {"p50": ms(x["rcpu"], 0.5), "max": max(x["rcpu"]) * 1000},
                                # old: follower_ids, the pushes again; small: home_keys, followers_among
                                "split_cpu_ms_p50": [ms(x["a"], 0.5), ms(x["b"], 0.5)],
                                "load1_median": statistics.median(x["la"]),
                                "all_ms": [round(v * 1000, 1) for v in x["total"]]})
                return out
            finally:
                await hf.close()

        return asyncio.run(go())
    finally:
        if srv is not None:
            srv.__exit__()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/hf1m")
    ap.add_argument("--followers", type=int, default=1_000_000)
    ap.add_argument("--active", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--caches", default="memory,redis")
    ap.add_argument("--paths", default="small,old", help="fan-out paths, interleaved: small, old")
    ap.add_argument("--old-path", action="store_true", help="only the old path (every follower)")
    ap.add_argument("--small-side-ratio", type=float,
                    help="FeedManager.small_side_ratio (and no minimum): to find the threshold")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    paths = ["old"] if a.old_path else a.paths.split(",")
    out: dict[str, Any] = {"load_average_before": os.getloadavg(), "results": []}
    for kind in a.caches.split(","):
        for r in run(kind, Path(a.dir), a.followers, a.active, a.rounds, paths, a.small_side_ratio):
            out["results"].append(r)
            split = ("follower_ids {:.0f} ms, pushes again {:.0f} ms" if r["path"] == "old"
                     else "home_keys {:.0f} ms, followers_among {:.0f} ms").format(*r["split_cpu_ms_p50"])
            print(f"{kind} {r['path']}: {r['followers']:,} followers, {r['active']:,} active, took {r['taken']:,};"
                  f" delay p50 {r['delay_ms']['p50']:.0f} ms, p99 {r['delay_ms']['p99']:.0f} ms,"
                  f" max {r['delay_ms']['max']:.0f} ms; process CPU p50 {r['process_cpu_ms']['p50']:.1f} ms,"
                  f" Redis CPU p50 {r['redis_cpu_ms']['p50']:.1f} ms ({split}); load1 median"
                  f" {r['load1_median']:.1f}; world loaded in {r['load_s']:.0f} s", flush=True)
    out["load_average_after"] = os.getloadavg()
    print("load average before", out["load_average_before"], "after", out["load_average_after"])
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
