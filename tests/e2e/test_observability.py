"""Operating homefeed: /metrics, /readyz, /dashboard (in headless Chromium), ``homefeed
status``, request ids and structured logs, against real server processes.

The dashboard test drives Debian's ``chromium`` through the DevTools protocol over
``--remote-debugging-pipe`` (file descriptors 3 and 4: no websocket library, nothing
downloaded). It skips on a machine without chromium and fails in CI (``CI=true``), where it
must be installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.backends import IN_CI

from .conftest import (
    BASE_SETTINGS,
    PYTHON,
    ROOT,
    STARTUP_TIMEOUT,
    Api,
    Server,
    _assert_clean_log,
    _free_port,
    _stop,
    unique_handle,
    unique_word,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(base_url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """GET /metrics and read it strictly (every line a comment or ``name{labels} value``)."""
    r = httpx.get(base_url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    ctype = r.headers["content-type"]
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    typed: set[str] = set()
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split(" ")[2])
            continue
        if not line or line.startswith("# HELP "):
            continue
        mt = _LINE.match(line)
        assert mt, f"not a Prometheus sample line: {line!r}"
        name = mt.group("name")
        assert name in typed or re.sub(r"_(bucket|sum|count)$", "", name) in typed, f"{name} has no TYPE"
        out.setdefault(name, []).append((dict(_LABEL.findall(mt.group("labels") or "")), float(mt.group("value"))))
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for lb, v in samples.get(name, []) if all(lb.get(k) == w for k, w in labels.items()))


def wait_until(what: str, fn: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:  # keep trying until the deadline
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


# A server started exactly as `homefeed serve` is, with JSON logs configured first (what
# `homefeed serve` does once cli.py calls homefeed.logging_setup.configure).
_LAUNCH = ("import sys; from homefeed.logging_setup import configure; configure('INFO'); "
           "from homefeed.entrypoints.cli import main; sys.exit(main(sys.argv[1:]))")


def start_json_logging_server(tmp_path_factory, name: str, settings: dict[str, str]) -> Server:
    base = tmp_path_factory.mktemp(f"homefeed-{name}")
    data_dir = base / "data"
    data_dir.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
    env.update(settings)
    env.update({"HOMEFEED_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    out_path, err_path = base / "server.stdout.log", base / "server.stderr.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [PYTHON, "-c", _LAUNCH, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
            cwd=str(ROOT), env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    server = Server(name, f"http://127.0.0.1:{port}", proc, out_path, err_path, data_dir)

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"server {name} exited at start\n{server.log_tail()}")
        try:
            return httpx.get(server.base_url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(f"server {name} to answer", up, timeout=STARTUP_TIMEOUT)
    return server


@pytest.fixture(scope="module")
def json_server(tmp_path_factory):
    s = start_json_logging_server(tmp_path_factory, "json-logs", dict(BASE_SETTINGS))
    yield s
    _stop(s)
    _assert_clean_log(s)


@pytest.fixture(scope="module")
def json_api(json_server):
    a = Api(json_server)
    yield a
    a.close()


# --------------------------------------------------------------------------------------------
# /metrics, /readyz, /healthz
# --------------------------------------------------------------------------------------------


class TestMetricsEndpoint:
    def test_latency_histograms_by_route_template_and_status(self, api: Api):
        u = api.register()
        for _ in range(3):
            api.get("/v1/timelines/home", token=u["token"])
        missing = unique_handle("nobody")
        assert api.get(f"/v1/users/{missing}").status_code == 404
        s = scrape(api.base_url)
        name = "homefeed_http_request_duration_seconds"
        assert metric(s, name + "_count", route="/v1/timelines/home", status="200", method="GET") >= 3
        assert metric(s, name + "_count", route="/v1/users/{handle}", status="404") >= 1
        assert metric(s, name + "_count", route="/v1/users", status="201", method="POST") >= 1
        assert not any(missing in json.dumps(lb) for lb, _ in s[name + "_count"]), "raw paths as labels"
        # buckets are cumulative, and +Inf equals the count
        for lb, count in s[name + "_count"]:
            buckets = [v for b, v in s[name + "_bucket"]
                       if {k: b[k] for k in ("method", "route", "status")} == lb]
            assert buckets == sorted(buckets) and buckets[-1] == count, lb
        assert metric(s, "homefeed_http_requests_in_flight") >= 1  # this scrape itself

    def test_fanout_delay_consumer_lag_cache_and_store_sizes(self, api: Api):
        before = scrape(api.base_url)
        author, reader = api.register(), api.register()
        api.follow(reader["token"], author["handle"])
        api.get("/v1/timelines/home", token=reader["token"])  # the reader's timeline exists
        for i in range(3):
            api.new_post(author["token"], f"fan-out delay {unique_word()} {i}")
        api.drain()
        s = scrape(api.base_url)
        assert metric(s, "homefeed_fanout_delay_seconds_count") >= metric(before, "homefeed_fanout_delay_seconds_count") + 3
        delay_sum = metric(s, "homefeed_fanout_delay_seconds_sum") - metric(before, "homefeed_fanout_delay_seconds_sum")
        assert 0 <= delay_sum < 30
        for consumer in ("fanout", "indexer"):
            assert [v for lb, v in s["homefeed_consumer_events_behind"] if lb["consumer"] == consumer] == [0]
            assert metric(s, "homefeed_consumer_running", consumer=consumer) == 1
            assert metric(s, "homefeed_dead_lettered_events_total", consumer=consumer) == 0
        assert metric(s, "homefeed_timeline_rebuilds_total", kind="home") >= 1
        assert metric(s, "homefeed_timeline_reads_total") >= 1
        assert 0 <= metric(s, "homefeed_timeline_cache_hit_ratio") <= 1
        assert "homefeed_post_cache_lookups_total" in s
        stores = {lb["store"] for lb, _ in s["homefeed_derived_store_size"]}
        assert {"home_timelines", "search_index_posts", "post_cache_posts"} <= stores
        assert "homefeed_outbox_unrelayed_events" not in s  # no bus: nothing to relay

    def test_metrics_json_has_windows_series_and_live_figures(self, api: Api):
        u = api.register()
        api.get("/v1/timelines/home", token=u["token"])
        d = api.get("/metrics.json").json()
        assert d["profile"] == "sqlite+memory+outbox" and d["role"] == "api"
        for w in ("1m", "5m"):
            home = d["windows"][w]["routes"]["GET /v1/timelines/home"]
            assert home["count"] >= 1 and home["p50"] is not None
            assert home["p50"] <= home["p95"] <= home["p99"] <= home["p999"]
        assert d["windows"]["1m"]["api"]["rps"] > 0
        assert len(d["series"]["t"]) == len(d["series"]["rps"]) >= 1
        assert set(d["consumers"]) == {"fanout", "indexer", "notifier", "webhooks", "mailer"}


class TestReadiness:
    def test_readyz_checks_every_backend(self, api: Api):
        r = api.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ready" and body["failing"] == []
        assert {n: b["backend"] for n, b in body["backends"].items()} == {
            "store": "sqlite", "cache": "memory", "stream": "outbox", "search": "fts5"}
        assert all(b["ok"] and b["ms"] >= 0 for b in body["backends"].values())

    def test_healthz_stays_the_cheap_liveness_check(self, api: Api):
        body = api.get("/healthz").json()
        assert set(body) == {"status", "consumers"} and body["status"] == "ok"


# --------------------------------------------------------------------------------------------
# request ids and structured logs
# --------------------------------------------------------------------------------------------


class TestRequestIds:
    def test_request_id_is_echoed_or_made(self, api: Api):
        mine = "test-" + unique_word()
        r = api.get("/healthz", headers={"X-Request-Id": mine})
        assert r.headers["x-request-id"] == mine
        made = {api.get("/healthz").headers["x-request-id"] for _ in range(5)}
        assert len(made) == 5 and all(made)
        odd = api.get("/healthz", headers={"X-Request-Id": "has spaces and \u00e9".encode()})
        assert odd.headers["x-request-id"] and " " not in odd.headers["x-request-id"]
        err = api.get(f"/v1/users/{unique_handle('ghost')}", headers={"X-Request-Id": mine})
        assert err.status_code == 404 and err.headers["x-request-id"] == mine

    def test_request_id_follows_a_post_through_the_fanout(self, json_api: Api, json_server: Server):
        author, reader = json_api.register(), json_api.register()
        json_api.follow(reader["token"], author["handle"])
        json_api.get("/v1/timelines/home", token=reader["token"])
        rid = "trace-" + unique_word()
        r = json_api.post("/v1/posts", json={"text": "traced"}, token=author["token"], headers={"X-Request-Id": rid})
        assert r.status_code == 201 and r.headers["x-request-id"] == rid
        post_id = r.json()["id"]
        json_api.drain()

        def lines_with_rid() -> list[dict[str, Any]]:
            text = json_server.stderr_path.read_text(errors="replace")
            return [d for d in map(json.loads, filter(None, text.splitlines())) if d.get("request_id") == rid]

        found = wait_until("the fan-out's log line", lambda: (
            lambda ls: ls if any(d.get("post_id") == post_id for d in ls) else None)(lines_with_rid()), timeout=10)
        access = [d for d in found if d["logger"] == "homefeed.access"]
        assert access and access[0]["status"] == 201 and access[0]["route"] == "/v1/posts", found
        fan = [d for d in found if d.get("consumer") == "fanout"]
        assert fan and fan[0]["post_id"] == post_id and fan[0]["fanout_delay_ms"] >= 0, found
        assert home_has(json_api, reader["token"], post_id)

    def test_every_log_line_is_one_json_object(self, json_api: Api, json_server: Server):
        json_api.register()
        json_api.get("/v1/users/" + unique_handle("none"))
        text = json_server.stderr_path.read_text(errors="replace")
        lines = [x for x in text.splitlines() if x.strip()]
        assert lines, "the server logged nothing"
        for line in lines:
            d = json.loads(line)
            assert {"ts", "level", "logger", "msg"} <= set(d), line


def home_has(api: Api, token: str, post_id: str) -> bool:
    return post_id in [p["id"] for p in api.get("/v1/timelines/home", token=token).json()["posts"]]


# --------------------------------------------------------------------------------------------
# homefeed status
# --------------------------------------------------------------------------------------------


class TestStatusCommand:
    def run_status(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-m", "homefeed.entrypoints.status", *args], cwd=str(ROOT),
                              capture_output=True, text=True, timeout=60)

    def test_status_of_one_server(self, api: Api):
        u = api.register()
        for _ in range(5):
            api.get("/v1/timelines/home", token=u["token"])
        p = self.run_status("--url", api.base_url)
        assert p.returncode == 0, p.stdout + p.stderr
        out = p.stdout
        for needle in ("GET /v1/timelines/home", "p99.9", "fan-out delay", "consumers: fanout",
                       "timeline cache: hit ratio", "backends: store (sqlite) ok"):
            assert needle in out, out
        j = self.run_status("--url", api.base_url, "--json")
        merged = json.loads(j.stdout)
        assert merged["windows"]["1m"]["routes"]["GET /v1/timelines/home"]["count"] >= 5
        assert merged["consumers"]["fanout"]["behind"] is not None

    def test_status_of_several_servers_and_one_down(self, api: Api, json_api: Api):
        dead = f"http://127.0.0.1:{_free_port()}"
        p = self.run_status("--url", f"{api.base_url},{json_api.base_url}", "--url", dead, "--json")
        assert p.returncode == 1, p.stdout + p.stderr  # one did not answer
        merged = json.loads(p.stdout)
        assert len(merged["processes"]) == 2
        assert [u["url"] for u in merged["unreachable"]] == [dead]


# --------------------------------------------------------------------------------------------
# the dashboard, in headless Chromium
# --------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fd 3: commands in,
    fd 4: answers and events out, each message JSON followed by a NUL byte)."""

    def __init__(self, binary: str) -> None:
        self.user_dir = tempfile.mkdtemp(prefix="hf-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child, before exec: the pipe ends at fds 3 and 4
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--disable-extensions", "--remote-debugging-pipe",
             f"--user-data-dir={self.user_dir}", "--window-size=1280,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=wire, close_fds=False,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._cv = threading.Condition()
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.stderr: list[bytes] = []
        self.session: str | None = None
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr or []), daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cv:
                        self._answers[msg["id"]] = msg
                        self._cv.notify_all()
                else:
                    self.events.put(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False,
             timeout: float = 30.0) -> dict[str, Any]:
        self._id += 1
        mid = self._id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cv:
            while mid not in self._answers:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"chromium: no answer to {method}\n"
                                       + b"".join(self.stderr[-30:]).decode(errors="replace"))
                self._cv.wait(0.2)
            answer = self._answers.pop(mid)
        if "error" in answer:
            raise RuntimeError(f"chromium: {method}: {answer['error']}")
        return answer.get("result", {})

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", {"url": url})

    def js(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        out = []
        while True:
            try:
                e = self.events.get_nowait()
            except queue.Empty:
                return out
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(f"exception: {json.dumps(p.get('exceptionDetails'))[:500]}")
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(f"console.{p.get('type')}: {json.dumps(p.get('args'))[:500]}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                out.append(f"log {p['entry'].get('level')}: {p['entry'].get('text')} {p['entry'].get('url', '')}")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.user_dir, ignore_errors=True)


CHROMIUM = find_chromium()
_NO_CHROMIUM = "chromium is not installed; on Debian: apt-get install -y chromium"


@pytest.mark.skipif(CHROMIUM is None and not IN_CI, reason=_NO_CHROMIUM)
def test_dashboard_shows_figures_that_move_under_load(server_factory, tmp_path):
    assert CHROMIUM is not None, _NO_CHROMIUM
    srv = server_factory.start("dashboard")
    api = Api(srv)
    browser = Chromium(CHROMIUM)
    try:
        r = api.get("/dashboard")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text), "the page must load nothing external"

        browser.open(srv.base_url + "/dashboard")
        updates = lambda: int(browser.js("Number(document.body.getAttribute('data-updates') || 0)"))  # noqa: E731
        text = lambda el_id: browser.js(f"document.getElementById({el_id!r}).textContent")  # noqa: E731
        number = lambda el_id: float(text(el_id).replace(",", "").rstrip("%") or "nan")  # noqa: E731
        wait_until("the dashboard's first update", lambda: updates() >= 1, timeout=30)
        assert browser.js("document.title") == "homefeed dashboard"
        idle_count = number("api-count-1m")
        seen = updates()

        # apply load: a reader following an author; posts fanned out; many timeline reads
        author, reader = api.register(), api.register()
        api.follow(reader["token"], author["handle"])
        reads = 400
        for i in range(reads):
            api.get("/v1/timelines/home", token=reader["token"])
            if i % 20 == 0:
                api.new_post(author["token"], f"load {i} {unique_word()}")
        api.drain()

        def moved() -> bool:
            return (updates() > seen + 1 and number("api-count-1m") >= idle_count + reads
                    and number("api-rps-1m") > 0 and text("fanout-p99-1m") not in ("–", "")
                    and int(browser.js("document.querySelectorAll('#routes tbody tr').length")) >= 2)

        wait_until("the dashboard to show the load", moved, timeout=30, every=0.5)
        route_rows = browser.js("Array.from(document.querySelectorAll('#routes tbody tr')).map(r => r.dataset.route)")
        assert "GET /v1/timelines/home" in route_rows and "POST /v1/posts" in route_rows
        assert number("api-p99-1m") > 0
        assert text("lag-total") == "0"
        fan_posts = browser.js("document.querySelector('#fanout tbody tr td:nth-child(2)').textContent")
        assert int(fan_posts.replace(",", "")) >= reads // 20
        drawn = browser.js("Array.from(document.querySelectorAll('svg')).map(s => s.querySelectorAll('polyline,circle').length)")
        assert drawn[0] >= 1 and drawn[1] >= 1, f"the throughput and latency charts are empty: {drawn}"
        assert text("status").startswith("live")
        browser.screenshot(tmp_path / "dashboard.png")
        problems = browser.problems()
        assert not problems, "the dashboard logged errors:\n" + "\n".join(problems)
    finally:
        browser.close()
        api.close()


# --------------------------------------------------------------------------------------------
# the scale-out profile: PostgreSQL + Redis + JetStream, API and worker processes
# --------------------------------------------------------------------------------------------


def test_scaleout_readiness_metrics_status_and_request_id_in_the_outbox(tmp_path):
    from .scaleout import deployment

    with deployment(tmp_path, apis=1, workers=1) as dep:
        base = dep.urls[0]
        ready = httpx.get(base + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert {n: b["backend"] for n, b in ready.json()["backends"].items()} == {
            "store": "postgresql", "cache": "redis", "stream": "jetstream", "search": "postgresql"}

        c = dep.client(0)
        a = c.post("/v1/users", json={"handle": unique_handle("so")}).json()
        rid = "scaleout-" + unique_word()
        r = c.post("/v1/posts", json={"text": "scale-out trace"}, headers={
            "Authorization": f"Bearer {a['token']}", "X-Request-Id": rid})
        assert r.status_code == 201 and r.headers["x-request-id"] == rid
        post_id = r.json()["id"]
        dep.drain()
        rows = dep.sql("SELECT data->>'request_id' FROM outbox WHERE data->>'post_id' = %s", (post_id,))
        assert rows == [(rid,)], rows  # the worker receives it with the event

        s = scrape(base)
        assert metric(s, "homefeed_outbox_unrelayed_events") == 0
        behind = {lb["consumer"]: v for lb, v in s["homefeed_consumer_events_behind"]}
        assert behind == {"fanout": 0, "indexer": 0, "notifier": 0, "webhooks": 0, "mailer": 0}
        assert metric(s, "homefeed_consumer_running", consumer="fanout") == 0  # workers run it
        assert {lb["transport"] for lb, _ in s["homefeed_streaming_connections"]} == {"sse", "websocket"}
        assert "redis_keys" in {lb["store"] for lb, _ in s["homefeed_derived_store_size"]}

        p = subprocess.run([PYTHON, "-m", "homefeed.entrypoints.status", "--url", base], cwd=str(ROOT),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "store (postgresql) ok" in p.stdout and "outbox not yet relayed: 0" in p.stdout, p.stdout
