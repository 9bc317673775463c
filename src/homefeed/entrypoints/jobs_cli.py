"""``homefeed jobs list|run`` and ``homefeed report load``: the batch side's operator
commands. Like ``audit``, they work on the deployment's system of record while it serves:
the SQLite file of ``--data-dir`` (never created) or ``HOMEFEED_DATABASE_URL``.

- ``jobs list [--json]``: every scheduled job with its schedule, last run (from the
  durable ``job_runs`` records, whichever process ran it), duration, outcome, next run.
- ``jobs run NAME``: run the job now, in this process; exit 0 when it succeeded, 1 when it
  failed. Its result is in the system of record when the command returns (``trends``:
  ``GET /api/v1/trends/tags`` serves it at once).
- ``report load [--json] [--png DIR]``: the load report (``service_layer.load_report``),
  as text, JSON, and PNG charts (matplotlib: the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from homefeed.config import Settings
from homefeed.entrypoints.explain import CliError

COMMANDS = ("jobs", "report")


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="embedded profile: the serving process's data dir, holding its SQLite file"
                        " (HOMEFEED_DATA_DIR, default ./data); never created")


def register(subparsers: Any) -> list[argparse.ArgumentParser]:
    j = subparsers.add_parser(
        "jobs", help="list the scheduled jobs and their last runs, or run one now",
        description="The scheduled jobs (trends, digest, audit, idempotency-purge, load-report): every"
                    " serve and worker process schedules them, and each slot runs once across all of"
                    " them (a claim in the system of record).")
    jsub = j.add_subparsers(dest="jobs_action", required=True, metavar="ACTION")
    jl = jsub.add_parser("list", help="each job: schedule, last run, duration, outcome, next run")
    _data_dir(jl)
    jl.add_argument("--json", action="store_true",
                    help="one JSON array of {name, schedule, last_run, duration_s, outcome, next_run}")
    jr = jsub.add_parser("run", help="run a job now, in this process (exit 0: it succeeded)")
    _data_dir(jr)
    jr.add_argument("name", metavar="NAME")

    r = subparsers.add_parser(
        "report", help="reports computed from the running system's records (`report load`)",
        description="load: DDIA's load parameters of this system (followers per account, posts/s, home"
                    " reads/s, fan-out amplification) and the timeline writes, memory and pull work"
                    " for a range of celebrity thresholds, with the one it recommends and why.")
    rsub = r.add_subparsers(dest="report_kind", required=True, metavar="REPORT")
    rl = rsub.add_parser("load", help="the load report")
    _data_dir(rl)
    rl.add_argument("--json", action="store_true", help="print the report as JSON")
    rl.add_argument("--png", type=Path, default=None, metavar="DIR",
                    help="also write PNG charts of the distributions into DIR (needs matplotlib: the"
                         " `bench` extra)")
    rl.add_argument("--celebrity-threshold", type=int, default=None, metavar="N",
                    help="the threshold the service runs with (HOMEFEED_CELEBRITY_THRESHOLD)")
    return [j, jl, jr, r, rl]


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "report" and args.png is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError("--png needs matplotlib: pip install 'homefeed[bench]'") from None
    return asyncio.run(run_async(args, settings))


async def run_async(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    from homefeed.bootstrap import build
    from homefeed.domain.errors import Unavailable

    out = out or sys.stdout
    hf = build(settings, node=0)
    try:
        await hf.start(consumers=())
    except (Unavailable, OSError) as exc:
        raise CliError(str(exc)) from exc
    try:
        if args.command == "jobs":
            if args.jobs_action == "list":
                return await _list(hf, args, out)
            return await _run(hf, args.name, out)
        return await _report(hf, args, out)
    finally:
        await hf.close()


async def _list(hf: Any, args: argparse.Namespace, out: TextIO) -> int:
    from homefeed.service_layer.jobs.catalog import default_jobs
    from homefeed.service_layer.scheduler import job_rows

    jobs = default_jobs(hf)
    rows = job_rows(jobs, await hf.job_store.latest_runs(), time.time())
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    print(f"{'NAME':<18} {'SCHEDULE':<20} {'LAST RUN':<21} {'DURATION':>9} {'OUTCOME':<8} NEXT RUN", file=out)
    for r in rows:
        dur = "-" if r["duration_s"] is None else f"{r['duration_s']:.3f}s"
        print(f"{r['name']:<18} {r['schedule']:<20} {r['last_run'] or 'never':<21} {dur:>9}"
              f" {r['outcome'] or '-':<8} {r['next_run']}", file=out)
    return 0


async def _run(hf: Any, name: str, out: TextIO) -> int:
    from homefeed.service_layer.jobs.catalog import default_jobs
    from homefeed.service_layer.scheduler import Scheduler

    jobs = default_jobs(hf)
    if name not in {j.name for j in jobs}:
        raise CliError(f"no job {name!r}; jobs: {', '.join(j.name for j in jobs)}")
    run = await Scheduler(hf, jobs, hf.job_store).run_now(name)
    print(f"{name}: {run.outcome} in {run.duration_s or 0:.3f}s: {run.detail}", file=out)
    return 0 if run.outcome == "ok" else 1


async def _report(hf: Any, args: argparse.Namespace, out: TextIO) -> int:
    from homefeed.service_layer import load_report

    threshold = getattr(args, "celebrity_threshold", None)
    if threshold is not None:
        hf.settings = hf.settings.replace(celebrity_threshold=threshold)
    report = await load_report.compute(hf)
    if args.png is not None:
        from homefeed.entrypoints.report_charts import write_charts

        report["charts"] = [str(p) for p in write_charts(report, await hf.job_store.user_counts(), args.png)]
    if args.json:
        print(json.dumps(report, indent=2), file=out)
        return 0
    for line in text_lines(report):
        print(line, file=out)
    return 0


def text_lines(r: dict[str, Any]) -> list[str]:
    f, g = r["followers"], r["following"]
    lines = [
        f"load report at {r['generated_at']}: {r['accounts']} accounts, {r['follows']} follows",
        f"followers per account: mean {f['mean']}  p50 {f['p50']}  p90 {f['p90']}  p99 {f['p99']}"
        f"  p99.9 {f['p99.9']}  max {f['max']}",
        "  top: " + ", ".join(f"@{t['handle']} {t['followers']}" for t in f["top"]),
        f"following per account: mean {g['mean']}  p50 {g['p50']}  p90 {g['p90']}  p99 {g['p99']}  max {g['max']}",
        f"posts/s: {r['posts']['per_s_hour']} (last hour), {r['posts']['per_s_day']} (last day)",
        f"home reads/s: {r['home_reads']['per_s_hour']} (this hour), {r['home_reads']['per_s_day']} (last day)",
        f"fan-out amplification: {r['fanout']['amplification']} timeline writes per post, weighted by"
        f" posting frequency ({r['fanout']['window']}); unweighted mean followers {r['fanout']['unweighted_mean_followers']}",
        "",
        f"{'threshold':>10} {'celebs':>7} {'writes/post':>12} {'writes/s':>10} {'memory':>10} {'pulls/read':>11}"
        f" {'pulls/s':>9} {'cost/post':>10}",
    ]
    for t in r["celebrity_thresholds"]:
        mark = " <- recommended" if t["threshold"] == r["recommended_celebrity_threshold"] else ""
        mark += " (current)" if t["threshold"] == r["current_celebrity_threshold"] else ""
        lines.append(
            f"{t['threshold']:>10} {t['celebrities']:>7} {t['timeline_writes_per_post']:>12}"
            f" {t['timeline_writes_per_s']:>10} {_bytes(t['memory_bytes']):>10} {t['extra_pulls_per_read']:>11}"
            f" {t['extra_pulls_per_s']:>9} {t['cost_per_post']:>10}{mark}")
    lines += ["", f"recommended celebrity threshold: {r['recommended_celebrity_threshold']}", r["why"]]
    return lines


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f}{unit}"
        n = n / 1000  # type: ignore[assignment]
    return f"{n:.0f}TB"
