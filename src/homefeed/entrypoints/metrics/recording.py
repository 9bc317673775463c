"""What one process records on the hot path: request latencies by (method, route, status),
the fan-out delay, per 10-second slot for the rolling windows and for the process's lifetime
for Prometheus. Plain Python on the event-loop thread, no locks (everything that records runs
on that one thread)."""

from __future__ import annotations

import logging
import os
import time
from bisect import bisect_left
from collections import deque
from typing import Any

from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS
from homefeed.domain.model import POST_CREATED
from homefeed.entrypoints.metrics.histogram import BOUNDS, Histogram

log = logging.getLogger("homefeed.metrics")

SLOT_SECONDS = 10
#: Slots kept: five minutes, plus the one being filled.
KEEP_SLOTS = 31
#: Routes that are the service looking at itself: counted in their own histograms, left out
#: of the API's throughput, error rate and percentiles (so a dashboard polling is not load).
OPS_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/metrics.json", "/dashboard", "/openapi.json"})
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})
_ID_SHIFT = NODE_BITS + SEQ_BITS


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
        #: perf_counter times the current slot covers: ``[start, end)``.
        self._cur_start = self._cur_end = -1.0
        #: (method, route, status) -> [lifetime histogram, its slot, the slot's histogram]:
        #: one dict lookup per request for both histograms, as long as the slot lasts.
        self._children: dict[tuple[str, str, int], list[Any]] = {}
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
        self._cur_start = float(no * SLOT_SECONDS)
        self._cur_end = float((no + 1) * SLOT_SECONDS)
        return cur

    # -- the hot path ----------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float, now: float) -> None:
        i = bisect_left(BOUNDS, seconds)
        cur = self._cur
        if not self._cur_start <= now < self._cur_end:
            cur = self._rotate(int(now // SLOT_SECONDS))
        key = (method, route, status)
        child = self._children.get(key)
        if child is None or child[1] is not cur:
            h = self.requests.get(key)
            if h is None:
                h = self.requests[key] = Histogram()
            s = cur.requests.get(key)
            if s is None:
                s = cur.requests[key] = Histogram()
            child = self._children[key] = [h, cur, s]
        h, _, s = child
        h.counts[i] += 1
        h.sum += seconds
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

