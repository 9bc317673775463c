"""Metrics of one process: recording, the Prometheus text exposition, the JSON the dashboard
and ``homefeed status`` read, and a tiny metrics server for ``homefeed worker`` processes.

Recording sits on the hot path (~25k requests/s on one core), so it is a few lines of plain
Python on the event-loop thread: no locks (everything that records runs on that one thread),
no label objects, one ``bisect`` into fixed bucket bounds shared by every histogram, and two
list increments (the lifetime histogram Prometheus scrapes, and the current 10-second slot).
``prometheus_client`` (0.26) was measured against this on the same machine: 1.5 us per
``labels(method, route, status).observe()`` (0.5 us with the child cached), against 0.37 us
here for the lifetime histogram *and* the 10-second slot; it has no rolling windows (the
dashboard's last minute / five minutes would still be ours) and its output is the same text
format, so it did not earn its place.

What is kept:

- lifetime histograms of request latency by (method, route template, status), and of the
  fan-out delay (a post's commit, read from its time-ordered id, to the end of its push into
  followers' timelines): the Prometheus histograms (``_bucket`` / ``_sum`` / ``_count``);
- the same, per 10-second slot, for the last 5 minutes: the percentiles of the last minute
  and of the last five, throughput, error rate, and the series the dashboard draws;
- every few seconds a *sample* of what is asked of the backends (events behind per
  consumer, outbox rows not yet relayed, the cache counters), for the lag chart and for
  windowed ratios.

Bucket bounds: 1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8 per decade from 10 us to 100 s (71
bounds, each at most 1.34x the one before): a percentile read from them is within one bucket
of the truth.
Prometheus is given the 1-2.5-5 subset (exact cumulative counts at those bounds), which keeps
the number of series reasonable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from bisect import bisect_left
from collections import deque
from typing import Any, Iterable

import orjson

from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS
from homefeed.domain.model import POST_CREATED

log = logging.getLogger("homefeed.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


_MANTISSAS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8)


def _make_bounds() -> tuple[tuple[float, ...], tuple[int, ...]]:
    bounds: list[float] = []
    coarse: list[int] = []  # indexes of the 1-2.5-5 bounds
    for e in range(-5, 2):
        for m in _MANTISSAS:
            if m in (1, 2.5, 5):
                coarse.append(len(bounds))
            bounds.append(float(f"{m}e{e}"))
    coarse.append(len(bounds))
    bounds.append(100.0)
    return tuple(bounds), tuple(coarse)


#: Upper bounds (seconds) of the fine buckets; one more bucket holds what is above the last.
BOUNDS, _COARSE = _make_bounds()
NBUCKETS = len(BOUNDS) + 1
#: Indexes of the bounds given to Prometheus: 1, 2.5, 5 per decade.
_PROM_LATENCY = tuple(i for i in _COARSE if 1e-4 <= BOUNDS[i] <= 10)
_PROM_FANOUT = tuple(i for i in _COARSE if 1e-3 <= BOUNDS[i] <= 100)

SLOT_SECONDS = 10
#: Slots kept: five minutes, plus the one being filled.
KEEP_SLOTS = 31
#: Routes that are the service looking at itself: counted in their own histograms, left out
#: of the API's throughput, error rate and percentiles (so a dashboard polling is not load).
OPS_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/metrics.json", "/dashboard", "/openapi.json"})
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})
_ID_SHIFT = NODE_BITS + SEQ_BITS


class Histogram:
    """Counts per fine bucket (``BOUNDS``) and the sum of what was observed."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BOUNDS, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add(self, other: "Histogram") -> None:
        mine = self.counts
        for i, n in enumerate(other.counts):
            if n:
                mine[i] += n
        self.sum += other.sum

    def sparse(self) -> list[list[int]]:
        return [[i, n] for i, n in enumerate(self.counts) if n]

    @classmethod
    def from_sparse(cls, pairs: Iterable[Iterable[int]]) -> "Histogram":
        h = cls()
        for i, n in pairs:
            if 0 <= i < NBUCKETS:
                h.counts[i] += n
        return h

    def quantile(self, q: float) -> float | None:
        return quantile(self.counts, q)


