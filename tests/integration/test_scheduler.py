"""The scheduler and its jobs (issue 12), on real SQLite files and a real PostgreSQL
database: each slot runs exactly once across three Homefeed instances sharing one database,
and across three OS processes (``scheduler_process``) on the real clock; a run whose
process died (SIGKILL) is taken over after its lease; ``homefeed jobs list|run``;
``GET /api/v1/trends/tags`` right after ``jobs run trends``; the load report's figures
against numbers computed here independently."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, AsyncIterator, Callable, Iterator, TypeVar

import httpx
import pytest

from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.entrypoints.cli import main as cli_main
from homefeed.service_layer.jobs.records import JobRun
from homefeed.service_layer.scheduler import Schedule, ScheduledJob, Scheduler
from tests.backends import scratch_pg_database
from tests.e2e.mastodon_kit import check_entity

PROFILES = ["sqlite", "postgres"]


@contextlib.contextmanager
def settings_for(profile: str, tmp_path: Path) -> Iterator[Settings]:
    if profile == "sqlite":
        yield Settings(data_dir=tmp_path / "data")
        return
    from psycopg.conninfo import conninfo_to_dict

    with scratch_pg_database() as dsn:
        d = conninfo_to_dict(dsn)
        url = f"postgresql://{d.get('user', 'postgres')}@{d.get('host', '127.0.0.1')}:{d.get('port', 5432)}/{d['dbname']}"
        yield Settings(data_dir=tmp_path / "data", database_url=url)


@contextlib.asynccontextmanager
async def instances(settings: Settings, n: int) -> AsyncIterator[list]:
    hfs = [build(settings, node=i + 1) for i in range(n)]
    for hf in hfs:
        await hf.start(consumers=())
    try:
        yield hfs
    finally:
        for hf in hfs:
            await hf.close()


@pytest.mark.parametrize("profile", PROFILES)
def test_three_instances_run_each_of_30_slots_exactly_once(profile: str, tmp_path: Path) -> None:
    """Three Homefeed instances over one database (one SQLite file, one PostgreSQL
    database), each with its own scheduler, look at the clock together 30 slots in a row,
    plus again in the middle of each slot: every slot runs once, by one of them."""
    ran: dict[int, list[int]] = {}
    clock = {"now": 1_900_000_000.0}
    period = 60.0

    def job_for(who: int) -> ScheduledJob:
        async def work(hf: object) -> str:
            slot = int(clock["now"] // period)
            await asyncio.sleep(random.random() / 100)  # a little work, overlapping the others' claims
            ran.setdefault(slot, []).append(who)
            return f"by {who}"
        return ScheduledJob("tick", Schedule(period), work)

    async def scenario() -> None:
        with settings_for(profile, tmp_path) as settings:
            async with instances(settings, 3) as hfs:
                schedulers = [Scheduler(hf, [job_for(i)], hf.job_store, owner=f"p{i}", clock=lambda: clock["now"])
                              for i, hf in enumerate(hfs)]
                first = int(clock["now"] // period)
                for k in range(30):
                    for offset in (0.0, period / 2):  # twice per slot: the second look finds it done
                        clock["now"] = (first + k) * period + offset
                        order = schedulers[:]
                        random.shuffle(order)
                        await asyncio.gather(*(s.tick() for s in order))
                runs = await hfs[0].job_store.runs("tick")
        assert sorted(ran) == list(range(first, first + 30))
        assert all(len(who) == 1 for who in ran.values()), {s: w for s, w in ran.items() if len(w) != 1}
        assert len(runs) == 30 and {r.slot for r in runs} == set(ran)
        assert all(r.outcome == "ok" and r.attempt == 1 for r in runs)
        # each run's row names the process that did it
        assert {r.slot: r.owner for r in runs} == {s: f"p{w[0]}" for s, w in ran.items()}
        assert len({w[0] for w in ran.values()}) > 1  # the work was shared, not one winner always

    asyncio.run(scenario())


@pytest.mark.parametrize("profile", PROFILES)
def test_a_run_whose_process_died_is_taken_over_after_its_lease(profile: str, tmp_path: Path) -> None:
    calls: list[str] = []

    async def work(hf: object) -> str:
        calls.append("ran")
        return "done"

    job = ScheduledJob("nightly", Schedule(86400), work, lease_s=100)

    async def scenario() -> None:
        with settings_for(profile, tmp_path) as settings:
            async with instances(settings, 1) as (hf,):
                t0 = 1_900_000_000.0
                slot = job.schedule.slot(t0)
                # A process claimed the slot, then died without finishing.
                assert await hf.job_store.claim("nightly", slot, "dead:1:x", t0, job.lease_s)
                now = {"t": t0 + 50}
                s = Scheduler(hf, [job], hf.job_store, owner="alive", clock=lambda: now["t"])
                assert await s.tick() == [] and calls == []  # the lease still runs
                now["t"] = t0 + 101
                (run,) = await s.tick()
                assert calls == ["ran"] and run.owner == "alive" and run.attempt == 2 and run.outcome == "ok"
                now["t"] = t0 + 200
                assert await s.tick() == [] and calls == ["ran"]  # done: not again in this slot
                # the dead process's late finish changes nothing
                assert not await hf.job_store.finish("nightly", slot, "dead:1:x", "failed", t0 + 300, 1.0, "late")
                assert (await hf.job_store.run_of("nightly", slot)).outcome == "ok"

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------
# the same, with OS processes on the real clock (tests/integration/scheduler_process.py)
# --------------------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _spawn(settings: Settings, tmp_path: Path, trace: Path, node: int, *args: str) -> subprocess.Popen[str]:
    err = open(tmp_path / f"process-{node}.err", "w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.scheduler_process", "--data-dir", str(settings.data_dir),
             "--database-url", settings.database_url, "--node", str(node), "--trace", str(trace), *args],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    finally:
        err.close()


def _stderr(tmp_path: Path) -> str:
    return "\n".join(f"{p.name}: {p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("process-*.err")))


def _ready(proc: subprocess.Popen[str], tmp_path: Path, timeout: float = 120.0) -> None:
    out: IO[str] | None = proc.stdout
    assert out is not None
    readable, _, _ = select.select([out], [], [], timeout)
    line = out.readline() if readable else "(nothing)"
    assert line == "ready\n", f"{line!r}\n{_stderr(tmp_path)}"


def _go(proc: subprocess.Popen[str], t0: float, t1: float) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"go {t0!r} {t1!r}\n")
    proc.stdin.flush()


def _trace(trace: Path) -> list[tuple[str, int, int]]:
    """``(start|done, pid, slot)`` per line the processes' runs appended."""
    if not trace.exists():
        return []
    return [(w, int(pid), int(slot)) for w, pid, slot in (line.split() for line in trace.read_text().splitlines())]


