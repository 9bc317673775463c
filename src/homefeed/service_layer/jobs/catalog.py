"""The jobs every process schedules, by name (the names are the CLI's and the metrics'):

| job                 | schedule            | what                                              |
|---------------------|---------------------|---------------------------------------------------|
| ``trends``          | every 10 minutes    | trending hashtags -> ``GET /api/v1/trends/tags``   |
| ``digest``          | daily at 06:00 UTC  | email to inactive accounts: what they missed       |
| ``audit``           | daily at 03:00 UTC  | ``homefeed audit --sample``; an alert line on a difference |
| ``idempotency-purge``| every 10 minutes   | delete expired ``Idempotency-Key`` answers          |
| ``load-report``     | daily at 04:00 UTC  | ``homefeed report load``, stored for the dashboard |
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from homefeed.service_layer.scheduler import Schedule, ScheduledJob

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.jobs")

#: Users the nightly audit samples (and ten times as many posts).
AUDIT_SAMPLE = 200
#: A nightly job whose process was down at its hour still runs within this window.
NIGHTLY_GRACE_S = 3 * 3600.0


async def _trends(hf: "Homefeed") -> str:
    from homefeed.service_layer.jobs import trends

    assert hf.job_store is not None
    return await trends.run(hf.job_store, hf.job_store)


async def _digest(hf: "Homefeed") -> str:
    from homefeed.service_layer.jobs import digest

    return await digest.run(hf, hf.mail_sender)


async def _purge(hf: "Homefeed") -> str:
    purged = await hf.store.purge_idempotency_keys(hf.idempotency.retention_seconds)
    return f"{purged} expired idempotency keys purged"


async def _audit(hf: "Homefeed") -> str:
    """``homefeed audit --sample``: its outcome is the run's (a difference fails the run,
    which is what an operator alerts on), and its report is stored for the metrics."""
    from homefeed.service_layer.audit import PARTS, Auditor

    # The in-process cache exists only in the serving process: a `jobs run audit` from
    # another process of the embedded profile audits the rest.
    parts = PARTS if (hf.settings.cache_url or hf.serving) else tuple(
        p for p in PARTS if p not in ("timelines", "authors"))
    report = await Auditor(hf, sample=AUDIT_SAMPLE, parts=parts).run()
    assert hf.job_store is not None
    summary: dict[str, Any] = {"exit_code": report.exit_code(), "differences": len(report.differences),
                               "checked": dict(report.checked), "parts": list(parts)}
    await hf.job_store.put_result("audit", summary, time.time())
    if report.exit_code() == 1:
        for line in report.lines()[:20]:
            log.error("ALERT audit: %s", line)
        raise RuntimeError(f"audit found {len(report.differences)} difference(s): see the log")
    if report.differences:
        log.warning("audit: %d difference(s) that reads hide (stale ids): a rebuild clears them",
                    len(report.differences))
    return f"clean ({', '.join(f'{v} {k}' for k, v in report.checked.items() if v)})" if not report.differences \
        else f"{len(report.differences)} hidden difference(s)"


async def _load_report(hf: "Homefeed") -> str:
    from homefeed.service_layer.load_report import NAME, compute

    report = await compute(hf)
    assert hf.job_store is not None
    await hf.job_store.put_result(NAME, report, time.time())
    return (f"followers p50={report['followers']['p50']} p99={report['followers']['p99']};"
            f" recommended celebrity threshold {report['recommended_celebrity_threshold']}")


def default_jobs(hf: "Homefeed") -> list[ScheduledJob]:
    purge_every = hf.idempotency.purge_interval
    return [
        ScheduledJob("trends", Schedule(600), _trends, "trending hashtags for /api/v1/trends/tags"),
        ScheduledJob("digest", Schedule(86400, 6 * 3600), _digest,
                     "email inactive accounts the best posts they missed", grace_s=NIGHTLY_GRACE_S),
        ScheduledJob("audit", Schedule(86400, 3 * 3600), _audit,
                     f"homefeed audit --sample {AUDIT_SAMPLE}", lease_s=900, grace_s=NIGHTLY_GRACE_S),
        ScheduledJob("idempotency-purge", Schedule(purge_every), _purge, "delete expired Idempotency-Key answers"),
        ScheduledJob("load-report", Schedule(86400, 4 * 3600), _load_report,
                     "homefeed report load, kept for the dashboard", lease_s=900, grace_s=NIGHTLY_GRACE_S),
    ]
