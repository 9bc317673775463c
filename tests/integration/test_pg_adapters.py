"""The PostgreSQL adapters against a real PostgreSQL: record store, outbox event stream
(ordering under concurrent transactions, offsets, wake-ups, leader lock) and search index.

Each module run creates a throw-away database ``homefeed_pg_<random>`` through
``HOMEFEED_TEST_PG_ADMIN_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
and drops it at the end. Without a reachable server the module is skipped, with the command
that starts one; with ``CI=true`` it fails instead.

The throughput comparison with ``pgbench -N`` runs only with ``HOMEFEED_PG_BENCH=1``.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

try:
    import psycopg
    from psycopg import conninfo
except ImportError:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise
    pytest.skip("psycopg is not installed (pip install 'psycopg[binary,pool]>=3.2')", allow_module_level=True)

from homefeed.adapters.pg_db import MIGRATIONS, LeadershipLost, PgDatabase, migrate_url
from homefeed.adapters.pg_outbox import PgOutboxEventStream
from homefeed.adapters.pg_search import SEARCH_SQL, PgSearchIndex, tsquery_text
from homefeed.adapters.pg_store import PgRecordStore
from homefeed.domain import model
from homefeed.domain.errors import Conflict, Forbidden, NotFound, Unavailable
from homefeed.domain.ids import NODE_BITS, SEQ_BITS
from homefeed.domain.model import Event, Post
from homefeed.domain.text import query_terms

# serial: `make test` runs this module alone after the parallel pass. The outbox stream
# delivers an event once no older transaction is open anywhere on the server (the cluster's
# snapshot xmin), and these tests read it at once: another test's transaction would delay it.
pytestmark = pytest.mark.serial

ADMIN_URL = os.environ.get(
    "HOMEFEED_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        msg = (
            f"PostgreSQL is not reachable at {ADMIN_URL} ({str(exc).strip()}). Start it with:"
            f" {START_HINT}  (or point HOMEFEED_TEST_PG_ADMIN_URL at a server where this user"
            " may create databases)"
        )
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _url(dbname: str) -> str:
    return conninfo.make_conninfo(ADMIN_URL, dbname=dbname)


def _create_db() -> str:
    name = "homefeed_pg_" + uuid.uuid4().hex[:12]
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_db(name: str) -> None:
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg_url() -> Any:
    name = _create_db()
    try:
        yield _url(name)
    finally:
        _drop_db(name)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@asynccontextmanager
async def opened(url: str, node: int = 0, **db_kwargs: Any) -> AsyncIterator[tuple[PgRecordStore, PgOutboxEventStream, PgSearchIndex]]:
    db = PgDatabase(url, **db_kwargs)
    store = PgRecordStore(db, node=node)
    await store.open()
    try:
        yield store, PgOutboxEventStream(db), PgSearchIndex(db)
    finally:
        await store.close()


async def reset(store: PgRecordStore) -> None:
    await store.db.fetch(
        "TRUNCATE users, follows, posts, outbox, consumer_offsets, post_search RESTART IDENTITY",
        prepare=False,
    )


async def outbox_rows(store: PgRecordStore) -> list[tuple[int, str, dict]]:
    return await store.db.fetch("SELECT seq, type, data FROM outbox ORDER BY seq")


_tokens = iter(range(1, 1 << 30))


def tok() -> bytes:
    return f"token-{next(_tokens)}-{uuid.uuid4().hex}".encode()


async def users(store: PgRecordStore, *handles: str) -> list[model.User]:
    return [await store.create_user(h, h.title(), tok()) for h in handles]


# --------------------------------------------------------------------------------------------
# migrations
# --------------------------------------------------------------------------------------------


def test_migrations_are_versioned_idempotent_and_safe_concurrently() -> None:
    name = _create_db()
    url = _url(name)
    try:

        async def body() -> None:
            # several processes migrating one empty database at once
            results = await asyncio.gather(*(migrate_url(url) for _ in range(4)))
            assert results == [len(MIGRATIONS)] * 4
            assert await migrate_url(url) == len(MIGRATIONS)  # again: nothing to do
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cur = await conn.execute("SELECT version FROM homefeed_schema")
                assert await cur.fetchall() == [(len(MIGRATIONS),)]
                cur = await conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'post_search_terms'"
                )
                assert "gin" in (await cur.fetchone())[0].lower()

        run(body())
    finally:
        _drop_db(name)


def test_open_without_migrating_names_the_fix() -> None:
    name = _create_db()
    try:

        async def body() -> None:
            db = PgDatabase(_url(name))
            with pytest.raises(Unavailable, match="homefeed migrate"):
                await db.open(migrate=False)
            assert not db.is_open

        run(body())
    finally:
        _drop_db(name)


def test_unreachable_server_is_unavailable() -> None:
    async def body() -> None:
        db = PgDatabase("postgresql://nobody@127.0.0.1:1/nothing", connect_timeout=1)
        with pytest.raises(Unavailable, match="cannot connect"):
            await db.open()

    run(body())


# --------------------------------------------------------------------------------------------
# record store
# --------------------------------------------------------------------------------------------


def test_users_handles_unique_ignoring_case_and_tokens(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, _):
            await reset(store)
            t = tok()
            alice = await store.create_user("Alice", "Alice A.", t)
            with pytest.raises(Conflict):
                await store.create_user("aLICE", "imposter", tok())
            assert (await store.user_by_handle("ALICE")) == alice
            assert (await store.user_by_id(alice.id)) == alice
            assert await store.user_by_id(12345) is None
            assert await store.user_by_handle("nobody") is None
            assert await store.user_id_by_token_hash(t) == alice.id
            assert await store.user_id_by_token_hash(b"unknown") is None

            # many concurrent registrations of one handle in different cases: one wins
            outcomes = await asyncio.gather(
                *(store.create_user(h, "z", tok()) for h in ["zed", "ZED", "Zed", "zEd"] * 5),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if isinstance(o, model.User)]
            assert len(winners) == 1
            assert all(isinstance(o, Conflict) for o in outcomes if o not in winners)

            events = [(t_, d) for _, t_, d in await outbox_rows(store)]
            assert events == [
                (model.USER_REGISTERED, {"user_id": alice.id, "handle": "Alice"}),
                (model.USER_REGISTERED, {"user_id": winners[0].id, "handle": winners[0].handle}),
            ]

    run(body())


def test_follow_unfollow_idempotent_with_counters_and_events(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, _):
            await reset(store)
            a, b, c = await users(store, "a", "b", "c")
            assert await store.follow(a.id, b.id) == (True, 1)
            assert await store.follow(a.id, b.id) == (False, 1)
            assert await store.follow(c.id, b.id) == (True, 2)
            assert await store.follow(a.id, c.id) == (True, 1)
            ua = await store.user_by_id(a.id)
            ub = await store.user_by_id(b.id)
            assert (ua.following_count, ua.followers_count) == (2, 0)
            assert (ub.following_count, ub.followers_count) == (0, 2)
            assert sorted(await store.follower_ids(b.id)) == sorted([a.id, c.id])
            assert sorted(await store.following_ids(a.id)) == sorted([b.id, c.id])
            assert await store.followers_count(b.id) == 2
            assert await store.followers_count(999) == 0
            assert await store.celebrity_ids(2) == [b.id]

            page = await store.followers_page(b.id, None, 1)
            assert [u.id for _, u in page] == [c.id]  # newest follow first
            page2 = await store.followers_page(b.id, page[0][0], 10)
            assert [u.id for _, u in page2] == [a.id]
            assert [u.id for _, u in await store.following_page(a.id, None, 10)] == [c.id, b.id]
            assert page2[0][1].followers_count == 0 and page2[0][1].following_count == 2

            assert await store.unfollow(a.id, b.id) == (True, 1)
            assert await store.unfollow(a.id, b.id) == (False, 1)
            assert await store.unfollow(b.id, a.id) == (False, 0)
            assert (await store.user_by_id(a.id)).following_count == 1

            events = [(t, d) for _, t, d in await outbox_rows(store)][3:]  # after registrations
            assert events == [
                (model.FOLLOWED, {"follower_id": a.id, "followee_id": b.id, "followers_count": 1}),
                (model.FOLLOWED, {"follower_id": c.id, "followee_id": b.id, "followers_count": 2}),
                (model.FOLLOWED, {"follower_id": a.id, "followee_id": c.id, "followers_count": 1}),
                (model.UNFOLLOWED, {"follower_id": a.id, "followee_id": b.id, "followers_count": 1}),
            ]

    run(body())


def test_concurrent_follows_keep_exact_counters_and_never_deadlock(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, _):
            await reset(store)
            star, *fans = await users(store, "star", *[f"fan{i}" for i in range(30)])
            x, y = fans[0], fans[1]

            async def churn(i: int) -> None:
                # opposite follows of the same pair race with the fan-ins on `star`
                for _ in range(5):
                    await store.follow(x.id, y.id) if i % 2 else await store.follow(y.id, x.id)
                    await store.unfollow(x.id, y.id) if i % 2 else await store.unfollow(y.id, x.id)

            await asyncio.gather(
                *(store.follow(f.id, star.id) for f in fans),
                *(store.follow(f.id, star.id) for f in fans),  # duplicates: no change
                *(churn(i) for i in range(8)),
            )
            assert await store.followers_count(star.id) == len(fans)
            # counters equal a recount from the records
            rows = await store.db.fetch(
                "SELECT u.id FROM users u WHERE followers_count <>"
                " (SELECT count(*) FROM follows WHERE followee_id = u.id) OR following_count <>"
                " (SELECT count(*) FROM follows WHERE follower_id = u.id)"
            )
            assert rows == []
            followed = [d for _, t, d in await outbox_rows(store) if t == model.FOLLOWED and d["followee_id"] == star.id]
            assert len(followed) == len(fans)  # one event per change, none for duplicates

    run(body())


def test_posts_delete_and_reads(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, _):
            await reset(store)
            a, b, c = await users(store, "pa", "pb", "pc")
            await store.follow(a.id, b.id)
            pa = [await store.create_post(a.id, "pa", f"a{i}") for i in range(3)]
            pb = [await store.create_post(b.id, "pb", f"b{i}") for i in range(3)]
            pc = [await store.create_post(c.id, "pc", f"c{i}") for i in range(2)]
            assert all(p.author_handle == "pa" for p in pa)
            assert (await store.user_by_id(a.id)).posts_count == 3

            home = await store.home_post_ids(a.id, None, 100)
            assert home == sorted([p.id for p in pa + pb], reverse=True)
            assert await store.home_post_ids(a.id, home[1], 2) == home[2:4]
            assert await store.author_post_ids(b.id, None, 2) == [pb[2].id, pb[1].id]
            assert await store.author_post_ids(b.id, pb[1].id, 10) == [pb[0].id]
            assert [p.id for p in await store.user_posts(c.id, None, 10)] == [pc[1].id, pc[0].id]
            got = await store.posts_by_ids([pa[0].id, pc[1].id, 424242])
            assert sorted(got, key=lambda p: p.id) == [pa[0], pc[1]]
            assert await store.posts_by_ids([]) == []
            walked, after = [], 0
            while batch := await store.posts_after(after, 3):
                walked += batch
                after = batch[-1].id
            assert walked == sorted(pa + pb + pc, key=lambda p: p.id)
            assert await store.max_post_id() == pc[1].id

            with pytest.raises(Forbidden):
                await store.delete_post(pa[0].id, b.id)
            with pytest.raises(NotFound):
                await store.delete_post(999, a.id)
            assert await store.delete_post(pa[0].id, a.id) == pa[0]
            with pytest.raises(NotFound):
                await store.delete_post(pa[0].id, a.id)
            assert (await store.user_by_id(a.id)).posts_count == 2
            assert pa[0].id not in await store.home_post_ids(a.id, None, 100)

            # concurrent deletes of one post: exactly one succeeds, one event
            outcomes = await asyncio.gather(
                *(store.delete_post(pa[1].id, a.id) for _ in range(6)), return_exceptions=True
            )
            assert sum(isinstance(o, Post) for o in outcomes) == 1
            assert all(isinstance(o, (Post, NotFound)) for o in outcomes)
            assert (await store.user_by_id(a.id)).posts_count == 1

            events = [(t, d) for _, t, d in await outbox_rows(store)]
            created = [d for t, d in events if t == model.POST_CREATED]
            assert created[0] == {"post_id": pa[0].id, "author_id": a.id, "author_handle": "pa", "text": "a0",
                                  "visibility": "public", "in_reply_to_id": None,
                                  "in_reply_to_account_id": None, "reblog_of_id": None, "mention_ids": []}
            deleted = [d for t, d in events if t == model.POST_DELETED]
            links = {"reblog_of_id": None, "in_reply_to_id": None, "visibility": "public"}
            assert deleted == [  # the post as it was (webhooks send it once it is gone)
                {"post_id": p.id, "author_id": a.id, "author_handle": "pa", "text": p.text, **links}
                for p in pa[:2]
            ]

    run(body())


def test_each_write_is_one_transaction_with_its_event(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, _):
            await reset(store)
            (a,) = await users(store, "atom")
            post = await store.create_post(a.id, "atom", "hello")
            # the post row and its outbox row were written by the same transaction
            row = await store.db.fetchone(
                "SELECT p.xmin::text::bigint, (o.xid::text::bigint %% 4294967296)"
                " FROM posts p, outbox o WHERE p.id = %s AND o.data->>'post_id' = p.id::text",
                (post.id,),
            )
            assert row is not None and row[0] == row[1]
            # a write that fails after its post row is inserted (the counter overflows)
            # leaves nothing behind: no post, no event
            await store.db.fetch("UPDATE users SET posts_count = 2147483647 WHERE id = %s", (a.id,))
            before = await outbox_rows(store)
            with pytest.raises(psycopg.errors.NumericValueOutOfRange):
                await store.create_post(a.id, "atom", "doomed")
            assert await outbox_rows(store) == before
            assert await store.author_post_ids(a.id, None, 10) == [post.id]

    run(body())


def test_ids_carry_the_node_and_start_above_the_stored_maximum(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url, node=7) as (store, _, _):
            await reset(store)
            (u,) = await users(store, "nodeuser")
        # two "processes" with different nodes posting at once never collide
        async with opened(pg_url, node=1) as (s1, _, _), opened(pg_url, node=2) as (s2, _, _):
            made = await asyncio.gather(
                *(s.create_post(u.id, "nodeuser", "z") for _ in range(100) for s in (s1, s2))
            )
            assert len({p.id for p in made}) == 200
            nodes = {(p.id >> SEQ_BITS) & ((1 << NODE_BITS) - 1) for p in made}
            assert nodes == {1, 2}
        async with opened(pg_url, node=7) as (store, _, _):
            p = await store.create_post(u.id, "nodeuser", "x")
            assert (p.id >> SEQ_BITS) & ((1 << NODE_BITS) - 1) == 7
            future = p.id + (10_000 << (NODE_BITS + SEQ_BITS))  # 10 s ahead of the clock
            await store.db.fetch("INSERT INTO posts (id, author_id, text) VALUES (%s, %s, 'f')", (future, u.id))
        async with opened(pg_url, node=7) as (store, _, _):
            assert (await store.create_post(u.id, "nodeuser", "y")).id > future

    run(body())


def test_bulk_load_uses_copy_ignores_duplicate_follows_and_recounts(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, _):
            await reset(store)
            base = 1 << 40
            world_users = [(base + i, f"Bulk{i}", f"bulk {i}", f"bt{i}".encode()) for i in range(50)]
            world_follows = [(base + i, base + (i + 1) % 50, base + 1000 + i) for i in range(50)]
            world_follows += world_follows[:10]  # duplicates are ignored
            world_posts = [(base + 5000 + i, base + i % 5, f"bulk post {i} #bulk") for i in range(200)]
            await store.bulk_load(world_users, world_follows, world_posts)
            assert await outbox_rows(store) == []  # the load bypasses the outbox
            u0 = await store.user_by_handle("BULK0")
            assert (u0.followers_count, u0.following_count, u0.posts_count) == (1, 1, 40)
            assert await store.user_id_by_token_hash(b"bt3") == base + 3
            assert (await store.create_post(u0.id, "Bulk0", "after")).id > base + 5199
            with pytest.raises(Conflict):
                await store.create_user("bulk7", "dup", tok())

    run(body())


# --------------------------------------------------------------------------------------------
# outbox event stream
# --------------------------------------------------------------------------------------------


def test_seq_is_not_commit_order_but_the_stream_never_skips(pg_url: str) -> None:
    """The textbook anomaly, made deterministic: a transaction takes seq s1, a later one
    takes s2 > s1 and commits first. A reader by seq would pass s1 for good; the stream
    holds s2 back until s1's transaction has ended, then delivers s1 before s2."""

    async def body() -> None:
        async with opened(pg_url, poll_interval=0.1) as (store, stream, _):
            await reset(store)
            (u,) = await users(store, "ord")
            await stream.seek("c", await stream.tail_position())  # past every committed event
            async with await psycopg.AsyncConnection.connect(pg_url) as slow:
                await slow.execute("INSERT INTO outbox (type, data) VALUES ('slow', '{}')")  # BEGIN implied
                (s1,) = await (await slow.execute("SELECT max(seq) FROM outbox")).fetchone()
                fast = [await store.create_post(u.id, "ord", f"fast {i}") for i in range(3)]
                naive = [r[0] for r in await store.db.fetch("SELECT seq FROM outbox WHERE seq > 1 ORDER BY seq")]
                assert s1 not in naive and min(naive) > s1  # seq order shows 11 without 10
                assert await stream.fetch("c", 100, timeout=0) == []  # held back
                assert await stream.lag("c") == 3  # committed, not acknowledged
                waiting = asyncio.create_task(stream.fetch("c", 100, timeout=10))
                await asyncio.sleep(0.3)
                assert not waiting.done()
                t0 = time.monotonic()
                await slow.commit()  # no NOTIFY from this one: the poll fallback finds it
            events = await waiting
            assert time.monotonic() - t0 < 5.0  # the poll fallback, well before the fetch's 10 s
            assert events[0].ack_handle[1] == s1  # (xid, outbox seq)
            assert [e.seq for e in events] == sorted(e.seq for e in events)  # Event.seq grows
            assert [e.type for e in events] == ["slow"] + [model.POST_CREATED] * 3
            assert [e.data["post_id"] for e in events[1:]] == [p.id for p in fast]
            await stream.ack("c", events)
            assert await stream.fetch("c", 100, timeout=0) == []
            assert await stream.lag("c") == 0

    run(body())


