"""Metrics of one process, one job per module:

- ``histogram``: fixed-bound latency histograms and percentiles;
- ``recording``: the hot-path recorder (``RECORDER``) and the fan-out hook;
- ``sampler``: live figures asked of the backends, off the hot path;
- ``jsonview``: the JSON the dashboard and ``homefeed status`` read;
- ``prometheus``: the Prometheus text exposition;
- ``server``: a tiny metrics server for ``homefeed worker`` processes.

This package re-exports what the rest of homefeed imports (``from homefeed.entrypoints
import metrics as obs``).

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

from homefeed.entrypoints.metrics.histogram import BOUNDS, NBUCKETS, Histogram, quantile
from homefeed.entrypoints.metrics.prometheus import CONTENT_TYPE, prometheus_text, render_prometheus
from homefeed.entrypoints.metrics.recording import (
    KEEP_SLOTS,
    METHODS,
    OPS_ROUTES,
    RECORDER,
    SLOT_SECONDS,
    UNMATCHED,
    Recorder,
    Slot,
    observe_fanout_event,
)
from homefeed.entrypoints.metrics.sampler import Sampler
from homefeed.entrypoints.metrics.server import MetricsServer
from homefeed.entrypoints.metrics.jsonview import (
    _series,
    _window_view,
    snapshot,
    snapshot_json,
    summarize,
)

__all__ = [
    "BOUNDS", "NBUCKETS", "Histogram", "quantile", "CONTENT_TYPE", "prometheus_text",
    "render_prometheus", "KEEP_SLOTS", "METHODS", "OPS_ROUTES", "RECORDER", "SLOT_SECONDS",
    "UNMATCHED", "Recorder", "Slot", "observe_fanout_event", "Sampler", "MetricsServer",
    "_series", "_window_view", "snapshot", "snapshot_json", "summarize",
]
