"""Audit, rebuild, replay and dead letters, on real stores, in both profiles.

Profiles (each builds a ``Homefeed`` in the test's own event loop, consumers in-process):

- ``embedded``: a SQLite file, the in-process caches, consumers reading the outbox: what
  ``homefeed serve`` runs on one machine.
- ``scaleout``: PostgreSQL (a scratch database), Redis (a key prefix of the test's own) and
  NATS JetStream (a stream of the test's own), the outbox relay and the consumers running
  here as a worker would.
- ``pg-outbox``: PostgreSQL and Redis, consumers reading the PostgreSQL outbox (no bus).

The server-backed profiles skip on a laptop without the servers and fail in CI
(``tests/backends.py``). The small settings (``celebrity_threshold=3``, ``timeline_cap=5``)
make every rule matter: celebrities pulled, floors raised by trims, merges and unmerges.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Iterator, Sequence, TypeVar

import pytest

from homefeed.config import Settings
from homefeed.domain.model import Post
from homefeed.entrypoints import ops
from homefeed.service_layer import batch
from homefeed.service_layer.audit import AuditReport, Auditor, audit, wait_caught_up
from homefeed.service_layer.feed import AUTHOR, HOME
from homefeed.service_layer.services import Homefeed
from tests.backends import NATS_URL, REDIS_URL, needs, require, scratch_pg_database, unique

# serial: `make test` runs this module alone after the parallel pass. The outbox stream
# delivers an event once no older transaction is open anywhere on the server (the cluster's
# snapshot xmin), and these tests read it at once: another test's transaction would delay it.
pytestmark = pytest.mark.serial

T = TypeVar("T")

THRESHOLD = 3
CAP = 5


def run(aw: Awaitable[T]) -> T:
    return asyncio.run(aw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------
class Profile:
    """Storage for one test and a ``build(settings) -> Homefeed`` over it (call it again:
    another process on the same storage)."""

    name = ""
    consumers_exclusive = False
    relay = False

    def __init__(self, tmp: Path) -> None:
        self.settings = Settings(
            data_dir=tmp, celebrity_threshold=THRESHOLD, timeline_cap=CAP, sqlite_synchronous="NORMAL"
        )

    def build(self, settings: Settings) -> Homefeed:
        from homefeed.bootstrap import build

        return build(settings, node=0)

    async def open(self, consumers: bool = True) -> Homefeed:
        hf = self.build(self.settings)
        await hf.start(consumers=tuple(hf.consumers.handlers) if consumers else (), relay=self.relay,
                       exclusive=self.consumers_exclusive)
        return hf

    async def sql(self, hf: Homefeed, statement: str, params: tuple = ()) -> None:
        db: Any = hf.store.db  # type: ignore[attr-defined]
        await db.write(lambda conn: conn.execute(statement, params))

    def cleanup(self) -> None:
        pass


class Embedded(Profile):
    name = "embedded"


class ServerBacked(Profile):
    """PostgreSQL + Redis (+ JetStream when ``jetstream``), with names of this test's own."""

    jetstream = True

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        require("postgresql")
        require("redis")
        if self.jetstream:
            require("nats")
        self._pg = scratch_pg_database()
        self.pg_url = self._pg.__enter__()
        self.prefix = unique("hfa")
        self.stream_name = unique("HFA")
        self.settings = self.settings.replace(
            database_url=self.pg_url, cache_url=REDIS_URL,
            bus_url=NATS_URL if self.jetstream else "",
        )
        self.relay = self.jetstream
        self.consumers_exclusive = not self.jetstream
        self._node = 0

    def build(self, settings: Settings) -> Homefeed:
        from homefeed.adapters.pg_db import PgDatabase
        from homefeed.adapters.pg_outbox import PgOutboxEventStream
        from homefeed.adapters.pg_search import PgSearchIndex
        from homefeed.adapters.pg_store import PgRecordStore
        from homefeed.adapters.redis_cache import RedisPostCache, RedisTimelineCache

        self._node += 1  # each "process" its own id node
        pg = PgDatabase(settings.database_url, poll_interval=0.05)
        store = PgRecordStore(pg, node=self._node)
        outbox = PgOutboxEventStream(pg)
        cache = RedisTimelineCache(REDIS_URL, cap=settings.timeline_cap,
                                   inactive_seconds=settings.inactive_days * 86400, prefix=self.prefix)
        posts = RedisPostCache(REDIS_URL, prefix=self.prefix)
        resources: list[Any] = [cache, posts]
        parts: dict[str, Any] = {
            "leader": lambda: outbox.leader("relay"),
            "consumer_leader": lambda name: outbox.leader(f"consumer:{name}"),
        }
        stream: Any = outbox
        if self.jetstream:
            from homefeed.adapters.jetstream import JetStreamEventStream

            stream = JetStreamEventStream(NATS_URL, stream=self.stream_name,
                                          subject_prefix=f"{self.stream_name}.events", ack_wait=5)
            parts["source"], parts["sink"] = outbox, stream
        return Homefeed(settings, store=store, stream=stream, cache=cache, posts=posts,
                        search_index=PgSearchIndex(pg), resources=resources, relay_parts=parts)

    async def sql(self, hf: Homefeed, statement: str, params: tuple = ()) -> None:
        db: Any = hf.store.db  # type: ignore[attr-defined]
        await db.write(statement.replace("?", "%s"), params, outbox=False)

    def cleanup(self) -> None:
        import redis

        if self.jetstream:
            from homefeed.adapters.jetstream import JetStreamEventStream

            async def drop() -> None:
                js = JetStreamEventStream(NATS_URL, stream=self.stream_name,
                                          subject_prefix=f"{self.stream_name}.events")
                await js.open()
                try:
                    await js.delete_streams()
                finally:
                    await js.close()

            with contextlib.suppress(Exception):
                run(drop())
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
        self._pg.__exit__(None, None, None)