def test_outbox_under_concurrency_delivers_everything_once_in_causal_order(pg_url: str) -> None:
    """Writers through the store, slow raw transactions held open with pg_sleep, rolled-back
    ones, and two consumers in two "processes" (separate pools) fetching and acknowledging
    all along, one of which sometimes "crashes" before acknowledging a batch. Each consumer
    must end with every committed event, none acknowledged event ever again, none from a
    rolled-back transaction, deliveries in (xid, seq) order, and every post's creation
    delivered before its deletion."""

    async def body() -> None:
        rng = random.Random(7)
        async with opened(pg_url, poll_interval=0.05) as (store, stream_a, _), opened(
            pg_url, poll_interval=0.05
        ) as (_, stream_b, _):
            await reset(store)
            authors = await users(store, *[f"w{i}" for i in range(16)])
            for s in (stream_a, stream_b):
                for name in ("ca", "cb"):
                    await s.seek(name, await s.tail_position())  # head() may be held back by another test
            done_writing = asyncio.Event()

            async def writer(u: model.User) -> None:
                for i in range(20):
                    p = await store.create_post(u.id, u.handle, f"post {i}")
                    if i % 3 == 0:
                        await store.delete_post(p.id, u.id)
                    if rng.random() < 0.2:
                        await asyncio.sleep(rng.random() * 0.02)

            overtaken = 0  # slow transactions that saw a larger seq commit before them

            async def slow_tx(i: int) -> None:
                nonlocal overtaken
                async with await psycopg.AsyncConnection.connect(pg_url) as conn:
                    cur = await conn.execute(
                        "INSERT INTO outbox (type, data) VALUES (%s, '{}') RETURNING seq",
                        ("slow" if i % 4 else "rolled_back",),
                    )
                    (seq,) = await cur.fetchone()
                    await conn.execute("SELECT pg_sleep(%s)", (0.05 + rng.random() * 0.4,))
                    row = await store.db.fetchone("SELECT count(*) FROM outbox WHERE seq > %s", (seq,))
                    overtaken += row[0] > 0
                    if i % 4:
                        await conn.commit()
                    else:
                        await conn.rollback()

            async def slow_txs() -> None:
                await asyncio.gather(*(slow_tx(i) for i in range(24)))

            async def consume(stream: PgOutboxEventStream, name: str, crashy: bool) -> list[Event]:
                delivered: list[Event] = []
                acked: set[int] = set()
                last_position = (0, 0)
                while True:
                    batch = await stream.fetch(name, rng.choice([1, 7, 50]), timeout=0.2)
                    if not batch:
                        if done_writing.is_set() and await stream.lag(name) == 0:
                            return delivered
                        continue
                    for e in batch:
                        assert e.seq not in acked, f"{name}: {e.seq} delivered after its ack"
                    if crashy and rng.random() < 0.25:
                        continue  # crashed before acknowledging: the batch comes again
                    positions = [e.ack_handle for e in batch]
                    assert positions == sorted(positions) and positions[0] > last_position
                    assert [e.seq for e in batch] == sorted(e.seq for e in batch)
                    last_position = positions[-1]
                    delivered += batch
                    await stream.ack(name, batch)
                    acked.update(e.seq for e in batch)

            consumers = [
                asyncio.create_task(consume(stream_a, "ca", crashy=True)),
                asyncio.create_task(consume(stream_b, "cb", crashy=False)),
            ]
            await asyncio.gather(*(writer(u) for u in authors), slow_txs())
            done_writing.set()
            results = await asyncio.wait_for(asyncio.gather(*consumers), timeout=60)

            committed = [r[0] for r in await store.db.fetch(
                "SELECT seq FROM outbox WHERE type <> %s ORDER BY xid, seq", (model.USER_REGISTERED,)
            )]
            assert len(committed) == 16 * (20 + 7) + 18
            assert overtaken > 0  # seq order was not commit order: the case under test
            for delivered in results:
                # all, once, in (xid, seq) order, with Event.seq growing along
                assert [e.ack_handle[1] for e in delivered] == committed
                assert [e.seq for e in delivered] == sorted({e.seq for e in delivered})
                assert not any(e.type == "rolled_back" for e in delivered)
                where: dict[tuple[str, int], int] = {}
                for i, e in enumerate(delivered):
                    if e.type in (model.POST_CREATED, model.POST_DELETED):
                        where[(e.type, e.data["post_id"])] = i
                for (type_, pid), i in where.items():
                    if type_ == model.POST_DELETED:
                        assert where[(model.POST_CREATED, pid)] < i

    run(body())


