"""The outbox relay: moves committed outbox events, in commit order, onto the event stream.

The relay is just one more consumer (named ``relay``) of the record store's own outbox
EventStream (``source``: SQLite's ``OutboxEventStream`` in one process, a PostgreSQL one in
the scale-out profile). Its handler publishes the batch to the ``sink`` (the JetStream
stream) and only once the sink has stored all of it acknowledges the batch on the source.

- A crash after the publish and before the ack makes the next relay publish that batch
  again. The sink absorbs it: JetStream drops a message whose ``Nats-Msg-Id`` (the event's
  ``seq``) it stored within its duplicate window; past the window, the consumers'
  idempotence does.
- A failed publish is retried with backoff; the source offset does not move, nothing is
  skipped, nothing is lost.
- Several relay processes may run: ``leader`` (a factory of async context managers) elects
  one. The others wait in ``__aenter__`` and one of them takes over when the active one
  stops or dies. :func:`file_leader` is the one-machine election for SQLite (an ``flock``
  beside the database file, released by the kernel when its process dies); the PostgreSQL
  record store offers an advisory-lock one. If the object the context manager yields has a
  ``lost`` ``asyncio.Event`` (a lock held through a connection that broke), the relay stops
  relaying when it is set and competes for leadership again.
- A backend outage (PostgreSQL or the bus away) is logged once when the first batch fails
  and once when relaying resumes; the retries in between (capped exponential backoff, up to
  ``max_backoff``, 2 s) are counted in ``RelayStats.failures``, not logged one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from homefeed.aio import wait_for
from homefeed.domain.model import Event
from homefeed.ports import EventSink as RelaySink
from homefeed.ports import LeaderFactory

log = logging.getLogger("homefeed.relay")

RELAY = "relay"


class RelaySource(Protocol):
    """What the relay reads of the record store's outbox (an ``EventStream``), as a named
    consumer: only this, so that tests may hand it a small fake."""

    async def fetch(self, consumer: str, max_events: int, timeout: float) -> list[Event]: ...
    async def ack(self, consumer: str, events: Sequence[Event]) -> None: ...
    async def lag(self, consumer: str) -> int: ...


# -- leader election for one machine: a file lock ---------------------------------------------
class FileLeader:
    """Holds an exclusive ``flock`` on ``path`` while active. ``async with`` waits (polling,
    so the event loop keeps running) until the lock is free. The kernel releases the lock
    when the holder's process dies, however it dies, so a waiting relay takes over.

    ``flock`` locks belong to an open file description: two ``FileLeader`` objects compete
    even inside one process. Valid on one machine only (not on NFS); several machines need
    a lock in the shared database (PostgreSQL advisory lock)."""

    def __init__(self, path: str | os.PathLike[str], poll_interval: float = 0.1) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._fd: int | None = None
        self.lost = asyncio.Event()  # never set: the kernel keeps the lock until we release it

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:  # who holds it, for whoever looks
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    async def __aenter__(self) -> "FileLeader":
        while not self.try_acquire():
            await asyncio.sleep(self.poll_interval)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def file_leader(path: str | os.PathLike[str], poll_interval: float = 0.1) -> LeaderFactory:
    """A leader factory for :class:`OutboxRelay`: one ``FileLeader`` per attempt."""
    return lambda: FileLeader(path, poll_interval)


def sqlite_relay_leader(database_path: str | os.PathLike[str], poll_interval: float = 0.1) -> LeaderFactory:
    """The relay election of the SQLite record store: a lock file beside the database."""
    return file_leader(f"{os.fspath(database_path)}.relay.lock", poll_interval)


# -- the relay -----------------------------------------------------------------------------------
@dataclass
class RelayStats:
    relayed: int = 0  # events published and acknowledged on the source
    new: int = 0  # of those, stored as new by the sink (the rest were duplicates)
    batches: int = 0
    failures: int = 0
    leader: bool = False
    lag: int = -1  # events committed but not yet relayed (last measured; -1: not yet)
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[str, Any]:
        up = max(time.monotonic() - self.started, 1e-9)
        return {
            "relayed": self.relayed,
            "new": self.new,
            "batches": self.batches,
            "failures": self.failures,
            "leader": self.leader,
            "lag": self.lag,
            "last_error": self.last_error,
            "relayed_per_s": round(self.relayed / up, 1),
        }


class OutboxRelay:
    def __init__(
        self,
        source: RelaySource,
        sink: RelaySink,
        leader: LeaderFactory | None = None,
        *,
        consumer: str = RELAY,
        batch: int = 1024,
        poll_timeout: float = 0.5,
        report_interval: float = 10.0,
        on_report: Callable[[dict[str, Any]], None] | None = None,
        max_backoff: float = 2.0,
    ) -> None:
        self.source = source
        self.sink = sink
        self.leader = leader
        self.consumer = consumer
        self.batch = batch
        self.poll_timeout = poll_timeout
        self.report_interval = report_interval
        self.on_report = on_report
        self.max_backoff = max_backoff
        self.stats = RelayStats()

    # -- one step (also what tests drive by hand) ------------------------------------------
    async def fetch(self, timeout: float = 0.0) -> list[Event]:
        return await self.source.fetch(self.consumer, self.batch, timeout)

    async def publish(self, events: Sequence[Event]) -> int:
        return await self.sink.publish(events)

    async def ack(self, events: Sequence[Event]) -> None:
        await self.source.ack(self.consumer, events)

    async def step(self, timeout: float = 0.0) -> int:
        """Relay one batch: fetch, publish, then ack. Returns how many events it relayed."""
        events = await self.fetch(timeout)
        if not events:
            return 0
        new = await self.publish(events)
        await self.ack(events)
        self.stats.relayed += len(events)
        self.stats.new += new
        self.stats.batches += 1
        return len(events)

    async def drain(self) -> int:
        """Relay until the outbox has nothing more (no election: callers hold it)."""
        total = 0
        while n := await self.step(0):
            total += n
        return total

    async def lag(self) -> int:
        self.stats.lag = await self.source.lag(self.consumer)
        return self.stats.lag

    def report(self) -> dict[str, Any]:
        return self.stats.as_dict()

    # -- running -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set: as leader if there is an election, else at once."""
        if self.leader is None:
            self.stats.leader = True
            await self._relay(stop, None)
            return
        while not stop.is_set():
            # One term: wait to be elected, then relay. It runs in its own task so that the
            # election's context manager is entered and left in the task it guards (a lock
            # whose watchdog cancels the body on loss, as PostgreSQL's does, cancels this
            # one), and so that a relay still waiting to be elected stops at once on ``stop``.
            term = asyncio.create_task(self._term(stop), name="homefeed-relay-term")
            stopping = asyncio.create_task(stop.wait())
            try:
                await asyncio.wait({term, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not term.done() and not self.stats.leader:
                    term.cancel()  # stop while waiting for leadership
                await asyncio.wait({term})  # a leader finishes its batch and exits by itself
            except asyncio.CancelledError:
                term.cancel()
                with contextlib.suppress(BaseException):
                    await term
                raise
            finally:
                stopping.cancel()
            if term.cancelled():
                if stop.is_set():
                    return
                log.warning("relay: the term was cancelled (leadership lost); competing again")
                continue
            exc = term.exception()
            if exc is not None:  # the election failed, or leadership was lost
                self.stats.failures += 1
                self.stats.last_error = repr(exc)
                log.warning("relay: %r; competing for leadership again", exc)
                await _sleep_unless(stop, 0.5)
            elif not stop.is_set():
                log.warning("relay lost leadership; waiting to be elected again")

    async def _term(self, stop: asyncio.Event) -> None:
        assert self.leader is not None
        async with self.leader() as handle:
            self.stats.leader = True
            log.info("relay (pid %d) is now the active relay", os.getpid())
            try:
                await self._relay(stop, handle.lost)
            finally:
                self.stats.leader = False

    async def _relay(self, stop: asyncio.Event, lost: asyncio.Event | None) -> None:
        backoff = 0.05
        failing_since: float | None = None  # the first failure of the current streak
        next_report = time.monotonic() + self.report_interval
        while not stop.is_set() and not (lost is not None and lost.is_set()):
            try:
                n = await self.step(self.poll_timeout)
                backoff = 0.05
                if failing_since is not None:
                    log.warning("relay resumed after %.1f s of failed batches",
                                time.monotonic() - failing_since)
                    failing_since = None
                now = time.monotonic()
                if n == 0 or now >= next_report:
                    await self.lag()
                if now >= next_report:
                    next_report = now + self.report_interval
                    self._emit_report()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Nothing was acknowledged: the same batch is fetched and published again.
                self.stats.failures += 1
                self.stats.last_error = repr(exc)
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("relay batch failed (%r); retrying with backoff up to %gs until it"
                                " works (logged again when it does)", exc, self.max_backoff)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, self.max_backoff)
        self._emit_report()

    def _emit_report(self) -> None:
        r = self.report()
        if self.on_report is not None:
            self.on_report(r)
        log.info(
            "relay: %d relayed (%d new) in %d batches, lag %d, %d failures",
            r["relayed"], r["new"], r["batches"], r["lag"], r["failures"],
        )


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await wait_for(stop.wait(), seconds)