def quantile(counts: list[int], q: float) -> float | None:
    """The q-quantile (seconds), interpolated linearly inside its bucket; None if empty."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if not n:
            continue
        if seen + n >= rank:
            lo = BOUNDS[i - 1] if i > 0 else 0.0
            if i >= len(BOUNDS):
                return BOUNDS[-1]
            hi = BOUNDS[i]
            return lo + (hi - lo) * max(0.0, min(1.0, (rank - seen) / n))
        seen += n
    return BOUNDS[-1]


class Slot:
    __slots__ = ("no", "requests", "fanout")

    def __init__(self, no: int) -> None:
        self.no = no
        self.requests: dict[tuple[str, str, int], Histogram] = {}
        self.fanout = Histogram()


class Recorder:
    """Everything one process records. One per process (:data:`RECORDER`)."""

    def __init__(self) -> None:
        self.started_wall = time.time()
        self.started = time.perf_counter()
        self.in_flight = 0
        self.requests: dict[tuple[str, str, int], Histogram] = {}
        self.fanout = Histogram()
        self.slots: deque[Slot] = deque(maxlen=KEEP_SLOTS)
        self._cur = Slot(-1)
        #: (perf_counter time, wall time, figures) every few seconds: see ``Sampler``.
        self.samples: deque[tuple[float, float, dict[str, Any]]] = deque(maxlen=80)
        #: Requests answered 429, by the limit that refused them ("token", "address").
        self.rate_limited: dict[str, int] = {"token": 0, "address": 0}
        #: Requests let through unchecked because the rate limiter did not answer.
        self.rate_limiter_errors = 0

    def _rotate(self, no: int) -> Slot:
        cur = Slot(no)
        self.slots.append(cur)
        self._cur = cur
        return cur

    # -- the hot path ----------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float, now: float) -> None:
        key = (method, route, status)
        i = bisect_left(BOUNDS, seconds)
        h = self.requests.get(key)
        if h is None:
            h = self.requests[key] = Histogram()
        h.counts[i] += 1
        h.sum += seconds
        cur = self._cur
        no = int(now // SLOT_SECONDS)
        if cur.no != no:
            cur = self._rotate(no)
        s = cur.requests.get(key)
        if s is None:
            s = cur.requests[key] = Histogram()
        s.counts[i] += 1
        s.sum += seconds

    def observe_fanout(self, seconds: float, now: float) -> None:
        i = bisect_left(BOUNDS, seconds)
        self.fanout.counts[i] += 1
        self.fanout.sum += seconds
        cur = self._cur
        no = int(now // SLOT_SECONDS)
        if cur.no != no:
            cur = self._rotate(no)
        cur.fanout.counts[i] += 1
        cur.fanout.sum += seconds

    # -- reading ---------------------------------------------------------------------------
    def window(self, seconds: int, now: float | None = None) -> tuple[list[Slot], float]:
        """The slots of the last ``seconds`` (the current one included) and the time span
        they cover."""
        now = time.perf_counter() if now is None else now
        cur_no = int(now // SLOT_SECONDS)
        first_no = cur_no - seconds // SLOT_SECONDS + 1
        slots = [s for s in self.slots if first_no <= s.no <= cur_no]
        span = now - max(first_no * SLOT_SECONDS, self.started)
        return slots, max(span, 1e-3)

    def home_reads(self) -> int:
        return sum(h.count for (m, r, st), h in self.requests.items()
                   if r == "/v1/timelines/home" and 200 <= st < 300)

    def reset(self) -> None:  # tests
        self.__init__()  # type: ignore[misc]


#: The recorder of this process.
RECORDER = Recorder()


def observe_fanout_event(event: Any) -> None:
    """The fan-out consumer's hook: called once per event it has applied (the push is done).
    For a new post, records the fan-out delay (now minus the post's commit time, which its
    id carries to the millisecond) and logs the post with the request id that wrote it."""
    if event.type != POST_CREATED:
        return
    data = event.data
    post_id = data.get("post_id")
    if not isinstance(post_id, int):
        return
    delay = time.time() - ((post_id >> _ID_SHIFT) + EPOCH_MS) / 1000.0
    if delay < 0.0:  # another machine's clock ahead of ours
        delay = 0.0
    RECORDER.observe_fanout(delay, time.perf_counter())
    if _log_events and log.isEnabledFor(logging.INFO):
        log.info(
            "fan-out done",
            extra={"request_id": data.get("request_id"), "consumer": "fanout", "event_seq": event.seq,
                   "post_id": str(post_id), "fanout_delay_ms": round(delay * 1000.0, 1)},
        )


_log_events = os.environ.get("HOMEFEED_ACCESS_LOG", "writes").strip().lower() != "off"


# ------------------------------------------------------------------------------------------
# live figures, asked of the backends (not on the hot path)
# ------------------------------------------------------------------------------------------
class Sampler:
    """Collects what only the backends know (events behind, cache and store sizes) when
    asked, at most every ``min_interval`` seconds, and every ``interval`` seconds in the
    background while ``run`` runs; each collection is kept as a sample for charts and
    windowed ratios. Every backend call has a timeout; a failing one is reported in
    ``errors`` and never fails a scrape."""

    def __init__(self, hf: Any, recorder: Recorder = RECORDER, *, role: str = "api",
                 interval: float = 5.0, timeout: float = 2.0, sizes_every: float = 10.0) -> None:
        self.hf = hf
        self.recorder = recorder
        self.role = role
        self.interval = interval
        self.timeout = timeout
        self.sizes_every = sizes_every
        self._last: dict[str, Any] | None = None
        self._last_at = -1e9
        self._sizes: dict[str, int] = {}
        self._sizes_at = -1e9
        self._lock: asyncio.Lock | None = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            try:
                await self.collect(max_age=0.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - collect guards every call
                log.exception("metrics sampler failed")
            await asyncio.sleep(self.interval)

    async def collect(self, max_age: float = 1.0) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = time.perf_counter()
            if self._last is not None and now - self._last_at <= max_age:
                return self._last
            live = await self._collect()
            self._last, self._last_at = live, time.perf_counter()
            self.recorder.samples.append((self._last_at, time.time(), live))
            return live

    async def _call(self, errors: dict[str, str], name: str, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]
            return None

    async def _collect(self) -> dict[str, Any]:
        hf = self.hf
        errors: dict[str, str] = {}
        lags = await self._call(errors, "lags", hf.lags()) or {}
        lags = dict(lags)
        unrelayed = lags.pop("relay", None)
        consumers_obj = hf.consumers
        consumers: dict[str, dict[str, Any]] = {}
        for name in consumers_obj.handlers:
            consumers[name] = {
                "behind": lags.get(name),
                "running": name in consumers_obj.running,
                "failures": consumers_obj.failures.get(name, 0),
                "dead_lettered": consumers_obj.dead_lettered.get(name, 0),
            }
        feed = hf.feed
        counters = dict(feed.counters)
        posts = feed.posts
        hits, misses = getattr(posts, "hits", None), getattr(posts, "misses", None)
        stream_stats = getattr(hf.stream, "stats", None)
        relay = getattr(hf, "relay", None)
        now = time.perf_counter()
        if now - self._sizes_at >= self.sizes_every:
            self._sizes = await self._store_sizes(errors)
            self._sizes_at = now
        return {
            "consumers": consumers,
            "outbox_unrelayed": unrelayed,
            "feed": counters,
            "home_reads": self.recorder.home_reads(),
            "post_cache": None if hits is None else {"hits": hits, "misses": misses},
            "stream": dict(stream_stats) if isinstance(stream_stats, dict) else None,
            "relay": relay.stats.as_dict() if relay is not None else None,
            "sizes": dict(self._sizes),
            "errors": errors,
        }

    async def _store_sizes(self, errors: dict[str, str]) -> dict[str, int]:
        """How big each derived store is. The ports have no size method, so this knows the
        adapters (a ``count()`` / ``size()`` method on an adapter wins when there is one)."""
        hf = self.hf
        sizes: dict[str, int] = {}
        stats = await self._call(errors, "cache_stats", hf.cache.stats())
        if isinstance(stats, dict):
            for k, v in stats.items():
                if isinstance(v, (int, float)) and k not in ("evictions", "expired_keys", "pushed"):
                    sizes[k] = int(v)
        posts = hf.feed.posts
        if hasattr(posts, "size"):
            n = await self._call(errors, "post_cache_size", posts.size())
            if isinstance(n, int):
                sizes["post_cache_posts"] = n
        elif isinstance(getattr(posts, "_posts", None), dict):  # MemoryPostCache
            sizes["post_cache_posts"] = len(posts._posts)
        n = await self._call(errors, "search_size", _search_index_size(hf.search_index))
        if isinstance(n, int) and n >= 0:
            sizes["search_index_posts"] = n
        return sizes


async def _search_index_size(index: Any) -> int | None:
    counter = getattr(index, "count", None)
    if counter is not None:
        return int(await counter())
    db = getattr(index, "db", None)
    kind = type(index).__name__
    if kind == "Fts5SearchIndex":  # one row per indexed post in the FTS5 docsize table;
        # counted on a connection of its own in a thread: a big index must not stall the loop
        return await asyncio.to_thread(_count_sqlite, db.path, "SELECT count(*) FROM post_search_docsize")
    if kind == "PgSearchIndex":  # the planner's estimate: exact counting is a full scan
        row = await db.fetchone("SELECT reltuples::bigint FROM pg_class WHERE oid = 'post_search'::regclass")
        if row and row[0] >= 0:
            return int(row[0])
        row = await db.fetchone("SELECT count(*) FROM post_search")
        return int(row[0]) if row else None
    return None


def _count_sqlite(path: Any, sql: str) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------
# the JSON snapshot (dashboard, ``homefeed status``)
# ------------------------------------------------------------------------------------------
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


def profile_of(hf: Any) -> str:
    s = hf.settings
    return "+".join([
        "postgresql" if s.database_url else "sqlite",
        "redis" if s.cache_url else "memory",
        "jetstream" if s.bus_url else "outbox",
    ])


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
        "profile": profile_of(sampler.hf),
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
        "stream": live["stream"],
        "sizes": live["sizes"],
        "errors": live["errors"],
    }


def snapshot_json(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


# ------------------------------------------------------------------------------------------
# the Prometheus text format (0.0.4)
# ------------------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, Any]]) -> str:
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def _le(bound: float) -> str:
    return f"{bound:g}"


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def head(self, name: str, kind: str, help_: str) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Iterable[tuple[str, Any]] = ()) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def histogram(self, name: str, h: Histogram, exposed: tuple[int, ...],
                  labels: tuple[tuple[str, Any], ...] = ()) -> None:
        counts = h.counts
        cumulative = 0
        j = 0
        for idx in exposed:
            while j <= idx:
                cumulative += counts[j]
                j += 1
            self.sample(f"{name}_bucket", cumulative, labels + (("le", _le(BOUNDS[idx])),))
        total = sum(counts)
        self.sample(f"{name}_bucket", total, labels + (("le", "+Inf"),))
        self.sample(f"{name}_sum", h.sum, labels)
        self.sample(f"{name}_count", total, labels)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_prometheus(recorder: Recorder, live: dict[str, Any], *, role: str = "api", profile: str = "") -> str:
    o = _Out()
    o.head("homefeed_info", "gauge", "This process: its role and storage profile.")
    o.sample("homefeed_info", 1, (("role", role), ("profile", profile), ("pid", os.getpid())))
    o.head("homefeed_process_start_time_seconds", "gauge", "Start time of this process (Unix seconds).")
    o.sample("homefeed_process_start_time_seconds", round(recorder.started_wall, 3))

    name = "homefeed_http_request_duration_seconds"
    o.head(name, "histogram", "Time from a request's arrival to the end of its response, by route template and status.")
    for (method, route, status), h in sorted(recorder.requests.items()):
        o.histogram(name, h, _PROM_LATENCY, (("method", method), ("route", route), ("status", status)))
    o.head("homefeed_http_requests_in_flight", "gauge", "Requests being handled right now.")
    o.sample("homefeed_http_requests_in_flight", recorder.in_flight)

    name = "homefeed_fanout_delay_seconds"
    o.head(name, "histogram",
           "Fan-out delay: from a post's commit to the end of its push into followers' cached timelines "
           "(recorded where the fan-out consumer runs).")
    o.histogram(name, recorder.fanout, _PROM_FANOUT)

    consumers = live.get("consumers") or {}
    o.head("homefeed_consumer_events_behind", "gauge", "Events committed but not yet applied, per consumer.")
    for cname, c in sorted(consumers.items()):
        if c.get("behind") is not None:
            o.sample("homefeed_consumer_events_behind", c["behind"], (("consumer", cname),))
    o.head("homefeed_consumer_running", "gauge", "1 if this process runs the consumer.")
    for cname, c in sorted(consumers.items()):
        o.sample("homefeed_consumer_running", 1 if c.get("running") else 0, (("consumer", cname),))
    o.head("homefeed_consumer_failed_batches_total", "counter", "Batches a consumer of this process failed (then retried).")
    for cname, c in sorted(consumers.items()):
        o.sample("homefeed_consumer_failed_batches_total", c.get("failures", 0), (("consumer", cname),))
    o.head("homefeed_dead_lettered_events_total", "counter",
           "Events this process's consumers moved to the dead letters after repeated failures.")
    for cname, c in sorted(consumers.items()):
        o.sample("homefeed_dead_lettered_events_total", c.get("dead_lettered", 0), (("consumer", cname),))

    o.head("homefeed_outbox_unrelayed_events", "gauge",
           "Outbox rows committed but not yet relayed to the event stream (absent without a bus: "
           "consumers then read the outbox itself).")
    if live.get("outbox_unrelayed") is not None:
        o.sample("homefeed_outbox_unrelayed_events", live["outbox_unrelayed"])

    feed = live.get("feed") or {}
    home_reads = live.get("home_reads", 0)
    o.head("homefeed_timeline_reads_total", "counter", "Home timeline reads answered 2xx by this process.")
    o.sample("homefeed_timeline_reads_total", home_reads)
    o.head("homefeed_timeline_rebuilds_total", "counter",
           "Cached lists missing and rebuilt from the record store (kind: home timeline or author list).")
    o.sample("homefeed_timeline_rebuilds_total", feed.get("rebuilds", 0), (("kind", "home"),))
    o.sample("homefeed_timeline_rebuilds_total", feed.get("author_rebuilds", 0), (("kind", "author"),))
    o.head("homefeed_timeline_db_pages_total", "counter", "Home timeline pages continued from the record store below the cache's floor.")
    o.sample("homefeed_timeline_db_pages_total", feed.get("db_pages", 0))
    o.head("homefeed_cache_fallbacks_total", "counter",
           "Reads (home pages, hydrations) served from the record store because the cache was unavailable.")
    o.sample("homefeed_cache_fallbacks_total", feed.get("cache_fallbacks", 0))
    o.head("homefeed_timeline_pushes_total", "counter", "Post ids pushed into cached home timelines by this process's fan-out.")
    o.sample("homefeed_timeline_pushes_total", feed.get("pushes", 0))
    o.head("homefeed_timeline_cache_hit_ratio", "gauge",
           "Home timeline reads served without a rebuild, since start (1 - rebuilds/reads).")
    if home_reads:
        o.sample("homefeed_timeline_cache_hit_ratio", round(max(0.0, 1.0 - feed.get("rebuilds", 0) / home_reads), 6))
    pc = live.get("post_cache")
    if pc:
        o.head("homefeed_post_cache_lookups_total", "counter", "Post cache lookups while hydrating, by result.")
        o.sample("homefeed_post_cache_lookups_total", pc["hits"], (("result", "hit"),))
        o.sample("homefeed_post_cache_lookups_total", pc["misses"], (("result", "miss"),))

    sizes = live.get("sizes") or {}
    o.head("homefeed_derived_store_size", "gauge",
           "Size of each derived store (entries; bytes for *_bytes / used_memory), refreshed every 10 s.")
    for key, v in sorted(sizes.items()):
        o.sample("homefeed_derived_store_size", v, (("store", key),))

    relay = live.get("relay")
    if relay:
        o.head("homefeed_relay_events_total", "counter", "Outbox events relayed to the stream by this process.")
        o.sample("homefeed_relay_events_total", relay.get("relayed", 0))
        o.head("homefeed_relay_failures_total", "counter", "Relay batches that failed (then retried).")
        o.sample("homefeed_relay_failures_total", relay.get("failures", 0))
        o.head("homefeed_relay_leader", "gauge", "1 if this process is the active relay.")
        o.sample("homefeed_relay_leader", 1 if relay.get("leader") else 0)
    stream = live.get("stream")
    if stream:
        o.head("homefeed_stream_operations_total", "counter", "Event stream client counters of this process, by kind.")
        for key, v in sorted(stream.items()):
            if isinstance(v, (int, float)):
                o.sample("homefeed_stream_operations_total", v, (("kind", key),))
    o.head("homefeed_rate_limited_total", "counter", "Requests refused with 429, by the limit that refused them.")
    for scope, n in sorted(recorder.rate_limited.items()):
        o.sample("homefeed_rate_limited_total", n, (("scope", scope),))
    o.head("homefeed_rate_limiter_errors_total", "counter",
           "Requests let through unchecked because the rate limiter did not answer (it fails open).")
    o.sample("homefeed_rate_limiter_errors_total", recorder.rate_limiter_errors)
    errors = live.get("errors") or {}
    o.head("homefeed_metrics_collect_errors", "gauge", "1 for each figure a backend did not give at this scrape.")
    for key in sorted(errors):
        o.sample("homefeed_metrics_collect_errors", 1, (("figure", key),))
    return o.text()


async def prometheus_text(sampler: Sampler) -> str:
    live = await sampler.collect(max_age=0.0)  # a scrape is rare (every 15 s): always fresh
    return render_prometheus(sampler.recorder, live, role=sampler.role, profile=profile_of(sampler.hf))


# ------------------------------------------------------------------------------------------
# a metrics server for processes that serve no HTTP (``homefeed worker``)
# ------------------------------------------------------------------------------------------
class MetricsServer:
    """``GET /metrics`` and ``GET /metrics.json`` on a port of its own (HTTP/1.0, one
    request per connection), plus the background sampler.

        server = await MetricsServer.start(hf, "0.0.0.0", 9101, role="worker")
        ...
        await server.close()
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self._server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    async def start(cls, hf: Any, host: str, port: int, *, role: str = "worker") -> "MetricsServer":
        self = cls(Sampler(hf, role=role))
        self._server = await asyncio.start_server(self._handle, host, port)
        self._task = asyncio.create_task(self.sampler.run(), name="metrics-sampler")
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while True:  # skip the headers
                h = await asyncio.wait_for(reader.readline(), 5)
                if h in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) >= 2 and parts[0] == "GET" and path == "/metrics":
                body, ctype, status = (await prometheus_text(self.sampler)).encode(), CONTENT_TYPE, "200 OK"
            elif len(parts) >= 2 and parts[0] == "GET" and path == "/metrics.json":
                body, ctype, status = snapshot_json(await snapshot(self.sampler)), "application/json", "200 OK"
            else:
                body = b'{"error":{"code":"not_found","message":"GET /metrics or /metrics.json"}}'
                ctype, status = "application/json", "404 Not Found"
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("metrics server: request failed")
        finally:
            writer.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
