"""Workload runs, the capacity search, and the strategy comparison.

* ``run_workload`` -- one open-loop run at a fixed rate (``loadgen`` in its own process(es)).
* ``capacity_search`` -- the highest offered rate at which the p99 of the measured request
  type stays under a target, with no more than 1% errors and the offered rate achieved: rates
  double until a step fails, then the gap is bisected. Every step is kept: together they are
  the "latency against offered load" curve.
* ``compare_strategies`` -- the same world (a fresh copy of the same SQLite file) and the same
  workload under pull, push and hybrid, one server per strategy, one after the other.

A step's verdict uses the coordinated-omission-corrected latency (from when each request was
due): an overloaded server fails the step by its queue, not only by its service time.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from homefeed.bench.loadgen import LoadResult, LoadSpec, User, run_load_processes
from homefeed.bench.server import ServerProcess, copy_world, wait_drained, warm_timelines

__all__ = [
    "StepResult",
    "capacity_search",
    "compare_strategies",
    "format_compare",
    "run_workload",
    "step_ok",
]

STRATEGIES = ("pull", "push", "hybrid")

#: Mix of the capacity runs: home reads with posts in Twitter's proportion (DDIA ch. 1:
#: 300k reads/s against 4.6k posts/s, ~65:1), so push and hybrid pay for their fan-out.
READ_MIX: Mapping[str, float] = {"home_timeline": 65.0, "post": 1.0}


def run_workload(
    url: str,
    users: Sequence[User],
    rate: float,
    duration_s: float,
    mix: Mapping[str, float],
    *,
    processes: int = 1,
    timeout_s: float = 5.0,
    max_connections: int = 256,
    seed: int = 0,
) -> LoadResult:
    """One open-loop run; bounded by the schedule, the request timeout and the drain."""
    spec = LoadSpec(
        url=url,
        rate=rate,
        duration_s=duration_s,
        mix=dict(mix),
        arrival="poisson",
        max_requests=int(rate * duration_s * 1.5) + 10,
        max_connections=max_connections,
        request_timeout_s=timeout_s,
        drain_timeout_s=timeout_s + 1.0,
        seed=seed,
    )
    return run_load_processes(spec, users, processes=processes)


@dataclass
class StepResult:
    rate: float
    ok: bool
    summary: dict[str, dict[str, Any]]
    reason: str = ""
    #: 1-minute load average when the step ended: other work on the machine shows here.
    loadavg: float = 0.0

    def row(self, kind: str) -> dict[str, Any]:
        return self.summary.get(kind) or self.summary.get("all", {})

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "ok": self.ok, "reason": self.reason, "loadavg": self.loadavg,
                "summary": self.summary}


def step_ok(summary: Mapping[str, Mapping[str, Any]], scheduled: int,
            kind: str, target_ms: float) -> tuple[bool, str]:
    """Did a step hold: p99 of ``kind`` under target, errors under 1%, and at least 99% of
    the ``scheduled`` requests finished (answered, failed or timed out) within the run?"""
    row = summary.get(kind) or summary.get("all", {})
    tot = summary.get("all", {})
    count = tot.get("count", 0)
    if count == 0:
        return False, "no requests finished"
    if tot.get("errors", 0) > 0.01 * count:
        return False, f"{tot['errors']} errors of {count}"
    if row.get("p99_ms", 0.0) > target_ms:
        return False, f"p99 {row['p99_ms']:.1f} ms > {target_ms:g} ms"
    if count < 0.99 * scheduled:
        return False, f"only {count} of {scheduled} scheduled requests finished"
    return True, ""


def capacity_search(
    url: str,
    users: Sequence[User],
    *,
    mix: Mapping[str, float] = READ_MIX,
    kind: str = "home_timeline",
    target_ms: float = 50.0,
    start_rate: float = 100.0,
    max_rate: float = 50_000.0,
    step_s: float = 5.0,
    max_steps: int = 8,
    precision: float = 1.15,
    processes: int = 1,
    timeout_s: float = 3.0,
    settle: Callable[[], None] | None = None,
    retries: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Search the highest rate that holds (see ``step_ok``). ``retries``: a failed step is
    run again up to this many times and fails only if every attempt fails (on a shared
    machine, a neighbour's burst can fail one short step). Doubling from ``start_rate``
    until a step fails, then bisection (geometric) until ``hi / lo < precision`` or
    ``max_steps`` steps were run. Returns the capacity (the best rate that held; 0 if none)
    and every step, in the order run."""
    steps: list[StepResult] = []
    lo, hi = 0.0, None
    rate = start_rate
    for n in range(max_steps):
        for attempt in range(1 + retries):
            result = run_workload(url, users, rate, step_s, mix, processes=processes,
                                  timeout_s=timeout_s, seed=n * 10 + attempt)
            summary = result.corrected.summary()
            ok, reason = step_ok(summary, result.scheduled, kind, target_ms)
            if ok or attempt == retries:
                break
            log(f"    {rate:8.0f} req/s offered: failed ({reason}); retrying once (noise check)")
            if settle is not None:
                settle()
        steps.append(StepResult(rate, ok, summary, reason, os.getloadavg()[0]))
        row = summary.get(kind, {})
        log(f"    {rate:8.0f} req/s offered: {kind} p50 {row.get('p50_ms', 0):7.2f} ms, "
            f"p99 {row.get('p99_ms', 0):8.2f} ms, {summary['all']['throughput_rps']:7.0f} req/s "
            f"answered, load avg {steps[-1].loadavg:.1f}  {'ok' if ok else 'FAIL: ' + reason}")
        if settle is not None:
            settle()
        if ok:
            lo = rate
        else:
            hi = rate
        if hi is None:
            if rate >= max_rate:
                break
            rate = min(rate * 2, max_rate)
        else:
            if lo == 0.0:
                rate = hi / 4  # even the start failed: go down fast
                if rate < 1:
                    break
                continue
            if hi / lo < precision:
                break
            rate = (lo * hi) ** 0.5
    return {
        "capacity_rps": lo,
        "kind": kind,
        "target_p99_ms": target_ms,
        "mix": dict(mix),
        "step_s": step_s,
        "steps": [s.to_dict() for s in steps],
    }


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads), Linux."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pick_users(tokens: Sequence[tuple[str, str]], n: int, seed: int = 7) -> list[User]:
    """The acting (active) users of a run: a seeded sample of ``n`` accounts."""
    rng = random.Random(seed)
    idx = rng.sample(range(len(tokens)), min(n, len(tokens)))
    return [User(tokens[i][0], tokens[i][1]) for i in idx]


