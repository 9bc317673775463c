"""The scheduler: periodic batch jobs, each slot run exactly once across every process.

Every ``serve`` and ``worker`` process runs a ``Scheduler``. Time is cut into slots per job
(``Schedule``: slot ``n`` starts at ``offset + n * period``); when a slot comes, each
process tries to *claim* ``(job, slot)`` in the system of record (``JobRecords.claim``: an
INSERT under a unique key, on SQLite and PostgreSQL alike), and the one that wins runs the
job, renewing its lease while it runs, then records the outcome. A process that dies
mid-run leaves a ``running`` row whose lease expires; the next process to look takes it
over (same slot, ``attempt`` + 1). A process that was down for several slots runs only the
current one: batch jobs here summarise "now", so catching up on old slots is wasted work.

``homefeed jobs run NAME`` runs a job at once in the calling process (``run_now``), with
its own row (slot ``-milliseconds``) so that the history shows it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from homefeed.service_layer.jobs.records import FAILED, OK, JobRecords, JobRun

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.jobs")

#: How often a process looks for due slots at most (seconds).
MAX_POLL_SECONDS = 15.0

#: The slot the job running in this task is for (None outside a run). A job whose side
#: effect must happen once per slot keys it by this, so that a run taken over after its
#: lease (attempt 2) can tell what its predecessor left; the multi-process tests record it.
current_slot: ContextVar[int | None] = ContextVar("homefeed_job_slot", default=None)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every ``period_s`` seconds, starting ``offset_s`` after the epoch (UTC): ``Schedule(600)``
    is every 10 minutes on the clock; ``Schedule(86400, 3 * 3600)`` daily at 03:00 UTC."""

    period_s: float
    offset_s: float = 0.0

    def slot(self, now: float) -> int:
        return int((now - self.offset_s) // self.period_s)

    def slot_start(self, slot: int) -> float:
        return self.offset_s + slot * self.period_s

    def next_run(self, now: float) -> float:
        return self.slot_start(self.slot(now) + 1)

    def describe(self) -> str:
        p = self.period_s
        if p == 86400:
            h, rem = divmod(int(self.offset_s) % 86400, 3600)
            return f"daily at {h:02d}:{rem // 60:02d} UTC"
        for unit, size in (("h", 3600), ("m", 60)):
            if p >= size and p % size == 0:
                return f"every {int(p // size)}{unit}"
        return f"every {p:g}s"


JobFn = Callable[["Homefeed"], Awaitable[str]]


@dataclass(frozen=True)
class ScheduledJob:
    """A job: ``run(hf)`` does the work and returns a one-line summary (the run's
    ``detail``); raising marks the run failed."""

    name: str
    schedule: Schedule
    run: JobFn
    description: str = ""
    #: How long a claim holds without renewal before another process may take it over.
    lease_s: float = 300.0
    #: A slot is run only within this many seconds of its start (None: the whole period):
    #: a process started at 14:00 does not run the nightly audit of 03:00.
    grace_s: float | None = None

    def due_slot(self, now: float) -> int | None:
        """The slot to run at ``now``, or None when the current one's window has passed."""
        slot = self.schedule.slot(now)
        if self.grace_s is not None and now - self.schedule.slot_start(slot) > self.grace_s:
            return None
        return slot


def process_owner() -> str:
    """Who holds a claim: host, pid and a nonce (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class JobStats:
    """What this process did, for ``/metrics`` (the durable history is in ``job_runs``)."""

    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    last_duration: dict[str, float] = field(default_factory=dict)


class Scheduler:
    def __init__(
        self,
        hf: "Homefeed",
        jobs: Sequence[ScheduledJob],
        records: JobRecords,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hf = hf
        self.jobs = {j.name: j for j in jobs}
        self.records = records
        self.owner = owner or process_owner()
        self.clock = clock
        #: job -> the last slot known to be finished (by anyone): nothing to claim there.
        self._finished: dict[str, int] = {}
        self._running: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stats = JobStats()

    # -- one look at the clock ------------------------------------------------------------
    async def tick(self, now: float | None = None) -> list[JobRun]:
        """Claim and run every job whose current slot is not done yet (and not running
        here); returns the runs this call made, once finished."""
        now = self.clock() if now is None else now
        due = [(job, job.due_slot(now)) for job in self.jobs.values() if job.name not in self._running]
        got = await asyncio.gather(*(self._attempt(job, slot, now) for job, slot in due
                                     if slot is not None and self._finished.get(job.name) != slot))
        return [r for r in got if r is not None]

    async def _attempt(self, job: ScheduledJob, slot: int, now: float) -> JobRun | None:
        self._running.add(job.name)
        try:
            if not await self.records.claim(job.name, slot, self.owner, now, job.lease_s):
                current = await self.records.run_of(job.name, slot)
                if current is not None and current.outcome != "running":
                    self._finished[job.name] = slot
                return None
            run = await self._execute(job, slot)
            self._finished[job.name] = slot
            return run
        finally:
            self._running.discard(job.name)

    async def run_now(self, name: str) -> JobRun:
        """``homefeed jobs run NAME``: run it here, now, recorded as a manual run."""
        job = self.jobs.get(name)
        if job is None:
            raise KeyError(name)
        now = self.clock()
        slot = -int(now * 1000)
        while not await self.records.claim(job.name, slot, self.owner, now, job.lease_s):
            slot -= 1  # two manual runs in one millisecond
        return await self._execute(job, slot)

    async def _execute(self, job: ScheduledJob, slot: int) -> JobRun:
        started = time.perf_counter()
        renewer = asyncio.create_task(self._renew(job, slot), name=f"job-lease:{job.name}")
        outcome, detail = OK, ""
        token = current_slot.set(slot)
        try:
            detail = await job.run(self.hf) or ""
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed run is recorded, and retried next slot
            outcome, detail = FAILED, f"{type(exc).__name__}: {exc}"
            log.exception("job %s (slot %d) failed", job.name, slot)
        finally:
            current_slot.reset(token)
            renewer.cancel()
        duration = time.perf_counter() - started
        finished_at = self.clock()
        if not await self.records.finish(job.name, slot, self.owner, outcome, finished_at, duration, detail):
            log.warning("job %s (slot %d): the claim was taken over before this run finished", job.name, slot)
        key = (job.name, outcome)
        self.stats.runs[key] = self.stats.runs.get(key, 0) + 1
        self.stats.last_duration[job.name] = duration
        log.info("job %s %s in %.3fs: %s", job.name, outcome, duration, detail)
        got = await self.records.run_of(job.name, slot)
        assert got is not None
        return got

    async def _renew(self, job: ScheduledJob, slot: int) -> None:
        while True:
            await asyncio.sleep(job.lease_s / 3)
            try:
                await self.records.renew(job.name, slot, self.owner, self.clock() + job.lease_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be down a moment: try again next time
                log.warning("renewing the lease of job %s failed: %s", job.name, exc)

    # -- the loop -------------------------------------------------------------------------
    def poll_seconds(self) -> float:
        shortest = min((j.schedule.period_s for j in self.jobs.values()), default=MAX_POLL_SECONDS)
        return max(0.05, min(MAX_POLL_SECONDS, shortest / 4))

    def start(self) -> None:
        if self._task is None and self.jobs:
            self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def _loop(self) -> None:
        poll = self.poll_seconds()
        while True:
            try:
                now = self.clock()
                for job in self.jobs.values():
                    slot = job.due_slot(now)
                    if slot is None or job.name in self._running or self._finished.get(job.name) == slot:
                        continue
                    # Each job in its own task: a long audit never delays the trends.
                    self._running.add(job.name)
                    task = asyncio.create_task(self._attempt_logged(job, slot, now), name=f"job:{job.name}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")
            await asyncio.sleep(poll)

    async def _attempt_logged(self, job: ScheduledJob, slot: int, now: float) -> None:
        try:
            await self._attempt(job, slot, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is down: the next poll tries again
            self._running.discard(job.name)
            log.warning("scheduling job %s failed: %s", job.name, exc)

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop looking at the clock; give the runs in progress ``grace_s`` seconds to
        finish (their outcome is then recorded, instead of a ``running`` row left for
        another process to take over after its lease), then cancel them."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        if grace_s > 0 and self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()


def job_rows(jobs: Sequence[ScheduledJob], latest: dict[str, JobRun], now: float) -> list[dict[str, Any]]:
    """What ``homefeed jobs list --json`` prints: one object per job."""
    from datetime import datetime, timezone

    def iso(t: float | None) -> str | None:
        if t is None:
            return None
        return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    out = []
    for job in jobs:
        run = latest.get(job.name)
        out.append({
            "name": job.name,
            "schedule": job.schedule.describe(),
            "last_run": iso(run.started_at) if run else None,
            "duration_s": None if run is None or run.duration_s is None else round(run.duration_s, 3),
            "outcome": run.outcome if run else None,
            "next_run": iso(job.schedule.next_run(now)),
            "detail": run.detail if run else None,
        })
    return out
