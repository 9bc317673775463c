"""A private scale-out deployment of homefeed, for end-to-end tests that kill things.

``deployment(tmp_path, ...)`` builds, on 127.0.0.1 only:

- a scratch database on the shared PostgreSQL server (``tests.backends.scratch_pg_database``,
  dropped afterwards), migrated with ``homefeed migrate``;
- a PRIVATE ``redis-server`` on a free port, without persistence, so that ``FLUSHALL`` and
  restarts never touch the shared Redis;
- a PRIVATE ``nats-server -js`` on a free port with its store in the test's tmp dir (and a
  monitoring port, for ``/jsz``), so that stopping and restarting it is safe;
- two API processes (``homefeed serve`` on two ports: a single ``serve`` with CACHE_URL and
  BUS_URL set runs no consumers, so requests can be spread over them deterministically);
- two worker processes (``homefeed worker``, every role: fan-out, indexer, and the outbox
  relay, of which one is active under a PostgreSQL advisory lock, the other waiting).

Every process can be stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP/SIGCONT) and
restarted; each run of a process writes its own log file, and :meth:`Deployment.logs` puts
the tails of all of them into failure messages. Everything started is stopped when the
``with`` block ends, whatever happens; if the block raised, the logs are printed (pytest
shows them with the failure); API and worker processes must exit cleanly on SIGTERM. A
SIGTERM to the test process stops everything too, and every child is started with
PR_SET_PDEATHSIG, so even a SIGKILLed test run leaves no server behind.

Helpers: :meth:`Deployment.drain` (``/healthz`` of the API processes until every ``behind`` is
0, robust to health checks failing while NATS is away and to killed workers),
:meth:`Deployment.relay_holder` (the worker holding the relay's advisory lock, found through
``pg_locks`` and the processes' sockets), :meth:`Deployment.flushall`,
:meth:`Deployment.consumer_info` / :meth:`Deployment.stream_info` (NATS ``/jsz``),
:meth:`Deployment.outbox_behind` and :meth:`Deployment.sql` (PostgreSQL, straight),
:meth:`Deployment.dead_letters`, :class:`Background` (load threads).

Outages: :func:`private_pg_deployment` runs the same deployment on a PRIVATE PostgreSQL
cluster (``tests.private_pg``) instead of a scratch database on the shared server, so that
:meth:`Deployment.stop_postgres` / :meth:`Deployment.start_postgres` may stop it;
:meth:`Deployment.stop_redis` / :meth:`Deployment.start_redis` stop the private Redis and
start it again, empty.

Skips on a laptop without PostgreSQL, ``redis-server`` or ``nats-server`` (with the command
that fixes it); fails in CI (``CI=true``), as ``tests.backends`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx
import pytest

from homefeed.bootstrap import CONSUMERS as BOOTSTRAP_CONSUMERS
from tests.backends import IN_CI, require, scratch_pg_database

ROOT = Path(__file__).resolve().parents[2]
_VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(_VENV_BIN / "python") if (_VENV_BIN / "python").exists() else sys.executable

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 60.0
STREAM = "HFSCALE"
SUBJECT_PREFIX = "hfscale.events"
#: JetStream redelivers what a killed worker held after this many seconds (default 30).
ACK_WAIT = 4.0

#: What /healthz reports: every consumer of the event stream (bootstrap's), and the relay.
CONSUMERS = (*BOOTSTRAP_CONSUMERS, "relay")

_INSTALL = {
    "redis-server": "apt-get install redis-server",
    "nats-server": "apt-get install nats-server (or https://github.com/nats-io/nats-server/releases)",
}


def find_binary(name: str) -> str:
    """The path of a server binary; skip (laptop) or fail (CI) when it is not installed."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.access(p, os.X_OK)),
        None,
    )
    if path is None:
        (pytest.fail if IN_CI else pytest.skip)(f"{name} is not installed; install it with: {_INSTALL[name]}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL me when the test process dies, however it dies
    (Linux PR_SET_PDEATHSIG), so that no server outlives a killed test run."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _tail(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else "...\n" + text[-max_chars:]


# --------------------------------------------------------------------------------------------
# one process (a server, an API, a worker), restartable
# --------------------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    #: ``ready(proc) -> bool``: polled after start until true.
    ready: Callable[["Proc"], bool] = lambda p: True
    popen: subprocess.Popen | None = None
    runs: int = 0
    log_path: Path | None = None
    history: list[str] = field(default_factory=list)  # "start"/"kill"/... with times, for logs

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = STARTUP_TIMEOUT) -> "Proc":
        assert not self.alive, f"{self.name} is already running (pid {self.pid})"
        self.runs += 1
        self.log_path = self.log_dir / f"{self.name}.{self.runs}.log"
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv, cwd=str(ROOT), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self._note(f"start pid {self.popen.pid}")
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                raise AssertionError(f"{self.name} exited during start-up (rc {self.returncode})\n"
                                     + self.log_tail())
            try:
                if self.ready(self):
                    return
            except Exception:  # not answering yet
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout}s\n" + self.log_tail())
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, sig)
            self._note(signal.Signals(sig).name)

    def kill(self) -> None:
        """SIGKILL: a crash. Waits until the process is gone."""
        if self.alive:
            self.signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a clean shutdown; SIGCONT too, in case it is paused), then SIGKILL after
        ``timeout``. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGCONT)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._note("did not stop on SIGTERM: SIGKILL")
                self.kill()
        return self.popen.returncode

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def restart(self, wait: bool = True) -> "Proc":
        self.stop()
        return self.start(wait=wait)

    # -- state ----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def _note(self, what: str) -> None:
        self.history.append(f"{time.strftime('%H:%M:%S')} {what}")

    def log_text(self, all_runs: bool = False) -> str:
        """The log of the current run (or of every run, oldest first)."""
        paths = ([self.log_dir / f"{self.name}.{i}.log" for i in range(1, self.runs + 1)]
                 if all_runs else [self.log_path] if self.log_path else [])
        out = []
        for p in paths:
            try:
                out.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "".join(out)

    def log_tail(self, max_chars: int = 4000) -> str:
        return (f"----- {self.name} (run {self.runs}, pid {self.pid}, rc {self.returncode}; "
                f"{', '.join(self.history[-6:])}) {self.log_path} -----\n"
                + _tail(self.log_text(), max_chars))


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200


