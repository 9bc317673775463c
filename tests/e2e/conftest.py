"""End-to-end fixtures: a real ``python -m homefeed serve`` subprocess, spoken to over HTTP.

One server per session (small settings so that the push path, the pull path for celebrities
and deep paging past the cache's cap are all exercised) plus a second one whose followers are
"inactive" almost at once, so that the rebuild-from-the-database read path is exercised too.
Tests share a server, so every test makes its own users (unique handles) and its own search
words (unique markers).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PY) if _VENV_PY.exists() else sys.executable

CELEBRITY_THRESHOLD = 3
TIMELINE_CAP = 5
MAX_POST_LENGTH = 500
MAX_BODY_BYTES = 64 * 1024
MAX_ID = (1 << 63) - 1

STARTUP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 60.0


# --------------------------------------------------------------------------------------------
# the server subprocess
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    base_url: str
    proc: subprocess.Popen
    stdout_path: Path
    stderr_path: Path
    data_dir: Path

    def log_tail(self, max_chars: int = 6000) -> str:
        parts = []
        for label, p in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            try:
                text = p.read_text(errors="replace")
            except OSError as exc:  # pragma: no cover - diagnostics only
                text = f"<cannot read {p}: {exc}>"
            if len(text) > max_chars:
                text = "...\n" + text[-max_chars:]
            parts.append(f"----- {label} ({p}) -----\n{text}")
        rc = self.proc.poll()
        parts.append(f"----- process: pid {self.proc.pid}, returncode {rc} -----")
        return "\n".join(parts)


_SERVERS: list[Server] = []


def _start_server(tmp_path_factory: pytest.TempPathFactory, name: str, settings: dict[str, str],
                  data_dir: Path | None = None) -> Server:
    """Start ``python -m homefeed serve`` on a free port and wait for ``/healthz``. A given
    ``data_dir`` is reused (a restart); otherwise a fresh one is made."""
    base = tmp_path_factory.mktemp(f"homefeed-{name}")
    if data_dir is None:
        data_dir = base / "data"
        data_dir.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
    env.update(settings)
    env["HOMEFEED_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    stdout_path = base / "server.stdout.log"
    stderr_path = base / "server.stderr.log"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [PYTHON, "-m", "homefeed", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data_dir)],
            cwd=str(ROOT), env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
        )
    server = Server(name, f"http://127.0.0.1:{port}", proc, stdout_path, stderr_path, data_dir)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    while True:
        if proc.poll() is not None:
            pytest.fail(f"homefeed server '{name}' exited during start-up\n{server.log_tail()}",
                        pytrace=False)
        try:
            r = httpx.get(server.base_url + "/healthz", timeout=2.0)
            if r.status_code == 200:
                break
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            _stop(server)
            pytest.fail(f"homefeed server '{name}' not ready after {STARTUP_TIMEOUT}s "
                        f"(last: {last})\n{server.log_tail()}", pytrace=False)
        time.sleep(0.1)
    _SERVERS.append(server)
    return server


def _stop(server: Server, kill: bool = False) -> None:
    """Terminate (SIGTERM, a clean shutdown) or kill (SIGKILL, a crash) the server."""
    if server.proc.poll() is None:
        if kill:
            server.proc.kill()
        else:
            server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)
    if server in _SERVERS:
        _SERVERS.remove(server)


_BAD_LOG = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")


def _assert_clean_log(server: Server) -> None:
    """A server that answered every request well may still have logged an unhandled error (a
    consumer batch that failed and was retried, say): that is a bug too."""
    text = server.stderr_path.read_text(errors="replace") + server.stdout_path.read_text(errors="replace")
    bad = [line for line in text.splitlines() if _BAD_LOG.search(line)]
    assert not bad, (f"homefeed server '{server.name}' logged errors:\n" + "\n".join(bad[:20])
                     + "\n" + server.log_tail())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server's log to every failing e2e test (the server runs out of process)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in list(_SERVERS):
            rep.sections.append((f"homefeed server '{s.name}' log", s.log_tail()))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The fault scenarios' figures (``tests/e2e/fault_figures.py``), when any ran."""
    from tests.e2e import fault_figures

    text = fault_figures.table()
    if text:
        terminalreporter.write_sep("=", "fault scenarios")
        terminalreporter.write_line(text)
        fault_figures.write_json()


BASE_SETTINGS = {
    "HOMEFEED_CELEBRITY_THRESHOLD": str(CELEBRITY_THRESHOLD),
    "HOMEFEED_TIMELINE_CAP": str(TIMELINE_CAP),
    "HOMEFEED_MAX_POST_LENGTH": str(MAX_POST_LENGTH),
}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = _start_server(tmp_path_factory, "main", dict(BASE_SETTINGS))
    yield s
    _stop(s)
    _assert_clean_log(s)


