"""Latency recording (homefeed.bench.hdr): percentiles, errors, throughput, merging."""

from __future__ import annotations

import json
import random

import pytest

from homefeed.bench.hdr import LatencyReport, Recorder, format_table


def test_percentiles_of_a_known_distribution() -> None:
    rec = Recorder()
    for ms in range(1, 1001):  # 1 ms .. 1000 ms, once each
        rec.record(ms / 1000)
    assert rec.count == 1000
    row = rec.summary(duration_s=10.0)
    # 3 significant figures: within 0.1% (plus one bucket) of the exact order statistic
    assert row["p50_ms"] == pytest.approx(500, rel=2e-3)
    assert row["p90_ms"] == pytest.approx(900, rel=2e-3)
    assert row["p99_ms"] == pytest.approx(990, rel=2e-3)
    assert row["p99.9_ms"] == pytest.approx(999, rel=2e-3)
    assert row["max_ms"] == pytest.approx(1000, rel=2e-3)
    assert row["throughput_rps"] == pytest.approx(100.0)
    assert row["errors"] == 0


def test_errors_are_counted_and_kept_in_the_histogram() -> None:
    """A failed request was still a wait for its user: it stays in the latencies."""
    rec = Recorder()
    rec.record(0.010)
    rec.record(2.0, "timeout")
    rec.record(0.020, "http 503")
    rec.record(0.030, "http 503")
    row = rec.summary(1.0)
    assert row["count"] == 4 and row["errors"] == 3
    assert row["error_kinds"] == {"http 503": 2, "timeout": 1}
    assert row["max_ms"] == pytest.approx(2000, rel=1e-3)


def test_out_of_range_values_are_clamped_not_lost() -> None:
    rec = Recorder()
    rec.record(2 * 3600.0)  # two hours: beyond the range
    rec.record(0.0)  # below a microsecond
    assert rec.count == 2 and rec.clamped == 1
    assert rec.percentile_s(100) == pytest.approx(3600.0, rel=1e-3)


def test_empty_recorder_reports_zeros() -> None:
    row = Recorder().summary(1.0)
    assert row["count"] == 0 and row["p99_ms"] == 0.0 and row["max_ms"] == 0.0


def test_merging_equals_recording_everything_in_one() -> None:
    """N generator processes' histograms merge into exactly the histogram of one process that
    had recorded every value: what makes multi-process runs reportable."""
    rng = random.Random(1)
    values = [rng.lognormvariate(-5, 1.5) for _ in range(20_000)]
    whole = Recorder()
    parts = [Recorder() for _ in range(4)]
    for i, v in enumerate(values):
        whole.record(v)
        parts[i % 4].record(v, "x" if i % 97 == 0 else None)
    merged = Recorder()
    for p in parts:
        merged.add(p)
    assert merged.count == whole.count
    for pct in (50, 90, 99, 99.9, 100):
        assert merged.percentile_s(pct) == whole.percentile_s(pct)
    assert merged.errors == sum(p.errors for p in parts)


def test_report_round_trips_through_json_and_merges() -> None:
    a, b = LatencyReport(duration_s=10.0), LatencyReport(duration_s=10.2)
    for i in range(100):
        a.record("home_timeline", 0.001 * (i + 1))
        b.record("home_timeline", 0.002 * (i + 1))
        b.record("post", 0.005, "http 500" if i == 0 else None)
    wire = [json.loads(json.dumps(r.to_dict())) for r in (a, b)]
    merged = LatencyReport.merge(LatencyReport.from_dict(w) for w in wire)
    assert merged.duration_s == 10.2
    rows = merged.summary()
    assert rows["home_timeline"]["count"] == 200
    assert rows["post"]["count"] == 100 and rows["post"]["errors"] == 1
    assert rows["all"]["count"] == 300
    # the processes ran side by side, so throughputs add up
    assert rows["all"]["throughput_rps"] == pytest.approx(300 / 10.2)
    assert rows["home_timeline"]["max_ms"] == pytest.approx(200, rel=1e-3)


def test_format_table_lists_every_type() -> None:
    r = LatencyReport(duration_s=1.0)
    r.record("search", 0.004)
    r.record("post", 0.012)
    text = format_table(r.summary())
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["type", "count", "errors", "req/s"]
    assert [ln.split()[0] for ln in lines[1:]] == ["post", "search", "all"]