def _redis_ping(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1.0) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


# --------------------------------------------------------------------------------------------
# the deployment
# --------------------------------------------------------------------------------------------


class Deployment:
    """Two API processes, two workers, a private Redis and a private NATS, one scratch
    PostgreSQL database. Build it with :func:`deployment`."""

    def __init__(self, workdir: Path, database_url: str, settings: dict[str, str],
                 apis: int = 2, workers: int = 2, ack_wait: float = ACK_WAIT,
                 max_deliver: int | None = None) -> None:
        self.workdir = workdir
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.redis_port = free_port()
        self.nats_port = free_port()
        self.nats_monitor_port = free_port()
        self.cache_url = f"redis://{HOST}:{self.redis_port}/0"
        self.bus_url = (f"nats://{HOST}:{self.nats_port}?stream={STREAM}"
                        f"&subject_prefix={SUBJECT_PREFIX}&ack_wait={ack_wait:g}"
                        + (f"&max_deliver={max_deliver}" if max_deliver is not None else ""))
        self.settings = dict(settings)

        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
        env.update({
            "HOMEFEED_DATABASE_URL": database_url,
            "HOMEFEED_CACHE_URL": self.cache_url,
            "HOMEFEED_BUS_URL": self.bus_url,
            "HOMEFEED_HOST": HOST,
            "HOMEFEED_LOG_LEVEL": "INFO",
            "HOMEFEED_DATA_DIR": str(workdir / "unused-data-dir"),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.settings)
        self.env = env

        redis_bin, nats_bin = find_binary("redis-server"), find_binary("nats-server")
        self.redis = Proc(
            "redis",
            [redis_bin, "--port", str(self.redis_port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)],
            dict(os.environ), self.log_dir, ready=lambda p: _redis_ping(self.redis_port),
        )
        self.nats_store = workdir / "nats-store"
        self.nats = Proc(
            "nats",
            [nats_bin, "-a", HOST, "-p", str(self.nats_port), "-js", "-sd", str(self.nats_store),
             "-m", str(self.nats_monitor_port)],  # monitoring binds to -a as well
            dict(os.environ), self.log_dir,
            ready=lambda p: _http_ok(f"http://{HOST}:{self.nats_monitor_port}/healthz"),
        )
        self.api_ports = [free_port() for _ in range(apis)]
        self.apis = [
            Proc(f"api{i}", [PYTHON, "-m", "homefeed", "serve", "--host", HOST, "--port", str(port)],
                 env, self.log_dir, ready=lambda p, port=port: _http_ok(f"http://{HOST}:{port}/healthz"))
            for i, port in enumerate(self.api_ports)
        ]
        self.workers = [
            Proc(f"worker{i}", [PYTHON, "-m", "homefeed", "worker", "--role", "all"], env, self.log_dir,
                 ready=lambda p: "worker running:" in p.log_text())
            for i in range(workers)
        ]
        self.urls = [f"http://{HOST}:{port}" for port in self.api_ports]
        self._clients = [httpx.Client(base_url=u, timeout=30.0) for u in self.urls]

    # -- building and tearing down ----------------------------------------------------------
    @property
    def processes(self) -> list[Proc]:
        return [*self.apis, *self.workers, self.nats, self.redis]

    def start(self) -> None:
        self.redis.start(wait=False)
        self.nats.start(wait=False)
        self.redis.wait_ready()
        self.nats.wait_ready()
        self.migrate()
        for p in [*self.apis, *self.workers]:  # start all, then wait: they boot in parallel
            p.start(wait=False)
        for p in [*self.apis, *self.workers]:
            p.wait_ready()
        self.relay_holder(timeout=STARTUP_TIMEOUT)  # one relay is active

    def migrate(self) -> None:
        r = subprocess.run([PYTHON, "-m", "homefeed", "migrate"], cwd=str(ROOT), env=self.env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"homefeed migrate failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"

    def close(self) -> dict[str, int | None]:
        """Stop everything: API and workers first (SIGTERM, a clean exit), servers last.
        Returns the exit code of each process's last run."""
        for c in self._clients:
            c.close()
        codes: dict[str, int | None] = {}
        errors = []
        for p in [*self.apis, *self.workers, self.nats, self.redis]:
            try:
                codes[p.name] = p.stop(timeout=15)
            except Exception as exc:  # keep stopping the others
                errors.append(f"{p.name}: {exc!r}")
        # Belt and braces: nothing we started may outlive the test.
        for p in self.processes:
            if p.alive:
                p.kill()
        assert not errors, errors
        return codes

    # -- HTTP ---------------------------------------------------------------------------------
    def client(self, i: int) -> httpx.Client:
        return self._clients[i % len(self._clients)]

    def health(self, i: int = 0, timeout: float = 5.0) -> dict[str, Any]:
        r = httpx.get(self.urls[i % len(self.urls)] + "/healthz", timeout=timeout)
        r.raise_for_status()
        return r.json()

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> dict[str, Any]:
        """Wait until every committed event is relayed and applied by every consumer:
        ``/healthz`` of the API processes (alternately) says every ``behind`` is 0, twice in
        a row (the lags are read one after the other, not atomically). Health checks that
        fail (NATS restarting) or time out count as "not drained"; a drain with no worker
        alive, or with a paused server, fails at once."""
        deadline = time.monotonic() + timeout
        zeros = 0
        last: Any = None
        i = 0
        while True:
            dead = [p.name for p in (self.nats, self.redis) if not p.alive]
            assert not dead, f"drain with {dead} down\n{self.logs()}"
            assert any(w.alive for w in self.workers), f"drain with no worker alive\n{self.logs()}"
            live_apis = [k for k, p in enumerate(self.apis) if p.alive]
            assert live_apis, "drain with no API process alive"
            k = live_apis[i % len(live_apis)]
            i += 1
            try:
                body = self.health(k)
                consumers = body.get("consumers") or {}
                ok = (set(consumers) == set(CONSUMERS)
                      and all(c.get("behind") == 0 for c in consumers.values()))
                last = body
            except (httpx.HTTPError, ValueError) as exc:
                ok, last = False, repr(exc)
            zeros = zeros + 1 if ok else 0
            if zeros >= 2:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"not drained after {timeout}s; last /healthz: {last}\n{self.logs()}")
            time.sleep(0.05)

    # -- workers and the relay ----------------------------------------------------------------
    def relay_holder(self, timeout: float = 15.0, exclude: Sequence[Proc] = ()) -> Proc:
        """The live worker holding the relay's PostgreSQL advisory lock (the active relay):
        the lock's session is found in ``pg_locks``, its client port among the worker
        processes' sockets. (Over a Unix socket there is no port: then the worker whose
        current run logged "is now the active relay" last.)"""
        deadline = time.monotonic() + timeout
        while True:
            live = [w for w in self.workers if w.alive and w not in exclude]
            port = self._relay_lock_client_port()
            if port is not None and port > 0:
                holders = [w for w in live if port in _tcp_local_ports(w.pid)]
            elif port is not None:
                holders = _last_logged(live, "is now the active relay")
            else:
                holders = []
            if holders:
                return holders[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no live worker {'other than ' + str([w.name for w in exclude]) if exclude else ''}"
                                     f" holds the relay lock after {timeout}s\n" + self.logs())
            time.sleep(0.05)

    def _relay_lock_client_port(self) -> int | None:
        """The client port of the session holding the relay lock (-1: a Unix socket; None:
        nobody holds it)."""
        from homefeed.adapters.pg_db import LOCK_NAMESPACE, lock_key

        rows = self.sql(
            "SELECT coalesce(a.client_port, -1) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (LOCK_NAMESPACE & 0xFFFFFFFF, lock_key("relay") & 0xFFFFFFFF),
        )
        return rows[0][0] if rows else None

    # -- outages: stop a backend, start it again ---------------------------------------------------
    #: The private PostgreSQL cluster (``private_pg_deployment``); None on the shared server.
    pg: Any = None

    def stop_redis(self) -> None:
        """SIGTERM the private Redis and wait until it is gone (it keeps nothing on disk)."""
        self.redis.stop()

    def start_redis(self) -> None:
        """Start the private Redis again on the same port; it comes back empty (the
        processes fill it again at once)."""
        self.redis.start()

    def stop_postgres(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>`` of the private cluster (``private_pg_deployment`` only)."""
        assert self.pg is not None, "stop_postgres needs private_pg_deployment (never the shared server)"
        self.pg.stop(mode)

    def start_postgres(self) -> None:
        assert self.pg is not None, "start_postgres needs private_pg_deployment"
        self.pg.start()

    # -- Redis ----------------------------------------------------------------------------------
    def redis_command(self, *args: str, timeout: float = 10.0) -> bytes:
        """One command on the private Redis (RESP by hand: no client state to go stale)."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        with socket.create_connection((HOST, self.redis_port), timeout=timeout) as s:
            s.sendall(b"".join(parts))
            reply = s.recv(65536)
        assert reply and not reply.startswith(b"-"), f"redis {args}: {reply!r}"
        return reply

    def flushall(self) -> None:
        assert self.redis_command("FLUSHALL").startswith(b"+OK")

    def redis_dbsize(self) -> int:
        return int(self.redis_command("DBSIZE")[1:].strip())

    # -- NATS -----------------------------------------------------------------------------------
    def jsz(self) -> dict[str, Any]:
        """The JetStream monitoring report: streams and consumers, with their counters."""
        r = httpx.get(f"http://{HOST}:{self.nats_monitor_port}/jsz",
                      params={"streams": "true", "consumers": "true", "config": "false"}, timeout=5.0)
        r.raise_for_status()
        return r.json()

    def stream_info(self, name: str = STREAM) -> dict[str, Any]:
        for account in self.jsz().get("account_details") or []:
            for s in account.get("stream_detail") or []:
                if s.get("name") == name:
                    return s
        raise AssertionError(f"no JetStream stream {name}")

    def consumer_info(self, consumer: str) -> dict[str, Any]:
        for c in self.stream_info().get("consumer_detail") or []:
            if c.get("name") == consumer:
                return c
        raise AssertionError(f"no JetStream consumer {consumer}")

    def dead_letters(self) -> list[Any]:
        """Every dead letter of the deployment's stream (read with the adapter itself)."""
        from homefeed.adapters.jetstream import JetStreamEventStream

        async def read() -> list[Any]:
            async with JetStreamEventStream.from_url(self.bus_url) as js:
                return await js.dead_letters()

        return asyncio.run(read())

    # -- PostgreSQL -------------------------------------------------------------------------------
    def sql(self, query: str, params: Any = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    def outbox_behind(self, consumer: str = "relay") -> int:
        """Outbox events committed after ``consumer``'s acknowledged position (for the relay:
        committed, not yet known to be on the stream), read straight from PostgreSQL."""
        return self.sql(
            "SELECT count(*) FROM outbox o LEFT JOIN consumer_offsets c ON c.consumer = %s"
            " WHERE c.consumer IS NULL OR (o.xid, o.seq) > (c.xid, c.seq)", (consumer,))[0][0]

    # -- diagnostics --------------------------------------------------------------------------------
    def logs(self, max_chars: int = 3000) -> str:
        return "\n".join(p.log_tail(max_chars) for p in self.processes if p.runs)

    def grep_logs(self, pattern: str, procs: Sequence[Proc] | None = None) -> list[str]:
        rx = re.compile(pattern)
        out = []
        for p in procs if procs is not None else [*self.apis, *self.workers]:
            for line in p.log_text(all_runs=True).splitlines():
                if rx.search(line):
                    out.append(f"{p.name}: {line}")
        return out


def _tcp_local_ports(pid: int | None) -> set[int]:
    """Local ports of the TCP sockets process ``pid`` has open (Linux /proc)."""
    if pid is None:
        return set()
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if len(parts) > 9 and parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _last_logged(procs: Sequence[Proc], needle: str) -> list[Proc]:
    """The process whose current run logged ``needle`` last (by the log line's time)."""
    best: tuple[float, Proc] | None = None
    for p in procs:
        text = p.log_text()
        pos = text.rfind(needle)
        if pos >= 0:
            stamp = _log_time(text, pos)
            if best is None or stamp > best[0]:
                best = (stamp, p)
    return [best[1]] if best else []


_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")


def _log_time(text: str, pos: int) -> float:
    """The timestamp of the log line holding ``pos`` (logging's default asctime)."""
    start = text.rfind("\n", 0, pos) + 1
    m = _STAMP.match(text, start)
    if not m:
        return 0.0
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def pg_url(dsn: str) -> str:
    """``scratch_pg_database`` yields a key=value DSN; HOMEFEED_DATABASE_URL wants a URL."""
    from urllib.parse import quote

    from psycopg import conninfo

    d = conninfo.conninfo_to_dict(dsn)
    auth = quote(str(d.get("user", "")), safe="")
    if d.get("password"):
        auth += ":" + quote(str(d["password"]), safe="")
    host = str(d.get("host") or HOST)
    netloc = f"{auth + '@' if auth else ''}{host}:{d.get('port') or 5432}"
    return f"postgresql://{netloc}/{quote(str(d['dbname']), safe='')}"


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a deployment runs, SIGTERM to the test process (``timeout``, a CI runner giving
    up) raises SystemExit, so the ``with`` blocks stop every process and drop the database."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_exit(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deployment(tmp_path: Path, settings: dict[str, str] | None = None, **kw: Any) -> Iterator[Deployment]:
    """A started private deployment; everything is stopped (and the database dropped) when the
    block ends. If the block raises, every process's log tail is printed."""
    require("postgresql")
    find_binary("redis-server")
    find_binary("nats-server")
    with scratch_pg_database() as dsn, _sigterm_raises():
        for attempt in range(3):  # a free port taken by someone else meanwhile: new ports
            workdir = tmp_path if attempt == 0 else tmp_path / f"retry{attempt}"
            dep = Deployment(workdir, pg_url(dsn), settings or {}, **kw)
            try:
                dep.start()
                break
            except BaseException:
                taken = any("address already in use" in p.log_text().lower() for p in dep.processes)
                with contextlib.suppress(Exception):
                    dep.close()
                if not taken or attempt == 2:
                    print(f"===== scale-out deployment logs ({dep.log_dir}) =====\n{dep.logs(6000)}")
                    raise
        try:
            yield dep
        except BaseException:
            print(f"===== scale-out deployment logs ({dep.log_dir}) =====\n{dep.logs(6000)}")
            with contextlib.suppress(Exception):  # keep the test's own error
                dep.close()
            raise
        codes = dep.close()
        # API and worker processes exit cleanly on SIGTERM, having finished what they held
        # (uvicorn re-raises the SIGTERM it handled once shut down: -15 is its clean exit).
        clean = {**{p.name: (0, -signal.SIGTERM) for p in dep.apis}, **{p.name: (0,) for p in dep.workers}}
        unclean = {name: codes.get(name) for name, ok in clean.items() if codes.get(name) not in ok}
        assert not unclean, f"exit codes after SIGTERM: {unclean}\n{dep.logs()}"


@contextlib.contextmanager
def private_pg_deployment(tmp_path: Path, settings: dict[str, str] | None = None,
                          **kw: Any) -> Iterator[Deployment]:
    """As :func:`deployment`, on a private PostgreSQL cluster that the test may stop and
    start (``dep.stop_postgres()`` / ``dep.start_postgres()``); the cluster is deleted
    afterwards. Skips (laptop) or fails (CI) without the PostgreSQL server binaries."""
    from tests.private_pg import private_pg

    find_binary("redis-server")
    find_binary("nats-server")
    with private_pg() as cluster, _sigterm_raises():
        url = cluster.create_database("homefeed")
        dep = Deployment(tmp_path, url, settings or {}, **kw)
        dep.pg = cluster
        try:
            dep.start()
            yield dep
        except BaseException:  # the start or the test failed: show why, keep its error
            print(f"===== scale-out deployment logs ({dep.log_dir}) =====\n{dep.logs(6000)}\n"
                  f"{cluster.log_tail()}")
            with contextlib.suppress(Exception):
                dep.close()
            raise
        if not cluster.running:  # the API and workers must stop cleanly: give them the database
            cluster.start()
        codes = dep.close()
        clean = {**{p.name: (0, -signal.SIGTERM) for p in dep.apis}, **{p.name: (0,) for p in dep.workers}}
        unclean = {name: codes.get(name) for name, ok in clean.items() if codes.get(name) not in ok}
        assert not unclean, f"exit codes after SIGTERM: {unclean}\n{dep.logs()}"


# --------------------------------------------------------------------------------------------
# background load
# --------------------------------------------------------------------------------------------


class Background:
    """Run ``fn(stop_event)`` in threads; collect the first exception. ``with`` stops and joins
    them, then re-raises what a thread raised."""

    def __init__(self, *fns: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(fn,), daemon=True) for fn in fns]

    def _run(self, fn: Callable[[threading.Event], None]) -> None:
        try:
            fn(self.stop)
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__
            self.errors.append(exc)
            self.stop.set()

    def __enter__(self) -> "Background":
        for t in self.threads:
            t.start()
        return self

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)
        alive = [t.name for t in self.threads if t.is_alive()]
        if exc[0] is None:
            self.check()
            assert not alive, f"load threads did not stop: {alive}"