@pytest.fixture(scope="session")
def inactive_server(tmp_path_factory):
    """Followers count as inactive ~0.1 s after their last read: fan-out skips them and their
    timeline is rebuilt from the database on the next read."""
    s = _start_server(tmp_path_factory, "inactive",
                      {**BASE_SETTINGS, "HOMEFEED_INACTIVE_DAYS": "0.000001"})
    yield s
    _stop(s)
    _assert_clean_log(s)


class ServerFactory:
    """Private servers for tests that stop and restart one (durability across restarts)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.started: list[Server] = []

    def start(self, name: str, data_dir: Path | None = None, **settings: str) -> Server:
        env = {**BASE_SETTINGS, **{"HOMEFEED_" + k.upper(): v for k, v in settings.items()}}
        s = _start_server(self.tmp_path_factory, name, env, data_dir)
        self.started.append(s)
        return s

    def stop(self, server: Server, kill: bool = False) -> None:
        _stop(server, kill=kill)

    def close(self) -> None:
        for s in self.started:
            _stop(s)
        for s in self.started:
            _assert_clean_log(s)


@pytest.fixture
def server_factory(tmp_path_factory):
    f = ServerFactory(tmp_path_factory)
    yield f
    f.close()


@pytest.fixture(scope="session")
def tiny_cache_server(tmp_path_factory):
    """Caches far too small for the load: timelines, author lists and posts are evicted all
    the time, so reads keep falling back to rebuilds and to the database."""
    s = _start_server(tmp_path_factory, "tiny-cache",
                      {**BASE_SETTINGS, "HOMEFEED_CACHE_MAX_TIMELINES": "2",
                       "HOMEFEED_CACHE_MAX_POSTS": "3"})
    yield s
    _stop(s)
    _assert_clean_log(s)


@pytest.fixture(scope="session")
def base_url(server) -> str:
    return server.base_url


# --------------------------------------------------------------------------------------------
# a small client
# --------------------------------------------------------------------------------------------


def unique_handle(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"[:30]


def unique_word(prefix: str = "mk") -> str:
    """A search word nobody else will ever post."""
    return f"{prefix}{uuid.uuid4().hex[:14]}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def is_json_media(resp: httpx.Response) -> bool:
    media = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def assert_error(resp: httpx.Response, status: int | Iterable[int]) -> dict[str, Any]:
    """The response is an error with this status (or one of these), in the documented shape."""
    allowed = {status} if isinstance(status, int) else set(status)
    assert resp.status_code in allowed, (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code} (want {sorted(allowed)}): "
        f"{resp.text[:500]}")
    assert is_json_media(resp), f"error content-type is {resp.headers.get('content-type')!r}"
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict), body
    assert isinstance(err.get("code"), str) and err["code"], body
    assert isinstance(err.get("message"), str) and err["message"], body
    return err


def assert_id(value: Any) -> int:
    """Ids are 64-bit positive integers that travel as decimal strings."""
    assert isinstance(value, str), f"id {value!r} is not a string"
    assert value.isascii() and value.isdigit(), f"id {value!r} is not decimal digits"
    n = int(value)
    assert 0 < n <= MAX_ID, f"id {value!r} out of 64-bit range"
    return n


def parse_time(value: Any) -> datetime:
    assert isinstance(value, str), value
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert dt.tzinfo is not None, f"timestamp {value!r} has no time zone"
    return dt.astimezone(timezone.utc)


class Api:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.base_url = server.base_url
        self.http = httpx.Client(base_url=server.base_url, timeout=20.0)

    def close(self) -> None:
        self.http.close()

    # -- raw ----------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if token is not None:
            headers.update(bearer(token))
        r = self.http.request(method, url, headers=headers, **kw)
        assert r.status_code < 500, f"{method} {url} -> {r.status_code}: {r.text[:1000]}"
        return r

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)

    # -- users ----------------------------------------------------------------------------------
    def register(self, handle: str | None = None, display_name: str | None = None) -> dict[str, Any]:
        handle = handle or unique_handle()
        body: dict[str, Any] = {"handle": handle}
        if display_name is not None:
            body["display_name"] = display_name
        r = self.post("/v1/users", json=body)
        assert r.status_code == 201, f"register {handle}: {r.status_code} {r.text}"
        return r.json()

    def profile(self, handle: str) -> dict[str, Any]:
        r = self.get(f"/v1/users/{handle}")
        assert r.status_code == 200, f"profile {handle}: {r.status_code} {r.text}"
        return r.json()

    def counts(self, handle: str) -> tuple[int, int, int]:
        p = self.profile(handle)
        return p["followers_count"], p["following_count"], p["posts_count"]

    def follow(self, token: str, handle: str) -> None:
        r = self.post(f"/v1/users/{handle}/follow", token=token)
        assert r.status_code == 200 and r.json() == {"following": True}, r.text

    def unfollow(self, token: str, handle: str) -> None:
        r = self.delete(f"/v1/users/{handle}/follow", token=token)
        assert r.status_code == 200 and r.json() == {"following": False}, r.text

    # -- posts ----------------------------------------------------------------------------------
    def new_post(self, token: str, text: str) -> dict[str, Any]:
        r = self.post("/v1/posts", json={"text": text}, token=token)
        assert r.status_code == 201, f"post {text!r}: {r.status_code} {r.text}"
        return r.json()

    def delete_post(self, token: str, post_id: str) -> None:
        r = self.delete(f"/v1/posts/{post_id}", token=token)
        assert r.status_code == 204, f"delete {post_id}: {r.status_code} {r.text}"

    # -- lists ----------------------------------------------------------------------------------
    def page(self, url: str, *, token: str | None = None, key: str = "posts",
             **params: Any) -> tuple[list[dict[str, Any]], str | None]:
        params = {k: v for k, v in params.items() if v is not None}
        r = self.get(url, token=token, params=params)
        assert r.status_code == 200, f"GET {url} {params}: {r.status_code} {r.text}"
        assert is_json_media(r), r.headers.get("content-type")
        body = r.json()
        assert set(body) == {key, "next"}, f"list body keys {sorted(body)}"
        items, nxt = body[key], body["next"]
        assert isinstance(items, list)
        limit = int(params.get("limit", 20))
        assert len(items) <= limit, f"{len(items)} items for limit {limit}"
        if nxt is not None:
            assert_id(nxt)
        if len(items) < limit:
            assert nxt is None, f"short page ({len(items)} < {limit}) but next={nxt!r}"
        if not items:
            assert nxt is None, "empty page with a next cursor"
        return items, nxt

    def walk(self, url: str, *, token: str | None = None, key: str = "posts", limit: int | None = None,
             max_pages: int = 500, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list, following ``next`` until it is null."""
        out: list[dict[str, Any]] = []
        before = params.pop("before", None)
        for _ in range(max_pages):
            items, nxt = self.page(url, token=token, key=key, limit=limit, before=before, **params)
            out.extend(items)
            if nxt is None:
                break
            assert nxt != before, f"cursor did not move: {nxt}"
            before = nxt
        else:
            pytest.fail(f"{url}: more than {max_pages} pages")
        ids = [x["id"] for x in out]
        assert len(ids) == len(set(ids)), f"{url}: items repeated while paging: {ids}"
        return out

    def home(self, token: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self.walk("/v1/timelines/home", token=token, limit=limit)

    def home_ids(self, token: str, limit: int | None = None) -> list[str]:
        return [p["id"] for p in self.home(token, limit)]

    def user_post_ids(self, handle: str, limit: int | None = None) -> list[str]:
        return [p["id"] for p in self.walk(f"/v1/users/{handle}/posts", limit=limit)]

    def search_ids(self, q: str, limit: int | None = None) -> list[str]:
        return [p["id"] for p in self.walk("/v1/search/posts", q=q, limit=limit)]

    # -- consistency ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        r = self.get("/healthz")
        assert r.status_code == 200, r.text
        return r.json()

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait until every consumer has applied every committed event."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while True:
            body = self.health()
            consumers = body.get("consumers") or {}
            if consumers and all(c.get("behind") == 0 for c in consumers.values()):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"consumers still behind after {timeout}s: {body}")
            time.sleep(0.02)

    def snapshot(self, *handles: str) -> dict[str, Any]:
        """What a rejected write must not change: counts and lists of these users."""
        snap: dict[str, Any] = {}
        for h in handles:
            snap[h] = {
                "counts": self.counts(h),
                "posts": self.user_post_ids(h, limit=100),
                "followers": [u["id"] for u in self.walk(f"/v1/users/{h}/followers", key="users", limit=100)],
                "following": [u["id"] for u in self.walk(f"/v1/users/{h}/following", key="users", limit=100)],
            }
        return snap


def sorted_desc(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=int, reverse=True)


@pytest.fixture(scope="session")
def api(server) -> Api:
    a = Api(server)
    yield a
    a.close()


@pytest.fixture(scope="session")
def inactive_api(inactive_server) -> Api:
    a = Api(inactive_server)
    yield a
    a.close()


@pytest.fixture(scope="session")
def tiny_cache_api(tiny_cache_server) -> Api:
    a = Api(tiny_cache_server)
    yield a
    a.close()


@pytest.fixture(params=["main", "inactive", "tiny-cache"])
def feed_api(request) -> Api:
    """Timeline scenarios run against three servers: warm cached timelines (push + pull),
    followers that are always inactive (rebuilt from the database on every read), and caches
    so small that everything is evicted all the time."""
    return request.getfixturevalue({"main": "api", "inactive": "inactive_api",
                                    "tiny-cache": "tiny_cache_api"}[request.param])


@pytest.fixture
def register(api) -> Callable[..., dict[str, Any]]:
    """``register(handle=None, display_name=None)`` -> the 201 body, token included."""
    return api.register


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    return bearer


@pytest.fixture
def drain(api) -> Callable[..., None]:
    return api.drain
