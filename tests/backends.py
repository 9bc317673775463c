"""The servers of the scale-out profile, for tests: where they are, scratch namespaces on
them (a database, a key prefix, a stream name) and what to do when one is missing: skip
with the command that starts it on a laptop, fail in CI (CI=true), where .ci/run starts them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from typing import Iterator
from urllib.parse import urlparse

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

PG_ADMIN_URL = os.environ.get("HOMEFEED_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HOMEFEED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("HOMEFEED_TEST_NATS_URL", "nats://127.0.0.1:4222")

START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
    "nats": "nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server &",
}
_URLS = {"postgresql": PG_ADMIN_URL, "redis": REDIS_URL, "nats": NATS_URL}
_PORTS = {"postgresql": 5432, "redis": 6379, "nats": 4222}


def reachable(name: str, timeout: float = 1.0, tries: int = 1) -> bool:
    """Whether the server accepts a connection (``tries`` attempts of ``timeout`` seconds,
    0.5 s apart: on a busy machine, tests running in parallel, one can time out)."""
    u = urlparse(_URLS[name])
    for n in range(tries):
        if n:
            time.sleep(0.5)
        try:
            with socket.create_connection((u.hostname or "127.0.0.1", u.port or _PORTS[name]), timeout):
                return True
        except OSError:
            pass
    return False


def missing_reason(name: str) -> str:
    return f"{name} is not reachable at {_URLS[name]}; start it with: {START[name]}"


def needs(name: str) -> pytest.MarkDecorator:
    """Skip when the server is missing on a laptop; in CI let the test run (and fail)."""
    return pytest.mark.skipif(not IN_CI and not reachable(name), reason=missing_reason(name))


def require(name: str) -> None:
    """Inside a test or fixture: skip (laptop) or fail (CI) when the server is missing."""
    if not reachable(name, timeout=2.0, tries=1 + 2 * IN_CI):
        (pytest.fail if IN_CI else pytest.skip)(missing_reason(name))


@contextlib.contextmanager
def scratch_pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards. Yields its URL."""
    import psycopg
    from psycopg import conninfo

    require("postgresql")
    name = "homefeed_t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield conninfo.make_conninfo(PG_ADMIN_URL, dbname=name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
