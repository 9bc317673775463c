"""A private PostgreSQL cluster for tests that stop and start the server.

The shared server on 5432 must never be stopped (other people's tests use it), so outage
tests run their own: ``initdb`` into a fresh temporary directory, ``pg_ctl start`` on a free
port (TCP on 127.0.0.1, its Unix socket in the same directory), trust authentication for
``postgres``. Starting one takes about two seconds, so share one per test module::

    @pytest.fixture(scope="module")
    def pg():
        with private_pg() as cluster:
            yield cluster

    cluster.stop("fast"); ...; cluster.start()
    cluster.url("mydb")   # postgresql://postgres@127.0.0.1:<port>/mydb

PostgreSQL refuses to run as root: as root the binaries run as the ``postgres`` user
(``runuser``) and the directory belongs to it. Without the binaries (``/usr/lib/postgresql/
<version>/bin`` or on ``PATH``), or as neither root nor able to run them, the tests skip
with the reason on a laptop and fail in CI (``CI=true``), like ``tests.backends``.
Durability settings are off (``fsync``): a stop, even ``-m immediate``, is a crash of the
server process only, which PostgreSQL recovers from with or without them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.backends import IN_CI

HOST = "127.0.0.1"


def _skip_or_fail(reason: str) -> None:
    (pytest.fail if IN_CI else pytest.skip)(reason)


def pg_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or the one of ``initdb`` on PATH."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = sorted((p for p in root.iterdir() if (p / "bin" / "initdb").exists()),
                          key=lambda p: int(p.name) if p.name.isdigit() else 0)
        if versions:
            return versions[-1] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class PrivatePg:
    """One cluster in ``base``: ``start()``, ``stop(mode)``, ``url(db)``, ``create_database``."""

    def __init__(self, bin_dir: Path, base: Path, as_user: str | None) -> None:
        self.bin = bin_dir
        self.base = base
        self.data = base / "data"
        self.log = base / "server.log"
        self.port = _free_port()
        self.as_user = as_user  # run the binaries as this user (when we are root)
        self.running = False

    def _run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(self.base))
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n"
                                 f"{self.log_tail()}")
        return r

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")

    def start(self) -> None:
        """Start the server and wait until it accepts connections (pg_ctl -w)."""
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses={HOST} -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB"
                " -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """``fast``: active transactions are rolled back, sessions ended (a clean shutdown);
        ``immediate``: the server processes quit at once (a crash; recovery at start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{dbname}"

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, max_chars: int = 3000) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return f"----- private PostgreSQL log {self.log} -----\n" + text[-max_chars:]

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def private_pg() -> Iterator[PrivatePg]:
    """A started private cluster, stopped and deleted afterwards (also at interpreter exit,
    should the test process be interrupted)."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        _skip_or_fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                      "install them with: apt-get install postgresql")
    as_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _skip_or_fail("running as root without a 'postgres' user to run PostgreSQL as")
        if shutil.which("runuser") is None:
            _skip_or_fail("running as root without runuser(1) to run PostgreSQL as 'postgres'")
        as_user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="homefeed-pg-"))
    if as_user:
        entry = pwd.getpwnam(as_user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    cluster = PrivatePg(bin_dir, base, as_user)
    atexit.register(cluster.close)
    try:
        cluster.init()
        for attempt in range(3):  # a free port taken meanwhile: another one
            try:
                cluster.start()
                break
            except AssertionError:
                if attempt == 2 or "already in use" not in cluster.log_tail():
                    raise
                cluster.port = _free_port()
        yield cluster
    finally:
        cluster.close()
        atexit.unregister(cluster.close)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` (a hang guard,
    not a speed assertion)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - not yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last error: {last!r})")
