"""Backend outages at the adapter boundary, against real servers that the tests stop.

- PostgreSQL: a private cluster (``tests.private_pg``, never the shared server), stopped with
  ``pg_ctl -m fast`` and started again, and sessions ended under the adapter with
  ``pg_terminate_backend``. Every connection-class failure is ``Unavailable`` naming the
  database (503), constraint errors are not; a read whose session dies is sent again, a
  write is not and leaves nothing; sessions the server ended while idle are replaced before
  a statement is sent on them; the pool recovers by itself.
- Redis: a private ``redis-server`` on a free port, stopped and started empty: every cache
  method raises ``Unavailable`` naming the cache, and works again on the same objects.
- The application over SQLite + that Redis: while Redis is down, home timelines (paged),
  single posts and search answer from the record store, equal to what they were with the
  cache, and writes succeed; after Redis returns and the consumers catch up, reads through
  the cache are right again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar

import psycopg
import pytest

from homefeed.adapters.outage import PROBE_INTERVAL, QUIET
from homefeed.adapters.pg_db import PgDatabase
from homefeed.adapters.pg_store import PgRecordStore
from homefeed.adapters import redis_cache
from homefeed.adapters.outage import OutageLog
from homefeed.adapters.redis_cache import RedisPostCache, RedisTimelineCache
from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.domain.errors import Unavailable
from homefeed.domain.model import Post
from homefeed.service_layer.services import Homefeed
from tests.backends import IN_CI
from tests.private_pg import PrivatePg, private_pg, wait_until

T = TypeVar("T")
HOST = "127.0.0.1"
#: A hang guard for calls against a stopped server (they answer in about 2 s at most).
BOUND = 15.0


def run(aw: Awaitable[T]) -> T:
    return asyncio.run(aw)  # type: ignore[arg-type]


async def bounded(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, BOUND)


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePg]:
    with private_pg() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg: PrivatePg) -> str:
    if not pg.running:  # a test that failed while it was stopped
        pg.start()
    return pg.create_database("t_" + uuid.uuid4().hex[:10])


async def _stop(pg: PrivatePg, mode: str = "fast") -> None:
    await asyncio.to_thread(pg.stop, mode)


async def _start(pg: PrivatePg) -> None:
    await asyncio.to_thread(pg.start)


async def _terminate(pg: PrivatePg, dbname: str, like: str = "%", active: bool = False) -> int:
    """End the sessions of ``dbname`` whose query matches ``like`` (as a restart would), and
    wait (up to 5 s, PostgreSQL 14+) until each backend is gone, so its socket is closed
    before the test goes on: a session ended *while* a statement is sent is another case."""
    rows = await asyncio.to_thread(
        pg.sql,
        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
        f" WHERE datname = '{dbname}' AND pid <> pg_backend_pid() AND query LIKE '{like}'"
        + (" AND state = 'active'" if active else ""),
    )
    return int(rows[0][0])


async def _terminate_running(pg: PrivatePg, dbname: str, like: str, timeout: float = 10.0) -> int:
    """``_terminate`` the session running a statement that matches ``like``, as soon as it
    runs (polled: on a loaded machine the statement may be sent late)."""
    deadline = time.monotonic() + timeout
    while True:
        ended = await _terminate(pg, dbname, like, active=True)
        if ended or time.monotonic() > deadline:
            return ended
        await asyncio.sleep(0.05)


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_pg_stopped_answers_unavailable_and_the_pool_recovers_by_itself(pg: PrivatePg, pg_url: str) -> None:
    async def body() -> None:
        db = PgDatabase(pg_url)
        store = PgRecordStore(db)
        await store.open()
        try:
            ana = await store.create_user("ana", "Ana", b"token-ana")
            await store.create_post(ana.id, "ana", "before the outage")
            await _stop(pg, "fast")
            with pytest.raises(Unavailable) as write_error:
                await bounded(store.create_post(ana.id, "ana", "during the outage"))
            with pytest.raises(Unavailable) as read_error:
                await bounded(store.user_posts(ana.id, None, 10))
            for err in (write_error.value, read_error.value):
                assert (err.code, err.status) == ("unavailable", 503)
                assert err.message == "the database (PostgreSQL) is unavailable; retry later"
            assert db.outage.down and db.outage.failures >= 2
            await _start(pg)
            deadline = time.monotonic() + BOUND
            while True:  # resumes by itself: the same objects, no reopening
                try:
                    posts = await store.user_posts(ana.id, None, 10)
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "the pool did not recover"
                    await asyncio.sleep(0.1)
            assert [p.text for p in posts] == ["before the outage"]  # the failed write left nothing
            after = await store.create_post(ana.id, "ana", "after the outage")
            await asyncio.sleep(QUIET)  # the outage ends with a success after a quiet moment
            assert [p.id for p in await store.user_posts(ana.id, None, 10)][0] == after.id
            assert not db.outage.down and db.outage.outages == 1
        finally:
            await store.close()

    run(body())


def test_sessions_ended_while_idle_are_replaced_before_a_statement_is_sent(pg: PrivatePg, pg_url: str) -> None:
    """A restart, or pg_terminate_backend, while the pool is idle: the next statements,
    writes included, go to new sessions at once; no request sees an error."""
    async def body() -> None:
        db = PgDatabase(pg_url, min_size=3)
        await db.open()
        try:
            await db.write("CREATE TABLE marks (v int)", outbox=False)
            for _ in range(3):  # several pooled connections
                await asyncio.gather(*(db.fetch("SELECT pg_sleep(0.05)") for _ in range(3)))
            await _stop(pg, "fast")
            await _start(pg)
            for v in range(5):
                await db.write("INSERT INTO marks VALUES (%s)", (v,), outbox=False)
            assert await _terminate(pg, _dbname(pg_url), "%marks%") >= 1  # idle pool sessions
            await db.write("INSERT INTO marks VALUES (5)", outbox=False)
            assert await db.fetch("SELECT v FROM marks ORDER BY v") == [(v,) for v in range(6)]
            assert db.outage.outages == 0, "a statement was sent on a dead session"
        finally:
            await db.close()

    run(body())


def test_a_read_whose_session_dies_is_sent_again_a_write_is_not(pg: PrivatePg, pg_url: str) -> None:
    async def body() -> None:
        db = PgDatabase(pg_url)
        await db.open()
        try:
            await db.write("CREATE TABLE marks (v int)", outbox=False)
            # each statement sleeps long enough to be ended while it runs, however late it is sent
            read = asyncio.create_task(db.fetchone("SELECT 42 FROM pg_sleep(2) AS read_probe"))
            assert await _terminate_running(pg, _dbname(pg_url), "%read_probe%") == 1
            assert await bounded(read) == (42,)  # sent again on another connection

            write = asyncio.create_task(
                db.write("INSERT INTO marks SELECT 7 FROM pg_sleep(30) AS write_probe", outbox=False))
            assert await _terminate_running(pg, _dbname(pg_url), "%write_probe%") == 1
            with pytest.raises(Unavailable):
                await bounded(write)
            assert await db.fetch("SELECT count(*) FROM marks") == [(0,)]  # nothing partial
        finally:
            await db.close()

    run(body())


def test_constraint_errors_are_not_outages(pg_url: str) -> None:
    async def body() -> None:
        db = PgDatabase(pg_url)
        await db.open()
        try:
            await db.write("CREATE TABLE one (k int PRIMARY KEY)", outbox=False)
            await db.write("INSERT INTO one VALUES (1)", outbox=False)
            with pytest.raises(psycopg.errors.UniqueViolation):
                await db.write("INSERT INTO one VALUES (1)", outbox=False)
            with pytest.raises(psycopg.errors.UndefinedTable):
                await db.fetch("SELECT * FROM no_such_table")
            assert db.outage.outages == 0
        finally:
            await db.close()

    run(body())


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` without persistence on a free port (never the shared one)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.access(binary, os.X_OK):
            (pytest.fail if IN_CI else pytest.skip)("redis-server is not installed: apt-get install redis-server")
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://{HOST}:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._pong, what=f"redis-server on port {self.port}")

    def _pong(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_stopped_every_cache_method_answers_unavailable_then_recovers(
    redis_server: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = OutageLog("Redis")  # this test's view of Redis (the module's is per process)
    monkeypatch.setattr(redis_cache, "OUTAGE", outage)

    async def body() -> None:
        cache = RedisTimelineCache(redis_server.url, cap=5)
        posts = RedisPostCache(redis_server.url)
        post = Post(101, 1, "ana", "hello")
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "slice": lambda: cache.slice("home", 1, None, 5),
            "begin": lambda: cache.begin("home", 1),
            "install": lambda: cache.install("home", 1, [101], 0),
            "merge": lambda: cache.merge("home", 1, [101], 0),
            "push": lambda: cache.push("home", [1, 2], 102),
            "remove": lambda: cache.remove("home", [1], [101]),
            "exists": lambda: cache.exists("home", [1]),
            "following": lambda: cache.following(1),
            "following_version": lambda: cache.following_version(1),
            "set_following": lambda: cache.set_following(1, [2]),
            "forget_following": lambda: cache.forget_following(1),
            "celebrities": lambda: cache.celebrities(),
            "set_celebrities": lambda: cache.set_celebrities([3]),
            "mark_celebrity": lambda: cache.mark_celebrity(3, True),
            "get_many": lambda: posts.get_many([101]),
            "put_many": lambda: posts.put_many([post]),
            "delete": lambda: posts.delete([999]),
        }
        try:
            for call in calls.values():  # all fine while it runs
                await call()
            assert outage.outages == 0
            await asyncio.to_thread(redis_server.stop)
            for name, call in calls.items():
                with pytest.raises(Unavailable) as err:
                    await bounded(call())
                assert err.value.message == "the cache (Redis) is unavailable; retry later", name
            assert outage.down and outage.outages == 1 and outage.failures == len(calls)
            await asyncio.to_thread(redis_server.start)  # empty: no persistence
            await asyncio.sleep(PROBE_INTERVAL)  # until then calls fail at once, untried
            assert await cache.slice("home", 1, None, 5) is None  # the same clients reconnect
            await asyncio.sleep(QUIET)
            await posts.put_many([post])
            assert (await posts.get_many([101]))[101].text == "hello"
            assert not outage.down
        finally:
            await cache.close()
            await posts.close()

    run(body())


# --------------------------------------------------------------------------------------------
# the application: reads from the record store while Redis is down
# --------------------------------------------------------------------------------------------


async def _home(hf: Homefeed, uid: int, limit: int) -> list[int]:
    """The whole home timeline, paged with ``limit``, checking the page contract."""
    out: list[int] = []
    before = None
    for _ in range(1000):
        page = await hf.home_timeline(uid, limit, before)
        ids = [int(p["id"]) for p in page["posts"]]
        assert len(ids) <= limit and (len(ids) == limit or page["next"] is None), page
        out.extend(ids)
        if page["next"] is None:
            break
        before = int(page["next"])
        assert before == ids[-1]
    assert out == sorted(set(out), reverse=True), out
    return out


async def _search(hf: Homefeed, q: str) -> list[int]:
    return [int(p["id"]) for p in (await hf.search(q, 100))["posts"]]


def test_reads_answer_from_the_record_store_while_redis_is_down(tmp_path: Path, redis_server: PrivateRedis) -> None:
    async def body() -> None:
        settings = Settings(data_dir=tmp_path / "data", cache_url=redis_server.url,
                            celebrity_threshold=3, timeline_cap=4, sqlite_synchronous="NORMAL")
        hf = build(settings)
        await hf.start(run_consumers=False)  # consumers applied by hand: hf.consumers.drain
        try:
            ids = {h: int((await hf.register(h))["id"]) for h in ("ana", "bob", "cy", "dee", "eve")}
            for a, b in [("ana", "bob"), ("ana", "cy"), ("bob", "cy"), ("cy", "ana"), ("dee", "cy"),
                         ("eve", "cy"), ("dee", "ana")]:
                await hf.follow(ids[a], b)  # cy: 4 followers, a celebrity (pulled at read time)
            posted: dict[int, str] = {}
            for k in range(16):
                author = ("ana", "bob", "cy", "dee")[k % 4]
                p = await hf.create_post(ids[author], f"post {k} by {author} #t{k % 3}")
                posted[int(p["id"])] = author
            victim = next(i for i, a in posted.items() if a == "bob")
            await hf.delete_post(ids["bob"], victim)
            await hf.consumers.drain()
            with_cache = {h: {lim: await _home(hf, ids[h], lim) for lim in (2, 7)} for h in ids}
            searched = await _search(hf, "#t1")
            fallbacks = hf.feed.counters["cache_fallbacks"]

            await asyncio.to_thread(redis_server.stop)
            for h in ids:  # the same pages, from the record store
                for lim in (2, 7):
                    assert await _home(hf, ids[h], lim) == with_cache[h][lim], (h, lim)
            assert await _search(hf, "#t1") == searched
            some = next(iter(posted))
            assert (await hf.get_post(some))["id"] == str(some)
            assert hf.feed.counters["cache_fallbacks"] > fallbacks

            # writes go on (committed with their events; the cache updates wait)
            new = int((await hf.create_post(ids["bob"], "written while the cache is down #t1"))["id"])
            await hf.follow(ids["eve"], "bob")
            await hf.unfollow(ids["ana"], "cy")
            await hf.delete_post(ids["dee"], next(i for i, a in posted.items() if a == "dee"))
            assert (await _home(hf, ids["eve"], 2))[0] == new  # read-your-writes, from the store
            assert all(posted.get(i) != "cy" for i in await _home(hf, ids["ana"], 5))
            with pytest.raises(Unavailable):  # the consumers wait for the cache
                await hf.consumers.run_once("fanout")

            await asyncio.to_thread(redis_server.start)  # empty
            await asyncio.sleep(PROBE_INTERVAL)
            await hf.consumers.drain()
            from_store = {}
            for h in ids:
                want = await hf.feed._read_home_from_store(ids[h], None, 100)
                from_store[h] = [p.id for p in want[0]]
                assert await _home(hf, ids[h], 3) == from_store[h], h
            assert new in from_store["eve"] and new == from_store["bob"][0]
            assert new in await _search(hf, "#t1")
        finally:
            await hf.close()

    run(body())


# --------------------------------------------------------------------------------------------
# consumers: an outage is not the event's fault
# --------------------------------------------------------------------------------------------


def test_a_consumer_rides_out_an_outage_longer_than_the_dead_letter_limit(tmp_path: Path) -> None:
    """The fan-out fails with ``Unavailable`` far more often than ``MAX_ATTEMPTS`` (as during
    a 10-s Redis or PostgreSQL outage): nothing is dead-lettered, the batch is applied once
    the backend is back, in order; a failure that is not an outage still is dead-lettered."""
    from homefeed.bootstrap import open_homefeed
    from homefeed.service_layer.consumers import MAX_ATTEMPTS

    async def body() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path / "data", sqlite_synchronous="NORMAL"))
        try:
            ana = int((await hf.register("ana"))["id"])
            bob = int((await hf.register("bob"))["id"])
            await hf.follow(bob, "ana")
            await hf.home_timeline(bob)  # bob's timeline is cached: pushes land in it
            real = hf.feed.fan_out_post
            outage = {"calls_left": 4 * MAX_ATTEMPTS}

            async def fan_out_post(post: Post, followers: Sequence[int] | None = None,
                                   pushed: Any = None) -> int:
                if outage["calls_left"] > 0:
                    outage["calls_left"] -= 1
                    raise Unavailable("the cache (Redis) is unavailable; retry later")
                if "poison" in post.text:
                    raise RuntimeError("this event is bad")
                return await real(post, followers, pushed)

            hf.feed.fan_out_post = fan_out_post  # type: ignore[method-assign]
            hf.consumers.outage_backoff = (0.01, 0.05)  # the same path, faster
            first = int((await hf.create_post(ana, "during the outage"))["id"])
            second = int((await hf.create_post(ana, "also during the outage"))["id"])
            await hf.drain(timeout=60)
            assert outage["calls_left"] == 0
            assert hf.consumers.dead_lettered == {}
            assert await hf.stream.dead_letters() == []  # type: ignore[attr-defined]
            assert [int(p["id"]) for p in (await hf.home_timeline(bob))["posts"]] == [second, first]

            poison = int((await hf.create_post(ana, "poison"))["id"])
            deadline = time.monotonic() + 60
            while not hf.consumers.dead_lettered and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            [letter] = await hf.stream.dead_letters()  # type: ignore[attr-defined]
            assert letter.event.data["post_id"] == poison
        finally:
            await hf.close()

    run(body())
