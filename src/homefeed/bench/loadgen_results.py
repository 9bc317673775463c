"""What a load run measured (``LoadResult``): corrected and service latencies per request
type, counts, the generator's own lag; mergeable across processes and JSON-safe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homefeed.bench.hdr import LatencyReport, Recorder, format_table


@dataclass
class LoadResult:
    """What a run measured. Mergeable across processes (``merge_results``) and JSON-safe
    (``to_dict`` / ``from_dict``), so separately started generators can be combined.

    ``scheduled`` requests were due; ``sent`` were written to a connection (the rest failed
    to get one, e.g. connection refused, or timed out waiting); ``corrected`` and
    ``service`` hold latencies (see the module doc). ``lag`` is how late the generator
    itself dispatched requests: if its tail is more than a few ms the generator was
    overloaded (add processes) and the corrected latencies are pessimistic by that much.
    """

    spec: dict[str, Any]
    processes: int = 1
    scheduled: int = 0
    sent: int = 0
    corrected: LatencyReport = field(default_factory=LatencyReport)
    service: LatencyReport = field(default_factory=LatencyReport)
    lag: Recorder = field(default_factory=Recorder)
    #: Wall-clock seconds from the first due time to the last response (or give-up).
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Percentile tables (ms) for both latencies, plus counts and generator health."""
        return {
            "rate_asked": self.spec.get("rate"),
            "duration_s": self.corrected.duration_s,
            "processes": self.processes,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "elapsed_s": self.elapsed_s,
            "corrected": self.corrected.summary(),
            "service": self.service.summary(),
            "generator_lag": {
                k: v for k, v in self.lag.summary(self.corrected.duration_s).items()
                if k.endswith("_ms")
            },
        }

    def format(self) -> str:
        """Human-readable report: the corrected table first, the naive one for comparison."""
        s = self.summary()
        lag = s["generator_lag"]
        lines = [
            f"rate asked {s['rate_asked']}/s for {s['duration_s']:.1f}s over "
            f"{self.processes} process(es): {self.scheduled} due, {self.sent} sent, "
            f"elapsed {self.elapsed_s:.1f}s",
            "",
            "latency from when each request was due (coordinated omission corrected):",
            format_table(s["corrected"]),
            "",
            "service time from send (what a closed-loop tool would report):",
            format_table(s["service"]),
            "",
            f"generator lag: p99 {lag.get('p99_ms', 0):.2f} ms, max {lag.get('max_ms', 0):.2f} ms"
            + ("  <- generator overloaded: add processes" if lag.get("p99_ms", 0) > 10 else ""),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "processes": self.processes,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "elapsed_s": self.elapsed_s,
            "corrected": self.corrected.to_dict(),
            "service": self.service.to_dict(),
            "lag": self.lag.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LoadResult":
        return cls(
            spec=dict(data.get("spec", {})),
            processes=int(data.get("processes", 1)),
            scheduled=int(data.get("scheduled", 0)),
            sent=int(data.get("sent", 0)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            corrected=LatencyReport.from_dict(data.get("corrected", {})),
            service=LatencyReport.from_dict(data.get("service", {})),
            lag=Recorder.from_dict(data.get("lag", {})),
        )


def merge_results(results: Sequence[LoadResult]) -> LoadResult:
    """Combine the results of generator processes that ran *at the same time* against the
    same target: counts and histograms add; durations and elapsed take the longest."""
    if not results:
        raise ValueError("nothing to merge")
    spec = dict(results[0].spec)
    spec.pop("process_index", None)
    # Each result's spec holds the rate that process applied, so the total is the sum.
    spec["rate"] = sum(float(r.spec.get("rate", 0.0)) for r in results)
    out = LoadResult(spec=spec, processes=sum(r.processes for r in results))
    out.corrected = LatencyReport.merge(r.corrected for r in results)
    out.service = LatencyReport.merge(r.service for r in results)
    for r in results:
        out.scheduled += r.scheduled
        out.sent += r.sent
        out.lag.add(r.lag)
        out.elapsed_s = max(out.elapsed_s, r.elapsed_s)
    return out