def compare_strategies(
    world_dir: str | Path,
    work_dir: str | Path,
    users: Sequence[User],
    *,
    strategies: Sequence[str] = STRATEGIES,
    mix: Mapping[str, float] = READ_MIX,
    target_ms: float = 50.0,
    step_s: float = 5.0,
    max_steps: int = 8,
    start_rate: float | Mapping[str, float] = 100.0,
    equal_rate: float | None = None,
    cpu_s: float = 10.0,
    idle_s: float = 3.0,
    retries: int = 1,
    processes: int = 1,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """For each strategy: a fresh copy of the world, a server, the acting users' timelines
    warmed (one read each), the capacity search, and (if ``equal_rate``) one run at that
    common rate so latencies can be compared at the same offered load."""
    out: dict[str, Any] = {"strategies": {}, "acting_users": len(users), "mix": dict(mix),
                           "target_p99_ms": target_ms}
    for strategy in strategies:
        log(f"  strategy {strategy}:")
        run_dir = copy_world(world_dir, Path(work_dir) / f"run-{strategy}")
        e = {"HOMEFEED_FEED_STRATEGY": strategy, **(env or {})}
        with ServerProcess(run_dir, env=e) as server:
            t = time.perf_counter()
            asyncio.run(warm_timelines(server.url, [u.token for u in users]))
            warm_s = time.perf_counter() - t
            def settle() -> None:
                asyncio.run(wait_drained(server.url, timeout_s=10))

            log(f"    warmed {len(users)} timelines in {warm_s:.1f} s")
            s0 = start_rate[strategy] if isinstance(start_rate, Mapping) else start_rate
            cap = capacity_search(server.url, users, mix=mix, target_ms=target_ms,
                                  start_rate=s0, step_s=step_s, max_steps=max_steps,
                                  processes=processes, settle=settle, retries=retries, log=log)
            cap["warm_s"] = warm_s
            if equal_rate:
                # Server CPU per request at a light, fixed rate: robust to neighbours (they
                # take wall time, not this process's CPU time) and 1 / it bounds one core.
                # Idle first: background loops (consumers polling the outbox...) cost CPU
                # whatever the load; subtracted, so the figure is the cost of a request.
                settle()
                pid = server.pid
                assert pid is not None, "the server process is running"
                i0, t0 = process_cpu_s(pid), time.perf_counter()
                time.sleep(idle_s)
                idle_per_s = (process_cpu_s(pid) - i0) / (time.perf_counter() - t0)
                c0, t0 = process_cpu_s(pid), time.perf_counter()
                res = run_workload(server.url, users, equal_rate, cpu_s, mix, processes=processes)
                settle()
                used = process_cpu_s(pid) - c0
                net = max(0.0, used - idle_per_s * (time.perf_counter() - t0))
                n = res.corrected.total().count
                cap["equal_rate"] = {"rate": equal_rate, "duration_s": cpu_s,
                                     "summary": res.corrected.summary(),
                                     "server_cpu_s": used, "idle_cpu_per_s": idle_per_s,
                                     "requests": n,
                                     "server_cpu_us_per_request_gross": 1e6 * used / max(n, 1),
                                     "server_cpu_us_per_request": 1e6 * net / max(n, 1)}
                log(f"    at {equal_rate:.0f} req/s for {cpu_s:g} s: server CPU "
                    f"{cap['equal_rate']['server_cpu_us_per_request']:.0f} µs per request")
            out["strategies"][strategy] = cap
    caps = {s: v["capacity_rps"] for s, v in out["strategies"].items()}
    if caps.get("pull"):
        out["ratio_vs_pull"] = {s: c / caps["pull"] for s, c in caps.items()}
    cpu = {s: v["equal_rate"]["server_cpu_us_per_request"] for s, v in out["strategies"].items()
           if "equal_rate" in v}
    if cpu.get("pull"):
        out["cpu_ratio_pull_over"] = {s: cpu["pull"] / c for s, c in cpu.items() if c}
    return out


def best_step(cap: Mapping[str, Any]) -> dict[str, Any] | None:
    """The step run at the capacity rate (the highest that held)."""
    held = [s for s in cap.get("steps", []) if s["ok"]]
    return max(held, key=lambda s: s["rate"]) if held else None


def format_compare(results: Sequence[Mapping[str, Any]], kind: str = "home_timeline") -> str:
    """One table over repeated comparisons: medians of capacity and of the same-run ratios."""
    strategies = sorted(results[0]["strategies"], key=lambda s: (STRATEGIES + (s,)).index(s))
    head = ["strategy", "capacity req/s", "vs pull", f"{kind} p50 ms", "p90 ms", "p99 ms",
            "p99.9 ms", "max ms", "errors", "server CPU µs/req", "vs pull", "runs"]
    rows = [head]
    for s in strategies:
        caps = [r["strategies"][s]["capacity_rps"] for r in results]
        ratios = [r.get("ratio_vs_pull", {}).get(s) for r in results]
        ratios = [x for x in ratios if x is not None]
        bests = [b for b in (best_step(r["strategies"][s]) for r in results) if b]
        def med(key: str) -> str:
            vals = [b["summary"].get(kind, {}).get(key, 0.0) for b in bests]
            return f"{statistics.median(vals):.2f}" if vals else "-"
        errs = sum(b["summary"]["all"].get("errors", 0) for b in bests)
        cpus = [r["strategies"][s]["equal_rate"]["server_cpu_us_per_request"] for r in results
                if "equal_rate" in r["strategies"][s]]
        cpu_ratio = [r["cpu_ratio_pull_over"][s] for r in results
                     if s in r.get("cpu_ratio_pull_over", {})]
        rows.append([
            s, f"{statistics.median(caps):,.0f}",
            f"{statistics.median(ratios):.1f}x" if ratios else "-",
            med("p50_ms"), med("p90_ms"), med("p99_ms"), med("p99.9_ms"), med("max_ms"),
            str(errs),
            f"{statistics.median(cpus):,.0f}" if cpus else "-",
            f"{statistics.median(cpu_ratio):.2f}x" if cpu_ratio else "-",
            str(len(results)),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows)
