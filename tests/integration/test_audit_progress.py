"""The audit's progress reports, its yielding to the event loop, and the read-only view's
overlay (embedded profile: SQLite and the in-process caches, no server needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from homefeed.config import Settings
from homefeed.ports import IdSlice
from homefeed.service_layer.audit import Auditor, Pacer, ReadOnlyTimelines
from homefeed.service_layer.feed import HOME


async def _world(tmp: Path):  # type: ignore[no-untyped-def]
    from homefeed.bootstrap import CONSUMERS, build

    hf = build(Settings(data_dir=tmp, celebrity_threshold=3, timeline_cap=5, sqlite_synchronous="NORMAL"), node=0)
    await hf.start(consumers=CONSUMERS, relay=False, exclusive=False)
    ids = [int((await hf.register(f"u{i}"))["id"]) for i in range(8)]
    for i in range(1, 8):
        await hf.follow(ids[i], "u0")
    for i in range(8):
        for k in range(3):
            await hf.create_post(ids[i], f"post {k} by u{i} #tag")
    for uid in ids[:4]:
        await hf.home_timeline(uid, 20)  # cached lists for some users
    return hf, ids


def test_progress_names_each_phase_and_ends_at_its_total(tmp_path: Path) -> None:
    async def go() -> None:
        hf, ids = await _world(tmp_path)
        seen: list[tuple[str, int, int | None]] = []
        try:
            report = await Auditor(hf, progress=lambda p, d, t: seen.append((p, d, t))).run()
        finally:
            await hf.close()
        assert report.exit_code() == 0, report.lines()
        phases = [p for p, _, _ in seen]
        for phase in ("users", "timelines", "authors", "counters", "post counters", "notifications", "search"):
            assert phase in phases, phases
        last = {p: (d, t) for p, d, t in seen}
        assert last["post counters"] == (8 * 3, None)
        assert last["notifications"] == (len(ids), len(ids))
        assert last["timelines"] == (len(ids), len(ids))
        assert last["authors"] == (len(ids), len(ids))
        assert last["search"][0] == 8 * 3 and last["search"][1] is None

    asyncio.run(go())


def test_the_audit_gives_the_loop_back_between_store_reads(tmp_path: Path) -> None:
    """Another coroutine runs many times during the audit (SQLite reads do not suspend:
    without the pacer it would run only between users)."""

    async def go() -> None:
        hf, ids = await _world(tmp_path)
        runs = 0
        stop = asyncio.Event()

        async def other() -> None:
            nonlocal runs
            while not stop.is_set():
                runs += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        pacer = Pacer()
        try:
            await Auditor(hf, parts=("timelines",), pacer=pacer).run()
        finally:
            stop.set()
            await task
            await hf.close()
        # at least a few store reads per user, each followed by a yield
        assert pacer.yields >= 3 * len(ids)
        assert runs >= pacer.yields // 2

    asyncio.run(go())


def test_the_overlay_serves_what_was_installed_and_leaves_the_cache_alone() -> None:
    class Cache:
        async def peek(self, kind, key, before=None, limit=None):  # type: ignore[no-untyped-def]
            return None

    async def go() -> None:
        view = ReadOnlyTimelines(Cache())
        assert await view.slice(HOME, 1, None, 10) is None
        await view.install(HOME, 1, [9, 7, 5, 3], 2)
        assert await view.slice(HOME, 1, None, 2) == IdSlice([9, 7], 2)
        assert await view.slice(HOME, 1, 7, 10) == IdSlice([5, 3], 2)
        assert await view.exists(HOME, [1, 2]) == [1]
        view.forget()
        assert await view.slice(HOME, 1, None, 10) is None

    asyncio.run(go())
