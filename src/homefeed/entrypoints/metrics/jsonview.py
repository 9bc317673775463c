"""The JSON snapshot the dashboard and ``homefeed status`` read: rolling windows, the
series the charts draw, the latest backend sample."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from homefeed.entrypoints.metrics.histogram import BOUNDS, Histogram
from homefeed.entrypoints.metrics.recording import KEEP_SLOTS, OPS_ROUTES, SLOT_SECONDS, Recorder
from homefeed.entrypoints.metrics.sampler import Sampler


def _ms(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    ms = seconds * 1000.0
    return round(ms, 3 if ms < 1 else 2 if ms < 100 else 1)


def summarize(h: Histogram, span: float, errors: int = 0, client_errors: int = 0) -> dict[str, Any]:
    n = h.count
    return {
        "count": n,
        "rps": round(n / span, 2),
        "errors": errors,
        "client_errors": client_errors,
        "error_rate": round(errors / n, 5) if n else 0.0,
        "p50": _ms(h.quantile(0.50)),
        "p95": _ms(h.quantile(0.95)),
        "p99": _ms(h.quantile(0.99)),
        "p999": _ms(h.quantile(0.999)),
        "mean": _ms(h.sum / n) if n else None,
        "hist": h.sparse(),
    }


def _window_view(recorder: Recorder, seconds: int, now: float) -> dict[str, Any]:
    slots, span = recorder.window(seconds, now)
    routes: dict[str, Histogram] = {}
    route_errors: dict[str, list[int]] = {}
    api = Histogram()
    api_err = [0, 0]
    fanout = Histogram()
    for s in slots:
        fanout.add(s.fanout)
        for (method, route, status), h in s.requests.items():
            name = f"{method} {route}"
            agg = routes.get(name)
            if agg is None:
                agg = routes[name] = Histogram()
                route_errors[name] = [0, 0]
            agg.add(h)
            n = h.count
            e = route_errors[name]
            if status >= 500:
                e[0] += n
            elif status >= 400:
                e[1] += n
            if route not in OPS_ROUTES:
                api.add(h)
                if status >= 500:
                    api_err[0] += n
                elif status >= 400:
                    api_err[1] += n
    fan = summarize(fanout, span)
    fan["rate"] = fan.pop("rps")
    for k in ("errors", "client_errors", "error_rate"):
        fan.pop(k)
    return {
        "seconds": round(span, 2),
        "api": summarize(api, span, *api_err),
        "routes": {name: summarize(h, span, *route_errors[name]) for name, h in sorted(routes.items())},
        "fanout": fan,
    }


def _series(recorder: Recorder, now: float, wall_now: float) -> dict[str, Any]:
    cur_no = int(now // SLOT_SECONDS)
    by_no = {s.no: s for s in recorder.slots}
    out: dict[str, list[Any]] = {k: [] for k in ("t", "rps", "p50_ms", "p99_ms", "error_rate",
                                                 "fanout_rate", "fanout_p99_ms")}
    first = max(cur_no - KEEP_SLOTS + 2, int(recorder.started // SLOT_SECONDS))
    for no in range(first, cur_no + 1):
        start = no * SLOT_SECONDS
        span = max(min(now, start + SLOT_SECONDS) - max(start, recorder.started), 1e-3)
        api = Histogram()
        errors = 0
        s = by_no.get(no)
        if s is not None:
            for (method, route, status), h in s.requests.items():
                if route not in OPS_ROUTES:
                    api.add(h)
                    if status >= 500:
                        errors += h.count
        n = api.count
        out["t"].append(round(wall_now - (now - start), 1))
        out["rps"].append(round(n / span, 2))
        out["p50_ms"].append(_ms(api.quantile(0.5)))
        out["p99_ms"].append(_ms(api.quantile(0.99)))
        out["error_rate"].append(round(errors / n, 5) if n else 0.0)
        fo = s.fanout if s is not None else Histogram()
        out["fanout_rate"].append(round(fo.count / span, 2))
        out["fanout_p99_ms"].append(_ms(fo.quantile(0.99)))
    out["step"] = SLOT_SECONDS  # type: ignore[assignment]
    return out


def _sample_series(recorder: Recorder, now: float, keep: float = 300.0) -> dict[str, Any]:
    t: list[float] = []
    lag: dict[str, list[Any]] = {}
    unrelayed: list[Any] = []
    rows = [(p, w, live) for p, w, live in recorder.samples if now - p <= keep]
    for i, (_, wall, live) in enumerate(rows):
        t.append(round(wall, 1))
        for name, c in live["consumers"].items():
            lag.setdefault(name, [None] * i).append(c.get("behind"))
        for series in lag.values():
            if len(series) < i + 1:
                series.append(None)
        unrelayed.append(live.get("outbox_unrelayed"))
    return {"t": t, "lag": lag, "outbox_unrelayed": unrelayed}


def _ratio_since(recorder: Recorder, live: dict[str, Any], seconds: float, now: float) -> dict[str, Any]:
    """Timeline-cache and post-cache hit ratios over about the last ``seconds``, from the
    oldest sample in that window to ``live``."""
    base = None
    for p, _, sample in recorder.samples:
        if now - p <= seconds:
            base = sample
            break
    out: dict[str, Any] = {"timeline": None, "post": None}
    if base is None:
        return out
    reads = live["home_reads"] - base["home_reads"]
    rebuilds = live["feed"].get("rebuilds", 0) - base["feed"].get("rebuilds", 0)
    if reads > 0:
        out["timeline"] = round(max(0.0, 1.0 - rebuilds / reads), 4)
    if live.get("post_cache") and base.get("post_cache"):
        hits = live["post_cache"]["hits"] - base["post_cache"]["hits"]
        misses = live["post_cache"]["misses"] - base["post_cache"]["misses"]
        if hits + misses > 0:
            out["post"] = round(hits / (hits + misses), 4)
    return out


async def snapshot(sampler: Sampler) -> dict[str, Any]:
    """Everything the dashboard and ``homefeed status`` show, as one JSON-able dict."""
    recorder = sampler.recorder
    live = await sampler.collect(max_age=0.5)  # several dashboards polling share a collection
    now = time.perf_counter()
    wall = time.time()
    home_reads = live["home_reads"]
    rebuilds = live["feed"].get("rebuilds", 0)
    pc = live.get("post_cache")
    recent = _ratio_since(recorder, live, 60.0, now)
    return {
        "schema": 1,
        "time": round(wall, 3),
        "pid": os.getpid(),
        "started": round(recorder.started_wall, 3),
        "role": sampler.role,
        "profile": sampler.hf.backend_profile(),
        "uptime_s": round(now - recorder.started, 1),
        "in_flight": recorder.in_flight,
        "bounds": BOUNDS,
        "windows": {"1m": _window_view(recorder, 60, now), "5m": _window_view(recorder, 300, now)},
        "series": _series(recorder, now, wall),
        "samples": _sample_series(recorder, now),
        "consumers": live["consumers"],
        "outbox_unrelayed": live["outbox_unrelayed"],
        "timeline_cache": {
            "home_reads": home_reads,
            "rebuilds": rebuilds,
            "author_rebuilds": live["feed"].get("author_rebuilds", 0),
            "db_pages": live["feed"].get("db_pages", 0),
            "pushes": live["feed"].get("pushes", 0),
            "hit_ratio": round(max(0.0, 1.0 - rebuilds / home_reads), 4) if home_reads else None,
            "hit_ratio_1m": recent["timeline"],
        },
        "post_cache": None if pc is None else {
            **pc,
            "hit_ratio": round(pc["hits"] / (pc["hits"] + pc["misses"]), 4) if pc["hits"] + pc["misses"] else None,
            "hit_ratio_1m": recent["post"],
        },
        "fanout_total": {"count": recorder.fanout.count, "p99": _ms(recorder.fanout.quantile(0.99))},
        "relay": live["relay"],
        "streaming": live.get("streaming"),
        "stream": live["stream"],
        "sizes": live["sizes"],
        "jobs": live.get("jobs"),
        "errors": live["errors"],
    }


def snapshot_json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)

