"""The PostgreSQL outbox stream's shared tail delivers what each consumer's own read would.

``PgOutboxEventStream`` reads the newest events once for every consumer of a process (the
tail), instead of a statement per consumer and commit. Against a real server, several
consumers of one stream run drawn sequences of commits (one event or several per
transaction, from this process and from another one that wakes nobody here), fetches,
crashes before an acknowledgement, acknowledgements that land together (one statement),
and moves of a consumer's stored position by another process (``homefeed replay``; followed
once the move's NOTIFY has arrived), with a
tail kept short so that it is trimmed, refilled in several reads, and left behind.

The oracle is the stored-position semantics of a consumer reading the table itself: a
fetch returns the committed events after the consumer's stored position, in (xid, seq)
order, with each ``Event.seq`` numbered from its rank in its transaction. The database is
shared with other tests, whose open transactions may hold the stable bound back, so a fetch
may return fewer events than committed, never other ones: it must return a prefix of what
the oracle expects, and not nothing when a transaction that ended before the fetch began
(below the cluster's oldest running transaction, read just before it) holds one. At the
end every consumer has caught up with every event.""" 

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from homefeed.adapters import pg_outbox
from homefeed.adapters.pg_db import PgDatabase
from homefeed.adapters.pg_outbox import START, PgOutboxEventStream, Position
from tests.backends import scratch_pg_database

CONSUMERS = ("c0", "c1", "c2", "c3")

consumer = st.sampled_from(CONSUMERS)
operation = st.one_of(
    st.tuples(st.just("commit"), st.integers(1, 5), st.booleans(), st.booleans()),
    st.tuples(st.just("fetch"), consumer, st.integers(1, 9)),
    st.tuples(st.just("crash"), consumer, st.integers(1, 9)),
    st.tuples(st.just("wait"), consumer, st.integers(1, 9)),
    st.tuples(st.just("together"), st.integers(1, 9)),
    st.tuples(st.just("move"), consumer, st.integers(0, 60)),
)


@pytest.fixture(scope="module")
def pg_url() -> Any:
    with scratch_pg_database() as url:
        yield url


Row = tuple[Position, int, str, dict]  # position, Event.seq, type, data


async def committed(db: PgDatabase) -> list[Row]:
    """Every outbox row in delivery order, with the ``Event.seq`` its rank gives it."""
    rows = await db.fetch("SELECT xid::text::bigint, seq, type, data FROM outbox ORDER BY xid, seq")
    out: list[Row] = []
    rank, last_xid = 0, None
    for xid, seq, type_, data in rows:
        rank = rank + 1 if xid == last_xid else 0
        last_xid = xid
        out.append(((xid, seq), (xid << 16) | rank, type_, data))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=40), keep=st.sampled_from([(6, 3), (4096, 1024)]))
def test_every_consumer_gets_what_its_own_read_would(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, ops: list[tuple], keep: tuple[int, int]
) -> None:
    monkeypatch.setattr(pg_outbox, "TAIL_KEEP", keep[0])
    monkeypatch.setattr(pg_outbox, "TAIL_READ", keep[1])

    async def main() -> None:
        here, there = PgDatabase(pg_url, poll_interval=0.05), PgDatabase(pg_url, poll_interval=0.05)
        await here.open()
        await there.open()
        try:
            await here.write("TRUNCATE outbox, consumer_offsets", outbox=False)
            async with here.outbox_waiter():  # LISTEN: this "process" hears the other's moves
                pass
            stream, elsewhere = PgOutboxEventStream(here), PgOutboxEventStream(there)
            stored: dict[str, Position] = {c: START for c in CONSUMERS}
            serial = 0

            async def fetch(c: str, n: int, timeout: float = 0) -> list:
                (xmin,) = await here.fetchone(  # type: ignore[misc]
                    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                got = await stream.fetch(c, n, timeout=timeout)
                expected = [r for r in await committed(here) if r[0] > stored[c]]
                assert [(e.ack_handle, e.seq, e.type, e.data) for e in got] == expected[: len(got)]
                if any(r[0][0] < xmin for r in expected):
                    assert got, f"{c} got nothing of the events committed before its fetch"
                return got

            async def ack(c: str, events: list) -> None:
                await stream.ack(c, events)
                stored[c] = max(stored[c], events[-1].ack_handle)

            for op in ops:
                kind = op[0]
                if kind == "commit":
                    _, n, together, from_here = op
                    db = here if from_here else there
                    for group in ([n] if together else [1] * n):
                        await db.write(
                            "INSERT INTO outbox (type, data) SELECT 'e', jsonb_build_object('i', %s + g)"
                            " FROM generate_series(1, %s) g", (serial, group), outbox=from_here)
                        serial += group
                elif kind in ("fetch", "crash"):
                    _, c, n = op
                    got = await fetch(c, n)
                    if got and kind == "fetch":
                        await ack(c, got)
                elif kind == "wait":
                    _, c, n = op
                    got = await fetch(c, n, timeout=0.2)
                    if got:
                        await ack(c, got)
                elif kind == "together":  # every consumer fetches, then all acknowledge at once
                    got = {c: await fetch(c, op[1]) for c in CONSUMERS}
                    await asyncio.gather(*(ack(c, e) for c, e in got.items() if e))
                    for c, e in got.items():
                        if e:
                            assert await stream.position(c) == e[-1].ack_handle
                else:  # another process moves a consumer's stored position back (replay)
                    _, c, k = op
                    rows = await committed(here)
                    target = rows[k - 1][0] if 0 < k <= len(rows) else START
                    wakes = here.wakes
                    await elsewhere.seek(c, target)
                    stored[c] = target
                    for _ in range(500):  # until its NOTIFY has arrived here
                        if here.wakes != wakes:
                            break
                        await asyncio.sleep(0.01)

            # Every consumer catches up with everything, whatever the tail held.
            for c in CONSUMERS:
                for _ in range(200):
                    if await stream.lag(c) == 0:
                        break
                    got = await fetch(c, 50, timeout=0.2)
                    if got:
                        await ack(c, got)
                assert await stream.lag(c) == 0
                assert await stream.position(c) == stored[c]
        finally:
            await here.close()
            await there.close()

    note(f"ops={ops!r} keep={keep!r}")  # shown with a failing example
    asyncio.run(main())
