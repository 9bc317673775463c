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


def test_with_a_listener_own_commits_are_told_and_keep_the_shown_version(tmp_path: Path) -> None:
    """Once a listener is registered (``on_shown_change``), every commit of this process
    tells it what changed that a Status shows (from the triggers, whichever write made the
    change), before the write's caller hears of the commit, and leaves ``shown_version`` as
    it was; another connection's commit still moves it. A listener that is gone is
    forgotten (held weakly)."""
    path = tmp_path / "homefeed.db"

    class Listener:
        def __init__(self, db: SqliteDatabase) -> None:
            self.told: list[list[tuple[str, int]]] = []
            self.db = db
            db.on_shown_change(self.changed)

        def changed(self, rows: list[tuple[str, int]]) -> None:
            self.told.append(list(rows))

    async def main() -> None:
        db = SqliteDatabase(path)
        db.open()
        try:
            listener = Listener(db)
            await db.write(lambda c: c.execute(
                "INSERT INTO users (id, handle, handle_key, display_name, token_hash) VALUES (7, 'u', 'u', 'u', x'00')"))
            await db.write(lambda c: c.execute("INSERT INTO posts (id, author_id, text) VALUES (70, 7, 'hi')"))
            v = db.shown_version()
            await db.write(lambda c: c.execute("UPDATE users SET display_name = 'U' WHERE id = 7"))
            assert listener.told[-1] == [("user", 7), ("profile", 7)]  # told before the write returned
            await db.write(lambda c: c.execute("UPDATE users SET posts_count = 1 WHERE id = 7"))
            assert listener.told[-1] == [("user", 7)]  # a count only
            await db.write(lambda c: c.execute("UPDATE posts SET favourites_count = 1 WHERE id = 70"))
            assert listener.told[-1] == [("post", 70)]
            await db.write(lambda c: c.execute(
                "INSERT INTO posts (id, author_id, text, reblog_of_id) VALUES (71, 7, '', 70)"))
            assert listener.told[-1] == [("post", 70)]
            await db.write(lambda c: c.execute("INSERT INTO outbox (type, data) VALUES ('x', '{}')"))
            assert listener.told[-1] == []  # a commit that changes nothing shown
            assert db.shown_version() == v
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("UPDATE users SET display_name = 'other' WHERE id = 7")
            other.close()
            moved = db.shown_version()
            assert moved != v
            await db.write(lambda c: c.execute("UPDATE posts SET favourites_count = 2 WHERE id = 70"))
            assert db.shown_version() == moved  # told: the value stays the one readers saw
            del listener
            await db.write(lambda c: c.execute("UPDATE posts SET favourites_count = 3 WHERE id = 70"))
            assert db._shown_listeners == [] and db.shown_version() != moved  # nobody told: it moves
        finally:
            db.close()

    asyncio.run(main())


def test_a_listener_that_fails_leaves_the_write_answered_and_the_version_moved(tmp_path: Path) -> None:
    """A listener raising is logged: the write is still answered, and the commit moves
    ``shown_version`` (what is kept is read again), as when nobody is told."""
    path = tmp_path / "homefeed.db"

    class Broken:
        def changed(self, rows: list[tuple[str, int]]) -> None:
            raise RuntimeError("broken listener")

    async def main() -> None:
        db = SqliteDatabase(path)
        db.open()
        try:
            broken = Broken()
            db.on_shown_change(broken.changed)
            v = db.shown_version()
            await asyncio.wait_for(db.write(lambda c: c.execute("INSERT INTO outbox (type, data) VALUES ('x', '{}')")), 5)
            assert db.shown_version() != v and not db.telling()
        finally:
            db.close()

    asyncio.run(main())