def _wait_for(what: Callable[[], T], timeout: float, tmp_path: Path) -> T:
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, f"timed out waiting\n{_stderr(tmp_path)}"
        time.sleep(0.1)
    return got


def _owner_pid(run: JobRun) -> int:
    return int(run.owner.rsplit(":", 2)[1])  # host:pid:nonce


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        for f in (p.stdin, p.stdout):
            if f is not None:
                f.close()


async def _create_schema(settings: Settings) -> None:
    async with instances(settings, 1):  # one process creates the schema before the others open it
        pass


async def _runs(settings: Settings, job: str) -> list[JobRun]:
    async with instances(settings, 1) as (hf,):
        return await hf.job_store.runs(job)


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
def test_three_os_processes_run_each_of_30_slots_exactly_once(profile: str, tmp_path: Path) -> None:
    """Three OS processes over one database (one SQLite file, one PostgreSQL database),
    each running the scheduler loop on the real clock with a 1.4-second job and 1-second slots: each of 30
    consecutive slots runs once, by one process, as the ``job_runs`` rows say and as the
    trace each run appends to a shared file says; and the slots were shared out."""
    period = 1.0  # a stall of up to ~0.5 s (a loaded machine) still claims every slot
    trace = tmp_path / "trace.log"
    with settings_for(profile, tmp_path) as settings:
        asyncio.run(_create_schema(settings))
        # Each run lasts longer than a slot (0.7 s): its process is still busy with it when
        # the next slot starts, so that slot is another process's to claim. Without it one
        # process can win every slot (its polls come first each time; seen on SQLite), and
        # the test would not show the slots shared out.
        procs = [_spawn(settings, tmp_path, trace, i + 1, "--job", "tick", "--period", str(period),
                        "--work", str(period * 1.4))
                 for i in range(3)]
        try:
            for p in procs:
                _ready(p, tmp_path)
            first = int(time.time() // period) + 2  # a slot that starts once all three are told
            t0, t1 = first * period + 0.01, (first + 30) * period - 0.05  # no look at slot first+30
            for p in procs:
                _go(p, t0, t1)
            for p in procs:
                assert p.wait(timeout=max(0.0, t1 - time.time()) + 60) == 0, _stderr(tmp_path)
        finally:
            _stop(procs)
        runs = asyncio.run(_runs(settings, "tick"))
    slots = list(range(first, first + 30))
    lines = _trace(trace)
    started = Counter(slot for w, _, slot in lines if w == "start")
    done = Counter(slot for w, _, slot in lines if w == "done")
    assert sorted(started) == slots and set(started.values()) == {1}, started
    assert sorted(done) == slots and set(done.values()) == {1}, done
    assert sorted(r.slot for r in runs) == slots
    assert all(r.outcome == "ok" and r.attempt == 1 for r in runs), [r for r in runs if r.outcome != "ok"]
    # the row of each slot names the process whose run left the trace
    by = {slot: pid for w, pid, slot in lines if w == "done"}
    assert {r.slot: _owner_pid(r) for r in runs} == by
    assert set(by.values()) <= {p.pid for p in procs}
    assert len(set(by.values())) > 1, by  # the work was shared, not one winner always


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
def test_a_run_whose_os_process_was_killed_is_taken_over_after_its_lease(profile: str, tmp_path: Path) -> None:
    """A process claims a nightly slot and runs a long job, renewing its 3 s lease; two
    other processes look every 0.1 s and leave it alone while it lives. SIGKILL it mid-run:
    one of the two takes the slot over once the lease has run out (attempt 2), finishes it,
    and nobody runs it a third time."""
    lease = 3.0
    trace = tmp_path / "trace.log"
    common = ["--job", "nightly", "--period", "86400", "--lease", str(lease), "--poll", "0.1"]
    with settings_for(profile, tmp_path) as settings:
        asyncio.run(_create_schema(settings))
        far = time.time() + 3600
        doomed = _spawn(settings, tmp_path, trace, 1, *common, "--work", "3600")
        procs = [doomed]
        try:
            _ready(doomed, tmp_path)
            _go(doomed, time.time(), far)
            (_, _, slot), = _wait_for(lambda: _trace(trace), 60, tmp_path)
            survivors = [_spawn(settings, tmp_path, trace, i, *common, "--work", "0.2") for i in (2, 3)]
            procs += survivors
            for p in survivors:
                _ready(p, tmp_path)
                _go(p, time.time(), far)
            time.sleep(2.5 * lease)  # the survivors look ~75 times each; the lease is renewed
            assert _trace(trace) == [("start", doomed.pid, slot)]
            (held,) = [r for r in asyncio.run(_runs(settings, "nightly")) if r.slot == slot]
            assert held.outcome == "running" and held.attempt == 1 and _owner_pid(held) == doomed.pid
            assert held.lease_until > held.started_at + lease  # renewed while it ran

            os.kill(doomed.pid, signal.SIGKILL)
            assert doomed.wait(timeout=30) == -signal.SIGKILL
            _wait_for(lambda: [x for x in _trace(trace) if x[0] == "done" and x[2] == slot], 60, tmp_path)
            time.sleep(2 * lease)  # long enough for a wrong third run to start
            ours = [x for x in _trace(trace) if x[2] == slot]
            (run,) = [r for r in asyncio.run(_runs(settings, "nightly")) if r.slot == slot]
        finally:
            _stop(procs)
    taker = _owner_pid(run)
    assert run.outcome == "ok" and run.attempt == 2 and run.detail == f"by pid {taker}"
    assert taker in {p.pid for p in survivors}
    assert ours == [("start", doomed.pid, slot), ("start", taker, slot), ("done", taker, slot)]


def test_a_failing_job_is_recorded_failed_and_runs_again_next_slot(tmp_path: Path) -> None:
    attempts: list[float] = []

    async def work(hf: object) -> str:
        attempts.append(1)
        raise RuntimeError("the store said no")

    async def scenario() -> None:
        async with instances(Settings(data_dir=tmp_path), 1) as (hf,):
            now = {"t": 1_900_000_000.0}
            s = Scheduler(hf, [ScheduledJob("flaky", Schedule(600), work)], hf.job_store, clock=lambda: now["t"])
            (run,) = await s.tick()
            assert run.outcome == "failed" and "the store said no" in run.detail
            assert await s.tick() == []  # failed is finished: next slot
            now["t"] += 600
            (run2,) = await s.tick()
            assert run2.slot == run.slot + 1 and len(attempts) == 2

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------------
# the commands and the trends route
# --------------------------------------------------------------------------------------------
async def _world_with_tags(hf) -> dict[str, int]:
    """Accounts posting hashtags: #rising by 5 accounts, #solo by one account many times."""
    import hashlib

    ids = {}
    for i in range(6):
        u = await hf.store.create_user(f"t{i}", f"T {i}", hashlib.sha256(f"tok{i}".encode()).digest())
        ids[f"t{i}"] = u.id
    for i in range(5):
        await hf.write_post(ids[f"t{i}"], f"hello #Rising world {i}")
    for i in range(2):
        await hf.write_post(ids[f"t{i}"], "also #second here")
    for _ in range(6):
        await hf.write_post(ids["t5"], "#solo again")
    await hf.write_post(ids["t5"], "an unlisted #rising", visibility="unlisted")
    return ids


def _cli(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = cli_main(args)
    return code, capsys.readouterr().out


@pytest.mark.parametrize("profile", PROFILES)
def test_jobs_run_trends_then_the_route_serves_them(profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from homefeed.entrypoints.http import create_app

    with settings_for(profile, tmp_path) as settings:
        env = {"HOMEFEED_DATA_DIR": str(settings.data_dir), "HOMEFEED_DATABASE_URL": settings.database_url}

        async def setup() -> None:
            async with instances(settings, 1) as (hf,):
                await _world_with_tags(hf)

        asyncio.run(setup())
        code, out = _cli(["jobs", "list", "--json"], env, monkeypatch, capsys)
        assert code == 0
        listed = json.loads(out)
        assert [r["name"] for r in listed] == ["trends", "digest", "audit", "idempotency-purge", "load-report"]
        for r in listed:
            assert {"name", "schedule", "last_run", "duration_s", "outcome", "next_run"} <= set(r)
        assert listed[0]["schedule"] == "every 10m" and listed[0]["last_run"] is None

        code, out = _cli(["jobs", "run", "trends"], env, monkeypatch, capsys)
        assert code == 0 and out.startswith("trends: ok")

        async def read() -> list:
            hf = build(settings, node=9)
            await hf.start(consumers=())
            app = create_app(hf, manage_lifecycle=False)
            try:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
                    got = await c.get("/api/v1/trends/tags")  # no token: public
                    assert got.status_code == 200, got.text
                    one = await c.get("/api/v1/trends/tags", params={"limit": 1, "offset": 1})
                    assert [t["name"] for t in one.json()] == [t["name"] for t in got.json()][1:2]
                    return got.json()
            finally:
                await hf.close()

        tags = asyncio.run(read())
        check_entity("tag[]", tags)
        # 5 distinct accounts beat 2; one account posting 6 times is not a trend
        assert [t["name"] for t in tags] == ["rising", "second"]
        today = tags[0]["history"][0]
        assert len(tags[0]["history"]) == 7
        assert today == {"day": today["day"], "uses": "5", "accounts": "5"}  # the unlisted post is not counted
        assert int(today["day"]) % 86400 == 0

        code, out = _cli(["jobs", "list", "--json"], env, monkeypatch, capsys)
        trends_row = json.loads(out)[0]
        assert trends_row["outcome"] == "ok" and trends_row["last_run"] is not None
        assert trends_row["duration_s"] is not None and trends_row["next_run"] > trends_row["last_run"]


def test_jobs_run_refuses_an_unknown_job_and_a_missing_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["jobs", "run", "trends", "--data-dir", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and "no database" in err and not (tmp_path / "nowhere").exists()

    async def setup() -> None:
        async with instances(Settings(data_dir=tmp_path), 1):
            pass

    asyncio.run(setup())
    code = cli_main(["jobs", "run", "nope", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no job 'nope'" in err and "trends" in err


# --------------------------------------------------------------------------------------------
# the load report on a known world
# --------------------------------------------------------------------------------------------
def _nearest_rank(values: list[int], p: float) -> int:
    v = sorted(values)
    return v[max(1, math.ceil(p / 100 * len(v))) - 1]


@pytest.mark.parametrize("profile", PROFILES)
def test_load_report_figures_match_an_independent_count(profile: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    rng = random.Random(12)
    n = 60
    follows: set[tuple[int, int]] = set()
    # a skewed graph: account j is followed with probability ~ 1/(j+1)
    for a in range(n):
        for b in range(n):
            if a != b and rng.random() < 1.5 / (b + 1):
                follows.add((a, b))
    posts_by = {a: rng.randrange(0, 4) for a in range(n)}

    with settings_for(profile, tmp_path) as settings:
        async def setup() -> dict[int, int]:
            async with instances(settings, 1) as (hf,):
                ids = {}
                for a in range(n):
                    u = await hf.store.create_user(f"u{a}", f"U{a}", hashlib.sha256(f"k{a}".encode()).digest())
                    ids[a] = u.id
                for a, b in sorted(follows):
                    await hf.store.follow(ids[a], ids[b])
                for a, k in posts_by.items():
                    for i in range(k):
                        await hf.write_post(ids[a], f"post {i}")
                # home reads recorded by the durable counter
                for a in range(10):
                    await hf.home_timeline(ids[a])
                await hf.reads.flush(hf.job_store)
                return ids

        asyncio.run(setup())
        env = {"HOMEFEED_DATA_DIR": str(settings.data_dir), "HOMEFEED_DATABASE_URL": settings.database_url}
        code, out = _cli(["report", "load", "--json", "--celebrity-threshold", "10"], env, monkeypatch, capsys)
    assert code == 0
    r = json.loads(out)
    followers = [sum(1 for a, b in follows if b == x) for x in range(n)]
    following = [sum(1 for a, b in follows if a == x) for x in range(n)]
    for p in (50, 90, 99):
        assert r["followers"][f"p{p}"] == _nearest_rank(followers, p)
        assert r["following"][f"p{p}"] == _nearest_rank(following, p)
    assert r["followers"]["max"] == max(followers)
    assert [t["followers"] for t in r["followers"]["top"]] == sorted(followers, reverse=True)[:10]
    assert r["accounts"] == n and r["follows"] == len(follows)
    total = sum(posts_by.values())
    assert r["posts"]["last_hour"] == total
    assert r["home_reads"]["this_hour"] == 10 and r["home_reads"]["last_day"] == 10
    weighted = sum(k * followers[a] for a, k in posts_by.items()) / total
    assert r["fanout"]["amplification"] == pytest.approx(weighted, abs=1e-3)
    rows = {t["threshold"]: t for t in r["celebrity_thresholds"]}
    assert 10 in rows and r["current_celebrity_threshold"] == 10
    t10 = rows[10]
    assert t10["celebrities"] == sum(1 for f in followers if f >= 10)
    pushed = sum(k * followers[a] for a, k in posts_by.items() if followers[a] < 10)
    assert t10["timeline_writes_per_post"] == pytest.approx(pushed / total, abs=1e-3)
    assert t10["extra_pulls_per_read"] == pytest.approx(sum(f for f in followers if f >= 10) / n, abs=1e-3)
    assert r["recommended_celebrity_threshold"] in rows
    assert r["assumptions"]["reads_per_post"] == pytest.approx(10 / total, abs=1e-3)  # recorded, not assumed
    assert str(r["recommended_celebrity_threshold"]) in r["why"]


def test_report_png_without_matplotlib_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    async def setup() -> None:
        async with instances(Settings(data_dir=tmp_path), 1):
            pass

    asyncio.run(setup())
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the bench extra were not installed
    code = cli_main(["report", "load", "--png", str(tmp_path / "png"), "--data-dir", str(tmp_path)])
    # (other lines may be the log of earlier tests' configure() on a closed capture)
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("homefeed ")]
    assert code == 2 and ours == ["homefeed report: --png needs matplotlib: pip install 'homefeed[bench]'"]
    assert not (tmp_path / "png").exists()


def test_report_png_writes_charts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")

    async def setup() -> None:
        async with instances(Settings(data_dir=tmp_path), 1):
            pass

    asyncio.run(setup())
    code = cli_main(["report", "load", "--png", str(tmp_path / "png"), "--data-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    for name in ("followers.png", "celebrity-thresholds.png"):
        assert (tmp_path / "png" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "recommended celebrity threshold" in capsys.readouterr().out




def test_job_runs_are_in_metrics_and_metrics_json(tmp_path: Path) -> None:
    from homefeed.entrypoints import metrics as obs

    async def scenario() -> tuple[str, dict]:
        async with instances(Settings(data_dir=tmp_path), 1) as (hf,):
            from homefeed.service_layer.jobs.catalog import default_jobs

            s = Scheduler(hf, default_jobs(hf), hf.job_store)
            await s.run_now("trends")
            await s.run_now("trends")
            await s.run_now("audit")
            sampler = obs.Sampler(hf, role="api")
            text = await obs.prometheus_text(sampler)
            return text, await obs.snapshot(sampler)

    text, snap = asyncio.run(scenario())
    assert 'homefeed_job_runs_total{job="trends",outcome="ok"} 2' in text
    assert 'homefeed_job_last_success{job="audit"} 1' in text
    assert 'homefeed_job_last_duration_seconds{job="trends"}' in text
    assert "homefeed_audit_differences 0" in text
    assert snap["jobs"]["jobs"]["trends"]["runs"] == {"ok": 2}
    assert snap["jobs"]["jobs"]["digest"]["last_run"] is None


def test_digest_picks_inactive_accounts_with_an_email_once(tmp_path: Path) -> None:
    """Who gets a digest and what it says, through the sender interface (the SMTP sender
    is the mailer's); without a sender no email is attempted and nobody is marked."""
    import hashlib
    import time as _time

    from homefeed.service_layer.jobs import digest

    class Collect:
        def __init__(self) -> None:
            self.mails: list[digest.DigestMail] = []

        async def send_mail(self, mail: digest.DigestMail) -> None:
            self.mails.append(mail)

    async def scenario() -> None:
        async with instances(Settings(data_dir=tmp_path, inactive_days=14), 1) as (hf,):
            u = {}
            for h in ("away", "here", "noemail", "alice", "bob"):
                u[h] = (await hf.store.create_user(h, h, hashlib.sha256(h.encode()).digest())).id
            for h in ("away", "here", "alice", "bob"):
                await hf.store.set_password(u[h], "x", email=f"{h}@example.org")
            for reader in ("away", "here", "noemail"):
                for author in ("alice", "bob"):
                    await hf.store.follow(u[reader], u[author])
            now = _time.time()
            await hf.job_store.add_reads({}, {u["away"]: now - 20 * 86400, u["here"]: now - 3600})
            await hf.write_post(u["alice"], "alice's news <b>bold</b>")
            await hf.write_post(u["bob"], "bob's news")
            await hf.write_post(u["bob"], "bob unlisted", visibility="unlisted")

            assert "no email attempted" in await digest.run(hf, None)
            sender = Collect()
            assert (await digest.run(hf, sender)).startswith("1 digest(s) sent")
            (mail,) = sender.mails
            assert mail.to == "away@example.org"
            assert "@alice: alice's news <b>bold</b>" in mail.text and "@bob: bob's news" in mail.text
            assert "unlisted" not in mail.text
            assert "&lt;b&gt;bold&lt;/b&gt;" in mail.html and "<b>bold</b>" not in mail.html
            assert mail.message_id.startswith("<digest.") and mail.message_id.endswith(">")
            # once: the next run has nobody to write to
            assert (await digest.run(hf, sender)).startswith("0 digest(s) sent") and len(sender.mails) == 1

    asyncio.run(scenario())