class ScaleOut(ServerBacked):
    name = "scaleout"
    jetstream = True


class PgOutbox(ServerBacked):
    name = "pg-outbox"
    jetstream = False


_ALL = {"embedded": Embedded, "scaleout": ScaleOut, "pg-outbox": PgOutbox}
_MARKS = {"embedded": [], "scaleout": [needs("postgresql"), needs("redis"), needs("nats")],
          "pg-outbox": [needs("postgresql"), needs("redis")]}


def profiles(*names: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        "profile", [pytest.param(n, id=n, marks=_MARKS[n]) for n in names], indirect=True)


@pytest.fixture
def profile(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Profile]:
    p = _ALL[request.param](tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


# --------------------------------------------------------------------------------------------
# a small world, helpers
# --------------------------------------------------------------------------------------------
class World:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.posts: dict[int, tuple[int, str]] = {}

    def __getitem__(self, handle: str) -> int:
        return self.ids[handle]


async def make_world(hf: Homefeed) -> World:
    """u0 is a celebrity (4 followers, then 5, then 4 again); u1, u3 ordinary authors
    (2 followers each); u6 follows u3 only; u7 nobody; reads cache every home
    timeline; posts before and after, deletes, an unfollow; then drained."""
    w = World()
    for i in range(8):
        w.ids[f"u{i}"] = int((await hf.register(f"u{i}"))["id"])
    for a in ("u1", "u2", "u3", "u4", "u5"):
        await hf.follow(w[a], "u0")
    await hf.follow(w["u0"], "u1")
    await hf.follow(w["u2"], "u1")
    await hf.follow(w["u2"], "u3")
    await hf.follow(w["u4"], "u2")
    await hf.follow(w["u6"], "u3")

    async def post(h: str, text: str) -> int:
        pid = int((await hf.create_post(w[h], text))["id"])
        w.posts[pid] = (w[h], text)
        return pid

    for k in range(3):
        for h in ("u0", "u1", "u2", "u3"):
            await post(h, f"early {h} #round{k} hello world")
    await hf.drain()
    for h in w.ids:
        await hf.home_timeline(w[h], 5)
    for k in range(4):
        for h in ("u0", "u1", "u3", "u4"):
            await post(h, f"later {h} #late{k} @u2 news")
    doomed = [pid for pid, (a, _) in w.posts.items() if a == w["u1"]][-1]
    await hf.delete_post(w["u1"], doomed)
    del w.posts[doomed]
    await hf.unfollow(w["u5"], "u0")
    await hf.drain()
    for h in ("u2", "u6"):
        await hf.home_timeline(w[h], 3)
    return w


async def home_ids(hf: Homefeed, uid: int) -> list[int]:
    out: list[int] = []
    before = None
    while True:
        page = await hf.home_timeline(uid, 7, before)
        out.extend(int(p["id"]) for p in page["posts"])
        if page["next"] is None:
            return out
        before = int(page["next"])


async def truth_home(hf: Homefeed, uid: int) -> list[int]:
    return await hf.store.home_post_ids(uid, None, 1_000_000)


async def search_ids(hf: Homefeed, q: str) -> list[int]:
    return [int(p["id"]) for p in (await hf.search(q, 100))["posts"]]


async def snapshot(hf: Homefeed, w: World) -> dict[str, Any]:
    return {
        "home": {h: await home_ids(hf, uid) for h, uid in w.ids.items()},
        "search": {q: await search_ids(hf, q) for q in ("hello", "#late1", "@u2", "news", "early")},
        "profiles": {h: await hf.profile(h) for h in w.ids},
    }


async def settle(hf: Homefeed, timeout: float = 30.0) -> None:
    behind = await wait_caught_up(hf, timeout)
    assert not behind, f"consumers did not catch up: {behind}"


def must_id(w: World, home: Any, hf_celebs: set[int], following: set[int]) -> int:
    """An id above the floor of a cached home list that the list must hold."""
    for pid in home.ids:
        author = w.posts.get(pid, (None,))[0]
        if pid > home.floor and author in following and author not in hf_celebs:
            return pid
    raise AssertionError(f"no must-hold id in {home}")


def named(report: AuditReport, store: str, *words: str) -> list[str]:
    return [str(d) for d in report.differences if d.store == store and all(x in str(d) for x in words)]


# --------------------------------------------------------------------------------------------
# the audit names each corruption; the rebuilds make it clean
# --------------------------------------------------------------------------------------------
@profiles("embedded", "scaleout")
def test_audit_names_each_corruption_and_rebuild_makes_it_clean(profile: Profile) -> None:
    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            report = await audit(hf)
            assert report.differences == [], "\n".join(report.lines())
            assert report.exit_code() == 0
            assert report.checked["home_lists"] >= 6 and report.checked["posts"] == len(w.posts)

            celebs = set(await hf.store.celebrity_ids(THRESHOLD))
            assert celebs == {w["u0"]}
            u2 = w["u2"]
            home = await hf.cache.peek(HOME, u2)  # type: ignore[attr-defined]
            missing = must_id(w, home, celebs, {w["u3"]})
            foreign = max(p for p, (a, _) in w.posts.items() if a == w["u4"])  # u2 does not follow u4
            author_list = await hf.cache.peek(AUTHOR, w["u1"])  # type: ignore[attr-defined]
            missing_from_author = author_list.ids[0]
            unindexed, reworded = sorted(w.posts)[:2]
            bogus = max(w.posts) + 12345

            await hf.cache.remove(HOME, [u2], [missing])              # an id removed from a timeline
            await hf.cache.push(HOME, [u2], foreign)                  # a foreign id added
            await hf.cache.remove(AUTHOR, [w["u1"]], [missing_from_author])
            await hf.cache.mark_celebrity(w["u7"], True)              # nobody follows u7
            await hf.cache.set_following(w["u6"], [w["u1"]])          # u1 instead of u3
            await hf.search_index.remove([unindexed])                 # an index row deleted
            await hf.search_index.index([Post(reworded, w.posts[reworded][0], "x", "entirely different")])
            await hf.search_index.index([Post(bogus, w["u1"], "u1", "bogus entry")])  # a bogus row
            await profile.sql(hf, "UPDATE users SET followers_count = followers_count + 1 WHERE id = ?", (w["u4"],))
            await profile.sql(hf, "UPDATE users SET posts_count = 42 WHERE id = ?", (w["u7"],))

            report = await audit(hf, settle_timeout=10)
            text = "\n".join(report.lines())
            assert report.exit_code() == 1, text
            assert named(report, "home cache", "@u2", f"post {missing} is missing"), text
            assert named(report, "home read", "@u2", f"post {missing} is missing from what the user reads"), text
            assert named(report, "home cache", "@u2", f"post {foreign}", "does not follow", "hidden"), text
            assert named(report, "author cache", "@u1", f"post {missing_from_author} is missing"), text
            assert named(report, "following cache", "@u6", f"lacks {w['u3']}"), text
            assert named(report, "search index", f"post {unindexed}", "is not indexed"), text
            assert named(report, "search index", f"post {reworded}", "wrong terms", "entirely"), text
            assert named(report, "search index", f"post {bogus}", "not a post", "hidden"), text
            assert named(report, "counters", "@u4", "followers_count is 1, the records count 0"), text
            assert named(report, "counters", "@u7", "posts_count is 42, the records count 0"), text
            assert named(report, "celebrity set", "@u7", "in the cached set with fewer than 3 followers"), text

            # rebuilds: counters first (they decide who is a celebrity), then the others
            assert await batch.rebuild_counters(hf) == 2
            await batch.rebuild_search(hf)
            done = await batch.rebuild_timelines(hf)
            assert done["home_timelines"] >= 6 and done["author_lists"] >= 4
            report = await audit(hf, settle_timeout=10)
            assert report.exit_code() == 0, "\n".join(report.lines())
            assert await home_ids(hf, u2) == await truth_home(hf, u2)
            assert missing in await home_ids(hf, u2) and foreign not in await home_ids(hf, u2)

            # a foreign id alone: reads hide it, the audit still says so (exit 3)
            await hf.cache.push(HOME, [u2], foreign)
            report = await audit(hf, settle_timeout=5)
            assert report.exit_code() == 3 and len(report.differences) == 1, "\n".join(report.lines())
            assert named(report, "home cache", "@u2", f"post {foreign}", "does not follow")
            await batch.rebuild_timelines(hf)
            assert (await audit(hf)).exit_code() == 0
        finally:
            await hf.close()

    run(body())


@profiles("embedded", "scaleout")
def test_post_counters_and_notifications_are_audited_and_rebuilt(profile: Profile) -> None:
    """Replies, boosts, favourites and mentions: after the drain the audit is clean (post
    counters and notifications included); a wrong counter and a lost or bogus notification
    are named, and ``rebuild counters`` / ``rebuild notifications`` make it clean again."""
    async def body() -> None:
        hf = await profile.open()
        try:
            ids = [int((await hf.register(f"c{i}"))["id"]) for i in range(4)]
            a, b, c, d = ids
            handles = {u: f"c{i}" for i, u in enumerate(ids)}
            await hf.follow(b, "c0")
            await hf.follow(c, "c0")
            p = await hf.store.create_post(a, "c0", "a post")
            await hf.store.create_post(b, "c1", "a reply @c0", in_reply_to_id=p.id, mention_ids=(a,))
            await hf.store.reblog(c, handles[c], p.id, visibility="public")
            await hf.store.favourite(d, p.id)
            await hf.store.favourite(b, p.id)
            await hf.drain()
            report = await audit(hf, settle_timeout=10)
            assert report.exit_code() == 0, "\n".join(report.lines())
            assert report.checked["post_counters"] >= 3 and report.checked["notification_lists"] >= 4
            assert len(await hf.store.notifications_page(a, limit=100)) == 6  # 2 follows, mention, boost, 2 favs

            await profile.sql(hf, "UPDATE posts SET favourites_count = 7 WHERE id = ?", (p.id,))
            await profile.sql(hf, "DELETE FROM notifications WHERE user_id = ? AND type = ?", (a, "reblog"))
            report = await audit(hf, settle_timeout=5)
            text = "\n".join(report.lines())
            assert report.exit_code() == 1, text
            assert named(report, "counters", f"post {p.id}", "favourites_count is 7, the records count 2"), text
            assert named(report, "notifications", "@c0", "lacks 1"), text

            assert await batch.rebuild_post_counters(hf) == 1
            assert await batch.rebuild_notifications(hf) == 1
            report = await audit(hf, settle_timeout=5)
            assert report.exit_code() == 0, "\n".join(report.lines())
            assert len(await hf.store.notifications_page(a, limit=100)) == 6
        finally:
            await hf.close()

    run(body())


@profiles("embedded", "scaleout")
def test_a_stale_post_cache_entry_is_named_and_rebuilt(profile: Profile) -> None:
    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            posts: Any = hf.feed.posts
            home = await hf.cache.peek(HOME, w["u2"])  # type: ignore[attr-defined]
            pid = must_id(w, home, {w["u0"]}, {w["u1"], w["u3"]})
            author, text = w.posts[pid]
            tampered = Post(pid, author, "u1", "tampered text")
            if profile.name == "embedded":
                posts._posts[pid] = tampered
            else:  # the Redis post cache writes with NX: overwrite the key itself
                await posts.client.set(posts._fmt % pid, posts.encode(tampered))
            assert (await posts.peek_many([pid]))[pid].text == "tampered text"
            assert any(p["text"] == "tampered text" for p in (await hf.home_timeline(w["u2"], 20))["posts"])

            report = await audit(hf, settle_timeout=5)
            assert report.exit_code() == 1
            assert named(report, "post cache", f"post {pid}", "different version"), "\n".join(report.lines())
            done = await batch.rebuild_timelines(hf)
            assert done["cached_posts_fixed"] == 1
            assert (await audit(hf)).exit_code() == 0
            shown = {p["id"]: p["text"] for p in (await hf.home_timeline(w["u2"], 20))["posts"]}
            assert shown[str(pid)] == text
        finally:
            await hf.close()

    run(body())


@profiles("embedded", "scaleout")
def test_a_sampled_audit_covers_cached_users_and_finds_a_corruption_there(profile: Profile) -> None:
    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            report = await audit(hf, sample=3, seed=1)
            assert report.exit_code() == 0, "\n".join(report.lines())
            assert report.checked["users"] == 3 and report.checked["posts"] > 0
            # every cached user, sampled one at a time, with one corrupted list
            u6 = w["u6"]
            home = await hf.cache.peek(HOME, u6)  # type: ignore[attr-defined]
            victim = must_id(w, home, {w["u0"]}, {w["u1"], w["u3"]})
            await hf.cache.remove(HOME, [u6], [victim])
            found = False
            for seed in range(40):
                r = await audit(hf, sample=2, seed=seed, parts=["timelines"], settle_timeout=5)
                if named(r, "home cache", "@u6", str(victim)):
                    found = True
                    assert r.exit_code() == 1
                    break
            assert found, "a sample of users with cached timelines never reached @u6"
        finally:
            await hf.close()

    run(body())


# --------------------------------------------------------------------------------------------
# safe while serving: read-only, tolerant of events in flight
# --------------------------------------------------------------------------------------------
def test_audit_is_read_only_on_the_in_process_cache(tmp_path: Path) -> None:
    profile = Embedded(tmp_path)

    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            cache: Any = hf.cache
            posts: Any = hf.feed.posts
            await hf.cache.drop(HOME, w["u7"])  # u7 has no timeline: the audit must not make one

            def state() -> Any:
                lists = {k: [(key, l.ids.tolist(), l.floor, l.used, l.building) for key, l in d.items()]
                         for k, d in cache._lists.items()}
                return lists, cache._celebrities, cache.evictions, posts.hits, posts.misses, list(posts._posts)

            before = state()
            report = await audit(hf)
            assert report.exit_code() == 0, "\n".join(report.lines())
            assert report.checked["home_reads"] == 8
            assert state() == before
            assert w["u7"] not in await cache.keys(HOME)
        finally:
            await hf.close()

    run(body())


@needs("redis")
@needs("postgresql")
@needs("nats")
def test_audit_leaves_redis_ttls_and_contents_alone(tmp_path: Path) -> None:
    profile = ScaleOut(tmp_path)

    async def body() -> None:
        import redis.asyncio as aioredis

        hf = await profile.open()
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await make_world(hf)
            await settle(hf)

            async def state() -> dict[bytes, Any]:
                out = {}
                async for k in client.scan_iter(match=f"{profile.prefix}:*", count=1000):
                    if b":p:" in k:
                        continue
                    out[k] = (await client.dump(k), await client.pttl(k))
                return out

            before = await state()
            await asyncio.sleep(0.05)
            report = await audit(hf)
            assert report.exit_code() == 0, "\n".join(report.lines())
            after = await state()
            assert after.keys() == before.keys()
            for k, (dump, ttl) in before.items():
                assert after[k][0] == dump, k
                if ttl > 0:  # never refreshed: only time went by
                    assert after[k][1] <= ttl, (k, ttl, after[k][1])
        finally:
            await client.aclose()
            await hf.close()

    try:
        run(body())
    finally:
        profile.cleanup()  # its scratch database, Redis keys and JetStream streams


@profiles("embedded", "scaleout")
def test_differences_of_events_in_flight_are_not_reported(profile: Profile, caplog: pytest.LogCaptureFixture) -> None:
    """Slow consumers: right after the writes the derived stores lag; the audit sees the
    differences, waits for the events to be applied, finds them gone, and says clean."""

    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            await settle(hf)
            await hf.consumers.stop()
            for name in ("fanout", "indexer"):
                handler = hf.consumers.handlers[name]

                async def slow(events: Any, handler: Any = handler) -> None:
                    await asyncio.sleep(0.3)
                    await handler(events)

                hf.consumers.handlers[name] = slow
            hf.consumers.start(tuple(hf.consumers.handlers),
                               leader=hf.relay_parts.get("consumer_leader") if profile.consumers_exclusive else None)
            for k in range(3):
                await hf.create_post(w["u1"], f"in flight {k}")
            await hf.delete_post(w["u3"], next(p for p, (a, _) in w.posts.items() if a == w["u3"]))
            caplog.set_level("INFO", logger="homefeed.audit")
            report = await audit(hf, settle_timeout=30)
            assert report.exit_code() == 0, "\n".join(report.lines())
            assert "re-checking" in caplog.text  # the first look did see the lag
        finally:
            await hf.close()

    run(body())


def test_with_nothing_consuming_differences_are_reported_with_the_lag(tmp_path: Path) -> None:
    profile = Embedded(tmp_path)

    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            await hf.consumers.stop()
            pid = int((await hf.create_post(w["u1"], "never indexed"))["id"])
            report = await Auditor(hf, parts=["search"], settle_timeout=2, stall=0.5).run()
            assert report.exit_code() == 1
            assert named(report, "search index", f"post {pid}", "is not indexed")
            assert report.behind.get("indexer", 0) >= 1
            assert any("did not catch up" in n for n in report.notes)
        finally:
            await hf.close()

    run(body())


@profiles("embedded", "scaleout", "pg-outbox")
def test_health_says_caught_up_only_once_a_write_of_this_process_is_applied(profile: Profile) -> None:
    """``/healthz`` keeps a lag snapshot (``HEALTH_MAX_AGE``), but never one read before a
    write this process committed: a client that writes, then waits for every consumer to
    be 0 behind, finds its post searchable and in its follower's home. (A stale snapshot
    said "0 behind" within 250 ms of the write on the server-backed profiles, and CI's
    e2e drain then read notifications that were not written yet.)"""

    async def caught_up(hf: Homefeed) -> bool:
        body = await hf.health()
        return bool(body["consumers"]) and all(c["behind"] == 0 for c in body["consumers"].values())

    async def wait_caught_up(hf: Homefeed) -> None:
        deadline = time.monotonic() + 20
        while not await caught_up(hf):
            assert time.monotonic() < deadline, await hf.health()
            await asyncio.sleep(0.005)

    async def body() -> None:
        hf = await profile.open()
        try:
            author = int((await hf.register("hz_author"))["id"])
            reader = int((await hf.register("hz_reader"))["id"])
            await hf.follow(reader, "hz_author")
            for i in range(12):
                await wait_caught_up(hf)  # the snapshot kept now says 0 behind
                word = f"healthlag{i}"
                pid = int((await hf.create_post(author, word))["id"])
                await wait_caught_up(hf)  # must not be that snapshot's answer
                assert await search_ids(hf, word) == [pid], i
                assert (await home_ids(hf, reader))[0] == pid, i
        finally:
            await hf.close()

    run(body())


# --------------------------------------------------------------------------------------------
# rebuild while posts keep coming
# --------------------------------------------------------------------------------------------
@profiles("embedded", "scaleout")
def test_rebuild_while_posting_loses_no_post_from_any_timeline(profile: Profile) -> None:
    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            authors = ["u1", "u2", "u3", "u4", "u0"]
            stop = asyncio.Event()
            written: list[int] = []

            async def writer(h: str) -> None:
                k = 0
                while not stop.is_set():
                    got = await hf.create_post(w[h], f"storm {h} {k} #storm")
                    written.append(int(got["id"]))
                    k += 1
                    if k % 7 == 0:
                        await hf.home_timeline(w["u6"], 3)  # keep reading: caches stay in use
                        # A steady load the consumers keep up with: the storm is there to race
                        # the rebuilds, not to outrun the fan-out (on a busy machine the writers
                        # did, and the mid-storm audit saw thousands of events not yet applied).
                        # Bounded: a fan-out that stopped still shows in the audits.
                        for _ in range(500):
                            if await hf.stream.lag("fanout") < 100:
                                break
                            await asyncio.sleep(0.02)
                    await asyncio.sleep(0.005)

            audits: list[AuditReport] = []

            async def rebuilds() -> None:
                try:
                    rounds = 0
                    while rounds < 3 or len(written) < 200:
                        rounds += 1
                        await batch.rebuild_timelines(hf)
                        await batch.rebuild_search(hf)
                        await batch.rebuild_counters(hf)
                        # safe while serving: an audit in the middle of the storm
                        audits.append(await audit(hf, settle_timeout=30))
                finally:
                    stop.set()

            await asyncio.gather(rebuilds(), *(writer(h) for h in authors))
            for r in audits:
                assert r.exit_code() == 0, "\n".join(r.lines())
            assert len(written) >= 200
            await settle(hf)
            for h, uid in w.ids.items():
                got, want = await home_ids(hf, uid), await truth_home(hf, uid)
                assert got == want, f"home of {h}: missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}"
            storm = await search_ids(hf, "#storm")
            assert len(storm) == min(100, len(written))
            report = await audit(hf, settle_timeout=20)
            assert report.exit_code() == 0, "\n".join(report.lines())
        finally:
            await hf.close()

    run(body())


# --------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------
def _counting(hf: Homefeed) -> dict[str, list[int]]:
    """Wrap the handlers: every event seq each consumer applies."""
    seen: dict[str, list[int]] = {"fanout": [], "indexer": []}
    for name in seen:
        handler = hf.consumers.handlers[name]

        async def counted(events: Any, handler: Any = handler, name: str = name) -> None:
            await handler(events)
            seen[name].extend(e.seq for e in events)

        hf.consumers.handlers[name] = counted
    return seen


def ops_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="homefeed")
    ops.register(p.add_subparsers(dest="command", required=True))
    return p


