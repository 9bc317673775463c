"""EventStream contract (``homefeed.ports.EventStream``): outbox events in commit order, to
durable named consumers, at least once. Events are produced by record-store writes (each
``create_user`` commits exactly one ``user_registered`` event)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time

import pytest

from homefeed.domain import model
from homefeed.domain.model import Event

from .conftest import Records, run, wait_for_events

_n = itertools.count(1)


async def register(r: Records, count: int) -> list[int]:
    """Commit ``count`` user_registered events, one after another; their user ids."""
    ids = []
    for _ in range(count):
        h = f"ev{next(_n)}"
        ids.append((await r.store.create_user(h, h, os.urandom(16))).id)
    return ids


def user_ids(events: list[Event]) -> list[int]:
    return [e.data["user_id"] for e in events if e.type == model.USER_REGISTERED]


async def take(r: Records, consumer: str, n: int) -> list[Event]:
    """The first ``n`` events after the consumer's offset (no ack)."""
    events = await wait_for_events(r.stream, consumer, lambda ev: len(ev) >= n, r.delivery_timeout)
    assert len(events) >= n, f"only {len(events)} of {n} events arrived"
    return events[:n]


async def ack_all(r: Records, consumer: str, n: int) -> list[Event]:
    events = await take(r, consumer, n)
    await r.stream.ack(consumer, events)
    return events


