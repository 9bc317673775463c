"""One scheduling process, for the multi-process tests of ``test_scheduler``: an OS process
that builds the application against a shared database (one SQLite file, or a PostgreSQL
database), runs the real ``Scheduler`` loop with one test job on the real clock, and
leaves a trace of every run it makes in a shared file, so that the test can check "each
slot ran exactly once" from a side effect as well as from ``job_runs``.

    python -m tests.integration.scheduler_process --data-dir D [--database-url U] \\
        --job NAME --period S [--lease S] [--work S] [--poll S] --trace FILE

It prints ``ready`` once the application is open, then reads one line ``go T0 T1`` on
stdin: it starts the scheduler at Unix time ``T0``, stops it at ``T1`` (giving a run in
progress a few seconds to finish) and exits 0. Each run appends ``start <pid> <slot>``
when it begins and ``done <pid> <slot>`` after ``--work`` seconds (a random 0-50 ms when
``--work`` is 0, so that runs overlap the other processes' claims). The processes start
together on a ``go`` line so that Python's start-up time (seconds on a loaded machine)
does not decide which slots each can see.

Why not ``homefeed worker``: its jobs have periods of ten minutes and more, and a test
knob in the production catalogue would be one more thing to configure wrongly; this
process runs the same ``Scheduler`` and ``JobRecords`` adapter the worker runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.service_layer.scheduler import Schedule, ScheduledJob, Scheduler, current_slot


class _Polling(Scheduler):
    """A scheduler that looks at the clock every ``poll`` seconds whatever its periods (the
    production rule is a quarter of the shortest period, at most 15 s): the takeover test
    uses a one-hour job and wants to see the takeover within seconds of the lease."""

    every = 0.1

    def poll_seconds(self) -> float:
        return self.every


def _append(trace: Path, line: str) -> None:
    # One write(2) of a short line with O_APPEND: lines from several processes never mix.
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--node", type=int, default=1)
    ap.add_argument("--job", default="tick")
    ap.add_argument("--period", type=float, required=True)
    ap.add_argument("--lease", type=float, default=300.0)
    ap.add_argument("--work", type=float, default=0.0)
    ap.add_argument("--poll", type=float, default=0.0, help="0: the scheduler's own rule")
    ap.add_argument("--trace", required=True)
    args = ap.parse_args(argv)
    trace = Path(args.trace)
    pid = os.getpid()

    async def work(hf: object) -> str:
        slot = current_slot.get()
        _append(trace, f"start {pid} {slot}")
        await asyncio.sleep(args.work if args.work > 0 else random.random() / 20)
        _append(trace, f"done {pid} {slot}")
        return f"by pid {pid}"

    job = ScheduledJob(args.job, Schedule(args.period), work, lease_s=args.lease)
    hf = build(Settings(data_dir=Path(args.data_dir), database_url=args.database_url), node=args.node)
    await hf.start(consumers=())
    assert hf.job_store is not None
    scheduler: Scheduler
    if args.poll > 0:
        polling = _Polling(hf, [job], hf.job_store)
        polling.every = args.poll
        scheduler = polling
    else:
        scheduler = Scheduler(hf, [job], hf.job_store)
    try:
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        word, t0, t1 = line.split()
        assert word == "go", line
        await asyncio.sleep(max(0.0, float(t0) - time.time()))
        scheduler.start()
        await asyncio.sleep(max(0.0, float(t1) - time.time()))
        await scheduler.stop(grace_s=10.0)
    finally:
        await hf.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
