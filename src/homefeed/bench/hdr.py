"""Latency recording for the load generator: one HDR histogram per request type.

Why HDR histograms rather than a list of samples or a mean:

* Response-time distributions are long-tailed, and what matters for a timeline service is
  the tail (p99, p99.9, max), so we need percentiles, exact to a bounded *relative* error,
  over a range from microseconds to minutes (a stalled server). An HDR histogram gives that
  in fixed memory, whatever the number of requests.
* Histograms *add*: the histograms of N generator processes, each driving 1/N of the load,
  merge into exactly the histogram one process would have recorded. Percentiles do not
  average, so merging summaries would be wrong; merging histograms is right. We ship them
  between processes in HdrHistogram's standard compressed, base64 text form (V2), which
  other HdrHistogram tools (HistogramLogAnalyzer, hdr-plot) can also read.

The histogram itself is the ``hdrhistogram`` package (HdrHistogram_py, the HdrHistogram
project's own Python port, pure Python, Apache-2.0). This module wraps it with what the load
generator needs: values in seconds in, microseconds stored, clamping instead of silently
dropping out-of-range values, error counts, and a throughput figure.

Latencies recorded here are whatever the caller measured. The load generator records them
from the moment each request was *due* (coordinated omission corrected); see ``loadgen``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from hdrh.histogram import HdrHistogram

#: Values are stored in whole microseconds: fine enough for a loopback request (~100 µs).
UNIT_SECONDS = 1e-6
#: Lowest and highest trackable values, in microseconds: 1 µs .. 1 hour. Anything slower than
#: an hour is clamped to an hour (and counted in ``clamped``) rather than lost.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
#: 3 significant digits: every reported percentile is within 0.1% of the true value.
SIGNIFICANT_FIGURES = 3

#: The percentiles every report shows. p95 is there because DESIGN.md names it.
REPORT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    """A histogram with the range and precision every part of the bench agrees on, so that any
    two can be added without re-bucketing."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