def test_offsets_survive_reopen_and_seek_head_lag(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, stream, _):
            await reset(store)
            (u,) = await users(store, "off")
            posts = [await store.create_post(u.id, "off", f"p{i}") for i in range(6)]
            first = await stream.fetch("reader", 3, timeout=0)
            assert [e.type for e in first] == [model.USER_REGISTERED, model.POST_CREATED, model.POST_CREATED]
            assert await stream.fetch("reader", 3, timeout=0) == first  # not acked: again
            await stream.ack("reader", first)
            assert await stream.lag("reader") == 4
            position = await stream.position("reader")
        async with opened(pg_url) as (store, stream, _):
            assert await stream.position("reader") == position
            rest = await stream.fetch("reader", 100, timeout=0)
            assert [e.data["post_id"] for e in rest] == [p.id for p in posts[2:]]
            # an ack of old events never moves a consumer back
            await stream.ack("reader", rest)
            await stream.ack("reader", first)
            assert await stream.lag("reader") == 0

            head = await stream.head()
            assert head == rest[-1].seq
            await stream.seek("late", head)
            assert await stream.fetch("late", 10, timeout=0) == []
            await stream.seek("late", 0)  # replay everything
            assert len(await stream.fetch("late", 100, timeout=0)) == 7
            await stream.seek("late", first[1].seq)
            assert [e.seq for e in await stream.fetch("late", 100, timeout=0)] == [e.seq for e in first[2:] + rest]
            with pytest.raises(ValueError):
                await stream.seek("late", 10**9)
            # events without ack handles (built elsewhere) are found by seq
            plain = [Event(e.seq, e.type, e.data) for e in rest[:2]]
            await stream.seek("plain", 0)
            await stream.ack("plain", plain)
            assert await stream.position("plain") == rest[1].ack_handle

    run(body())


