"""Leader election on PostgreSQL: a session-level advisory lock on a dedicated connection,
with a watchdog that notices its loss (see :class:`LeaderLock`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import psycopg

from homefeed.adapters.pg_schema import LOCK_NAMESPACE
from homefeed.aio import wait_for
from homefeed.domain.errors import LeadershipLost

log = logging.getLogger("homefeed.postgres")


def lock_key(name: str) -> int:
    """A stable signed 32-bit key for an advisory lock named ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


class LeaderLock:
    """``async with db.leader("relay"):`` waits until this process holds the session-level
    advisory lock ``(LOCK_NAMESPACE, lock_key(name))`` and holds it for the body, so that of
    several processes running the same body exactly one is active and another takes over
    when it dies.

    The lock lives on a dedicated connection (not a pool one: a session-level lock belongs
    to the session, and dies with it). Acquisition polls ``pg_try_advisory_lock`` every
    ``poll`` seconds (reconnecting if needed), rather than blocking in ``pg_advisory_lock``,
    so that a waiting process can be cancelled (SIGTERM) at once and holds no open statement.

    How loss is detected. The server releases the lock as soon as it ends the session: at
    once when our process dies (the kernel closes the socket), or when its TCP keepalives
    give up on a vanished peer (set to ~5 s idle + 3 x 2 s on this session; over a Unix
    socket they do not apply, and the peer is local anyway). On our side a watchdog checks,
    every ``check_interval`` seconds with a ``check_timeout``, that the session is alive and
    still holds the lock (``pg_locks``); on failure it sets ``lost`` and cancels the body,
    and the ``async with`` raises :class:`LeadershipLost`. So the old leader stops within
    ``check_interval + check_timeout`` of the failure of its connection, while a successor
    can take the lock as soon as the server has ended that session: in a network partition
    the two can overlap for up to about that bound (or, if the server notices later than
    the watchdog, never). Work done under the lock must therefore stay safe if repeated by
    the successor: the relay publishes with ``Nats-Msg-Id`` = event id, so a re-send is
    dropped as a duplicate. Bodies that prefer polling may check ``lost.is_set()`` instead.
    """

    def __init__(
        self,
        dsn: str,
        name: str,
        *,
        poll: float = 0.5,
        check_interval: float = 1.0,
        check_timeout: float = 2.0,
        application_name: str = "homefeed-leader",
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.key = lock_key(name)
        self.poll = poll
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.application_name = application_name
        self.lost = asyncio.Event()
        self.held = False
        self.backend_pid: int | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._body: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._cancelled_body = False

    async def _connect(self) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            application_name=self.application_name,
            # client side: notice a dead server / network
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
            connect_timeout=5,
        )
        # server side: end our session (releasing the lock) if we vanish without a FIN
        await conn.execute(
            "SELECT set_config('tcp_keepalives_idle', '5', false),"
            " set_config('tcp_keepalives_interval', '2', false),"
            " set_config('tcp_keepalives_count', '3', false),"
            " set_config('idle_in_transaction_session_timeout', '0', false)"
        )
        return conn

    async def __aenter__(self) -> "LeaderLock":
        unreachable = 0  # failed attempts in a row: the first is logged, the rest counted
        try:
            while True:
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = await self._connect()
                    cur = await self._conn.execute(
                        "SELECT pg_try_advisory_lock(%s::int, %s::int), pg_backend_pid()",
                        (LOCK_NAMESPACE, self.key),
                    )
                    got, pid = await cur.fetchone()  # type: ignore[misc]
                    if got:
                        self.backend_pid = pid
                        break
                except psycopg.OperationalError as exc:
                    unreachable += 1
                    if unreachable == 1:
                        log.warning("leader %s: cannot reach PostgreSQL (%s); retrying every %.1fs",
                                    self.name, str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                                    self.poll)
                    await self._close_conn()
                await asyncio.sleep(self.poll)
        except BaseException:  # cancelled while waiting (SIGTERM): leave nothing open
            await self._close_conn()
            raise
        self.held = True
        self.lost.clear()
        self._body = asyncio.current_task()
        self._watchdog = asyncio.create_task(self._watch(), name=f"homefeed-leader-{self.name}")
        log.info("leader %s: acquired (backend pid %s)%s", self.name, self.backend_pid,
                 f" after {unreachable} failed attempts to reach PostgreSQL" if unreachable else "")
        return self

    async def _watch(self) -> None:
        assert self._conn is not None
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                cur = await wait_for(
                    self._conn.execute(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                        " AND pid = pg_backend_pid() AND classid::bigint = (%s::bigint & 4294967295)"
                        " AND objid::bigint = (%s::bigint & 4294967295) AND objsubid = 2 AND granted)",
                        (LOCK_NAMESPACE, self.key),
                    ),
                    timeout=self.check_timeout,
                )
                row = await cur.fetchone()
                if row and row[0]:
                    continue
                reason = "the lock is no longer held"
                level = logging.ERROR  # the session lives on without its lock: unexpected
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection error or timeout: PostgreSQL is away
                reason = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                level = logging.WARNING  # an outage, logged as such; another term follows
            log.log(level, "leader %s: leadership lost (%s)", self.name, reason)
            self.held = False
            self.lost.set()
            if self._body is not None and not self._body.done():
                self._cancelled_body = True
                self._body.cancel()
            return

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except (asyncio.CancelledError, Exception):
                pass
            self._watchdog = None
        lost = self.lost.is_set()
        if not lost and self._conn is not None and not self._conn.closed:
            try:
                await self._conn.execute(
                    "SELECT pg_advisory_unlock(%s::int, %s::int)", (LOCK_NAMESPACE, self.key)
                )
            except psycopg.Error:
                pass  # closing the session releases it anyway
        await self._close_conn()
        self.held = False
        if self._cancelled_body:
            self._cancelled_body = False
            body = self._body
            self._body = None
            # Turn our own cancellation into LeadershipLost; a cancel from elsewhere stays.
            if exc_type is asyncio.CancelledError and body is not None and body.uncancel() == 0:
                raise LeadershipLost(f"leadership of {self.name!r} lost")
        self._body = None
        if lost and exc_type is None:
            raise LeadershipLost(f"leadership of {self.name!r} lost")
        return False

    async def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception:
                pass
            self._conn = None
