"""The capacity search and the step verdict (homefeed.bench.runner), with a modelled server
(fast, exact) and against the loopback stub server (real generator, bounded)."""

from __future__ import annotations

from typing import Any

import pytest

from homefeed.bench import runner
from homefeed.bench.hdr import LatencyReport
from homefeed.bench.loadgen import LoadResult, User
from homefeed.bench.stubserver import StubServer


def _summary(p99_ms: float, count: int, errors: int = 0) -> dict[str, dict[str, Any]]:
    row = {"count": count, "errors": errors, "p99_ms": p99_ms, "p50_ms": p99_ms / 4,
           "throughput_rps": count / 5}
    return {"home_timeline": row, "all": row}


@pytest.mark.parametrize(
    "summary, ok, why",
    [
        (_summary(10, 1000), True, ""),
        (_summary(60, 1000), False, "p99"),
        (_summary(10, 1000, errors=20), False, "errors"),
        (_summary(10, 500), False, "finished"),
        ({"all": {"count": 0}}, False, "no requests"),
    ],
)
def test_step_verdict(summary: dict, ok: bool, why: str) -> None:
    got, reason = runner.step_ok(summary, scheduled=1000, kind="home_timeline", target_ms=50)
    assert got is ok
    assert why in reason


def _fake_server(capacity: float, calls: list[float]):
    """A modelled server: p99 5 ms below ``capacity`` req/s, 500 ms above."""

    def run_workload(url, users, rate, duration_s, mix, **kw) -> LoadResult:
        calls.append(rate)
        rep = LatencyReport(duration_s=duration_s)
        lat = 0.005 if rate <= capacity else 0.5
        for _ in range(int(rate * duration_s)):
            rep.record("home_timeline", lat)
        return LoadResult(spec={}, processes=1, scheduled=int(rate * duration_s),
                          corrected=rep, service=rep)

    return run_workload


@pytest.mark.parametrize("capacity", [150.0, 1_000.0, 7_300.0])
def test_capacity_search_brackets_the_knee(monkeypatch: pytest.MonkeyPatch, capacity: float) -> None:
    calls: list[float] = []
    monkeypatch.setattr(runner, "run_workload", _fake_server(capacity, calls))
    res = runner.capacity_search("http://127.0.0.1:9", [User("a", "t")], start_rate=100,
                                 step_s=0.01 if capacity > 5000 else 0.1, max_steps=12,
                                 precision=1.1, log=lambda s: None)
    cap = res["capacity_rps"]
    assert cap <= capacity < cap * 1.1 + 1e-9 or (cap == capacity)
    # doubling first: the second step is twice the first while the first held
    assert calls[1] == 200
    assert len(res["steps"]) == len(calls) <= 12
    assert all(s["ok"] == (s["rate"] <= capacity) for s in res["steps"])


def test_capacity_search_goes_down_when_the_start_already_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(runner, "run_workload", _fake_server(30.0, calls))
    res = runner.capacity_search("http://127.0.0.1:9", [User("a", "t")], start_rate=400,
                                 step_s=1.0, max_steps=8, log=lambda s: None)
    assert calls[:2] == [400, 100]
    assert 0 < res["capacity_rps"] <= 30


def test_capacity_search_against_the_stub_is_bounded_and_holds() -> None:
    with StubServer(delay_s=0.002) as stub:
        res = runner.capacity_search(stub.url, [User("a", "t")], start_rate=40, step_s=0.5,
                                     max_steps=2, timeout_s=1, log=lambda s: None)
    # Bounded: at most max_steps steps, the first at start_rate. Each next step doubles the
    # rate after a step that held and backs off after one that did not (which a loaded
    # machine can cause: the assertion follows the outcome, it does not time anything).
    steps = res["steps"]
    assert 1 <= len(steps) <= 2 and steps[0]["rate"] == 40
    if len(steps) == 2 and steps[0]["ok"]:
        assert steps[1]["rate"] == 80
    elif len(steps) == 2:
        assert steps[1]["rate"] < 40
    held = [s["rate"] for s in steps if s["ok"]]
    if held:
        assert res["capacity_rps"] == max(held)
    row = steps[0]["summary"]["home_timeline"]
    assert row["p50_ms"] >= 2.0  # the stub's 2 ms delay is in every answer


def test_format_compare_reports_medians_and_same_run_ratios() -> None:
    def comp(pull: float, hybrid: float) -> dict:
        step = lambda r: {"rate": r, "ok": True, "summary": _summary(8, 100)}  # noqa: E731
        return {"strategies": {"pull": {"capacity_rps": pull, "steps": [step(pull)]},
                               "hybrid": {"capacity_rps": hybrid, "steps": [step(hybrid)]}},
                "ratio_vs_pull": {"pull": 1.0, "hybrid": hybrid / pull}}

    text = runner.format_compare([comp(100, 2000), comp(200, 2000), comp(100, 3000)])
    lines = {ln.split()[0]: ln for ln in text.splitlines()[1:]}
    assert "2,000" in lines["hybrid"] and "20.0x" in lines["hybrid"]
    assert "100" in lines["pull"] and "1.0x" in lines["pull"]


def test_process_cpu_time_counts_this_process_work() -> None:
    import os
    import time as _t

    before = runner.process_cpu_s(os.getpid())
    end = _t.process_time() + 0.3
    while _t.process_time() < end:
        pass
    assert runner.process_cpu_s(os.getpid()) - before >= 0.2


def test_a_failed_step_is_retried_before_it_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    flaky = _fake_server(1_000.0, calls)
    seen: set[float] = set()

    def noisy(url, users, rate, duration_s, mix, **kw):  # the first try at 400 hits a "stall"
        if rate == 400 and rate not in seen:
            seen.add(rate)
            return flaky(url, users, 10_000, duration_s, mix, **kw)
        return flaky(url, users, rate, duration_s, mix, **kw)

    monkeypatch.setattr(runner, "run_workload", noisy)
    res = runner.capacity_search("http://127.0.0.1:9", [User("a", "t")], start_rate=100, step_s=0.1,
                                 max_steps=4, retries=1, log=lambda s: None)
    assert [s["rate"] for s in res["steps"]] == [100, 200, 400, 800]
    assert all(s["ok"] for s in res["steps"])