def test_a_transaction_with_many_events_spans_batches(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, stream, _):
            await reset(store)
            async with await psycopg.AsyncConnection.connect(pg_url) as conn:
                for i in range(5):
                    await conn.execute("INSERT INTO outbox (type, data) VALUES ('multi', %s)", (f'{{"i": {i}}}',))
                (xid,) = await (await conn.execute("SELECT pg_current_xact_id()::text::bigint")).fetchone()
            got: list[Event] = []
            while batch := await stream.fetch("m", 2, timeout=0):
                got += batch
                await stream.ack("m", batch)
            assert [e.data["i"] for e in got] == [0, 1, 2, 3, 4]
            assert [e.seq for e in got] == [(xid << 16) | k for k in range(5)]
            assert await stream.head() == got[-1].seq
            await stream.seek("m2", got[2].seq)  # just after the third
            assert [e.data["i"] for e in await stream.fetch("m2", 10, timeout=0)] == [3, 4]
            await stream.seek("m3", 0)
            await stream.ack("m3", [Event(got[1].seq, "multi")])  # no ack handle: located
            assert [e.seq for e in await stream.fetch("m3", 10, timeout=0)] == [e.seq for e in got[2:]]

    run(body())


def test_fetch_wakes_on_commits_of_other_processes(pg_url: str) -> None:
    async def body() -> None:
        # a long poll interval: only LISTEN/NOTIFY can wake the consumer quickly
        async with opened(pg_url, poll_interval=30) as (store, stream, _), opened(pg_url) as (writer, _, _):
            await reset(store)
            (u,) = await users(writer, "waker")
            await stream.seek("w", await stream.tail_position())
            task = asyncio.create_task(stream.fetch("w", 10, timeout=20))
            await asyncio.sleep(0.5)
            assert not task.done()
            t0 = time.monotonic()
            await writer.create_post(u.id, "waker", "wake up")
            events = await task
            assert time.monotonic() - t0 < 10.0  # NOTIFY, well before the 30 s poll
            assert [e.type for e in events] == [model.POST_CREATED]
            # no event: fetch returns empty after its timeout
            t0 = time.monotonic()
            await stream.ack("w", events)
            assert await stream.fetch("w", 10, timeout=0.3) == []
            assert 0.25 < time.monotonic() - t0 < 10.0

    run(body())


