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
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Sequence, TypeVar

import pytest

from homefeed.adapters.fts5_index import Fts5SearchIndex
from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache
from homefeed.adapters.outbox_stream import OutboxEventStream
from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.adapters.sqlite_store import SqliteRecordStore
from homefeed.domain.model import Event
from homefeed.ports import EventStream, PostCache, RecordStore, SearchIndex, TimelineCache
from tests.backends import NATS_URL, REDIS_URL, needs, require, scratch_pg_database, unique

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
    #: How long a committed event may take to become fetchable (the waits end as soon as it
    #: is: this is a bound for a loaded machine, where PostgreSQL holds an event back until
    #: every older transaction of the cluster, other tests' included, has ended).
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
            yield Records(store, stream, delivery_timeout=10.0, redelivery_timeout=10.0)
        finally:
            await store.close()

    return opener


def postgres_records(tmp_path: Path) -> Opener:
    """Scale-out: PgRecordStore + PgOutboxEventStream on a scratch database."""
    from homefeed.adapters.pg_db import PgDatabase
    from homefeed.adapters.pg_outbox import PgOutboxEventStream
    from homefeed.adapters.pg_store import PgRecordStore

    url = _scratch(tmp_path, scratch_pg_database())

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[Records]:
        db = PgDatabase(url)
        store = PgRecordStore(db)
        await store.open()
        try:
            yield Records(store, PgOutboxEventStream(db), delivery_timeout=10.0, redelivery_timeout=10.0)
        finally:
            await store.close()

    return opener


def jetstream_records(tmp_path: Path) -> Opener:
    """Scale-out: the outbox relayed to NATS JetStream; consumers read JetStream. The
    relay runs while the opener is open; the stream (named for this test) survives
    reopening, as the SQLite file does."""
    from homefeed.adapters.jetstream import JetStreamEventStream
    from homefeed.service_layer.relay import OutboxRelay

    require("nats")
    path = tmp_path / "homefeed.db"
    name = unique("HFC")

    def stream() -> JetStreamEventStream:
        return JetStreamEventStream(NATS_URL, stream=name, subject_prefix=f"{name}.events", ack_wait=1.5)

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[Records]:
        db = SqliteDatabase(path)
        store = SqliteRecordStore(db)
        await store.open()
        js = stream()
        await js.open()
        stop = asyncio.Event()
        relay = asyncio.create_task(OutboxRelay(OutboxEventStream(db), js).run(stop))
        try:
            yield Records(store, js, delivery_timeout=10.0, redelivery_timeout=10.0)
        finally:
            stop.set()
            await relay
            await js.close()
            await store.close()

    def cleanup() -> None:
        async def drop() -> None:
            js = stream()
            await js.open()
            try:
                await js.delete_streams()
            finally:
                await js.close()

        try:
            asyncio.run(drop())
        except Exception:  # noqa: BLE001 - best effort
            pass

    _CLEANUPS.append(cleanup)
    return opener


_CLEANUPS: list[Callable[[], None]] = []


def _scratch(tmp_path: Path, cm: contextlib.AbstractContextManager[str]) -> str:
    """Enter a scratch-namespace context manager until the test ends."""
    value = cm.__enter__()
    _CLEANUPS.append(lambda: cm.__exit__(None, None, None))
    return value


@pytest.fixture(autouse=True)
def _cleanup_scratch() -> Iterator[None]:
    yield
    while _CLEANUPS:
        _CLEANUPS.pop()()


# One pytest.param per backend (see the module docstring).
RECORD_STORES = [
    pytest.param(sqlite_records, id="sqlite"),
    pytest.param(postgres_records, id="postgres", marks=needs("postgresql")),
]
EVENT_STREAMS = [
    pytest.param(sqlite_records, id="sqlite"),
    pytest.param(postgres_records, id="postgres", marks=needs("postgresql")),
    pytest.param(jetstream_records, id="jetstream", marks=needs("nats")),
]


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


def postgres_search_index(tmp_path: Path) -> Opener:
    """Scale-out: tsvector + GIN in a scratch PostgreSQL database."""
    from homefeed.adapters.pg_db import PgDatabase
    from homefeed.adapters.pg_search import PgSearchIndex

    url = _scratch(tmp_path, scratch_pg_database())

    @contextlib.asynccontextmanager
    async def opener() -> AsyncIterator[SearchIndex]:
        db = PgDatabase(url)
        await db.open()
        try:
            yield PgSearchIndex(db)
        finally:
            await db.close()

    return opener


SEARCH_INDEXES = [
    pytest.param(sqlite_search_index, id="sqlite"),
    pytest.param(postgres_search_index, id="postgres", marks=needs("postgresql")),
]


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


def redis_timeline_cache(tmp_path: Path) -> Opener:
    """Scale-out: Redis, under a key prefix of this test's own. Reopening keeps the data
    (a restart of the process, not of Redis)."""
    from homefeed.adapters.redis_cache import RedisTimelineCache

    prefix = unique("hft")
    _CLEANUPS.append(lambda: _redis_drop(prefix))

    @contextlib.asynccontextmanager
    async def opener(cap: int = 800) -> AsyncIterator[TimelineCache]:
        # deletes_key as bootstrap wires it (a post cache's on the same server): views carry
        # a fingerprint
        cache = RedisTimelineCache(REDIS_URL, cap=cap, prefix=prefix, deletes_key=f"{prefix}:p:deleted".encode())
        try:
            yield cache
        finally:
            await cache.close()

    return opener


def redis_post_cache(tmp_path: Path) -> Opener:
    from homefeed.adapters.redis_cache import RedisPostCache

    prefix = unique("hfp")
    _CLEANUPS.append(lambda: _redis_drop(prefix))

    @contextlib.asynccontextmanager
    async def opener(max_posts: int = 1000) -> AsyncIterator[PostCache]:
        cache = RedisPostCache(REDIS_URL, prefix=prefix)
        try:
            yield cache
        finally:
            await cache.close()

    return opener


def _redis_drop(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


TIMELINE_CACHES = [
    pytest.param(memory_timeline_cache, id="memory"),
    pytest.param(redis_timeline_cache, id="redis", marks=needs("redis")),
]
POST_CACHES = [
    pytest.param(memory_post_cache, id="memory"),
    pytest.param(redis_post_cache, id="redis", marks=needs("redis")),
]


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
