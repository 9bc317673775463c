"""``SqliteDatabase.data_version``: the value the Mastodon home's kept rendering is checked
against (read from SQLite's wal-index header, without SQL). Whatever mix of commits, from
this process's writer or from another connection (another process), and checkpoints: after
a commit the value is new (never one seen before), and with nothing done it stays equal.

``shown_version`` is the same, except that this process's commits of neutral writes only (the
read counter's) leave it as it was; any other commit still gives a value never seen before."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Hashable

from hypothesis import HealthCheck, given, settings, strategies as st

from homefeed.adapters.sqlite_db import SqliteDatabase

STEPS = st.lists(st.sampled_from(["own", "other", "checkpoint", "restart", "nothing", "read", "neutral",
                                  "neutral+own"]),
                 min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, mapped=st.booleans())
def test_every_commit_changes_the_value_and_nothing_keeps_it(tmp_path_factory: object, steps: list[str],
                                                              mapped: bool) -> None:
    """``mapped``: the header read from the mapped file (the usual way), else with ``pread``
    (the way when the file could not be mapped)."""
    path = tmp_path_factory.mktemp("dv") / "homefeed.db"  # type: ignore[attr-defined]

    async def main() -> None:
        db = SqliteDatabase(path)
        db.open()
        assert db._shm_map is not None  # a fresh WAL database's -shm is mapped
        if not mapped:
            db._shm_map.close()
            db._shm_map = None
        other = sqlite3.connect(path, isolation_level=None)  # as another process would
        other.execute("PRAGMA journal_mode=WAL")
        try:
            await db.write(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            seen: list[Hashable] = [db.data_version()]
            shown: list[Hashable] = [db.shown_version()]
            for n, step in enumerate(steps):
                before = db.data_version()
                shown_before = db.shown_version()
                assert before == seen[-1] or step == "read"  # nothing happened since
                assert shown_before == shown[-1]
                if step == "own":
                    await db.write(lambda c, n=n: c.execute("INSERT INTO t VALUES (?)", (n,)))
                elif step == "neutral":
                    await db.write(lambda c, n=n: c.execute("INSERT INTO t VALUES (?)", (n,)), neutral=True)
                elif step == "neutral+own":  # one commit (group commit) holding both
                    await asyncio.gather(
                        db.write(lambda c, n=n: c.execute("INSERT INTO t VALUES (?)", (n,)), neutral=True),
                        db.write(lambda c, n=n: c.execute("INSERT INTO t VALUES (?)", (n,))))
                elif step == "other":
                    other.execute("INSERT INTO t VALUES (?)", (-n,))
                elif step == "checkpoint":
                    other.execute("PRAGMA wal_checkpoint(PASSIVE)")
                elif step == "restart":
                    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                elif step == "read":
                    assert db.query("SELECT count(*) FROM t")[0][0] >= 0
                after = db.data_version()
                shown_after = db.shown_version()
                if step in ("own", "other", "neutral", "neutral+own"):
                    assert after not in seen, (step, seen)
                elif step in ("nothing", "read"):
                    assert after == before
                if step in ("own", "other", "neutral+own"):
                    assert shown_after not in shown, (step, shown)
                elif step in ("nothing", "read", "neutral"):
                    assert shown_after == shown_before, step
                seen.append(after)
                shown.append(shown_after)
        finally:
            other.close()
            db.close()

    asyncio.run(main())


def test_without_a_wal_index_it_is_sqlites_data_version(tmp_path: Path) -> None:
    """No ``-shm`` file (say, a file system without shared memory): ``PRAGMA data_version``."""

    async def main() -> None:
        db = SqliteDatabase(tmp_path / "homefeed.db")
        db.open()
        try:
            assert db._shm is not None and db._shm_map is not None
            db._shm_map.close()
            db._shm_map = None
            os.close(db._shm)
            db._shm = None  # as when the -shm could not be opened
            await db.write(lambda c: c.execute("CREATE TABLE t (x INTEGER)"))
            v = db.data_version()
            assert isinstance(v, int) and db.data_version() == v
            await db.write(lambda c: c.execute("INSERT INTO t VALUES (1)"))
            assert db.data_version() != v
        finally:
            db.close()

    asyncio.run(main())
