"""Metrics recording, the Prometheus text format, the JSON logs, the request-id middleware,
readiness, the worker metrics server and the merging of ``homefeed status``."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import time
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from homefeed import logging_setup
from homefeed.domain.ids import IdGenerator
from homefeed.domain.model import POST_CREATED, Event
from homefeed.entrypoints import metrics as m
from homefeed.entrypoints import status as st
from homefeed.entrypoints.http import Observe

# --------------------------------------------------------------------------------------------
# histograms
# --------------------------------------------------------------------------------------------


def test_bounds_are_increasing_and_cover_10us_to_100s():
    assert list(m.BOUNDS) == sorted(set(m.BOUNDS))
    assert m.BOUNDS[0] == 1e-5 and m.BOUNDS[-1] == 100.0
    ratios = [b / a for a, b in zip(m.BOUNDS, m.BOUNDS[1:])]
    assert max(ratios) <= 1.34  # any percentile is within one such bucket of the truth


def test_a_value_on_a_bound_counts_in_that_bucket():
    h = m.Histogram()
    h.observe(0.001)
    i = m.BOUNDS.index(0.001)
    assert h.counts[i] == 1
    h.observe(1000.0)  # above the last bound: the overflow bucket
    assert h.counts[-1] == 1


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99, 0.999])
def test_quantiles_are_within_one_bucket_of_the_exact_value(q):
    rng = random.Random(7)
    xs = [rng.lognormvariate(-6, 1.2) for _ in range(50_000)]
    h = m.Histogram()
    for x in xs:
        h.observe(x)
    exact = sorted(xs)[int(q * len(xs)) - 1]
    got = h.quantile(q)
    assert got is not None
    assert exact / 1.34 <= got <= exact * 1.34, (q, exact, got)


def test_empty_histogram_has_no_quantile_and_sparse_round_trips():
    assert m.Histogram().quantile(0.5) is None
    h = m.Histogram()
    for v in (0.0001, 0.002, 0.002, 3.0):
        h.observe(v)
    back = m.Histogram.from_sparse(h.sparse())
    assert back.counts == h.counts


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------


def _recorder_at(t0: float) -> m.Recorder:
    r = m.Recorder()
    r.started = t0
    return r


def test_windows_keep_the_last_minute_and_five_minutes():
    t0 = 10_000.0
    r = _recorder_at(t0)
    # one request every second for 400 s, latency 1 ms; at 395 s a slow one
    for s in range(400):
        r.observe_request("GET", "/v1/timelines/home", 200, 0.001, t0 + s)
    r.observe_request("GET", "/v1/timelines/home", 500, 2.0, t0 + 395)
    now = t0 + 399.5
    slots, span = r.window(60, now)
    n = sum(h.count for s in slots for h in s.requests.values())
    assert 50 <= span <= 60 and n == round(span) + 1  # (the slow one is in the window)
    view = m._window_view(r, 60, now)
    api = view["api"]
    assert api["errors"] == 1 and api["count"] == n
    assert api["p50"] == pytest.approx(1.0, rel=0.3)
    assert api["p999"] > 100  # the slow request shows at the tail
    five = m._window_view(r, 300, now)
    assert 290 <= five["seconds"] <= 300
    assert five["api"]["count"] > api["count"]
    assert len(r.slots) <= m.KEEP_SLOTS
    # lifetime histograms keep everything
    assert sum(h.count for h in r.requests.values()) == 401


def test_ops_routes_are_left_out_of_api_figures():
    r = _recorder_at(0.0)
    r.observe_request("GET", "/metrics.json", 200, 0.01, 5.0)
    r.observe_request("GET", "/v1/posts/{post_id}", 404, 0.001, 5.0)
    view = m._window_view(r, 60, 6.0)
    assert view["api"]["count"] == 1 and view["api"]["client_errors"] == 1
    assert set(view["routes"]) == {"GET /metrics.json", "GET /v1/posts/{post_id}"}


def test_series_has_one_point_per_slot():
    t0 = 1000.0
    r = _recorder_at(t0)
    for s in range(0, 45):
        for _ in range(s):
            r.observe_request("GET", "/x", 200, 0.002, t0 + s)
    series = m._series(r, t0 + 45, time.time())
    assert len(series["t"]) == len(series["rps"]) >= 4
    assert series["rps"][-2] > series["rps"][0]  # load grew


# --------------------------------------------------------------------------------------------
# the fan-out hook
# --------------------------------------------------------------------------------------------


def test_fanout_hook_records_commit_to_push_delay(monkeypatch):
    r = m.Recorder()
    monkeypatch.setattr(m.recording, "RECORDER", r)  # the hook reads its own module's global
    post_id = IdGenerator().next_id()
    time.sleep(0.05)
    m.observe_fanout_event(Event(1, POST_CREATED, {"post_id": post_id, "author_id": 1, "request_id": "rq-1"}))
    m.observe_fanout_event(Event(2, "followed", {"follower_id": 1, "followee_id": 2}))
    assert r.fanout.count == 1
    assert 0.04 <= r.fanout.sum <= 5.0


# --------------------------------------------------------------------------------------------
# Prometheus text format
# --------------------------------------------------------------------------------------------

_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text format: every line a comment, or name{labels} value."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, f"TYPE twice for {name}"
            types[name] = kind
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP "), line
            continue
        mt = _LINE.match(line)
        assert mt, f"not a sample line: {line!r}"
        labels = dict(_LABEL.findall(mt.group("labels") or ""))
        value = float(mt.group("value"))
        name = mt.group("name")
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"sample {name} has no TYPE"
        out.setdefault(name, []).append((labels, value))
    return out


def test_prometheus_text_is_well_formed_and_histograms_are_cumulative():
    r = m.Recorder()
    now = time.perf_counter()
    for v in (0.0002, 0.0009, 0.004, 0.004, 0.3, 20.0):
        r.observe_request("GET", "/v1/timelines/home", 200, v, now)
    r.observe_request("POST", "/v1/posts", 503, 0.01, now)
    r.observe_fanout(0.02, now)
    live = {"consumers": {"fanout": {"behind": 3, "running": True, "failures": 0, "dead_lettered": 1}},
            "outbox_unrelayed": 7, "feed": {"rebuilds": 2, "author_rebuilds": 1, "db_pages": 0, "pushes": 9},
            "home_reads": 6, "post_cache": {"hits": 5, "misses": 1}, "sizes": {"home_timelines": 4},
            "relay": None, "stream": None, "errors": {"search_size": 'Boom: "x"\nline2'}}
    text = m.render_prometheus(r, live, profile='a"b\\c')
    samples = parse_prometheus(text)
    buckets = [(lb, v) for lb, v in samples["homefeed_http_request_duration_seconds_bucket"]
               if lb["route"] == "/v1/timelines/home"]
    values = [v for _, v in buckets]
    assert values == sorted(values), "buckets must be cumulative"
    assert buckets[-1][0]["le"] == "+Inf" and buckets[-1][1] == 6
    le = {lb["le"]: v for lb, v in buckets}
    assert le["0.001"] == 2 and le["0.005"] == 4 and le["10"] == 5
    count = {lb["status"]: v for lb, v in samples["homefeed_http_request_duration_seconds_count"]}
    assert count == {"200": 6, "503": 1}
    assert samples["homefeed_consumer_events_behind"] == [({"consumer": "fanout"}, 3)]
    assert samples["homefeed_outbox_unrelayed_events"] == [({}, 7)]
    assert samples["homefeed_timeline_cache_hit_ratio"][0][1] == pytest.approx(1 - 2 / 6, abs=1e-5)
    assert samples["homefeed_dead_lettered_events_total"] == [({"consumer": "fanout"}, 1)]
    assert samples["homefeed_fanout_delay_seconds_count"] == [({}, 1)]
    assert samples["homefeed_derived_store_size"] == [({"store": "home_timelines"}, 4)]
    info = samples["homefeed_info"][0][0]
    assert info["profile"] == 'a\\"b\\\\c'  # escaped in the exposition
    assert "homefeed_metrics_collect_errors" in samples


# --------------------------------------------------------------------------------------------
# cost of recording (the hot path does ~25k requests/s)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# JSON logs and request ids
# --------------------------------------------------------------------------------------------


def test_json_log_lines_carry_the_request_id_and_extra_fields():
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging_setup.JsonFormatter())
    logger = logging.getLogger("homefeed.test_json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        token = logging_setup.request_id.set("rid-42")
        try:
            logger.info("hello %s", "world", extra={"post_id": "7", "ms": 1.5})
        finally:
            logging_setup.request_id.reset(token)
        logger.info("explicit", extra={"request_id": "from-event"})
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3, lines  # one line each, tracebacks included
    first, second, third = (json.loads(x) for x in lines)
    assert first["msg"] == "hello world" and first["request_id"] == "rid-42"
    assert first["post_id"] == "7" and first["ms"] == 1.5 and first["level"] == "INFO"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", first["ts"])
    assert second["request_id"] == "from-event"
    assert "request_id" not in third and "ValueError: boom" in third["exc"]


@pytest.mark.parametrize("raw, ok", [
    (b"abc-123", True), (b"6f1c0c1e-4b9e-4d2e-9a53-2f6b8f0d7c11", True), (b"", False),
    (b"a" * 129, False), (b"has space", False), (b"new\nline", False), ("caf\u00e9", False),
    (b'quote"', False),
])
def test_client_request_ids_are_accepted_only_when_sane(raw, ok):
    assert (logging_setup.clean_request_id(raw) is not None) == ok


def test_generated_request_ids_are_unique():
    ids = {logging_setup.new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(logging_setup.clean_request_id(i) == i for i in list(ids)[:100])


def _tiny_app(recorder: m.Recorder) -> Starlette:
    async def ok(request: Request):
        return JSONResponse({"rid": logging_setup.request_id.get()})

    async def boom(request: Request):
        raise RuntimeError("kaput")

    return Starlette(routes=[Route("/items/{item_id}", ok), Route("/boom", boom)],
                     middleware=[Middleware(Observe, recorder=recorder)])


def test_middleware_echoes_or_makes_request_ids_and_records_route_templates():
    rec = m.Recorder()
    app = _tiny_app(rec)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            a = await c.get("/items/1", headers={"X-Request-Id": "client-id-1"})
            b = await c.get("/items/2")
            bad = await c.get("/items/3", headers={"X-Request-Id": "no spaces please"})
            missing = await c.get("/nowhere")
            boom = await c.get("/boom")
        return a, b, bad, missing, boom

    a, b, bad, missing, boom = asyncio.run(main())
    assert a.headers["x-request-id"] == "client-id-1" and a.json()["rid"] == "client-id-1"
    assert b.headers["x-request-id"] and b.json()["rid"] == b.headers["x-request-id"]
    assert bad.headers["x-request-id"] != "no spaces please"
    assert boom.status_code == 500 and boom.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert boom.headers["x-request-id"]
    keys = {k: h.count for k, h in rec.requests.items()}
    assert keys[("GET", "/items/{item_id}", 200)] == 3  # the template, not the path
    assert keys[("GET", m.UNMATCHED, 404)] == 1
    assert keys[("GET", "/boom", 500)] == 1
    assert rec.in_flight == 0


def test_an_event_stream_is_not_timed_counted_in_flight_nor_logged_slow(caplog):
    """An open stream is a connection, not a long request: once its 200 (``text/event-stream``)
    is out it leaves ``in_flight``, and its end records no latency and logs no slow request;
    a refused stream (401) and ordinary requests on the same route are recorded as ever."""
    rec = m.Recorder()
    seen: dict[str, int] = {}

    class Stream:
        async def __call__(self, scope, receive, send):
            if b"authorization" not in dict(scope["headers"]):
                await JSONResponse({"error": "no"}, status_code=401)(scope, receive, send)
                return
            seen["before"] = rec.in_flight
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            seen["open"] = rec.in_flight
            for _ in range(3):
                await asyncio.sleep(0.01)
                await send({"type": "http.response.body", "body": b":thump\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def ok(request: Request):
        return JSONResponse({})

    inner = Starlette(routes=[Route("/stream", Stream()), Route("/ok", ok)])
    app = Observe(inner, rec)
    app.log_mode, app.slow = "writes", 0.0  # every request is slow: each one is logged

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            streamed = await c.get("/stream", headers={"Authorization": "Bearer x"})
            refused = await c.get("/stream")
            plain = await c.get("/ok")
        return streamed, refused, plain

    with caplog.at_level(logging.INFO, logger="homefeed.access"):
        streamed, refused, plain = asyncio.run(main())
    assert streamed.status_code == 200 and streamed.text == ":thump\n\n" * 3
    assert (refused.status_code, plain.status_code) == (401, 200)
    assert seen == {"before": 1, "open": 0}  # in flight until the stream's answer, then not
    keys = {k: h.count for k, h in rec.requests.items()}
    assert keys == {("GET", "/stream", 401): 1, ("GET", "/ok", 200): 1}
    assert rec.in_flight == 0
    logged = [r.getMessage() for r in caplog.records if r.name == "homefeed.access"]
    assert logged == ["GET /stream 401", "GET /ok 200"], logged  # slow ones, not the stream


# --------------------------------------------------------------------------------------------
# readiness, snapshot and the worker metrics server, on a real embedded Homefeed
# --------------------------------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path):
    from homefeed.bootstrap import build
    from homefeed.config import Settings

    settings = Settings(data_dir=tmp_path)
    return build(settings)


def test_readyz_names_the_backend_that_does_not_answer(embedded):
    from homefeed.entrypoints.http import create_app

    hf = embedded

    async def main():
        await hf.start(consumers=())
        try:
            app = create_app(hf, manage_lifecycle=False)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                good = await c.get("/readyz")

                async def broken():
                    raise ConnectionError("redis is gone")

                hf.cache.celebrities = broken  # type: ignore[method-assign]
                bad = await c.get("/readyz")

                async def hangs(*a, **k):
                    await asyncio.sleep(60)

                hf.search_index.search = hangs  # type: ignore[method-assign]
                t0 = time.monotonic()
                slow = await c.get("/readyz")
                waited = time.monotonic() - t0
                health = await c.get("/healthz")
            return good, bad, slow, waited, health
        finally:
            await hf.close()

    good, bad, slow, waited, health = asyncio.run(main())
    assert good.status_code == 200 and good.json()["status"] == "ready"
    assert set(good.json()["backends"]) == {"store", "cache", "stream", "search"}
    assert good.json()["backends"]["store"]["backend"] == "sqlite"
    assert bad.status_code == 503
    assert bad.json()["failing"] == ["cache"]
    assert "redis is gone" in bad.json()["backends"]["cache"]["error"]
    assert slow.status_code == 503 and set(slow.json()["failing"]) == {"cache", "search"}
    assert waited < 10
    assert health.status_code == 200  # liveness does not depend on the backends' answers


def test_snapshot_and_worker_metrics_server(embedded):
    hf = embedded

    async def get(port: int, path: str) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), body

    async def main():
        await hf.start(consumers=())
        uid = (await hf.register("ana"))["id"]
        await hf.create_post(int(uid), "hello")
        server = await m.MetricsServer.start(hf, "127.0.0.1", 0, role="worker")
        try:
            prom = await get(server.port, "/metrics")
            js = await get(server.port, "/metrics.json")
            nf = await get(server.port, "/nope")
        finally:
            await server.close()
            await hf.close()
        return prom, js, nf

    prom, js, nf = asyncio.run(main())
    assert prom[0] == 200
    samples = parse_prometheus(prom[1].decode())
    behind = dict((lb["consumer"], v) for lb, v in samples["homefeed_consumer_events_behind"])
    assert behind["fanout"] >= 1  # registered + posted, nothing consumed
    assert samples["homefeed_info"][0][0]["role"] == "worker"
    assert js[0] == 200
    snap = json.loads(js[1])
    assert snap["role"] == "worker" and snap["consumers"]["indexer"]["behind"] >= 1
    assert snap["sizes"]["search_index_posts"] == 0
    assert nf[0] == 404


# --------------------------------------------------------------------------------------------
# homefeed status: merging several processes
# --------------------------------------------------------------------------------------------


def _fake_snapshot(pid: int, latencies: list[float], role: str = "api", behind: int = 0) -> dict:
    r = m.Recorder()
    now = time.perf_counter()
    for v in latencies:
        r.observe_request("GET", "/v1/timelines/home", 200, v, now)
    view = m._window_view(r, 60, now)
    return {
        "pid": pid, "started": 1.0, "role": role, "profile": "postgresql+redis+jetstream", "uptime_s": 9,
        "in_flight": 0, "bounds": list(m.BOUNDS),
        "windows": {"1m": view, "5m": view},
        "consumers": {"fanout": {"behind": behind, "running": role == "worker", "failures": 0, "dead_lettered": 0}},
        "outbox_unrelayed": 2, "timeline_cache": {"home_reads": len(latencies), "rebuilds": 1},
        "post_cache": {"hits": 3, "misses": 1}, "sizes": {"redis_keys": 10}, "errors": {},
    }


def test_status_merges_histograms_not_percentiles():
    fast = [0.001] * 990
    slow = [0.5] * 10
    a = {"url": "http://a", "metrics": _fake_snapshot(1, fast)}
    b = {"url": "http://b", "metrics": _fake_snapshot(2, slow, behind=5)}
    w = {"url": "http://w", "metrics": _fake_snapshot(3, [], role="worker", behind=4)}
    dup = {"url": "http://a-again", "metrics": _fake_snapshot(1, fast)}
    down = {"url": "http://c", "error": "refused"}
    merged = st.merge([a, b, w, dup, down])
    route = merged["windows"]["1m"]["routes"]["GET /v1/timelines/home"]
    assert route["count"] == 1000
    # p99 of the union: 1% of requests are slow -> p99 at the edge, p99.9 slow; an average of
    # the two processes' p99 (1 ms and 500 ms) would say ~250 ms
    assert route["p50"] == pytest.approx(1.0, rel=0.3)
    assert route["p999"] > 300
    assert merged["consumers"]["fanout"]["behind"] == 5
    assert merged["consumers"]["fanout"]["running_in"] == ["worker pid 3"]
    assert merged["timeline_cache"]["home_reads"] == 1000 and merged["timeline_cache"]["rebuilds"] == 3
    assert merged["duplicates"] == [{"url": "http://a-again", "same_as": "http://a"}]
    assert not st.healthy(merged)  # one did not answer
    text = st.render(merged)
    assert "GET /v1/timelines/home" in text and "NOT ANSWERING" in text and "counted once" in text


def test_status_urls():
    ns = SimpleNamespace(url=["a:8080,http://b:9/", "http://c:1/metrics.json"])
    assert st.urls_of(ns) == ["http://a:8080", "http://b:9", "http://c:1"]


def test_healthz_reports_a_lag_snapshot_at_most_max_age_old(embedded):
    """``/healthz`` answers from a lag snapshot, read once for probes arriving together and
    renewed after ``HEALTH_MAX_AGE``; on the embedded profile a commit renews it at once (a
    new event is counted by the next probe). The shape stays ``{"status", "consumers": {name: {"behind"}}}``."""
    import httpx

    from homefeed.entrypoints.http import create_app
    from homefeed.service_layer import services

    hf = embedded
    reads = []
    real = hf.stream.lags

    async def counted(names):
        reads.append(list(names))
        return await real(names)

    hf.stream.lags = counted  # type: ignore[method-assign]  # the real stream, its calls counted

    async def main():
        await hf.start(consumers=())  # nothing consumes: every event stays behind
        try:
            app = create_app(hf, manage_lifecycle=False)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                async def fanout_behind() -> int:
                    return (await c.get("/healthz")).json()["consumers"]["fanout"]["behind"]

                first = (await c.get("/healthz")).json()
                again = await fanout_behind()
                n_reads = [len(reads)]
                await hf.store.create_user("snap", "snap", b"0" * 16)  # one more event, committed
                after_commit = await fanout_behind()
                await asyncio.sleep(services.HEALTH_MAX_AGE + 0.05)
                together = await asyncio.gather(*(c.get("/healthz") for _ in range(20)))
                n_reads.append(len(reads))
                return first, again, after_commit, together, n_reads
        finally:
            await hf.close()

    first, again, after_commit, together, n_reads = asyncio.run(main())
    assert set(first) == {"status", "consumers"} and first["status"] == "ok"
    assert set(first["consumers"]) == {"fanout", "indexer", "notifier", "webhooks", "mailer"}
    behind = first["consumers"]["fanout"]["behind"]
    assert again == behind and n_reads[0] == 1  # the snapshot, not a second read
    assert after_commit == behind + 1  # the commit renewed it
    assert [r.status_code for r in together] == [200] * 20
    assert all(r.json() == together[0].json() for r in together)
    assert n_reads[1] == 3  # first, after the commit, once for the 20 together