def test_events_arrive_in_commit_order(event_stream):
    async def main():
        async with event_stream() as r:
            ids = await register(r, 12)
            events = await take(r, "c", 12)
            assert user_ids(events) == ids
            seqs = [e.seq for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == 12

    run(main())


def test_concurrent_commits_come_in_one_total_order(event_stream):
    async def main():
        async with event_stream() as r:
            author = await r.store.create_user("author", "a", os.urandom(16))
            posts = await asyncio.gather(
                *(r.store.create_post(author.id, "author", f"p{i}") for i in range(30))
            )
            events = await take(r, "c", 31)
            seqs = [e.seq for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == 31
            got = [e.data["post_id"] for e in events if e.type == model.POST_CREATED]
            assert sorted(got) == sorted(p.id for p in posts)
            # a second consumer sees the very same order
            assert [e.seq for e in await take(r, "d", 31)] == seqs

    run(main())


def test_event_data_round_trips(event_stream):
    text = "héllo 👋🏽 שלום e\u0301 \t\n \" ' \\"

    async def main():
        async with event_stream() as r:
            u = await r.store.create_user("Writer", "W", os.urandom(16))
            p = await r.store.create_post(u.id, "Writer", text)
            events = await take(r, "c", 2)
            assert events[0].type == model.USER_REGISTERED and events[0].data["user_id"] == u.id
            assert events[1].type == model.POST_CREATED
            assert events[1].data["post_id"] == p.id and events[1].data["text"] == text
            assert isinstance(events[1].data["post_id"], int)

    run(main())


def test_fetch_without_ack_redelivers(event_stream):
    async def main():
        async with event_stream() as r:
            await register(r, 4)
            first = await take(r, "c", 4)
            deadline = time.monotonic() + r.redelivery_timeout + r.delivery_timeout
            # Every event comes again, in order, the same; not necessarily in one fetch: a
            # broker redelivers each message when its own ack_wait runs out, and a batch
            # delivered in two parts (a busy machine) is redelivered in two parts.
            again: list[Event] = []
            while time.monotonic() < deadline and {e.seq for e in again} != {e.seq for e in first}:
                again += [e for e in await r.stream.fetch("c", 4, 0.5) if e.seq not in {a.seq for a in again}]
            assert [e.seq for e in again] == [e.seq for e in first]
            assert [(e.type, e.data) for e in again] == [(e.type, e.data) for e in first]

    run(main())


def test_ack_advances_the_consumer(event_stream):
    async def main():
        async with event_stream() as r:
            ids = await register(r, 5)
            batch = await r.stream.fetch("c", 2, r.delivery_timeout)
            assert 1 <= len(batch) <= 2
            await r.stream.ack("c", batch)
            rest = await take(r, "c", 5 - len(batch))
            assert user_ids(batch) + user_ids(rest) == ids
            await r.stream.ack("c", rest)
            assert await r.stream.fetch("c", 10, 0.1) == []

    run(main())


def test_fetch_respects_max_events(event_stream):
    async def main():
        async with event_stream() as r:
            await register(r, 6)
            await take(r, "c", 6)  # all delivered to the stream
            for n in (1, 3):
                got = await r.stream.fetch("other" + str(n), n, r.delivery_timeout)
                assert 1 <= len(got) <= n

    run(main())


def test_ack_is_idempotent(event_stream):
    async def main():
        async with event_stream() as r:
            ids = await register(r, 4)
            batch = await take(r, "c", 2)
            await r.stream.ack("c", batch)
            await r.stream.ack("c", batch)  # a handler retried after a crash acks again
            assert await r.stream.lag("c") == 2
            assert user_ids(await take(r, "c", 2)) == ids[2:]

    run(main())


def test_consumers_are_independent(event_stream):
    async def main():
        async with event_stream() as r:
            ids = await register(r, 3)
            await ack_all(r, "fanout", 3)
            assert user_ids(await take(r, "indexer", 3)) == ids
            assert await r.stream.lag("indexer") == 3
            assert await r.stream.lag("fanout") == 0

    run(main())


def test_lag_counts_committed_but_unacknowledged(event_stream):
    async def main():
        async with event_stream() as r:
            assert await r.stream.lag("c") == 0
            await register(r, 5)
            await take(r, "c", 5)
            assert await r.stream.lag("c") == 5
            assert await r.stream.lag("never-fetched") == 5
            batch = await r.stream.fetch("c", 2, r.delivery_timeout)
            await r.stream.ack("c", batch)
            assert await r.stream.lag("c") == 5 - len(batch)
            rest = await take(r, "c", 5 - len(batch))
            await r.stream.ack("c", rest)
            assert await r.stream.lag("c") == 0
            await register(r, 1)
            await take(r, "c", 1)
            assert await r.stream.lag("c") == 1

    run(main())


def test_lags_reads_every_consumers_lag_at_once(event_stream):
    """``lags`` (what ``/healthz`` and the metrics read) agrees with ``lag`` consumer by
    consumer, whatever each has acknowledged, fetched or dead-lettered and retried."""

    async def main():
        async with event_stream() as r:
            assert await r.stream.lags([]) == {}
            assert await r.stream.lags(["a", "b"]) == {"a": 0, "b": 0}
            await register(r, 6)
            await ack_all(r, "all", 6)
            await r.stream.ack("two", await take(r, "two", 2))
            await take(r, "fetched", 6)  # fetched, never acknowledged
            dead = await take(r, "dead", 1)
            await r.stream.dead_letter("dead", dead[0], "boom")  # acknowledged past it
            names = ["all", "two", "fetched", "dead", "never"]
            expected = {"all": 0, "two": 4, "fetched": 6, "dead": 5, "never": 6}
            assert await r.stream.lags(names) == expected
            assert {n: await r.stream.lag(n) for n in names} == expected
            await register(r, 1)
            for _ in range(100):  # JetStream: the relay publishes it in its own time
                if await r.stream.lag("all") == 1 and await r.stream.lag("two") == 5:
                    break
                await asyncio.sleep(0.05)
            assert await r.stream.lags(["all", "all", "two"]) == {"all": 1, "two": 5}
            (letter,) = await r.stream.dead_letters("dead")
            # Marked for redelivery: behind again. (On JetStream the retry is a new message
            # for that consumer only, which the others count until they skip it: so only
            # "dead" is asserted after it.)
            await r.stream.retry_dead_letter(letter.id)
            assert (await r.stream.lags(["dead"]))["dead"] == await r.stream.lag("dead") == 7

    run(main())


def test_offsets_and_unacked_events_survive_reopen(event_stream):
    async def main():
        async with event_stream() as r:
            ids = await register(r, 6)
            await ack_all(r, "acked", 6)
            first = await take(r, "half", 3)
            await r.stream.ack("half", first)
            await take(r, "unacked", 6)  # fetched, never acknowledged
        async with event_stream() as r:
            assert await r.stream.lag("acked") == 0
            assert await r.stream.fetch("acked", 10, 0.2) == []
            assert await r.stream.lag("half") == 3
            assert user_ids(await take(r, "half", 3)) == ids[3:]
            assert user_ids(await take(r, "unacked", 6)) == ids
            # and the stream goes on after the restart
            more = await register(r, 1)
            assert user_ids(await take(r, "acked", 1)) == more

    run(main())


def test_fetch_waits_up_to_timeout_when_nothing_is_pending(event_stream):
    async def main():
        async with event_stream() as r:
            await register(r, 2)
            await ack_all(r, "c", 2)
            t0 = time.monotonic()
            assert await r.stream.fetch("c", 10, 0.3) == []
            elapsed = time.monotonic() - t0
            assert 0.25 <= elapsed < 3.0, elapsed
            t0 = time.monotonic()
            assert await r.stream.fetch("c", 10, 0) == []
            assert time.monotonic() - t0 < 1.0

    run(main())


def test_fetch_wakes_on_a_new_commit(event_stream):
    async def main():
        async with event_stream() as r:
            await register(r, 1)
            await ack_all(r, "c", 1)
            waiting = asyncio.create_task(r.stream.fetch("c", 10, 10.0))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            t0 = time.monotonic()
            ids = await register(r, 1)
            got = await asyncio.wait_for(waiting, 10.0)
            assert user_ids(got) == ids  # the waiting fetch itself returns the new event
            assert time.monotonic() - t0 < 1.0 + r.delivery_timeout

    run(main())


def test_at_least_once_across_a_consumer_crash(event_stream):
    """A consumer that crashes between applying and acking sees the batch again; replaying
    it is the idempotent handler's business, losing it never happens."""

    async def main():
        async with event_stream() as r:
            ids = await register(r, 4)
            applied: list[int] = []
            batch = await take(r, "worker", 4)
            applied.extend(user_ids(batch))  # applied ... then crash before ack
        async with event_stream() as r:
            batch = await take(r, "worker", 4)
            applied.extend(user_ids(batch))
            await r.stream.ack("worker", batch)
            assert sorted(set(applied)) == sorted(ids)
            assert await r.stream.lag("worker") == 0

    run(main())


def test_fetch_is_not_cut_short_by_a_commit_that_adds_no_event(event_stream, request):
    # "waits up to ``timeout`` seconds for at least one": another consumer's ack (a commit
    # in the outbox database, but no new event) must not end the wait with nothing.

    async def main():
        async with event_stream() as r:
            await register(r, 1)
            batch = await ack_all(r, "c", 1)
            t0 = time.monotonic()  # before the fetch starts: a late sleep cannot shorten it
            waiting = asyncio.create_task(r.stream.fetch("c", 10, 1.0))
            await asyncio.sleep(0.1)
            await r.stream.ack("someone-else", batch)
            assert await waiting == []
            assert time.monotonic() - t0 >= 0.95

    run(main())


# -- the rest of the port: what the audit, ``homefeed replay`` and the consumers ask ---------
def test_acked_position_reaches_end_position_once_everything_is_acknowledged(event_stream):
    async def main():
        async with event_stream() as r:
            await register(r, 3)
            events = await take(r, "c", 3)
            end = await r.stream.end_position()
            assert await r.stream.acked_position("c") < end
            await r.stream.ack("c", events)
            assert await r.stream.acked_position("c") >= end
            assert await r.stream.head() == events[-1].seq

    run(main())


def test_replay_from_delivers_again_from_the_event_given(event_stream):
    async def main():
        async with event_stream() as r:
            await register(r, 4)
            events = await ack_all(r, "c", 4)
            got = await r.stream.replay_from("c", event_seq=events[1].seq)
            assert got["event_seq"] == events[1].seq
            again = await take(r, "c", 3)
            assert [e.seq for e in again] == [e.seq for e in events[1:]]
            # the other consumers are not moved
            assert await r.stream.lag("other") == 4

    run(main())


def test_nak_gives_events_back_and_the_bus_only_calls_are_harmless(event_stream):
    """``nak`` makes events come again; ``in_progress``, ``take_delivered`` and ``stats``
    answer on every stream (no-ops, or empty, where the stream has no use for them)."""

    async def main():
        async with event_stream() as r:
            await register(r, 2)
            first = await take(r, "c", 2)
            await r.stream.in_progress(first)
            await r.stream.nak("c", first)
            again = await take(r, "c", 2)
            assert [e.seq for e in again] == [e.seq for e in first]
            await r.stream.ack("c", again)
            assert isinstance(await r.stream.take_delivered("c"), list)
            assert isinstance(await r.stream.stats(), dict)

    run(main())
