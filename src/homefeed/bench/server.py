"""Starting and stopping a homefeed server for a benchmark, and a small HTTP client for the
bench's own control requests (warming timelines, probing the fan-out, /healthz).

The server is always a separate ``homefeed serve`` process on 127.0.0.1 and an ephemeral
port, with its settings passed as ``HOMEFEED_*`` variables (e.g. ``HOMEFEED_FEED_STRATEGY``),
and it is always stopped: SIGTERM, then SIGKILL after a grace period, whatever happened.

The client is not the load generator (that is ``loadgen``, in its own processes): it is a
keep-alive HTTP/1.1 client that returns response bodies, for the few requests whose answer
the bench must read.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import httptools
import orjson

from homefeed.aio import wait_for
from homefeed.bench.loadgen import check_loopback

__all__ = ["Client", "ServerProcess", "copy_world", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_world(src: str | Path, dst: str | Path) -> Path:
    """Copy an embedded world (SQLite file and side files) into a fresh directory, so that
    each run starts from the same records whatever the previous run wrote."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in ("homefeed.db", "homefeed.db-wal", "tokens.tsv", "world.json"):
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)
    return dst


class ServerProcess:
    """``homefeed serve`` on 127.0.0.1 in its own process; a context manager that always
    stops it. ``env`` adds ``HOMEFEED_*`` settings (strategy, URLs...)."""

    def __init__(
        self,
        data_dir: str | Path,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        start_timeout_s: float = 60.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        check_loopback(self.url)
        self.env = dict(env or {})
        self.start_timeout_s = start_timeout_s
        self.log_path = Path(log_path) if log_path else self.data_dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServerProcess":
        env = dict(os.environ)
        # The bench decides the profile: drop stray profile variables unless asked for.
        for k in ("HOMEFEED_DATABASE_URL", "HOMEFEED_CACHE_URL", "HOMEFEED_BUS_URL",
                  "HOMEFEED_FEED_STRATEGY", "HOMEFEED_DATA_DIR", "HOMEFEED_PORT", "HOMEFEED_HOST"):
            env.pop(k, None)
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homefeed", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"homefeed serve exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text()[-2000:]
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"homefeed serve did not listen within {self.start_timeout_s} s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self, grace_s: float = 10.0) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# A small keep-alive client that reads bodies
# --------------------------------------------------------------------------------------------


class _Resp:
    __slots__ = ("parser", "status", "body", "done", "keep")

    def __init__(self) -> None:
        self.parser: Any = None
        self.status = 0
        self.body = bytearray()
        self.done = False
        self.keep = False

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, b: bytes) -> None:
        self.body += b

    def on_message_complete(self) -> None:
        self.keep = self.parser.should_keep_alive()
        self.done = True


class Client:
    """One keep-alive connection to a loopback server. ``await request(...)`` returns
    ``(status, parsed JSON or None)``. Not safe for concurrent use: make one per task."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.host, self.port = check_loopback(url)
        self.timeout_s = timeout_s
        self._rw: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _conn(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._rw is None:
            self._rw = await asyncio.open_connection(self.host, self.port)
        return self._rw

    async def close(self) -> None:
        if self._rw is not None:
            self._rw[1].close()
            self._rw = None

    async def request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        return await wait_for(self._request(method, path, token, body), self.timeout_s)

    async def _request(self, method: str, path: str, token: str | None, body: Any) -> tuple[int, Any]:
        payload = orjson.dumps(body) if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        raw = head.encode() + b"\r\n" + payload
        for attempt in (0, 1):  # a kept-alive connection may have been closed by the server
            reader, writer = await self._conn()
            try:
                writer.write(raw)
                r = _Resp()
                parser = r.parser = httptools.HttpResponseParser(r)
                while not r.done:
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionResetError("server closed the connection")
                    parser.feed_data(data)
                break
            except (ConnectionError, OSError):
                await self.close()
                if attempt:
                    raise
        if not r.keep:
            await self.close()
        parsed = orjson.loads(bytes(r.body)) if r.body else None
        return r.status, parsed


async def wait_drained(url: str, timeout_s: float = 60.0) -> float:
    """Poll /healthz until every consumer has caught up (``behind`` 0); seconds waited."""
    t0 = time.monotonic()
    c = Client(url, timeout_s=5)
    try:
        while time.monotonic() - t0 < timeout_s:
            status, body = await c.request("GET", "/healthz")
            if status == 200 and all(v.get("behind", 0) == 0 for v in body.get("consumers", {}).values()):
                return time.monotonic() - t0
            await asyncio.sleep(0.05)
        return time.monotonic() - t0
    finally:
        await c.close()


async def warm_timelines(url: str, tokens: list[str], concurrency: int = 8, limit: int = 20,
                         progress: Any = None) -> int:
    """Read each user's home timeline once (a cold one is rebuilt by the service), so that a
    measured run starts in steady state; returns non-2xx answers."""
    queue = list(tokens)
    bad = 0

    async def worker() -> None:
        nonlocal bad
        c = Client(url)
        try:
            while queue:
                tok = queue.pop()
                status, _ = await c.request("GET", f"/v1/timelines/home?limit={limit}", tok)
                if not 200 <= status < 300:
                    bad += 1
                if progress:
                    progress(1)
        finally:
            await c.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return bad