@dataclass
class Recorder:
    """Latencies, outcome counts and error kinds for one request type.

    ``histogram`` holds every finished request, failed ones included: a request that timed
    out after 10 s was a 10 s wait for its user, and dropping it would flatter the tail.
    ``errors`` counts the failed ones; ``error_kinds`` says why (``"http 503"``,
    ``"timeout"``, ``"ConnectionResetError"`` ...).
    """

    histogram: HdrHistogram = field(default_factory=new_histogram)
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    #: Values that fell outside [LOWEST_US, HIGHEST_US] and were clamped into it.
    clamped: int = 0

    def record(self, latency_s: float, error: str | None = None) -> None:
        """Record one finished request that took ``latency_s`` seconds; ``error`` names the
        failure, or is None for a success."""
        us = int(round(latency_s / UNIT_SECONDS))
        if us < LOWEST_US:
            us = LOWEST_US
            if latency_s < 0:
                self.clamped += 1
        elif us > HIGHEST_US:
            us = HIGHEST_US
            self.clamped += 1
        self.histogram.record_value(us)
        if error is not None:
            self.errors += 1
            self.error_kinds[error] += 1

    @property
    def count(self) -> int:
        return int(self.histogram.get_total_count())

    def add(self, other: "Recorder") -> None:
        """Merge ``other`` into this recorder (histograms add exactly)."""
        self.histogram.add(other.histogram)
        self.errors += other.errors
        self.error_kinds.update(other.error_kinds)
        self.clamped += other.clamped

    def percentile_s(self, percentile: float) -> float:
        """The latency at ``percentile`` (0..100), in seconds; 0.0 when nothing was recorded."""
        if self.count == 0:
            return 0.0
        return self.histogram.get_value_at_percentile(percentile) * UNIT_SECONDS

    def summary(self, duration_s: float) -> dict[str, Any]:
        """Count, errors, throughput (finished requests per second over ``duration_s``) and
        latency percentiles in milliseconds, ready to print or to dump as JSON."""
        n = self.count
        out: dict[str, Any] = {
            "count": n,
            "errors": self.errors,
            "throughput_rps": (n / duration_s) if duration_s > 0 else 0.0,
        }
        if n:
            values = self.histogram.get_percentile_to_value_dict(list(REPORT_PERCENTILES))
            for p in REPORT_PERCENTILES:
                out[_pkey(p)] = values[p] * UNIT_SECONDS * 1e3
            out["max_ms"] = self.histogram.get_max_value() * UNIT_SECONDS * 1e3
            out["mean_ms"] = self.histogram.get_mean_value() * UNIT_SECONDS * 1e3
        else:
            for p in REPORT_PERCENTILES:
                out[_pkey(p)] = 0.0
            out["max_ms"] = 0.0
            out["mean_ms"] = 0.0
        if self.error_kinds:
            out["error_kinds"] = dict(self.error_kinds.most_common())
        if self.clamped:
            out["clamped"] = self.clamped
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form that ``from_dict`` reads back, for shipping between processes."""
        return {
            "histogram": self.histogram.encode().decode("ascii")
            if self.count
            else None,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "clamped": self.clamped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Recorder":
        rec = cls()
        if data.get("histogram"):
            rec.histogram.add(HdrHistogram.decode(data["histogram"]))
        rec.errors = int(data.get("errors", 0))
        rec.error_kinds = Counter({str(k): int(v) for k, v in data.get("error_kinds", {}).items()})
        rec.clamped = int(data.get("clamped", 0))
        return rec


def _pkey(p: float) -> str:
    """50.0 -> 'p50_ms', 99.9 -> 'p99.9_ms'."""
    return f"p{p:g}_ms"


@dataclass
class LatencyReport:
    """Recorders keyed by request type, plus the measured duration, so throughput can be said.

    ``duration_s`` is the length of the schedule (the time over which requests were due), not
    including the drain at the end: throughput is "requests finished per second of load".
    """

    duration_s: float = 0.0
    by_type: dict[str, Recorder] = field(default_factory=dict)

    def recorder(self, kind: str) -> Recorder:
        rec = self.by_type.get(kind)
        if rec is None:
            rec = self.by_type[kind] = Recorder()
        return rec

    def record(self, kind: str, latency_s: float, error: str | None = None) -> None:
        self.recorder(kind).record(latency_s, error)

    def total(self) -> Recorder:
        """All request types together."""
        tot = Recorder()
        for rec in self.by_type.values():
            tot.add(rec)
        return tot

    def summary(self) -> dict[str, dict[str, Any]]:
        """One summary row per request type, then ``"all"``."""
        rows = {k: self.by_type[k].summary(self.duration_s) for k in sorted(self.by_type)}
        rows["all"] = self.total().summary(self.duration_s)
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "by_type": {k: v.to_dict() for k, v in self.by_type.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LatencyReport":
        return cls(
            duration_s=float(data.get("duration_s", 0.0)),
            by_type={k: Recorder.from_dict(v) for k, v in data.get("by_type", {}).items()},
        )

    @classmethod
    def merge(cls, reports: Iterable["LatencyReport"]) -> "LatencyReport":
        """Merge reports of generator processes that ran *concurrently* against one target:
        histograms and counts add; the duration is the longest (they shared the same wall
        clock window), so throughputs add up too."""
        out = cls()
        for r in reports:
            out.duration_s = max(out.duration_s, r.duration_s)
            for kind, rec in r.by_type.items():
                out.recorder(kind).add(rec)
        return out


def format_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """A fixed-width text table of ``LatencyReport.summary()``, for terminals and logs."""
    cols = ["count", "errors", "throughput_rps"] + [_pkey(p) for p in REPORT_PERCENTILES] + [
        "max_ms"
    ]
    heads = ["type", "count", "errors", "req/s"] + [
        f"p{p:g} ms" for p in REPORT_PERCENTILES
    ] + ["max ms"]
    rows = [heads]
    for kind, row in summary.items():
        cells = [kind]
        for c in cols:
            v = row.get(c, 0)
            if c in ("count", "errors"):
                cells.append(f"{int(v)}")
            elif c == "throughput_rps":
                cells.append(f"{v:.1f}")
            else:
                cells.append(f"{v:.2f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = []
    for r in rows:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))
            )
        )
    return "\n".join(lines)
