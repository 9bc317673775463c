"""Contract fixtures: one fixture per port, parametrized over every adapter of that port.

Each test of ``tests/contract`` takes one of these fixtures and checks what the port's
docstrings in ``homefeed.ports`` promise, so the same test runs against every backend.

    fixture          port(s)                      value
    ---------------  ---------------------------  ------------------------------------------
    records          RecordStore (+ its stream)   opener() -> async cm -> Records
    event_stream     EventStream (+ a store that  opener() -> async cm -> Records
                     produces the events)
    search_index     SearchIndex                  opener() -> async cm -> SearchIndex
    timeline_cache   TimelineCache                opener(cap=..) -> async cm -> TimelineCache
    post_cache       PostCache                    opener(max_posts=..) -> async cm -> PostCache

How a fixture works: its param is a *factory* ``factory(tmp_path) -> opener``. The factory
makes fresh, empty durable storage for one test (a tmp SQLite file; for a server backend a
fresh database / key prefix / stream name) and returns an *opener*. Each call of the opener
is an ``async with`` that connects adapters to that storage and closes them on exit; calling
it twice in one test is a restart (close, reopen the same storage), which is how durability
and offsets-survive-restart are tested. Openers are entered inside the test's own event loop
(``run(...)``, i.e. ``asyncio.run``), so network clients bound to a loop work too.

ADDING A BACKEND (PostgreSQL, Redis, NATS JetStream, ...): write one factory with the same
shape next to the SQLite / memory ones below and add ONE ``pytest.param(factory, id="...")``
to the list of each port it implements (``RECORD_STORES``, ``EVENT_STREAMS``,
``SEARCH_INDEXES``, ``TIMELINE_CACHES``, ``POST_CACHES``); use short ids such as
"postgres", "redis", "jetstream". If the backend needs a server, put a
``marks=pytest.mark.skipif(<server not reachable>, reason=...)`` on that param. Every test
of the port then runs against it. A known, reported divergence of one adapter is marked with
``xfail_for(request, {"<id>": "<reason>"})`` inside the test, never by weakening the test.
Knobs a factory may set: ``Records.delivery_timeout`` / ``redelivery_timeout`` (how long a
relayed stream may take to deliver, and to redeliver what was not acknowledged), and
``opener.count_bound = True`` on a post-cache opener that honours ``max_posts`` as a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import pytest

from homefeed.adapters.fts5_index import Fts5SearchIndex
from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache
from homefeed.adapters.outbox_stream import OutboxEventStream
from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.adapters.sqlite_store import SqliteRecordStore
from homefeed.domain.model import Event
from homefeed.ports import EventStream, PostCache, RecordStore, SearchIndex, TimelineCache

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run one test body in a fresh event loop (no pytest-asyncio needed)."""
    return asyncio.run(coro)  # type: ignore[arg-type]


