"""The open-loop load generator (homefeed.bench.loadgen), against a local stub server.

The stub (homefeed.bench.stubserver) runs on 127.0.0.1 in a thread of the test process; every
run here is bounded (a few seconds at tens of requests per second) and stops by itself.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from pathlib import Path

import orjson
import pytest

from homefeed.bench.loadgen import (
    DEFAULT_MIX,
    WORDS,
    LoadResult,
    LoadSpec,
    User,
    check_loopback,
    load_users,
    main,
    merge_results,
    run_load_processes,
    run_load_sync,
    schedule,
)
from homefeed.bench.stubserver import StubServer

USERS = [User(f"user{i}", f"token-{i}") for i in range(20)]
TOKENS = {f"Bearer token-{i}" for i in range(20)}


# --------------------------------------------------------------------------------------------
# the schedule (pure)
# --------------------------------------------------------------------------------------------


def test_constant_schedule_is_evenly_spaced_per_type() -> None:
    spec = LoadSpec(rate=100, duration_s=10, arrival="constant",
                    mix={"home_timeline": 3, "post": 1})
    items = list(schedule(spec))
    assert [t for t, _ in items] == sorted(t for t, _ in items)
    home = [t for t, k in items if k == "home_timeline"]
    post = [t for t, k in items if k == "post"]
    assert len(home) == 750 and len(post) == 250
    assert all(abs((b - a) - 1 / 75) < 1e-9 for a, b in zip(home, home[1:]))
    assert all(0 <= t < 10 for t, _ in items)


def test_poisson_schedule_has_the_asked_rate_and_mix() -> None:
    spec = LoadSpec(rate=2_000, duration_s=10, arrival="poisson", seed=3)
    items = list(schedule(spec))
    n = len(items)
    assert abs(n - 20_000) < 5 * 20_000**0.5
    total_w = sum(DEFAULT_MIX.values())
    for kind, w in DEFAULT_MIX.items():
        share = sum(1 for _, k in items if k == kind) / n
        assert share == pytest.approx(w / total_w, abs=0.01), kind
    # exponential gaps: for a Poisson stream the gaps' std equals their mean
    home = [t for t, k in items if k == "home_timeline"]
    gaps = [b - a for a, b in zip(home, home[1:])]
    assert statistics.pstdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.1)


def test_schedule_is_deterministic_and_differs_per_process() -> None:
    spec = LoadSpec(rate=500, duration_s=2, seed=9)
    assert list(schedule(spec)) == list(schedule(spec))
    p0 = list(schedule(spec, process_index=0, processes=2))
    p1 = list(schedule(spec, process_index=1, processes=2))
    assert p0 != p1
    assert abs(len(p0) + len(p1) - 1_000) < 5 * 1_000**0.5


def test_constant_schedules_of_processes_interleave() -> None:
    spec = LoadSpec(rate=40, duration_s=1, arrival="constant", mix={"search": 1})
    one = [t for t, _ in schedule(spec)]
    split = sorted(
        t for i in range(4) for t, _ in schedule(spec, process_index=i, processes=4)
    )
    assert len(split) == len(one) == 40
    assert split == pytest.approx(one)


def test_max_requests_caps_the_schedule() -> None:
    spec = LoadSpec(rate=1_000, duration_s=10, max_requests=123)
    assert len(list(schedule(spec))) == 123
    split = [len(list(schedule(spec, process_index=i, processes=2))) for i in range(2)]
    assert sum(split) == 123


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8080",
        "http://192.168.1.10/",
        "http://8.8.8.8/",
        "http://example.com/",
        "http://127.0.0.1.example.com/",
        "https://127.0.0.1/",
        "http://[2001:db8::1]/",
        "http://0.0.0.0:8080",
    ],
)
def test_only_loopback_targets_are_accepted(url: str) -> None:
    with pytest.raises(ValueError):
        check_loopback(url)
    with pytest.raises(ValueError):
        run_load_sync(LoadSpec(url=url, rate=1, duration_s=0.1), USERS)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://127.3.2.1/", "http://[::1]:9", "http://localhost:1"]
)
def test_loopback_targets_are_accepted(url: str) -> None:
    host, port = check_loopback(url)
    assert port > 0 and host


@pytest.mark.parametrize(
    "changes",
    [dict(rate=0), dict(duration_s=float("inf")), dict(mix={"nope": 1}),
     dict(mix={"post": 0}), dict(max_connections=0)],
)
def test_unbounded_or_meaningless_specs_are_refused(changes: dict) -> None:
    with pytest.raises(ValueError):
        LoadSpec(**changes).validate()


# --------------------------------------------------------------------------------------------
# against a stub server
# --------------------------------------------------------------------------------------------


def test_open_loop_rate_is_kept_whatever_the_latency() -> None:
    """Each response takes 200 ms; requests still leave at 50/s for 2 s: ~100 sent, spread
    evenly over the 2 s, not the ~10/s a one-connection closed loop would manage."""
    with StubServer(delay_s=0.2) as stub:
        spec = LoadSpec(url=stub.url, rate=50, duration_s=2.0, arrival="constant")
        start = time.perf_counter()
        result = run_load_sync(spec, USERS)
        wall = time.perf_counter() - start
        arrivals = list(stub.arrivals)

    assert 98 <= result.scheduled <= 102
    assert result.sent == result.scheduled == len(arrivals)
    rows = result.corrected.summary()
    assert rows["all"]["count"] == result.scheduled and rows["all"]["errors"] == 0
    assert 195 <= rows["all"]["p50_ms"] <= 300  # latency did not pile up: it stayed ~200 ms
    assert wall < 2.0 + 0.2 + 0.8
    # the arrivals are spread over the schedule, not bunched by latency
    times = sorted(a.at for a in arrivals)
    first_half = sum(1 for t in times if t < times[0] + 1.0)
    assert 40 <= first_half <= 60
    assert times[-1] - times[0] == pytest.approx(2.0, abs=0.15)


def test_poisson_arrivals_at_the_asked_rate() -> None:
    with StubServer(delay_s=0.2) as stub:
        spec = LoadSpec(url=stub.url, rate=200, duration_s=1.0, arrival="poisson", seed=4)
        result = run_load_sync(spec, USERS)
        count = stub.count
    assert abs(result.scheduled - 200) < 5 * 200**0.5
    assert count == result.sent == result.scheduled


def test_requests_hit_the_homefeed_endpoints_as_the_given_users() -> None:
    with StubServer() as stub:
        spec = LoadSpec(url=stub.url, rate=200, duration_s=1.0, arrival="constant",
                        mix={"home_timeline": 1, "post": 1, "user_timeline": 1, "search": 1})
        result = run_load_sync(spec, USERS)
        arrivals = list(stub.arrivals)
    assert result.corrected.total().errors == 0
    seen = set()
    handles = {u.handle for u in USERS}
    for a in arrivals:
        assert a.headers["authorization"] in TOKENS
        if a.method == "POST":
            assert a.path == "/v1/posts"
            assert a.headers["content-type"] == "application/json"
            text = orjson.loads(a.body)["text"]
            assert text and all(w in WORDS for w in text.split())
            seen.add("post")
        elif a.path == "/v1/timelines/home?limit=20":
            seen.add("home_timeline")
        elif a.path.startswith("/v1/users/"):
            handle, rest = a.path[len("/v1/users/"):].split("/", 1)
            assert handle in handles and rest == "posts?limit=20"
            seen.add("user_timeline")
        else:
            assert a.path.startswith("/v1/search/posts?q=")
            assert a.path.split("=", 1)[1] in WORDS
            seen.add("search")
    assert seen == {"home_timeline", "post", "user_timeline", "search"}


@pytest.mark.serial  # its p50/p99 bounds are of a 100 req/s load: run alone, not beside 2 other tests
def test_coordinated_omission_is_corrected() -> None:
    """The stub stops the world for 1 s once. With one connection, a closed-loop view
    (service time from send) sees a single slow request and a fine p99; timing from the due
    time charges the ~100 requests that were due during the stall, and p99 shows it."""
    with StubServer(stall_at_request=80, stall_s=1.0) as stub:
        spec = LoadSpec(url=stub.url, rate=100, duration_s=2.5, arrival="constant",
                        max_connections=1)
        result = run_load_sync(spec, USERS)

    assert result.sent == result.scheduled  # every due request was still sent
    corrected = result.corrected.summary()["all"]
    naive = result.service.summary()["all"]
    assert corrected["count"] == naive["count"] == result.scheduled
    assert corrected["errors"] == 0
    assert corrected["p99_ms"] > 700
    assert naive["p99_ms"] < 150
    assert corrected["p99_ms"] > 5 * naive["p99_ms"]
    # both saw the one stalled request itself
    assert naive["max_ms"] > 900 and corrected["max_ms"] > 900
    # and the corrected median is fine: the stall is in the tail, not everywhere
    assert corrected["p50_ms"] < 100


def test_http_errors_are_counted_by_kind() -> None:
    with StubServer(status=503) as stub:
        result = run_load_sync(LoadSpec(url=stub.url, rate=50, duration_s=0.5), USERS)
    row = result.corrected.summary()["all"]
    assert row["count"] == result.scheduled > 0
    assert row["errors"] == row["count"]
    assert row["error_kinds"] == {"http 503": row["count"]}


def test_connection_refused_is_an_error_not_a_crash() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the run: nothing listens
    result = run_load_sync(LoadSpec(url=f"http://127.0.0.1:{port}", rate=40, duration_s=0.5),
                           USERS)
    row = result.corrected.summary()["all"]
    assert row["count"] == result.scheduled > 0 and row["errors"] == row["count"]
    assert result.sent == 0


def test_a_hung_server_cannot_keep_the_generator_running() -> None:
    """Requests time out ``request_timeout_s`` after they were due; whatever is left at the
    end of the drain is given up and counted. The run ends on its own, on time."""
    with StubServer(stall_at_request=1, stall_s=5.0) as stub:
        spec = LoadSpec(url=stub.url, rate=20, duration_s=1.0, request_timeout_s=0.5,
                        drain_timeout_s=0.3)
        start = time.perf_counter()
        result = run_load_sync(spec, USERS)
        wall = time.perf_counter() - start
    row = result.corrected.summary()["all"]
    assert wall < 1.0 + 0.3 + 0.5
    assert row["count"] == result.scheduled and row["errors"] == row["count"]
    assert set(row["error_kinds"]) <= {"timeout", "unfinished"}


def test_processes_share_the_rate_and_merge() -> None:
    with StubServer(delay_s=0.01) as stub:
        spec = LoadSpec(url=stub.url, rate=100, duration_s=1.0, arrival="constant",
                        mix={"home_timeline": 1})
        # (a process that starts late only dispatches late: the counts below still hold)
        result = run_load_processes(spec, USERS, processes=2, start_delay_s=1.0)
        count = stub.count
    assert result.processes == 2
    assert result.scheduled == 100 == count == result.sent
    assert result.spec["rate"] == pytest.approx(100)
    assert result.corrected.summary()["all"]["count"] == 100
    # a result survives JSON, and merging it with itself doubles the counts
    back = LoadResult.from_dict(json.loads(json.dumps(result.to_dict())))
    double = merge_results([back, back])
    assert double.corrected.summary()["all"]["count"] == 200
    assert double.spec["rate"] == pytest.approx(200)


def test_command_line_run_and_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"handle": u.handle, "token": u.token} for u in USERS]))
    out = tmp_path / "r.json"
    with StubServer() as stub:
        code = main(["--url", stub.url, "--users", str(users), "--rate", "40",
                     "--duration", "0.5", "--arrival", "constant", "--out", str(out),
                     "--mix", "home_timeline=1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "coordinated omission corrected" in printed and "home_timeline" in printed
    data = json.loads(out.read_text())
    assert data["scheduled"] == 20
    assert main(["merge", str(out), str(out), "--out", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["scheduled"] == 40
    assert main(["--url", "http://10.1.2.3", "--users", str(users)]) == 2


def test_users_file_formats(tmp_path: Path) -> None:
    j = tmp_path / "u.json"
    j.write_text('[{"handle": "ann", "token": "t1"}, {"handle": "bo", "token": "t2"}]')
    t = tmp_path / "u.txt"
    t.write_text("# handle token\nann t1\n\nbo\tt2\n")
    assert load_users(j) == load_users(t) == [User("ann", "t1"), User("bo", "t2")]
    bad = tmp_path / "bad.txt"
    bad.write_text("ann\n")
    with pytest.raises(ValueError, match="line 1"):
        load_users(bad)
