"""``homefeed bench``: make a world, run a workload, measure the fan-out delay, find the
capacity, compare strategies, micro-benchmarks, charts. ``homefeed bench --quick`` does a
small version of the comparison end to end in under a minute.

Every server is a ``homefeed serve`` process on 127.0.0.1 started on a fresh copy of the world
and stopped afterwards; every load is bounded in count and time; the load generator never
runs inside the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main"]


def _world_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("world")
    g.add_argument("--users", type=int, default=10_000, help="users of a power-law world")
    g.add_argument("--exponent", type=float, default=2.1, help="tail exponent of followers per user")
    g.add_argument("--max-followers", type=int, default=None, help="most followers of any user")
    g.add_argument("--mean-following", type=float, default=30.0, help="average follows per user")
    g.add_argument("--edge-list", default=None, help="SNAP edge list (follower followee per line) instead")
    g.add_argument("--undirected", action="store_true", help="each edge-list line follows both ways")
    g.add_argument("--posts", type=int, default=None, help="seeded posts (default 5 per user)")
    g.add_argument("--star", type=int, default=0, help="also make user u0 followed by this many users")
    g.add_argument("--seed", type=int, default=1)


def _spec(args: argparse.Namespace) -> Any:
    from homefeed.bench.world import WorldSpec

    return WorldSpec(
        users=args.users, exponent=args.exponent, max_followers=args.max_followers,
        mean_following=args.mean_following, edge_list=args.edge_list, undirected=args.undirected,
        posts=args.posts if args.posts is not None else 5 * args.users, seed=args.seed,
        star_followers=args.star,
    )


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--world", required=True, help="a world directory made by `homefeed bench world`")
    p.add_argument("--work-dir", default=None, help="where run copies of the world go (default: a temp dir)")
    p.add_argument("--active", type=int, default=5_000, help="acting users (their timelines are warmed)")
    p.add_argument("--processes", type=int, default=1, help="load generator processes")
    p.add_argument("--celebrity-threshold", type=int, default=None,
                   help="HOMEFEED_CELEBRITY_THRESHOLD of the servers started")
    p.add_argument("--out", default=None, help="write results as JSON here")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="homefeed bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small world, all three strategies, fan-out delay: the table in < 1 minute")
    p.add_argument("--out", default=None, help="(--quick) write the results as JSON here")
    sub = p.add_subparsers(dest="command")

    w = sub.add_parser("world", help="make a world (power law or edge list) in a data dir")
    w.add_argument("--data-dir", required=True)
    w.add_argument("--celebrity-threshold", type=int, default=None)
    _world_args(w)

    r = sub.add_parser("run", help="one open-loop workload run against a fresh server on the world")
    _run_args(r)
    r.add_argument("--strategy", default="hybrid", choices=("hybrid", "push", "pull"))
    r.add_argument("--rate", type=float, default=1000.0, help="total requests/s")
    r.add_argument("--duration", type=float, default=10.0, help="seconds")
    r.add_argument("--mix", default=None,
                   help="weights, default home_timeline=65,post=1,user_timeline=10,search=3")

    c = sub.add_parser("capacity", help="highest rate with p99 under a target, one strategy")
    _run_args(c)
    c.add_argument("--strategy", default="hybrid", choices=("hybrid", "push", "pull"))
    c.add_argument("--target-ms", type=float, default=50.0)
    c.add_argument("--kind", default="home_timeline", help="request type whose p99 is held")
    c.add_argument("--mix", default="home_timeline=65,post=1")
    c.add_argument("--start-rate", type=float, default=200.0)
    c.add_argument("--step", type=float, default=5.0, help="seconds per step")
    c.add_argument("--max-steps", type=int, default=8)

    k = sub.add_parser("compare", help="pull vs push vs hybrid: capacity + latency, one table")
    _run_args(k)
    k.add_argument("--strategies", default="pull,push,hybrid")
    k.add_argument("--target-ms", type=float, default=50.0)
    k.add_argument("--mix", default="home_timeline=65,post=1")
    k.add_argument("--start-rate", type=float, default=200.0)
    k.add_argument("--step", type=float, default=5.0)
    k.add_argument("--max-steps", type=int, default=8)
    k.add_argument("--repeat", type=int, default=1, help="repeat the whole comparison; medians reported")
    k.add_argument("--charts", default=None, help="directory for the PNG chart")
    k.add_argument("--cpu-rate", type=float, default=200.0,
                   help="also run this fixed rate and report server CPU per request (0: skip)")
    k.add_argument("--cpu-seconds", type=float, default=10.0)
    k.add_argument("--retries", type=int, default=1, help="re-runs of a failed step before it counts")

    f = sub.add_parser("fanout", help="fan-out delay by author follower count, probed from outside")
    _run_args(f)
    f.add_argument("--strategies", default="hybrid,push")
    f.add_argument("--per-bucket", type=int, default=3, help="authors per follower-count bucket")
    f.add_argument("--probes", type=int, default=10, help="followers probed per author")
    f.add_argument("--interval", type=float, default=0.02, help="seconds between two polls of a probe")
    f.add_argument("--posts-per-author", type=int, default=1)
    f.add_argument("--repeat", type=int, default=1)
    f.add_argument("--background-rate", type=float, default=0.0,
                   help="also run the default workload at this rate (req/s) during the probes")
    f.add_argument("--timeout", type=float, default=10.0)
    f.add_argument("--charts", default=None)

    m = sub.add_parser("micro", help="building blocks beside their engines' ceilings")
    m.add_argument("--budget", type=float, default=3.0, help="seconds per measurement")
    m.add_argument("--followers", type=int, default=10_000, help="followers per fan-out")
    m.add_argument("--concurrency", type=int, default=64, help="concurrent posters")
    m.add_argument("--only", default=None, help="comma list: sqlite_ceiling,post_ingest_sqlite,"
                   "fanout_memory,fanout_redis,hydration,postgres")
    m.add_argument("--repeat", type=int, default=1)
    m.add_argument("--out", default=None)
    return p


def _mix(text: str | None) -> dict[str, float]:
    from homefeed.bench.loadgen import DEFAULT_MIX
    from homefeed.bench.loadgen_cli import _parse_mix

    return dict(DEFAULT_MIX) if not text else _parse_mix(text)


def _machine() -> dict[str, Any]:
    import os

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _env(args: argparse.Namespace) -> dict[str, str]:
    e = {}
    if getattr(args, "celebrity_threshold", None):
        e["HOMEFEED_CELEBRITY_THRESHOLD"] = str(args.celebrity_threshold)
    return e


def _write(path: str | None, data: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1, default=str))
        print(f"results written to {path}")


def _users(world: str, n: int) -> list[Any]:
    from homefeed.bench.runner import pick_users
    from homefeed.bench.world import read_tokens

    return pick_users(read_tokens(Path(world) / "tokens.tsv"), n)


def cmd_world(args: argparse.Namespace) -> int:
    from homefeed.bench.world import make_world
    from homefeed.config import Settings

    settings = Settings.from_env(data_dir=Path(args.data_dir), celebrity_threshold=args.celebrity_threshold)
    world = make_world(settings, _spec(args))
    print(world.describe())
    print(f"timings (s): {world.timings_s}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from homefeed.bench.runner import run_workload
    from homefeed.bench.server import ServerProcess, copy_world, warm_timelines

    users = _users(args.world, args.active)
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        run_dir = copy_world(args.world, Path(args.work_dir or tmp) / "run")
        with ServerProcess(run_dir, env={"HOMEFEED_FEED_STRATEGY": args.strategy, **_env(args)}) as srv:
            asyncio.run(warm_timelines(srv.url, [u.token for u in users]))
            res = run_workload(srv.url, users, args.rate, args.duration, _mix(args.mix),
                               processes=args.processes)
    print(res.format())
    _write(args.out, {"machine": _machine(), "strategy": args.strategy, "result": res.to_dict(),
                      "summary": res.corrected.summary()})
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    from homefeed.bench.runner import compare_strategies

    users = _users(args.world, args.active)
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        r = compare_strategies(args.world, args.work_dir or tmp, users, strategies=(args.strategy,),
                               mix=_mix(args.mix), target_ms=args.target_ms, step_s=args.step,
                               max_steps=args.max_steps, start_rate=args.start_rate,
                               processes=args.processes, env=_env(args))
    cap = r["strategies"][args.strategy]
    print(f"capacity ({args.strategy}, p99 of {args.kind} < {args.target_ms:g} ms): "
          f"{cap['capacity_rps']:,.0f} req/s")
    _write(args.out, {"machine": _machine(), **r})
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from homefeed.bench.runner import compare_strategies, format_compare

    users = _users(args.world, args.active)
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    runs = []
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        for i in range(args.repeat):
            print(f"comparison {i + 1} of {args.repeat}:")
            # rotate the order, so that a noisy neighbour does not always hit the same strategy
            order = strategies[i % len(strategies):] + strategies[:i % len(strategies)]
            runs.append(compare_strategies(
                args.world, args.work_dir or tmp, users, strategies=order, mix=_mix(args.mix),
                target_ms=args.target_ms, step_s=args.step, max_steps=args.max_steps,
                start_rate=args.start_rate, processes=args.processes, env=_env(args),
                equal_rate=args.cpu_rate or None, cpu_s=args.cpu_seconds, retries=args.retries))
    print()
    print(format_compare(runs))
    out = {"machine": _machine(), "world": _world_meta(args.world), "runs": runs,
           "median_capacity_rps": {s: statistics.median(r["strategies"][s]["capacity_rps"] for r in runs)
                                   for s in strategies}}
    if "pull" in strategies:
        out["median_ratio_vs_pull"] = {
            s: statistics.median(r["ratio_vs_pull"][s] for r in runs if "ratio_vs_pull" in r)
            for s in strategies if all("ratio_vs_pull" in r for r in runs)}
    _write(args.out, out)
    if args.charts:
        from homefeed.bench.charts import latency_vs_load

        print(f"chart: {latency_vs_load(runs, Path(args.charts) / 'latency_vs_load.png')}")
    return 0


def _world_meta(world: str) -> dict[str, Any]:
    try:
        from homefeed.bench.world import read_world

        return read_world(world)
    except OSError:
        return {}


def cmd_fanout(args: argparse.Namespace) -> int:
    import subprocess

    from homefeed.bench.fanout_delay import (format_delay, measure_fanout_delay, median_by_bucket,
                                             pick_authors)
    from homefeed.bench.server import ServerProcess, copy_world, warm_timelines
    from homefeed.bench.world import read_tokens

    tokens = dict(read_tokens(Path(args.world) / "tokens.tsv"))
    authors = pick_authors(Path(args.world) / "homefeed.db", args.per_bucket, args.probes, seed=args.seed
                           if hasattr(args, "seed") else 3)
    users = _users(args.world, args.active)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        for i in range(args.repeat):
            for strategy in strategies:
                run_dir = copy_world(args.world, Path(args.work_dir or tmp) / f"fan-{strategy}")
                with ServerProcess(run_dir, env={"HOMEFEED_FEED_STRATEGY": strategy, **_env(args)}) as srv:
                    t = time.perf_counter()
                    asyncio.run(warm_timelines(srv.url, [u.token for u in users]))
                    print(f"[{strategy} #{i + 1}] warmed {len(users)} active timelines in "
                          f"{time.perf_counter() - t:.1f} s")
                    bg = None
                    if args.background_rate > 0:
                        users_file = Path(run_dir) / "active.txt"
                        users_file.write_text("".join(f"{u.handle} {u.token}\n" for u in users))
                        dur = 5 + args.timeout * 2 + len(authors) * 2
                        bg = subprocess.Popen(
                            [sys.executable, "-m", "homefeed.bench.loadgen", "--url", srv.url,
                             "--users", str(users_file), "--rate", str(args.background_rate),
                             "--duration", str(dur), "--timeout", "5",
                             "--out", str(Path(run_dir) / "background.json")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(1.0)
                    try:
                        r = asyncio.run(measure_fanout_delay(
                            srv.url, authors, tokens, posts_per_author=args.posts_per_author,
                            timeout_s=args.timeout, interval_s=args.interval))
                    finally:
                        if bg is not None:
                            bg.terminate()
                            try:
                                bg.wait(10)
                            except subprocess.TimeoutExpired:
                                bg.kill()
                                bg.wait(5)
                    results[strategy].append(r)
                    print(format_delay(r["by_bucket"]))
    print()
    summary = {}
    for strategy in strategies:
        summary[strategy] = median_by_bucket([r["by_bucket"] for r in results[strategy]])
        print(f"fan-out delay, {strategy} (ms from the post id's time; medians of {args.repeat} run(s)):")
        print(format_delay(summary[strategy]))
    _write(args.out, {"machine": _machine(), "world": _world_meta(args.world),
                      "background_rate": args.background_rate, "active": len(users),
                      "median_by_bucket": summary, "runs": results})
    if args.charts:
        from homefeed.bench.charts import fanout_delay_chart

        print(f"chart: {fanout_delay_chart(results, Path(args.charts) / 'fanout_delay.png')}")
    return 0


def cmd_micro(args: argparse.Namespace) -> int:
    from homefeed.bench.micro import format_micro, run_micro

    only = set(args.only.split(",")) if args.only else None
    runs = []
    for i in range(args.repeat):
        print(f"micro-benchmarks, run {i + 1} of {args.repeat}:")
        runs.append(run_micro(args.budget, args.followers, args.concurrency, only))
    med: dict[str, Any] = {}
    for name in runs[0]:
        keys = runs[0][name].keys()
        med[name] = {k: (statistics.median(r[name][k] for r in runs)
                         if isinstance(runs[0][name][k], float) else runs[0][name][k]) for k in keys}
    print()
    print(f"medians of {args.repeat} run(s); ceilings measured in the same run:")
    print(format_micro(med))
    ratios: dict[str, list[float]] = {}
    for r in runs:  # same-run ratios, then their median
        for label, a, ak, b, bk in (("sqlite_ingest_vs_single_commit", "post_ingest_sqlite", "posts_per_s", "sqlite_ceiling", "single_row_commits_per_s"),
                                    ("memory_fanout_vs_dict", "fanout_memory", "inserts_per_s", "fanout_memory", "ceiling_dict_of_lists_per_s"),
                                    ("redis_fanout_vs_redis_benchmark", "fanout_redis", "inserts_per_s", "fanout_redis", "ceiling_redis_benchmark_rpush_per_s"),
                                    ("redis_fanout_vs_lpush_p16", "fanout_redis", "inserts_per_s", "fanout_redis", "ceiling_redis_benchmark_lpush_p16_per_s"),
                                    ("pg_ingest_vs_pgbench", "postgres", "posts_per_s", "postgres", "ceiling_pgbench_N_tps")):
            x, y = r.get(a, {}).get(ak), r.get(b, {}).get(bk)
            if x and y:
                ratios.setdefault(label, []).append(x / y)
    _write(args.out, {"machine": _machine(), "median": med, "median_same_run_ratio":
                      {k: statistics.median(v) for k, v in ratios.items()}, "runs": runs})
    return 0


def cmd_quick(args: argparse.Namespace) -> int:
    """A 2,000-user world, the three strategies (short capacity searches), the fan-out delay
    under hybrid, all on fresh embedded servers; the table. Under a minute."""
    from homefeed.bench.fanout_delay import format_delay, measure_fanout_delay, pick_authors
    from homefeed.bench.runner import compare_strategies, format_compare, pick_users
    from homefeed.bench.server import ServerProcess, copy_world
    from homefeed.bench.world import WorldSpec, make_world, read_tokens
    from homefeed.config import Settings

    t0 = time.perf_counter()
    threshold = 300
    with tempfile.TemporaryDirectory(prefix="hf-quick-") as tmp:
        world_dir = Path(tmp) / "world"
        settings = Settings(data_dir=world_dir, celebrity_threshold=threshold)
        world = make_world(settings, WorldSpec(users=2_000, mean_following=20, posts=6_000, seed=1),
                           quiet=True)
        print(world.describe())
        toks = read_tokens(world_dir / "tokens.tsv")
        users = pick_users(toks, 300)
        env = {"HOMEFEED_CELEBRITY_THRESHOLD": str(threshold)}
        comp = compare_strategies(world_dir, tmp, users, mix={"home_timeline": 65, "post": 1},
                                  target_ms=50, step_s=1.5, max_steps=4, start_rate=600,
                                  env=env, equal_rate=300, cpu_s=1.5, idle_s=1.0, retries=0)
        authors = pick_authors(world_dir / "homefeed.db", 1, 5)
        run_dir = copy_world(world_dir, Path(tmp) / "fan")
        with ServerProcess(run_dir, env={"HOMEFEED_FEED_STRATEGY": "hybrid", **env}) as srv:
            fan = asyncio.run(measure_fanout_delay(srv.url, authors, dict(toks), timeout_s=5))
    print()
    print("strategies (capacity: highest offered rate, 65 home reads : 1 post, with home p99 < 50 ms;"
          " latencies at that rate):")
    print(format_compare([comp]))
    print()
    print("fan-out delay under hybrid, by the author's follower count (ms):")
    print(format_delay(fan["by_bucket"]))
    print(f"\nquick bench done in {time.perf_counter() - t0:.1f} s (a small world: indicative only; "
          "see benchmarks/RESULTS.md for the real runs)")
    _write(args.out, {"machine": _machine(), "world": world.__dict__, "compare": comp,
                      "fanout": {k: v for k, v in fan.items()}})
    return 0


def _require(module: str) -> None:
    """Import an optional package now, so that a missing one is reported before a run of
    minutes rather than at its end (the command line turns the error into one line naming
    the extra to install)."""
    import importlib

    importlib.import_module(module)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "charts", None):
        _require("matplotlib")
    if args.quick:
        return cmd_quick(args)
    handlers = {"world": cmd_world, "run": cmd_run, "capacity": cmd_capacity, "compare": cmd_compare,
                "fanout": cmd_fanout, "micro": cmd_micro}
    if args.command not in handlers:
        _parser().print_help()
        return 2
    return handlers[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