async def cli(profile: Profile, *argv: str, settings: Settings | None = None) -> tuple[int, str]:
    out = io.StringIO()
    args = ops_parser().parse_args(list(argv))
    code = await ops.run_async(args, settings or profile.settings, build=profile.build, out=out)
    return code, out.getvalue()


@profiles("embedded", "scaleout", "pg-outbox")
def test_replay_reapplies_events_without_changing_the_result(profile: Profile) -> None:
    async def body() -> None:
        hf = await profile.open(consumers=False)
        try:
            seen = _counting(hf)
            hf.consumers.start(tuple(hf.consumers.handlers),
                               leader=hf.relay_parts.get("consumer_leader") if profile.consumers_exclusive else None)
            if profile.relay:
                hf._start_relay()
            w = await make_world(hf)
            await settle(hf)
            before = await snapshot(hf, w)
            applied = {k: list(v) for k, v in seen.items()}
            assert applied["fanout"] and applied["indexer"]

            # from the start
            for name in ("fanout", "indexer"):
                seen[name].clear()
                if profile.name == "embedded":
                    await ops.replay_in_process(hf, name, 0)
                else:
                    code, out = await cli(profile, "replay", "--consumer", name, "--from", "0", "--settle", "0.5")
                    assert code == 0, out
            await asyncio.sleep(0.2)
            await settle(hf)
            for name in ("fanout", "indexer"):
                assert sorted(set(seen[name])) == sorted(set(applied[name])), name
            assert await snapshot(hf, w) == before
            assert (await audit(hf)).exit_code() == 0

            # from one event in the middle: that event and every later one, no earlier one
            middle = sorted(set(applied["indexer"]))[len(set(applied["indexer"])) // 2]
            seen["indexer"].clear()
            if profile.name == "embedded":
                await ops.replay_in_process(hf, "indexer", middle)
            else:
                code, out = await cli(profile, "replay", "--consumer", "indexer", "--from", str(middle),
                                      "--settle", "0.5")
                assert code == 0, out
            await asyncio.sleep(0.2)
            await settle(hf)
            assert min(seen["indexer"]) == middle
            assert set(seen["indexer"]) == {s for s in applied["indexer"] if s >= middle}
            assert await snapshot(hf, w) == before
            report = await audit(hf)
            assert report.exit_code() == 0, "\n".join(report.lines())
        finally:
            await hf.close()

    run(body())


# --------------------------------------------------------------------------------------------
# dead letters
# --------------------------------------------------------------------------------------------
@profiles("embedded", "scaleout", "pg-outbox")
def test_a_poison_event_is_dead_lettered_listed_and_retried(profile: Profile) -> None:
    async def body() -> None:
        hf = await profile.open()
        try:
            w = await make_world(hf)
            feed = hf.feed
            real = feed.fan_out_post
            broken = {"on": True}

            async def fan_out_post(post: Post, followers: Sequence[int] | None = None,
                                   pushed: Any = None) -> int:
                if broken["on"] and "poison" in post.text:
                    raise RuntimeError("cannot fan out this one")
                return await real(post, followers, pushed)

            feed.fan_out_post = fan_out_post  # type: ignore[method-assign]
            poison = int((await hf.create_post(w["u1"], "poison pill"))["id"])
            after = int((await hf.create_post(w["u1"], "after the incident"))["id"])

            deadline = time.monotonic() + 60
            letters: list[Any] = []
            while time.monotonic() < deadline:
                letters = await hf.stream.dead_letters("fanout")  # type: ignore[attr-defined]
                if letters:
                    break
                await asyncio.sleep(0.1)
            assert len(letters) == 1, letters
            assert letters[0].event.data["post_id"] == poison and "cannot fan out" in letters[0].reason
            await settle(hf)  # the consumer went on past the poison event
            u2_home = await home_ids(hf, w["u2"])
            assert after in u2_home and poison not in u2_home
            assert poison in await search_ids(hf, "poison")  # the indexer was not affected

            code, out = await cli(profile, "dead-letters", "list")
            assert code == 0 and "fanout" in out and "post_created" in out and "cannot fan out" in out, out
            code, out = await cli(profile, "dead-letters", "list", "--json", "--consumer", "indexer")
            assert code == 0 and json.loads(out) == []
            report = await audit(hf, settle_timeout=5)
            assert named(report, "home cache", "@u2", f"post {poison} is missing"), "\n".join(report.lines())

            broken["on"] = False  # the cause is fixed
            code, out = await cli(profile, "dead-letters", "retry", "--consumer", "fanout")
            assert code == 0 and "1 dead letter" in out, out
            deadline = time.monotonic() + 30
            while await hf.stream.dead_letters("fanout") and time.monotonic() < deadline:  # type: ignore[attr-defined]
                await asyncio.sleep(0.1)
            assert await hf.stream.dead_letters("fanout") == []  # type: ignore[attr-defined]
            await settle(hf)
            assert poison in await home_ids(hf, w["u2"])
            report = await audit(hf)
            assert report.exit_code() == 0, "\n".join(report.lines())
        finally:
            await hf.close()

    run(body())


@profiles("embedded", "pg-outbox")
def test_an_outbox_dead_letter_that_fails_again_goes_back_once(profile: Profile) -> None:
    async def body() -> None:
        hf = await profile.open(consumers=False)
        try:
            stream: Any = hf.stream
            w = World()
            w.ids["a"] = int((await hf.register("a"))["id"])
            pid = int((await hf.create_post(w["a"], "hello"))["id"])
            # On PostgreSQL an event is delivered once no older transaction is still in
            # flight anywhere on the server (the stable prefix): wait for it (unacknowledged
            # events are fetched again, so the last fetch holds them all).
            deadline = time.monotonic() + 30
            events = await stream.fetch("fanout", 10, 0)
            while not any(e.type == "post_created" for e in events):
                assert time.monotonic() < deadline, events
                events = await stream.fetch("fanout", 10, 0.5)
            created = next(e for e in events if e.type == "post_created")
            await stream.ack("fanout", [e for e in events if e.seq < created.seq])
            await stream.dead_letter("fanout", created, "boom")
            assert await stream.fetch("fanout", 10, 0) == []  # acknowledged with it
            [dl] = await stream.dead_letters()
            assert (dl.consumer, dl.event.seq, dl.reason, dl.deliveries, dl.retrying) == ("fanout", created.seq, "boom", 1, False)
            assert await stream.lag("fanout") == 0
            await stream.retry_dead_letter(dl.id)
            assert await stream.lag("fanout") == 1
            [again] = await stream.fetch("fanout", 10, 0)
            assert again.seq == created.seq and again.data["post_id"] == pid
            await stream.dead_letter("fanout", again, "boom twice")  # failed again
            [dl2] = await stream.dead_letters("fanout")
            assert (dl2.id, dl2.deliveries, dl2.reason, dl2.retrying) == (dl.id, 2, "boom twice", False)
            assert await stream.fetch("fanout", 10, 0) == []
            assert await stream.retry_dead_letters("fanout") == 1
            [third] = await stream.fetch("fanout", 10, 0)
            await stream.ack("fanout", [third])
            assert await stream.dead_letters() == [] and await stream.lag("fanout") == 0
            with pytest.raises(ValueError):
                await stream.retry_dead_letter(dl.id)
        finally:
            await hf.close()

    run(body())


# --------------------------------------------------------------------------------------------
# the command line, embedded: with no server, and talking to a serving process
# --------------------------------------------------------------------------------------------
def test_cli_on_the_embedded_file_with_no_server(tmp_path: Path) -> None:
    profile = Embedded(tmp_path)
    # nothing listens there: the in-process cache does not exist
    settings = profile.settings.replace(port=_free_port())

    async def body() -> None:
        hf = await profile.open()
        w = await make_world(hf)
        await hf.close()

        conn = sqlite3.connect(settings.database_path)
        victim = min(w.posts)
        conn.execute("DELETE FROM post_search WHERE rowid = ?", (victim,))
        conn.execute("INSERT INTO post_search(rowid, terms) VALUES (?, ?)", (victim + 1_000_000, "bogus"))
        conn.execute("UPDATE users SET following_count = 9 WHERE id = ?", (w["u4"],))
        conn.commit()
        conn.close()

        code, out = await cli(profile, "audit", settings=settings)
        assert code == 1, out
        assert f"post {victim}: is not indexed" in out
        assert f"post {victim + 1_000_000}: has an entry but is not a post" in out
        assert "@u4" in out and "following_count is 9, the records count 2" in out
        assert "no serving process answered" in out  # timelines: nothing to audit here

        code, out = await cli(profile, "rebuild", "search", "--no-progress", settings=settings)
        assert code == 0 and f"from {len(w.posts)} posts" in out, out
        code, out = await cli(profile, "rebuild", "counters", "--no-progress", settings=settings)
        assert code == 0 and "1 changed" in out, out
        code, out = await cli(profile, "rebuild", "timelines", "--no-progress", settings=settings)
        assert code == 0 and "nothing to rebuild" in out, out
        code, out = await cli(profile, "rebuild", "notifications", "--no-progress", settings=settings)
        assert code == 0 and "notifications recomputed for every user: 0 changed" in out, out
        code, out = await cli(profile, "audit", "--sample", "3", settings=settings)
        assert code == 0 and "audit: clean" in out, out
        code, out = await cli(profile, "audit", "--json", settings=settings)
        assert code == 0 and json.loads(out)["exit_code"] == 0

        code, out = await cli(profile, "replay", "--consumer", "indexer", "--from", "0", settings=settings)
        assert code == 0 and "offset moved in the database file" in out, out
        hf = await profile.open()  # the service starts again: the indexer applies everything again
        try:
            await settle(hf)
            assert (await audit(hf)).exit_code() == 0
        finally:
            await hf.close()

        code, out = await cli(profile, "audit", "--only", "search,nonsense", settings=settings)
        assert code == 2
        code, out = await cli(profile, "replay", "--consumer", "nobody", "--from", "1", settings=settings)
        assert code == 2

    run(body())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[tuple[Homefeed, asyncio.AbstractEventLoop]]:
    """``homefeed serve`` in a thread: the app of ``create_app`` plus the admin route, as
    the lead hooks it into http.py (POST /admin/{op})."""
    import uvicorn
    from starlette.requests import Request
    from starlette.routing import Route

    from homefeed.bootstrap import build, plan
    from homefeed.entrypoints.http import create_app, json_response

    hf = build(settings, node=0)
    app = create_app(hf, plan(settings, "api"))

    async def admin_route(request: Request) -> Any:
        ops.check_admin(settings, request.headers.get("authorization"))
        raw = await request.body()
        return json_response(await ops.admin(hf, request.path_params["op"], json.loads(raw) if raw else {}))

    app.router.routes.append(Route("/admin/{op}", admin_route, methods=["POST"]))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    loop = hf.consumers._tasks[0].get_loop()
    try:
        yield hf, loop
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_cli_talks_to_the_serving_process_for_its_in_process_cache(tmp_path: Path) -> None:
    profile = Embedded(tmp_path)
    settings = profile.settings.replace(port=_free_port())

    with serving(settings) as (hf, loop):
        def there(aw: Awaitable[T]) -> T:
            return asyncio.run_coroutine_threadsafe(aw, loop).result(timeout=60)  # type: ignore[arg-type]

        w = there(make_world(hf))
        home = there(hf.cache.peek(HOME, w["u2"]))  # type: ignore[attr-defined]
        victim = must_id(w, home, {w["u0"]}, {w["u1"], w["u3"]})
        there(hf.cache.remove(HOME, [w["u2"]], [victim]))

        token_file = Path(settings.data_dir) / "admin-token"
        code, out = run(cli(profile, "audit", settings=settings))
        assert code == 1, out
        assert "@u2" in out and f"post {victim} is missing" in out, out
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600

        code, out = run(cli(profile, "rebuild", "timelines", "--no-progress", settings=settings))
        assert code == 0 and "in the serving process" in out, out
        assert victim in there(home_ids(hf, w["u2"]))
        code, out = run(cli(profile, "audit", settings=settings))
        assert code == 0 and "audit: clean" in out, out

        before = there(snapshot(hf, w))
        seen = there(_wrap_and_report(hf))
        code, out = run(cli(profile, "replay", "--consumer", "fanout", "--from", "0", settings=settings))
        assert code == 0 and "the serving process applies again" in out, out
        there(settle(hf))
        assert len(seen) >= 20  # every event went through fan-out again
        assert there(snapshot(hf, w)) == before

        code, out = run(cli(profile, "rebuild", "counters", "--no-progress", settings=settings))
        assert code == 0 and "celebrity set of the serving process reconciled" in out, out

        # the admin route wants the token
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{settings.port}/admin/audit", data=b"{}",
                                     method="POST", headers={"Authorization": "Bearer wrong"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 401


async def _wrap_and_report(hf: Homefeed) -> list[int]:
    """Count fan-out applications from now on (the replay restarts the consumer tasks, so
    the wrapped handler is the one they run)."""
    seen: list[int] = []
    handler = hf.consumers.handlers["fanout"]

    async def counted(events: Any) -> None:
        await handler(events)
        seen.extend(e.seq for e in events)

    hf.consumers.handlers["fanout"] = counted
    return seen


def test_admin_token_is_shared_through_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from homefeed.domain.errors import Unauthorized

    monkeypatch.delenv(ops.ADMIN_TOKEN_ENV, raising=False)
    settings = Settings(data_dir=tmp_path / "d")
    token = ops.admin_token(settings)
    assert token == ops.admin_token(settings) and len(token) >= 32
    ops.check_admin(settings, f"Bearer {token}")
    for bad in (None, "", token, f"Bearer {token}x", "Basic abc"):
        with pytest.raises(Unauthorized):
            ops.check_admin(settings, bad)
    monkeypatch.setenv(ops.ADMIN_TOKEN_ENV, "from-env")
    ops.check_admin(settings, "Bearer from-env")
    with pytest.raises(Unauthorized):
        ops.check_admin(settings, f"Bearer {token}")