def xfail_for(request: pytest.FixtureRequest, reasons: dict[str, str]) -> None:
    """Mark the running test xfail (strict) when its adapter id is one of ``reasons``."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None:
        return
    for adapter_id in callspec.id.split("-"):
        if adapter_id in reasons:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reasons[adapter_id]))
            return


# --------------------------------------------------------------------------------------------
# record store + event stream
# --------------------------------------------------------------------------------------------


@dataclass
class Records:
    """A system of record and the event stream its outbox feeds, opened on one storage."""

    store: RecordStore
    stream: EventStream
    #: How long a committed event may take to become fetchable (0 for the in-process outbox;
    #: a relayed stream such as JetStream needs a little).
    delivery_timeout: float = 5.0
    #: How long an event fetched but not acknowledged may take to be delivered again.
    redelivery_timeout: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)


Opener = Callable[..., contextlib.AbstractAsyncContextManager]


def sqlite_records(tmp_path: Path) -> Opener:
    """Embedded profile: SqliteRecordStore + OutboxEventStream on one real SQLite file."""
    path = tmp_path / "homefeed.db"

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[Records]:
        db = SqliteDatabase(path)
        store = SqliteRecordStore(db)
        stream = OutboxEventStream(db)
        await store.open()
        try:
            yield Records(store, stream, delivery_timeout=2.0, redelivery_timeout=2.0)
        finally:
            await store.close()

    return opener


# One pytest.param per backend (see the module docstring).
RECORD_STORES = [pytest.param(sqlite_records, id="sqlite")]
EVENT_STREAMS = [pytest.param(sqlite_records, id="sqlite")]


@pytest.fixture(params=RECORD_STORES)
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return request.param(tmp_path)


@pytest.fixture(params=EVENT_STREAMS)
def event_stream(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return request.param(tmp_path)


# --------------------------------------------------------------------------------------------
# search index
# --------------------------------------------------------------------------------------------


def sqlite_search_index(tmp_path: Path) -> Opener:
    """Embedded profile: FTS5 in the SQLite file."""
    path = tmp_path / "homefeed.db"

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[SearchIndex]:
        db = SqliteDatabase(path)
        db.open()
        try:
            yield Fts5SearchIndex(db)
        finally:
            db.close()

    return opener


SEARCH_INDEXES = [pytest.param(sqlite_search_index, id="sqlite")]


@pytest.fixture(params=SEARCH_INDEXES)
def search_index(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return request.param(tmp_path)


# --------------------------------------------------------------------------------------------
# timeline cache, post cache
# --------------------------------------------------------------------------------------------


def memory_timeline_cache(tmp_path: Path) -> Opener:
    """Embedded profile: in-process memory. A fresh cache per opening (memory is not durable:
    nothing in the TimelineCache contract asks it to be)."""

    @contextlib.asynccontextmanager
    async def opener(cap: int = 800) -> AsyncIterator[TimelineCache]:
        yield MemoryTimelineCache(cap=cap)

    return opener


def memory_post_cache(tmp_path: Path) -> Opener:
    @contextlib.asynccontextmanager
    async def opener(max_posts: int = 1000) -> AsyncIterator[PostCache]:
        yield MemoryPostCache(max_posts)

    # This cache honours ``max_posts`` as a count. A cache bounded some other way (Redis:
    # maxmemory and TTLs) leaves the attribute out and the count-bound test is skipped.
    opener.count_bound = True  # type: ignore[attr-defined]
    return opener


TIMELINE_CACHES = [pytest.param(memory_timeline_cache, id="memory")]
POST_CACHES = [pytest.param(memory_post_cache, id="memory")]


@pytest.fixture(params=TIMELINE_CACHES)
def timeline_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return request.param(tmp_path)


@pytest.fixture(params=POST_CACHES)
def post_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    return request.param(tmp_path)


# --------------------------------------------------------------------------------------------
# helpers shared by the suites
# --------------------------------------------------------------------------------------------


async def fetch_all(
    stream: EventStream, consumer: str, *, timeout: float, max_events: int = 1000
) -> list[Event]:
    """Every event after ``consumer``'s offset that arrives within ``timeout`` (no ack):
    fetches until a fetch comes back empty after the first event, or the time is up."""
    deadline = time.monotonic() + timeout
    got: list[Event] = []
    seen: set[int] = set()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return got
        batch = await stream.fetch(consumer, max_events, min(remaining, 0.5) if not got else 0.05)
        fresh = [e for e in batch if e.seq not in seen]
        if not fresh:
            if got:
                return got
            continue
        for e in fresh:
            seen.add(e.seq)
            got.append(e)


async def wait_for_events(
    stream: EventStream, consumer: str, predicate: Callable[[Sequence[Event]], bool], timeout: float
) -> list[Event]:
    """Fetch (without ack) until the events seen after the offset satisfy ``predicate``;
    returns them in seq order (whatever was seen, if the time ran out)."""
    deadline = time.monotonic() + timeout
    seen: dict[int, Event] = {}
    while True:
        remaining = deadline - time.monotonic()
        for e in await fetch_all(stream, consumer, timeout=max(min(remaining, 0.5), 0.01)):
            seen.setdefault(e.seq, e)
        events = [seen[s] for s in sorted(seen)]
        if predicate(events) or time.monotonic() >= deadline:
            return events
