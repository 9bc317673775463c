"""`homefeed bench --quick`: end to end against fresh embedded servers, in under a minute."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest


@pytest.mark.slow
def test_quick_bench_prints_the_table_in_under_a_minute(tmp_path) -> None:
    out = tmp_path / "quick.json"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "homefeed", "bench", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=90)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert elapsed < 60, f"--quick took {elapsed:.1f} s"
    table = proc.stdout
    for strategy in ("pull", "push", "hybrid"):
        assert any(line.startswith(strategy) for line in table.splitlines()), table
    assert "fan-out delay" in table and "capacity req/s" in table
    assert out.exists()
