"""The Prometheus text exposition format (0.0.4) of what the recorder and the sampler hold."""

from __future__ import annotations

import os
from typing import Any, Iterable

from homefeed.entrypoints.metrics.histogram import BOUNDS, PROM_FANOUT, PROM_LATENCY, Histogram
from homefeed.entrypoints.metrics.recording import Recorder
from homefeed.entrypoints.metrics.sampler import Sampler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
        o.histogram(name, h, PROM_LATENCY, (("method", method), ("route", route), ("status", status)))
    o.head("homefeed_http_requests_in_flight", "gauge",
           "Requests being handled right now (open streams are not requests: homefeed_streaming_connections).")
    o.sample("homefeed_http_requests_in_flight", recorder.in_flight)

    name = "homefeed_fanout_delay_seconds"
    o.head(name, "histogram",
           "Fan-out delay: from a post's commit to the end of its push into followers' cached timelines "
           "(recorded where the fan-out consumer runs).")
    o.histogram(name, recorder.fanout, PROM_FANOUT)

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
    streaming = live.get("streaming")
    if streaming:
        _streaming(o, streaming)
    o.head("homefeed_rate_limited_total", "counter", "Requests refused with 429, by the limit that refused them.")
    for scope, n in sorted(recorder.rate_limited.items()):
        o.sample("homefeed_rate_limited_total", n, (("scope", scope),))
    o.head("homefeed_rate_limiter_errors_total", "counter",
           "Requests let through unchecked because the rate limiter did not answer (it fails open).")
    o.sample("homefeed_rate_limiter_errors_total", recorder.rate_limiter_errors)
    from homefeed.entrypoints.metrics.jobs import render as render_jobs

    render_jobs(o, live.get("jobs"))
    errors = live.get("errors") or {}
    o.head("homefeed_metrics_collect_errors", "gauge", "1 for each figure a backend did not give at this scrape.")
    for key in sorted(errors):
        o.sample("homefeed_metrics_collect_errors", 1, (("figure", key),))
    return o.text()


def _streaming(o: _Out, f: dict[str, Any]) -> None:
    """The streaming API's connections: counted here, not as requests (``Observe``)."""
    o.head("homefeed_streaming_connections", "gauge",
           "Streaming API connections open on this process, by transport (kept out of the request metrics).")
    o.sample("homefeed_streaming_connections", f["open_sse"], (("transport", "sse"),))
    o.sample("homefeed_streaming_connections", f["open_websocket"], (("transport", "websocket"),))
    o.head("homefeed_streaming_connections_opened_total", "counter", "Streaming connections opened on this process.")
    o.sample("homefeed_streaming_connections_opened_total", f["opened"])
    o.head("homefeed_streaming_connections_closed_total", "counter",
           "Streaming connections closed on this process, for any reason.")
    o.sample("homefeed_streaming_connections_closed_total", f["closed"])
    o.head("homefeed_streaming_disconnects_total", "counter",
           "Streaming connections this process closed itself, by cause: slow (the client fell too far "
           "behind), revoked (its token was). A WebSocket that does not answer the server's ping is "
           "closed by the server (uvicorn): counted in closed_total only.")
    o.sample("homefeed_streaming_disconnects_total", f["slow_disconnects"], (("cause", "slow"),))
    o.sample("homefeed_streaming_disconnects_total", f["revoked_disconnects"], (("cause", "revoked"),))
    o.head("homefeed_streaming_messages_total", "counter",
           "Live bus messages this process received (kind=received) and routed to at least one of its streams.")
    o.sample("homefeed_streaming_messages_total", f["messages"], (("kind", "received"),))
    for kind in ("updates", "deletes", "notifications"):
        o.sample("homefeed_streaming_messages_total", f[kind], (("kind", kind.rstrip("s")),))
    o.head("homefeed_streaming_route_failures_total", "counter",
           "Live messages (or one reader's home rule for one) this process failed to route.")
    o.sample("homefeed_streaming_route_failures_total", f["route_failures"])


async def prometheus_text(sampler: Sampler) -> str:
    live = await sampler.collect(max_age=0.0)  # a scrape is rare (every 15 s): always fresh
    return render_prometheus(sampler.recorder, live, role=sampler.role, profile=sampler.hf.backend_profile())

