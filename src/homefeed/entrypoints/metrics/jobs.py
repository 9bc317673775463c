"""The scheduled jobs in ``/metrics``, ``/metrics.json`` and the dashboard: read from the
durable ``job_runs`` records (so every process reports every run, whichever process made
it), plus the last audit's figures (``job_results``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed


async def job_figures(hf: "Homefeed") -> dict[str, Any] | None:
    """``{"jobs": {name: {schedule, last_run, duration_s, outcome, next_run, runs: {outcome:
    n}}}, "audit": {...} | None}``; None without a job store."""
    store = hf.job_store
    if store is None:
        return None
    import time

    from homefeed.service_layer.jobs.catalog import default_jobs
    from homefeed.service_layer.scheduler import job_rows

    latest = await store.latest_runs()
    counts = await store.run_counts()
    jobs: dict[str, Any] = {}
    for row in job_rows(default_jobs(hf), latest, time.time()):
        run = latest.get(row["name"])
        row["last_run_ts"] = run.started_at if run else None
        row["runs"] = {o: n for (j, o), n in counts.items() if j == row["name"]}
        jobs[row.pop("name")] = row
    audit = await store.result("audit")
    return {"jobs": jobs, "audit": None if audit is None else {**audit[0], "at": audit[1]}}


def render(o: Any, figures: dict[str, Any] | None) -> None:
    """Add the job families to a Prometheus output (``prometheus._Out``)."""
    if not figures:
        return
    jobs = figures["jobs"]
    o.head("homefeed_job_runs_total", "counter",
           "Runs of each scheduled job by outcome, across every process (from the job_runs records).")
    for name, j in sorted(jobs.items()):
        for outcome, n in sorted(j["runs"].items()):
            o.sample("homefeed_job_runs_total", n, (("job", name), ("outcome", outcome)))
    o.head("homefeed_job_last_run_timestamp_seconds", "gauge", "Start of each job's last run (Unix seconds).")
    for name, j in sorted(jobs.items()):
        if j["last_run_ts"] is not None:
            o.sample("homefeed_job_last_run_timestamp_seconds", round(j["last_run_ts"], 3), (("job", name),))
    o.head("homefeed_job_last_duration_seconds", "gauge", "Duration of each job's last finished run.")
    for name, j in sorted(jobs.items()):
        if j["duration_s"] is not None:
            o.sample("homefeed_job_last_duration_seconds", j["duration_s"], (("job", name),))
    o.head("homefeed_job_last_success", "gauge", "1 if each job's last finished run succeeded, 0 if it failed.")
    for name, j in sorted(jobs.items()):
        if j["outcome"] in ("ok", "failed"):
            o.sample("homefeed_job_last_success", 1 if j["outcome"] == "ok" else 0, (("job", name),))
    audit = figures.get("audit")
    if audit:
        o.head("homefeed_audit_differences", "gauge",
               "Differences the last scheduled audit found between derived stores and the system of record.")
        o.sample("homefeed_audit_differences", audit.get("differences", 0))
        o.head("homefeed_audit_last_timestamp_seconds", "gauge", "When the last scheduled audit finished.")
        o.sample("homefeed_audit_last_timestamp_seconds", round(audit["at"], 3))
