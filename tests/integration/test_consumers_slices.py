"""The consumers give the event loop back while they apply a batch (issue 14: on the
embedded profile the in-process fan-out's pushes never suspend, so a batch held the loop,
and every request in flight, for as long as it took). Real stores: an embedded
``Homefeed`` on SQLite with the in-process timeline cache.

Deterministic, no timing: the slice is set to 0 (yield at every chance), and a task that
only counts turns of the loop runs beside the consumer. Without the slices, the fan-out of
a whole batch is one step of its task (nothing else runs until it is done) and the indexer
tokenizes the whole batch in one step. With them, other tasks run between the posts, and
the result is the same as applying the batch in one go (hypothesis, against a plain model
of who should hold which post)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.adapters import fts5_index
from homefeed.config import Settings
from homefeed.domain.model import Event
from homefeed import loop_slice
from homefeed.service_layer.consumers import FANOUT, INDEXER
from homefeed.service_layer.services import Homefeed

T = TypeVar("T")


class World:
    """An embedded Homefeed, consumers not running (applied by hand), ``n`` users who all
    follow one another and whose home timelines are cached."""

    def __init__(self, data_dir: Path, n: int = 4) -> None:
        from homefeed.bootstrap import build

        self.loop = asyncio.new_event_loop()
        self.hf: Homefeed = build(Settings(data_dir=data_dir), node=0)
        self.run(self.hf.start(consumers=()))
        self.users = [int(self.run(self.hf.register(f"s{i}"))["id"]) for i in range(n)]
        for a in self.users:
            for i, b in enumerate(self.users):
                if a != b:
                    self.run(self.hf.follow(a, f"s{i}"))
        self.drain(FANOUT)
        for u in self.users:
            self.run(self.hf.home_timeline(u))  # cached from now on: pushes reach it

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def pending(self, consumer: str) -> list[Event]:
        return self.run(self.hf.stream.fetch(consumer, 100_000, timeout=0))

    def drain(self, consumer: str) -> None:
        events = self.pending(consumer)
        if events:
            self.run(self.hf.consumers.handlers[consumer](events))
            self.run(self.hf.stream.ack(consumer, events))

    def beside(self, work: Callable[[], Awaitable[Any]], log: list[str]) -> None:
        """Run ``work`` with a task that writes "turn" into ``log`` at each turn of the loop."""

        async def both() -> None:
            task = asyncio.ensure_future(work())
            while not task.done():
                log.append("turn")
                await asyncio.sleep(0)
            await task

        self.run(both())

    def close(self) -> None:
        try:
            self.run(self.hf.close())
        finally:
            self.loop.close()


@pytest.fixture
def world(tmp_path: Path) -> Any:
    w = World(tmp_path)
    yield w
    w.close()


def test_fan_out_lets_the_loop_run_between_the_posts_of_a_batch(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_slice, "SLICE", 0.0)
    a, b = world.users[0], world.users[1]
    for i in range(5):
        world.run(world.hf.create_post(a, f"post {i}"))
    events = world.pending(FANOUT)
    assert len(events) == 5
    held: list[int] = []
    cache = world.hf.feed.cache

    async def fan_out() -> None:
        await world.hf.consumers.fan_out(events)

    async def watch() -> None:  # what b's timeline holds at each turn of the loop
        while len(held) < 1 or held[-1] < 5:
            held.append(len((await cache.slice("home", b, None, 100)).ids))
            await asyncio.sleep(0)

    async def both() -> None:
        w = asyncio.ensure_future(watch())
        await fan_out()
        await asyncio.wait_for(w, 5)

    world.run(both())
    # the watcher saw b's timeline part-way through the batch: other work ran between posts
    assert any(0 < n < 5 for n in held), held


def test_indexer_tokenizes_a_batch_in_slices(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_slice, "SLICE", 0.0)
    log: list[str] = []
    terms = fts5_index.index_terms

    def recorded(text: str) -> list[str]:
        log.append("tokenize")
        return terms(text)

    monkeypatch.setattr(fts5_index, "index_terms", recorded)
    for i in range(4):
        world.run(world.hf.create_post(world.users[0], f"indexed words number{i}"))
    events = world.pending(INDEXER)
    world.beside(lambda: world.hf.consumers.index_events(events), log)
    first, last = log.index("tokenize"), len(log) - 1 - log[::-1].index("tokenize")
    assert "turn" in log[first:last], log  # the loop ran between two posts' tokenizing
    for i in range(4):
        assert len(world.run(world.hf.search_index.search([f"number{i}"], None, 10))) == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["post", "delete"]), st.integers(0, 3)), min_size=1, max_size=12),
       slice_=st.sampled_from([0.0, 10.0]))
def test_sliced_batches_leave_what_one_step_leaves(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]],
                                                   slice_: float) -> None:
    """Whatever the slice (0: a yield before every event; 10 s: none), after the fan-out
    and the indexer applied the batch, every user's timeline holds exactly the live posts
    of the others (all follow all), and the index finds exactly the live posts."""
    w = World(tmp_path_factory.mktemp("slices"))
    saved = loop_slice.SLICE
    loop_slice.SLICE = slice_
    try:
        live: dict[int, int] = {}  # post id -> author
        for op, who in ops:
            author = w.users[who]
            if op == "post" or not live:
                pid = int(w.run(w.hf.create_post(author, "sliced word"))["id"])
                live[pid] = author
            else:
                pid = sorted(live)[who % len(live)]
                w.run(w.hf.delete_post(live.pop(pid), pid))
        w.drain(FANOUT)
        w.drain(INDEXER)
        for u in w.users:
            got = set(w.run(w.hf.feed.cache.slice("home", u, None, 1000)).ids)
            assert {p for p, a in live.items() if a != u} <= got <= set(live)
        assert set(w.run(w.hf.search_index.search(["sliced"], None, 1000))) == set(live)
    finally:
        loop_slice.SLICE = saved
        w.close()
