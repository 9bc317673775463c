"""PostgreSQL for the scale-out profile: a psycopg 3 async connection pool, versioned
migrations, outbox wake-ups (LISTEN/NOTIFY) and leader election (advisory locks).

Shared by the record store (``pg_store``), the outbox event stream (``pg_outbox``) and the
search index (``pg_search``), like ``SqliteDatabase`` in the embedded profile::

    db = PgDatabase("postgresql://app@db1/homefeed")
    store = PgRecordStore(db, node=3)          # store.open() opens db (and migrates)
    stream, index = PgOutboxEventStream(db), PgSearchIndex(db)

Round trips. Pool connections are in autocommit mode and every statement is prepared on
first use (``prepare_threshold=0``). Each write of the record store is ONE SQL statement
(data-modifying CTEs: the record, the counters and the outbox row), so it is one implicit
transaction, atomic and durable (``synchronous_commit`` as configured on the server, ``on``
by default) when the call returns, in one network round trip. Python ints are always sent
as ``int8`` so that a prepared statement never changes parameter types.

Wake-ups. A consumer waiting for outbox events LISTENs on ``homefeed_outbox`` (one listening
connection per process, opened on first wait). Writers do NOT notify inside their
transaction: PostgreSQL serialises the commits of all transactions that issued NOTIFY behind
one database-wide lock held across the WAL flush, which defeats group commit (measured on
the development machine, 32 concurrent ``create_post``: 897 posts/s with a NOTIFY trigger on
the outbox, 3353 without). Instead, after a write holding an outbox row commits, the
process wakes its own waiters at once and sends ``pg_notify`` from a dedicated connection,
coalesced (at most one in flight; commits meanwhile share the next one). That transaction
has no xid, so it writes no WAL. A notify lost to a crash between commit and notify costs
only latency: waiters also poll (``poll_interval``).

Outages. A connection-class error (``psycopg.OperationalError``: the server went away,
refuses connections, is shutting down or starting up, ``PoolTimeout``) becomes
``Unavailable`` (HTTP 503 with ``Retry-After``) naming the database; constraint errors and
other answers of a working server pass through. Everything is bounded: a connection attempt
gives up after ``connect_timeout``, waiting for a pool connection after
``acquire_timeout`` (2 s), and TCP keepalives plus ``tcp_user_timeout`` notice a server that
vanished without closing its sockets. The pool heals by itself after a restart:

- a pooled connection whose session the server ended (a restart, ``pg_terminate_backend``)
  has the server's goodbye, or EOF, waiting on its socket. Before a statement is sent on a
  pooled connection its socket is polled (one ``select`` with a zero timeout, no round
  trip): a readable idle connection is closed and replaced, and the statement goes to
  another one. This is what makes a write safe to send: it is never sent on a session known
  to be dead. (``psycopg_pool``'s ``check=check_connection`` would cost a round trip per
  statement, and sleeps a second after each failed check.)
- a read that fails on a connection anyway (the server stopped while it ran) is sent once
  more on another connection; a write is not (it may have committed): the client gets 503
  and retries, which an Idempotency-Key makes safe.
- reconnection attempts give up after ``reconnect_timeout`` (2 s) rather than psycopg_pool's
  5 minutes of ever longer backoff, so the next request that needs a connection starts a
  fresh attempt at once: service resumes within about a second of the server's return.

Each outage logs one warning and one "recovered" line (:class:`~homefeed.adapters.outage.OutageLog`);
psycopg_pool's own per-attempt warnings are silenced (its logger is set to ERROR unless
configured otherwise).

The schema and its migrations are in ``pg_schema``; leader election (:class:`LeaderLock`)
in ``pg_leader``; both are re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import select
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import orjson
import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import set_json_loads
from psycopg.types.numeric import Int8Dumper
from psycopg_pool import AsyncConnectionPool

from homefeed.adapters.outage import OutageLog
# LeaderLock and the schema live in modules of their own; the rest are re-exported here.
from homefeed.adapters.pg_leader import LeaderLock, lock_key  # noqa: F401
from homefeed.adapters.pg_schema import (LOCK_NAMESPACE, MIGRATIONS, migrate,  # noqa: F401
                                         migrate_url, schema_version)
from homefeed.aio import wait_for
from homefeed.domain.errors import LeadershipLost, Unavailable  # noqa: F401  (LeadershipLost: its old home)

log = logging.getLogger("homefeed.postgres")

NOTIFY_CHANNEL = "homefeed_outbox"
_migrate = migrate  # open() has a parameter of that name


async def _configure(conn: psycopg.AsyncConnection) -> None:
    conn.adapters.register_dumper(int, Int8Dumper)  # one parameter type per statement
    set_json_loads(orjson.loads, conn)
    # No JIT compilation: every statement here is a short index-bound one, and JIT is paid
    # at each execution when the planner's cost estimate passes ``jit_above_cost``. The
    # outbox fetch's estimate grows with the outbox (its per-row subplan is costed for
    # every row the LIMIT could return): at ~140k events each fetch compiled for ~220 ms
    # and ran for 0.04 ms, so PostgreSQL spent ~0.6 s of CPU per fetch, and the consumers
    # fell behind (benchmarks/RESULTS.md, seventh pass).
    #
    # Generic plans: a prepared statement is planned once per connection, not at every
    # execution. PostgreSQL's default (``auto``) keeps planning a statement for its
    # parameters whenever that plan's estimate beats the generic one, which it does for
    # nearly every statement here (an array of 1 id against the generic guess of 10, a NULL
    # reply-to). Measured with ``pg_stat_statements.track_planning`` under paced posts:
    # planning took 1.2 s of the server's CPU against 0.84 s of execution, the post's own
    # statement 294 µs of planning for 154 µs of execution, the outbox tail 281 for 66. The
    # statements here are index-bound and their generic plans are the same shapes (checked
    # with EXPLAIN on the demo world: the home pull, the search, ``celebrity_ids``, the
    # fan-out's followers). A generic plan relies on the tables' statistics: autovacuum keeps
    # them (on by default), and the bulk loader (``homefeed demo``, ``homefeed bench``)
    # analyzes what it loads. Without them an ``= ANY(array)`` probe of a big table can
    # become a scan. ``benchmarks/RESULTS.md``, ninth pass.
    await conn.execute("SELECT set_config('jit', 'off', false),"
                       " set_config('plan_cache_mode', 'force_generic_plan', false)")


_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


def _stale(conn: psycopg.AsyncConnection) -> bool:
    """Whether a pooled, idle connection is known dead without asking the server: closed,
    broken, or with something waiting on its socket (an idle session receives nothing but
    the server's FATAL goodbye, or EOF, when the server ends it)."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _quiet_pool_logger() -> None:
    """psycopg_pool warns on every failed connection attempt and every discarded connection:
    dozens of lines per outage. The outage log says it once; keep the pool's errors."""
    pool_log = logging.getLogger("psycopg.pool")
    if pool_log.level == logging.NOTSET:
        pool_log.setLevel(logging.ERROR)


class PgDatabase:
    """The pool and the per-process machinery around it (outbox wake-ups, leader locks).

    ``max_size`` bounds the connections of this process; with many API and worker processes
    keep their sum below the server's ``max_connections`` (or put PgBouncer >= 1.21 in front,
    in transaction mode with ``max_prepared_statements`` set, for the pool only: the listener,
    notifier and leader connections need real sessions).
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 32,
        poll_interval: float = 0.25,
        connect_timeout: float = 3.0,
        acquire_timeout: float = 2.0,
        reconnect_timeout: float = 2.0,
        application_name: str = "homefeed",
    ) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        #: Longest wait for a pool connection: past it, 503 (the server is away, or every
        #: connection is busy for that long: overload either way).
        self.acquire_timeout = acquire_timeout
        #: How long the pool retries one reconnection in the background before giving up
        #: (a request needing a connection then starts a fresh attempt at once).
        self.reconnect_timeout = reconnect_timeout
        self.application_name = application_name
        #: Outages of the database as this process sees them (one warning, one recovery).
        self.outage = OutageLog("PostgreSQL")
        _quiet_pool_logger()
        self._pool: AsyncConnectionPool | None = None
        self._opening: asyncio.Lock | None = None
        self._waiters: set[asyncio.Event] = set()
        self._listener: asyncio.Task | None = None
        self._listening: asyncio.Event | None = None
        self._notifier: asyncio.Task | None = None
        self._notify_wanted: asyncio.Event | None = None
        #: Commits of this process that held outbox rows: ``/healthz`` keeps its lag snapshot
        #: only while this has not moved (``Homefeed.health``), so a write's own event is
        #: never reported as applied by a snapshot read before it.
        self.outbox_commits = 0
        #: Wake-ups of the outbox waiters so far (this process's commits, NOTIFYs, a
        #: listener's reconnection): a reader that kept what it last read (the outbox
        #: stream's shared tail) reads again only once this has moved, or after a poll.
        self.wakes = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise Unavailable("the database is closed")
        return self._pool

    def _kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "prepare_threshold": 0,
            "application_name": self.application_name,
            "connect_timeout": max(1, round(self.connect_timeout)),
            # a server that vanished without closing its sockets (host down, partition):
            # keepalives notice an idle one, tcp_user_timeout (ms) one with unacknowledged data
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        }

    async def open(self, migrate: bool = True) -> None:
        """Open the pool (idempotent) and, by default, bring the schema up to date."""
        if self._pool is not None:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is not None:
                return
            pool = AsyncConnectionPool(
                self.dsn,
                kwargs=self._kwargs(),
                min_size=self.min_size,
                max_size=self.max_size,
                configure=_configure,
                open=False,
                name="homefeed",
                timeout=self.acquire_timeout,
                reconnect_timeout=self.reconnect_timeout,
            )
            try:
                # start-up is not a request: wait longer than one connection attempt
                await pool.open(wait=True, timeout=max(10.0, self.connect_timeout))
            except Exception as exc:  # PoolTimeout: the server is down or the DSN is wrong
                await pool.close()
                raise Unavailable(f"cannot connect to PostgreSQL ({self._safe_dsn()}): {exc}") from exc
            try:
                async with pool.connection() as conn:
                    if migrate:
                        await _migrate(conn)
                    else:
                        version = await schema_version(conn)
                        if version != len(MIGRATIONS):
                            raise Unavailable(
                                f"the database schema is at version {version}, this homefeed"
                                f" needs {len(MIGRATIONS)}: run `homefeed migrate`"
                            )
            except BaseException:
                await pool.close()
                raise
            self._closed = False
            self._pool = pool

    async def close(self) -> None:
        self._closed = True
        for task in (self._listener, self._notifier):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._listener = self._notifier = None
        self._listening = None
        self._notify_wanted = None
        self._wake()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _safe_dsn(self) -> str:
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        except Exception:
            return "<unparsable dsn>"
        info.pop("password", None)
        return " ".join(f"{k}={v}" for k, v in info.items())

    # -- statements -----------------------------------------------------------------------
    async def _getconn(self, pool: AsyncConnectionPool) -> psycopg.AsyncConnection:
        """A pooled connection not known to be dead (see the module docstring: a session the
        server ended is closed and replaced, never used). Raises ``PoolTimeout`` (an
        ``OperationalError``) when none comes within ``acquire_timeout``."""
        for _ in range(self.max_size + 1):
            conn = await pool.getconn()
            if not _stale(conn):
                return conn
            await conn.close()
            await pool.putconn(conn)  # closed: discarded, a replacement is opened
        raise psycopg.OperationalError("every pooled connection was dead")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pool connection (autocommit) for several statements; connection errors become
        ``Unavailable``. Deadlocks and serialization failures pass through: the caller's
        transaction was rolled back and may be run again."""
        pool = self.pool
        try:
            conn = await self._getconn(pool)
        except psycopg.OperationalError as exc:
            raise self.outage.failed(exc) from exc
        try:
            yield conn
        except (pg_errors.TransactionRollback, *_RETRYABLE):  # psycopg: not TransactionRollback
            raise
        except psycopg.OperationalError as exc:
            raise self.outage.failed(exc) from exc
        finally:
            await pool.putconn(conn)
        self.outage.succeeded()

    async def fetch(self, sql: str, params: Any = None, *, prepare: bool | None = None) -> list[tuple]:
        """Run one statement (one round trip) and return its rows."""
        return await self._read(sql, params, prepare, False)  # type: ignore[return-value]

    async def fetchone(self, sql: str, params: Any = None, *, prepare: bool | None = None) -> tuple | None:
        return await self._read(sql, params, prepare, True)  # type: ignore[return-value]

    async def _read(self, sql: str, params: Any, prepare: bool | None, one: bool) -> list[tuple] | tuple | None:
        """A read: sent once more on another connection if its connection fails (reading
        twice changes nothing); ``Unavailable`` if that fails too or no connection comes."""
        pool = self.pool
        for attempt in (1, 2):
            try:
                conn = await self._getconn(pool)
            except psycopg.OperationalError as exc:  # no connection within acquire_timeout
                raise self.outage.failed(exc) from exc
            try:
                cur = await conn.execute(sql, params, prepare=prepare)  # type: ignore[arg-type]
                if one:
                    rows: Any = await cur.fetchone()
                else:
                    rows = await cur.fetchall() if cur.description else []
            except psycopg.OperationalError as exc:
                if attempt == 1:
                    continue
                raise self.outage.failed(exc) from exc
            finally:
                await pool.putconn(conn)
            self.outage.succeeded()
            return rows
        raise AssertionError("unreachable")

    async def write(self, sql: str, params: Any = None, *, outbox: bool = True) -> list[tuple]:
        """Run one write statement, which is its own transaction, and return its rows once
        committed. Deadlocks and serialization failures (the statement was rolled back, so
        it is safe to run again) are retried. A connection error once the statement may have
        been sent leaves the outcome unknown (it may have committed) and is NOT retried: it
        becomes ``Unavailable`` (503), and the client's retry, with its Idempotency-Key, is
        what makes a second attempt safe. The statement is never sent on a connection known
        to be dead (``_getconn``), so a restart alone does not fail writes."""
        pool = self.pool
        for attempt in range(8):
            try:
                conn = await self._getconn(pool)
            except psycopg.OperationalError as exc:  # nothing was sent
                raise self.outage.failed(exc) from exc
            try:
                cur = await conn.execute(sql, params)  # type: ignore[arg-type]
                rows = await cur.fetchall() if cur.description else []
            except _RETRYABLE:
                if attempt == 7:
                    raise
                await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
                continue
            except psycopg.OperationalError as exc:
                raise self.outage.failed(exc) from exc
            finally:
                await pool.putconn(conn)
            self.outage.succeeded()
            if outbox:
                self.outbox_committed()
            return rows
        raise AssertionError("unreachable")

    # -- outbox wake-ups ------------------------------------------------------------------
    def outbox_committed(self) -> None:
        """A transaction holding outbox rows committed: wake local waiters now, and other
        processes' waiters through one coalesced NOTIFY."""
        self.outbox_commits += 1
        self._wake()
        if self._closed or self._pool is None:
            return
        if self._notify_wanted is None:
            self._notify_wanted = asyncio.Event()
        self._notify_wanted.set()
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.create_task(self._notify_loop(), name="homefeed-pg-notify")

    async def _notify_loop(self) -> None:
        conn: psycopg.AsyncConnection | None = None
        wanted = self._notify_wanted
        assert wanted is not None
        try:
            while not self._closed:
                await wanted.wait()
                wanted.clear()
                try:
                    if conn is None or conn.closed:
                        conn = await psycopg.AsyncConnection.connect(self.dsn, **self._kwargs())
                    await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
                except psycopg.Error as exc:
                    (log.debug if self.outage.down else log.warning)(
                        "outbox NOTIFY failed (waiters fall back to polling): %s", exc)
                    if conn is not None:
                        await conn.close()
                    conn = None
                    await asyncio.sleep(1.0)
        finally:
            if conn is not None:
                await conn.close()

    def _wake(self) -> None:
        self.wakes += 1
        for w in self._waiters:
            w.set()

    @asynccontextmanager
    async def outbox_waiter(self) -> AsyncIterator[asyncio.Event]:
        """An event set whenever outbox rows may have been committed (by this process or,
        through LISTEN, by any other). Clear it before reading, then wait on it."""
        await self._ensure_listener()
        ev = asyncio.Event()
        self._waiters.add(ev)
        try:
            yield ev
        finally:
            self._waiters.discard(ev)

    async def _ensure_listener(self) -> None:
        if self._closed or self._pool is None:
            return
        if self._listener is None or self._listener.done():
            self._listening = asyncio.Event()
            self._listener = asyncio.create_task(self._listen_loop(), name="homefeed-pg-listen")
        assert self._listening is not None
        if not self._listening.is_set():
            try:  # without the listener, waiting still works by polling
                await wait_for(self._listening.wait(), timeout=self.connect_timeout)
            except asyncio.TimeoutError:
                log.warning("LISTEN connection not ready; polling the outbox meanwhile")

    async def _listen_loop(self) -> None:
        backoff = 0.2
        while not self._closed:
            conn: psycopg.AsyncConnection | None = None
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, **self._kwargs())
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self.outage.succeeded()
                if self._listening is not None:
                    self._listening.set()
                self._wake()  # anything committed while we were not listening
                backoff = 0.2
                async for _ in conn.notifies():
                    self._wake()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                # One line per outage (the outage log's), not one per reconnection attempt.
                self.outage.failed(exc)
                log.debug("LISTEN connection lost (%s); reconnecting in %.1fs", exc, backoff)
            finally:
                if self._listening is not None:
                    self._listening.clear()
                if conn is not None:
                    await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    # -- leader election ------------------------------------------------------------------
    def leader(self, name: str, **kwargs: Any) -> "LeaderLock":
        return LeaderLock(self.dsn, name, **kwargs)