# --------------------------------------------------------------------------------------------
# leader lock
# --------------------------------------------------------------------------------------------


def test_leader_lock_is_exclusive_and_passes_on(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (_, stream_a, _), opened(pg_url) as (_, stream_b, _):
            order: list[str] = []
            async with stream_a.leader("relay", poll=0.1) as lock_a:
                assert lock_a.held
                # the other "process" cannot get it while A holds it...
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(stream_b.leader("relay", poll=0.1).__aenter__(), 1.0)
                # ...but another name is independent
                async with stream_b.leader("other", poll=0.1) as other:
                    assert other.held

                async def b_leads() -> None:
                    async with stream_b.leader("relay", poll=0.1):
                        order.append("b")

                waiting = asyncio.create_task(b_leads())
                await asyncio.sleep(0.5)
                assert order == []
                order.append("a-done")
            await asyncio.wait_for(waiting, 3)
            assert order == ["a-done", "b"]

    run(body())


def test_leader_notices_a_lost_connection(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (_, stream_a, _), opened(pg_url) as (_, stream_b, _):
            lock = stream_a.leader("relay2", poll=0.1, check_interval=0.2, check_timeout=1)
            t0 = time.monotonic()
            with pytest.raises(LeadershipLost):
                async with lock:
                    with psycopg.connect(pg_url, autocommit=True) as admin:  # the session dies
                        admin.execute("SELECT pg_terminate_backend(%s)", (lock.backend_pid,))
                    t0 = time.monotonic()
                    await asyncio.sleep(30)  # cancelled by the watchdog
            assert time.monotonic() - t0 < 3
            assert lock.lost.is_set() and not lock.held
            async with stream_b.leader("relay2", poll=0.1) as successor:
                assert successor.held

    run(body())


# --------------------------------------------------------------------------------------------
# search index
# --------------------------------------------------------------------------------------------


def test_search_word_semantics(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, index):
            await reset(store)
            texts = {
                1: "I love #Rust",
                2: "rust is fine",
                3: "RUST and Go",
                4: "@bob says hi",
                5: "bob is here",
                6: "Straße und Ünïcode",
                7: "it's a ru:* test & (operators) | !here",
                8: "e\u0301cole snake_case 42",
            }
            await index.index([Post(i, 1, "x", t) for i, t in texts.items()])

            async def q(query: str, before: int | None = None, limit: int = 100) -> list[int]:
                return await index.search(query_terms(query), before, limit)

            assert await q("rust") == [3, 2, 1]  # a plain word also matches the hashtag
            assert await q("#rust") == [1]  # the hashtag only
            assert await q("#RUST") == [1]
            assert await q("rust go") == [3]  # every term
            assert await q("@bob") == [4]
            assert await q("bob") == [5, 4]
            assert await q("STRASSE ünïcode") == [6]  # case folding, nothing else
            assert await q("e\u0301cole") == [8] and await q("snake_case") == [8]
            assert await q("42") == [8]
            assert await q("rust & !go | (x)") == []  # operators are plain separators
            assert await q("here !") == [7, 5]
            assert await q("ru") == [7]  # no prefix matching: 'ru' is a word of post 7
            assert await index.search(["ru:*"], None, 10) == []
            for raw in (["it's"], ["a\\b"], ["'"], ["&"], ["x:A"], ["!"]):  # raw terms are inert
                assert await index.search(raw, None, 10) == []
            assert tsquery_text(["it's", "a\\b"]) == "'it''s' & 'a\\\\b'"
            assert await q("rust", before=3) == [2, 1]
            assert await q("rust", limit=1) == [3]

            # upsert: indexing again replaces, one entry per post
            await index.index([Post(2, 1, "x", "now about go"), Post(2, 1, "x", "now about go")])
            await index.index([Post(2, 1, "x", "now about go")])
            assert await q("rust") == [3, 1]
            assert await q("go") == [3, 2]
            assert (await store.db.fetchone("SELECT count(*) FROM post_search WHERE id = 2"))[0] == 1
            await index.remove([3, 999])
            assert await q("go") == [2]
            # words too long to be a lexeme are left out, and searching them finds nothing
            long_word = "w" * 3000
            await index.index([Post(9, 1, "x", f"{long_word} tail")])
            assert await q("tail") == [9]
            assert await index.search([long_word], None, 10) == []
            await index.clear()
            assert await q("tail") == []

    run(body())


def test_search_uses_the_gin_index_for_a_selective_term(pg_url: str) -> None:
    async def body() -> None:
        async with opened(pg_url) as (store, _, index):
            await reset(store)
            # a realistic vocabulary: a few very common words and a long tail of rare ones
            # (the planner's estimate for a word it has no statistics for derives from the
            # rarest word it does know)
            rng = random.Random(3)
            vocab = [f"w{n}" for n in range(5000)]
            weights = [1 / (n + 1) for n in range(5000)]
            posts = [
                Post(i, 1, "x", " ".join(rng.choices(vocab, weights, k=8))) for i in range(1, 30001)
            ]
            for i in range(1, 30001, 6000):
                posts[i - 1] = Post(i, 1, "x", "common needle")
            for start in range(0, len(posts), 5000):
                await index.index(posts[start : start + 5000])
            await store.db.fetch("ANALYZE post_search", prepare=False)
            assert await index.search(["needle"], None, 10) == [24001, 18001, 12001, 6001, 1]
            plan = "\n".join(
                r[0]
                for r in await store.db.fetch(
                    "EXPLAIN " + SEARCH_SQL, (tsquery_text(["needle"]), (1 << 63) - 1, 20), prepare=False
                )
            )
            assert "post_search_terms" in plan, plan
            assert re.search(r"Bitmap Index Scan on post_search_terms", plan), plan

    run(body())


# --------------------------------------------------------------------------------------------
# throughput against pgbench (HOMEFEED_PG_BENCH=1)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("HOMEFEED_PG_BENCH") != "1", reason="set HOMEFEED_PG_BENCH=1 to run")
def test_create_post_throughput_vs_pgbench(capsys: pytest.CaptureFixture[str]) -> None:
    """Durable posts/s through ``create_post`` with 32 concurrent tasks (a pool of 32
    connections), against ``pgbench -N -c 32 -j 2 -T 10`` on a scratch database of the same
    server, in the same run. Disk flush times on a shared machine drift, so the two
    alternate for ``HOMEFEED_PG_BENCH_ROUNDS`` rounds (default 3) and the medians compare."""
    if shutil.which("pgbench") is None:
        pytest.skip("pgbench is not installed")
    seconds = int(os.environ.get("HOMEFEED_PG_BENCH_SECONDS", "10"))
    rounds = int(os.environ.get("HOMEFEED_PG_BENCH_ROUNDS", "3"))
    info = conninfo.conninfo_to_dict(ADMIN_URL)
    args = [f"--{k}={info[k]}" for k in ("host", "port") if k in info]
    if "user" in info:
        args.append(f"--username={info['user']}")
    env = {**os.environ, **({"PGPASSWORD": info["password"]} if "password" in info else {})}

    def pgbench(db: str) -> float:
        out = subprocess.run(
            ["pgbench", *args, "-N", "-c", "32", "-j", "2", "-T", str(seconds), db],
            check=True, env=env, capture_output=True, text=True,
        ).stdout
        return float(re.search(r"tps = ([0-9.]+)", out).group(1))  # type: ignore[union-attr]

    async def homefeed(url: str, round_: int) -> float:
        async with opened(url, min_size=32, max_size=32) as (store, _, _):
            authors = await users(store, *[f"bench{round_}_{i}" for i in range(32)])
            stop, count = False, 0

            async def poster(u: model.User) -> None:
                nonlocal count
                while not stop:
                    await store.create_post(u.id, u.handle, "a post of typical length #bench @someone")
                    count += 1

            tasks = [asyncio.create_task(poster(u)) for u in authors]
            await asyncio.sleep(2)  # warm up: connections, prepared statements
            c0, t0 = count, time.perf_counter()
            await asyncio.sleep(seconds)
            c1, t1 = count, time.perf_counter()
            stop = True
            await asyncio.gather(*tasks)
            return (c1 - c0) / (t1 - t0)

    scratch, name = _create_db(), _create_db()
    tps: list[float] = []
    posts: list[float] = []
    try:
        subprocess.run(["pgbench", *args, "-i", "-q", scratch], check=True, env=env, capture_output=True)
        for r in range(rounds):
            tps.append(pgbench(scratch))
            posts.append(run(homefeed(_url(name), r)))
    finally:
        _drop_db(scratch)
        _drop_db(name)
    ratio = sorted(posts)[len(posts) // 2] / sorted(tps)[len(tps) // 2]
    with capsys.disabled():
        print(
            f"\npgbench -N -c 32 -j 2 -T {seconds} (tps): {', '.join(f'{t:.0f}' for t in tps)}"
            f"\ncreate_post, 32 tasks (posts/s):  {', '.join(f'{p:.0f}' for p in posts)}"
            f"\nratio of medians: {ratio:.2f}"
        )
    assert ratio >= 0.8


def test_each_statement_is_planned_once_per_connection(pg_url: str) -> None:
    """A prepared statement runs on its generic plan: PostgreSQL's default re-planned nearly
    every statement at every execution, which cost the primary more CPU than running them
    (benchmarks/RESULTS.md, ninth pass). One pool connection, so every statement is on it."""
    async def go() -> None:
        async with opened(pg_url, min_size=1, max_size=1) as (store, stream, index):
            a = await store.create_user(f"gp{uuid.uuid4().hex[:8]}", "A", os.urandom(16))
            b = await store.create_user(f"gp{uuid.uuid4().hex[:8]}", "B", os.urandom(16))
            await store.follow(b.id, a.id)
            first = await store.create_post(a.id, a.handle, "first")
            for i in range(8):  # past the 5 custom plans after which the default may settle
                await store.create_post(a.id, a.handle, f"post {i}")
                await store.create_post(b.id, b.handle, f"reply {i}", in_reply_to_id=first.id)
                await store.home_post_ids(b.id, None, 20)
                await store.present_post_ids([first.id, first.id + 1])
            async with store.db.pool.connection() as conn:
                rows = await (await conn.execute(
                    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement NOT LIKE '%pg_prepared_statements%'")).fetchall()
            assert rows, "no prepared statement on the pool's connection"
            assert [r[0] for r in rows if r[2]] == [], "statements planned for their parameters"
            posts = [r for r in rows if "INSERT INTO posts" in r[0]]
            assert sum(r[1] for r in posts) >= 17, posts  # every post, on a generic plan

    run(go())
