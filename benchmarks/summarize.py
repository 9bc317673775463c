"""Print the figures of benchmarks/RESULTS.md from the JSON files in benchmarks/results
(medians of repeats; ratios taken within each run, then their median), and redraw the
fan-out chart with every world measured.

    .venv/bin/python benchmarks/summarize.py
"""

from __future__ import annotations

import glob
import json
import statistics
from pathlib import Path

R = Path(__file__).parent / "results"


def load(name: str):
    p = R / name
    return json.loads(p.read_text()) if p.exists() else None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    from homefeed.bench.fanout_delay import format_delay
    from homefeed.bench.micro import format_micro
    from homefeed.bench.runner import best_step, format_compare

    c = load("compare_100k.json")
    if c:
        print("## compare (100k world)")
        print(format_compare(c["runs"]))
        for r in c["runs"]:
            caps = {s: v["capacity_rps"] for s, v in r["strategies"].items()}
            cpu = {s: round(v.get("equal_rate", {}).get("server_cpu_us_per_request", 0)) for s, v in r["strategies"].items()}
            load_avg = {s: round(statistics.mean(st["loadavg"] for st in v["steps"]), 1) for s, v in r["strategies"].items()}
            print("  run:", caps, "cpu us/req:", cpu, "mean load avg:", load_avg)
        print("  median capacity ratio vs pull:", c.get("median_ratio_vs_pull"))
        print("  median CPU ratio pull/x:", {s: med([r.get("cpu_ratio_pull_over", {}).get(s) for r in c["runs"]])
                                             for s in ("pull", "push", "hybrid")})
        print("  equal-rate p99 (home) per strategy:", {s: med([r["strategies"][s].get("equal_rate", {}).get("summary", {}).get("home_timeline", {}).get("p99_ms") for r in c["runs"]]) for s in ("pull", "push", "hybrid")})
    m = load("micro.json")
    if m:
        print("\n## micro")
        print(format_micro(m["median"]))
        print("  same-run ratios (median):", {k: round(v, 3) for k, v in m["median_same_run_ratio"].items()})
    for name in ("fanout_100k.json", "fanout_1m.json"):
        f = load(name)
        if f:
            print(f"\n## {name} (background {f.get('background_rate')} req/s, {f.get('active')} active)")
            for s, table in f["median_by_bucket"].items():
                print(f"  {s}:")
                print("  " + format_delay(table).replace("\n", "\n  "))
    for pattern, label in (("capacity_home10ms_*.json", "hybrid home-only, p99 < 10 ms"),
                           ("capacity_posts_*.json", "posts only over HTTP, p99 < 50 ms")):
        caps = []
        for p in sorted(glob.glob(str(R / pattern))):
            d = json.loads(Path(p).read_text())
            cap = d["strategies"]["hybrid"]
            b = best_step(cap)
            caps.append((cap["capacity_rps"], b["summary"] if b else {}))
        if caps:
            print(f"\n## {label}: capacities {[round(c) for c, _ in caps]}, median {med([c for c, _ in caps]):.0f}")
    # the fan-out chart over both worlds
    runs = {}
    for name in ("fanout_100k.json", "fanout_1m.json"):
        f = load(name)
        if f:
            for s, rs in f["runs"].items():
                runs.setdefault(s, []).extend(rs)
    if runs:
        from homefeed.bench.charts import fanout_delay_chart

        print("\nchart:", fanout_delay_chart(runs, Path(__file__).parent / "charts" / "fanout_delay.png",
                                             title="Fan-out delay against the author's follower count\n"
                                             "(100k world under load; 1M-user world with a 1M-follower account)"))


if __name__ == "__main__":
    main()
