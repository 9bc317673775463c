"""Live figures only the backends know (events behind, cache and store sizes), collected
off the hot path, at most every few seconds, each call with a timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from homefeed.aio import wait_for
from homefeed.entrypoints.metrics.recording import RECORDER, Recorder

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.metrics")


class Sampler:
    """Collects what only the backends know (events behind, cache and store sizes) when
    asked, at most every ``min_interval`` seconds, and every ``interval`` seconds in the
    background while ``run`` runs; each collection is kept as a sample for charts and
    windowed ratios. Every backend call has a timeout; a failing one is reported in
    ``errors`` and never fails a scrape."""

    def __init__(self, hf: Homefeed, recorder: Recorder = RECORDER, *, role: str = "api",
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
        self._jobs: dict[str, Any] | None = None
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
            return await wait_for(coro, self.timeout)
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
        post_stats = await self._call(errors, "post_cache_stats", hf.posts.stats())
        stream_stats = await self._call(errors, "stream_stats", hf.stream.stats())
        relay = hf.relay
        now = time.perf_counter()
        if now - self._sizes_at >= self.sizes_every:
            self._sizes = await self._store_sizes(errors)
            self._sizes_at = now
            from homefeed.entrypoints.metrics.jobs import job_figures

            self._jobs = await self._call(errors, "jobs", job_figures(hf))
        return {
            "consumers": consumers,
            "outbox_unrelayed": unrelayed,
            "feed": counters,
            "home_reads": self.recorder.home_reads(),
            "post_cache": (
                {"hits": post_stats["hits"], "misses": post_stats["misses"]} if post_stats else None
            ),
            "stream": dict(stream_stats) if stream_stats else None,  # {}: counts nothing
            "relay": relay.stats.as_dict() if relay is not None else None,
            # open streams and their counters; an API process's only (workers hold none)
            "streaming": hf.streams.figures() if self.role == "api" else None,
            "sizes": dict(self._sizes),
            "jobs": self._jobs,
            "errors": errors,
        }

    async def _store_sizes(self, errors: dict[str, str]) -> dict[str, int]:
        """How big each derived store is: the timeline cache's ``stats`` (a port method), the
        post cache's and the search index's where they know it (port methods too)."""
        hf = self.hf
        sizes: dict[str, int] = {}
        stats = await self._call(errors, "cache_stats", hf.cache.stats())
        if isinstance(stats, dict):
            for k, v in stats.items():
                if isinstance(v, (int, float)) and k not in ("evictions", "expired_keys", "pushed"):
                    sizes[k] = int(v)
        post_stats = await self._call(errors, "post_cache_size", hf.posts.stats())
        if isinstance(post_stats, dict) and isinstance(post_stats.get("posts"), int):
            sizes["post_cache_posts"] = post_stats["posts"]
        n = await self._call(errors, "search_size", hf.search_index.count())
        if isinstance(n, int) and n >= 0:
            sizes["search_index_posts"] = n
        return sizes

