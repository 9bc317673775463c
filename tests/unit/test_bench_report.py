"""Reporting: the micro-benchmark table and the PNG charts."""

from __future__ import annotations

from pathlib import Path

from homefeed.bench.micro import format_micro, sqlite_ceiling


def test_micro_table_puts_each_block_beside_its_ceiling_and_says_what_was_skipped() -> None:
    text = format_micro({
        "post_ingest_sqlite": {"posts_per_s": 20_000.0},
        "sqlite_ceiling": {"single_row_commits_per_s": 5_000.0, "rows_per_s_in_512_row_commits": 400_000.0},
        "postgres": {"skipped": "OperationalError: connection refused"},
    })
    lines = text.splitlines()
    ingest = next(ln for ln in lines if "single-row" in ln)
    assert "20,000" in ingest and "5,000" in ingest and "400%" in ingest
    assert "skipped: OperationalError" in next(ln for ln in lines if "PostgreSQL" in ln)


def test_sqlite_ceiling_measures_commits(tmp_path: Path) -> None:
    got = sqlite_ceiling(tmp_path, budget_s=0.2)
    assert got["single_row_commits_per_s"] > 10
    assert got["rows_per_s_in_512_row_commits"] > got["single_row_commits_per_s"]


def test_charts_are_pngs(tmp_path: Path) -> None:
    from homefeed.bench.charts import fanout_delay_chart, latency_vs_load

    row = lambda p99: {"home_timeline": {"p50_ms": p99 / 3, "p99_ms": p99}, "all": {}}  # noqa: E731
    comp = {"target_p99_ms": 50, "strategies": {
        s: {"steps": [{"rate": r, "ok": True, "summary": row(r / k)} for r in (100, 200, 400)]}
        for s, k in (("pull", 5), ("hybrid", 50))}}
    a = latency_vs_load([comp], tmp_path / "lat.png")
    samples = [{"followers": f, "from_id_s": f / 1e5} for f in (3, 30, 300, 3000)]
    b = fanout_delay_chart({"hybrid": [{"samples": samples}]}, tmp_path / "fan.png")
    for p in (a, b):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5_000
