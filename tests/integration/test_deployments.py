"""Deployments on one NATS server never share a stream, a consumer or an event.

``homefeed migrate`` stores a deployment id in the database; the JetStream adapter derives
its stream and subjects from it, claims its stream, marks the events it publishes and refuses
a stream claimed by another deployment. A database that already had events when it was
upgraded keeps the old names (``HOMEFEED``, ``homefeed.events``), so nothing it relayed
before the upgrade is orphaned.

Needs NATS with JetStream (and PostgreSQL for the PostgreSQL cases).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, TypeVar

import pytest

from homefeed.adapters import pg_db, sqlite_db
from homefeed.adapters.jetstream import DEPLOYMENT_HEADER, JetStreamEventStream, WrongDeployment
from homefeed.adapters.jetstream_names import LEGACY_STREAM, LEGACY_SUBJECT_PREFIX
from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.adapters.sqlite_store import SqliteRecordStore
from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.domain.deployment import Deployment
from homefeed.domain.model import Event
from tests.backends import NATS_URL, needs, scratch_pg_database, unique

pytestmark = needs("nats")

T = TypeVar("T")


def run(aw: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(aw, 60))  # type: ignore[arg-type]


async def _fetch_all(js: JetStreamEventStream, consumer: str, want: int) -> list[Event]:
    got: list[Event] = []
    for _ in range(20):
        batch = await js.fetch(consumer, 100, 0.3)
        await js.ack(consumer, batch)
        got += batch
        if len(got) >= want and not batch:
            break
    return got


# -- the id: generated once per database by migrate -------------------------------------------

def test_sqlite_migrate_stores_one_deployment_id_per_database(tmp_path: Path) -> None:
    async def body() -> None:
        ids = []
        for name in ("a.db", "b.db", "a.db"):  # a.db twice: stored, not generated per open
            store = SqliteRecordStore(SqliteDatabase(tmp_path / name))
            await store.open()
            try:
                ids.append(await store.deployment())
            finally:
                await store.close()
        a, b, a_again = ids
        assert a == a_again and a.id != b.id
        assert len(a.id) == 12 and int(a.id, 16) >= 0
        assert not a.legacy_bus_names  # a fresh database gets names of its own

    run(body())


def test_sqlite_database_upgraded_with_events_keeps_the_legacy_stream(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite_db.connect(path)
    # the schema as the release before deployment ids left it, with events relayed
    for target, script in enumerate(sqlite_db.MIGRATIONS[:4], start=1):
        for statement in sqlite_db._split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")
    conn.execute("INSERT INTO outbox(type, data) VALUES ('post_created', '{}')")
    conn.execute("DELETE FROM outbox")  # even once relayed and pruned
    sqlite_db.migrate(conn)
    row = conn.execute("SELECT id, legacy_bus_names FROM deployment").fetchone()
    conn.close()
    assert row[1] == 1 and len(row[0]) == 12
    js = JetStreamEventStream(NATS_URL, deployment=Deployment(row[0], legacy_bus_names=True))
    run(js._resolve_deployment())
    assert (js.stream, js.subject_prefix) == (LEGACY_STREAM, LEGACY_SUBJECT_PREFIX)


def test_sqlite_database_upgraded_without_events_gets_its_own_names(tmp_path: Path) -> None:
    conn = sqlite_db.connect(tmp_path / "empty.db")
    for target, script in enumerate(sqlite_db.MIGRATIONS[:4], start=1):
        for statement in sqlite_db._split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")
    sqlite_db.migrate(conn)
    assert conn.execute("SELECT legacy_bus_names FROM deployment").fetchone()[0] == 0
    conn.close()


@needs("postgresql")
def test_postgres_migrate_stores_a_deployment_id_and_upgrades_keep_legacy_names() -> None:
    import psycopg

    from homefeed.adapters.pg_db import PgDatabase
    from homefeed.adapters.pg_store import PgRecordStore

    async def deployment_of(url: str) -> Deployment:
        store = PgRecordStore(PgDatabase(url))
        await store.open()
        try:
            return await store.deployment()
        finally:
            await store.close()

    async def upgrade_with_events(url: str) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE homefeed_schema (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
                " version integer NOT NULL)")
            for script in pg_db.MIGRATIONS[:5]:
                await conn.execute(script, prepare=False)  # type: ignore[arg-type]
            await conn.execute("INSERT INTO homefeed_schema(version) VALUES (5)")
            await conn.execute("INSERT INTO outbox(type, data) VALUES ('post_created', '{}')")
            await conn.execute("DELETE FROM outbox")
            await pg_db.migrate(conn)

    with scratch_pg_database() as a_url, scratch_pg_database() as b_url, \
            scratch_pg_database() as old_url:
        a, b = run(deployment_of(a_url)), run(deployment_of(b_url))
        assert a.id != b.id and len(a.id) == 12
        assert not a.legacy_bus_names and not b.legacy_bus_names
        assert run(deployment_of(a_url)) == a
        run(upgrade_with_events(old_url))
        assert run(deployment_of(old_url)).legacy_bus_names


# -- two deployments on one NATS server -------------------------------------------------------

def test_two_deployments_get_their_own_streams_and_never_see_each_others_events(tmp_path: Path) -> None:
    """As bootstrap wires it: HOMEFEED_BUS_URL without parameters, two data dirs."""

    async def body() -> None:
        hfs = [build(Settings(data_dir=tmp_path / name, bus_url=NATS_URL)) for name in ("a", "b")]
        streams = []
        for hf in hfs:
            await hf.store.open()
            js = hf.stream
            assert isinstance(js, JetStreamEventStream)
            await js.open()
            streams.append(js)
        a, b = streams
        try:
            assert a.stream != b.stream and LEGACY_STREAM not in (a.stream, b.stream)
            assert a.subject_prefix != b.subject_prefix
            assert a.dead_letter_stream != b.dead_letter_stream
            await a.publish([Event(i, "a_event", {"n": i}) for i in range(1, 6)])
            await b.publish([Event(i, "b_event", {"n": i}) for i in range(1, 4)])
            got_a = await _fetch_all(a, "fanout", 5)
            got_b = await _fetch_all(b, "fanout", 3)
            assert [e.type for e in got_a] == ["a_event"] * 5
            assert [e.type for e in got_b] == ["b_event"] * 3
            for js in (a, b):  # the consumers are two: each has its own position
                assert (await js.consumer_stats("fanout"))["stream_seq_acked"] == \
                    (await js.stream_state())["last_seq"]
            assert got_a[0].ack_handle.headers[DEPLOYMENT_HEADER] == a.deployment_id
        finally:
            for js, hf in zip(streams, hfs):
                await js.delete_streams()
                await js.close()
                await hf.store.close()

    run(body())


def test_a_worker_pointed_at_another_deployments_stream_refuses_to_start() -> None:
    stream, prefix = unique("DEPA_"), unique("depa") + ".events"
    url = f"{NATS_URL}?stream={stream}&subject_prefix={prefix}"

    async def body() -> None:
        a = JetStreamEventStream.from_url(url, deployment=Deployment("aaaaaaaaaaaa"))
        await a.open()
        try:
            b = JetStreamEventStream.from_url(url, deployment=Deployment("bbbbbbbbbbbb"))
            with pytest.raises(WrongDeployment) as err:
                await b.open()
            message = str(err.value)
            assert "\n" not in message
            assert "belongs to deployment aaaaaaaaaaaa" in message
            assert "this database is deployment bbbbbbbbbbbb" in message
            assert "remove stream= and subject_prefix=" in message
            assert not b.connected  # closed again, nothing consumed
            assert (await a.stream_state())["consumers"] == 0
        finally:
            await a.delete_streams()
            await a.close()

    run(body())


def test_a_stream_made_before_deployment_ids_is_claimed_by_the_first_deployment_only() -> None:
    """Two old deployments that shared one stream: after the upgrade the first to start
    claims it, the second refuses with the fix (a stream of its own)."""
    stream, prefix = unique("OLD_"), unique("old") + ".events"

    async def body() -> None:
        old = JetStreamEventStream(NATS_URL, stream=stream, subject_prefix=prefix)
        await old.open()  # no deployment: made as the release before ids made it
        try:
            first = JetStreamEventStream(NATS_URL, stream=stream, subject_prefix=prefix,
                                         deployment=Deployment("111111111111", True))
            await first.open()
            await first.close()
            second = JetStreamEventStream(NATS_URL, stream=stream, subject_prefix=prefix,
                                          deployment=Deployment("222222222222", True))
            with pytest.raises(WrongDeployment, match="belongs to deployment 111111111111"):
                await second.open()
        finally:
            await old.delete_streams()
            await old.close()

    run(body())


def test_an_event_of_another_deployment_in_our_stream_is_dead_lettered_not_applied() -> None:
    stream, prefix = unique("DEPC_"), unique("depc") + ".events"

    async def body() -> None:
        js = JetStreamEventStream(NATS_URL, stream=stream, subject_prefix=prefix,
                                  deployment=Deployment("cccccccccccc"))
        await js.open()
        try:
            await js.publish([Event(1, "ours", {})])
            raw: Any = js._js
            await raw.publish(js.subject_for("theirs"), b'{"seq": 2, "type": "theirs", "data": {}}',
                              headers={DEPLOYMENT_HEADER: "dddddddddddd", "Nats-Msg-Id": "x2"})
            got = await _fetch_all(js, "fanout", 1)
            assert [e.type for e in got] == ["ours"]
            (dl,) = await js.dead_letters("fanout")
            assert "deployment dddddddddddd" in dl.reason and dl.event is None
        finally:
            await js.delete_streams()
            await js.close()

    run(body())


def test_explicit_url_parameters_override_the_derived_names() -> None:
    js = JetStreamEventStream.from_url(f"{NATS_URL}?subject_prefix=mine.events",
                                       deployment=Deployment("abcdef012345"))
    run(js._resolve_deployment())
    assert js.stream == "HOMEFEED_ABCDEF012345"  # derived
    assert js.subject_prefix == "mine.events"  # given
    assert js.dead_letter_prefix == "mine.dead"
    assert js.dead_letter_stream == "HOMEFEED_ABCDEF012345_DEAD"
    with pytest.raises(ValueError, match="unknown parameter 'strem'"):
        JetStreamEventStream.from_url(f"{NATS_URL}?strem=X")



def test_the_refusal_of_a_second_legacy_deployment_gives_it_a_stream_of_its_own() -> None:
    """(Checked on the message alone: the real ``HOMEFEED`` of a shared server is not ours
    to claim in a test.)"""
    js = JetStreamEventStream(NATS_URL, deployment=Deployment("222222222222", legacy_bus_names=True))
    run(js._resolve_deployment())
    assert js.stream == LEGACY_STREAM
    message = js._refusal("111111111111")
    assert "shared HOMEFEED" in message
    assert "?stream=HOMEFEED_222222222222&subject_prefix=homefeed.222222222222.events" in message
