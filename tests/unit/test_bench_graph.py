"""Synthetic power-law follow graphs and the SNAP edge-list loader (homefeed.bench.graph)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from homefeed.bench.graph import (
    EdgeListError,
    FollowGraph,
    follower_count_pmf,
    follower_count_shift,
    load_edge_list,
    power_law_graph,
    write_edge_list,
)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def assert_simple(g: FollowGraph) -> None:
    """No self-follows, no duplicate edges, ids in range, int64 (m, 2)."""
    e = g.edges
    assert e.dtype == np.int64 and e.ndim == 2 and e.shape[1] == 2
    if len(g):
        assert e.min() >= 0 and e.max() < g.n_users
    assert not np.any(e[:, 0] == e[:, 1]), "self-follow"
    keys = e[:, 1] * g.n_users + e[:, 0]
    assert np.unique(keys).shape[0] == keys.shape[0], "duplicate edge"


def hill_exponent(counts: np.ndarray, kmin: int, shift: float) -> float:
    """Maximum-likelihood (Hill) estimate of the tail exponent of ``(k + shift) ** -a`` over
    the counts >= kmin."""
    x = counts[counts >= kmin].astype(np.float64)
    return 1.0 + x.shape[0] / np.log((x + shift) / (kmin + shift)).sum()


def _find_reed98() -> Path | None:
    name = Path("datasets/socfb-Reed98/socfb-Reed98.edges")
    repo = Path(__file__).resolve().parents[2]
    candidates = [repo.parent / "shared" / name, Path("/work/shared") / name]
    if os.environ.get("HOMEFEED_SHARED"):
        candidates.insert(0, Path(os.environ["HOMEFEED_SHARED"]) / name)
    return next((p for p in candidates if p.is_file()), None)


REED98 = _find_reed98()

# --------------------------------------------------------------------------------------------
# power_law_graph
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, exponent, max_followers, mean",
    [
        (2_000, 2.1, None, 20.0),
        (5_000, 1.6, 500, 10.0),
        (60, 2.0, 59, 20.0),  # dense: exercises sampling without replacement for big accounts
        (2, 3.0, 1, 0.3),  # the smallest graph there is
    ],
)
def test_graph_is_simple(n: int, exponent: float, max_followers: int | None, mean: float) -> None:
    g = power_law_graph(n, exponent=exponent, max_followers=max_followers,
                        mean_following=mean, seed=3)
    assert g.n_users == n
    assert_simple(g)


def test_max_followers_is_respected_and_reached() -> None:
    g = power_law_graph(5_000, exponent=1.8, max_followers=200, mean_following=10, seed=1)
    followers = g.follower_counts()
    assert followers.max() <= 200
    assert followers.max() >= 150  # a heavy tail presses against the cap


def test_deterministic_for_a_seed() -> None:
    a = power_law_graph(3_000, exponent=2.2, mean_following=15, seed=42)
    b = power_law_graph(3_000, exponent=2.2, mean_following=15, seed=42)
    c = power_law_graph(3_000, exponent=2.2, mean_following=15, seed=43)
    assert np.array_equal(a.edges, b.edges)
    assert not np.array_equal(a.edges, c.edges)


def test_mean_following_is_what_was_asked() -> None:
    n = 20_000
    for exponent in (2.5, 3.0):
        g = power_law_graph(n, exponent=exponent, mean_following=20, seed=5)
        assert len(g) / n == pytest.approx(20, rel=0.10)
        # every edge is one follow and one follower
        assert g.following_counts().sum() == g.follower_counts().sum() == len(g)


def test_top_share_grows_as_exponent_falls() -> None:
    """A heavier tail (smaller exponent) gives the top 1% of accounts more of all follows."""
    shares = [
        power_law_graph(20_000, exponent=e, mean_following=20, seed=7).top_share(0.01)
        for e in (3.0, 2.5, 2.0, 1.7)
    ]
    assert shares == sorted(shares), shares
    assert shares[0] < 0.25 and shares[-1] > 0.6, shares
    for lo, hi in zip(shares, shares[1:]):
        assert hi > lo + 0.05, shares


@pytest.mark.parametrize("exponent", [2.0, 2.5, 3.0])
def test_tail_fits_the_asked_exponent(exponent: float) -> None:
    n = 40_000
    g = power_law_graph(n, exponent=exponent, mean_following=20, seed=11)
    shift = follower_count_shift(20, n - 1, exponent)
    est = hill_exponent(g.follower_counts(), kmin=60, shift=shift)
    assert est == pytest.approx(exponent, abs=0.25)


def test_follower_counts_follow_the_stated_law() -> None:
    """The realised followers-per-user histogram matches ``follower_count_pmf`` (the law the
    generator claims to sample) for the small counts that most users have."""
    n, exponent, cap, mean = 50_000, 2.3, 5_000, 15.0
    g = power_law_graph(n, exponent=exponent, max_followers=cap, mean_following=mean, seed=2)
    pmf = follower_count_pmf(cap, exponent, follower_count_shift(mean, cap, exponent))
    observed = np.bincount(g.follower_counts(), minlength=cap + 1)
    for k in range(0, 20):
        expected = n * pmf[k]
        sigma = np.sqrt(expected * (1 - pmf[k]))
        assert abs(observed[k] - expected) < 5 * sigma + 1, (k, observed[k], expected)


def test_hundred_thousand_users_in_seconds() -> None:
    start = time.perf_counter()
    g = power_law_graph(100_000, exponent=2.1, mean_following=30, seed=1)
    elapsed = time.perf_counter() - start
    assert len(g) > 2_500_000
    assert elapsed < 20, f"{elapsed:.1f}s for {len(g)} edges"
    assert not np.any(g.edges[:, 0] == g.edges[:, 1])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_users=1),
        dict(n_users=100, exponent=1.0),
        dict(n_users=100, max_followers=100),
        dict(n_users=100, max_followers=0),
        dict(n_users=100, mean_following=0),
        dict(n_users=100, max_followers=10, mean_following=9),  # mean beyond what cap allows
    ],
)
def test_impossible_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        power_law_graph(**kwargs)


def test_iteration_yields_python_pairs() -> None:
    g = power_law_graph(100, mean_following=3, seed=0)
    pairs = list(g)
    assert len(pairs) == len(g)
    assert all(type(a) is int and type(b) is int for a, b in pairs)


# --------------------------------------------------------------------------------------------
# load_edge_list
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(REED98 is None, reason="shared/datasets/socfb-Reed98 not present")
def test_reed98_undirected() -> None:
    assert REED98 is not None
    g = load_edge_list(REED98, undirected=True)
    assert g.n_users == 962
    assert len(g) == 37_624  # 18,812 friendships, each followed both ways
    assert_simple(g)
    assert g.dropped_self_loops == 0 and g.dropped_duplicates == 0
    fwd = set(map(tuple, g.edges.tolist()))
    assert all((b, a) in fwd for a, b in fwd)
    assert np.array_equal(g.follower_counts(), g.following_counts())


@pytest.mark.skipif(REED98 is None, reason="shared/datasets/socfb-Reed98 not present")
def test_reed98_directed() -> None:
    assert REED98 is not None
    g = load_edge_list(REED98)
    assert g.n_users == 962
    assert len(g) == 18_812
    assert (1, 0) in set(map(tuple, g.edges.tolist()))  # first line "1 0": 1 follows 0


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "g.edges"
    p.write_bytes(text.encode())
    return p


def test_comments_blank_lines_and_whitespace(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "# SNAP header\n% network-repository header 3 3\n\n  1\t2 \r\n2 3\n   # indented\n"
        "3   1\n",
    )
    g = load_edge_list(p)
    assert g.n_users == 4
    assert sorted(map(tuple, g.edges.tolist())) == [(1, 2), (2, 3), (3, 1)]


def test_self_loops_and_duplicates_dropped(tmp_path: Path) -> None:
    p = write(tmp_path, "1 2\n1 2\n2 2\n2 1\n")
    directed = load_edge_list(p)
    assert sorted(map(tuple, directed.edges.tolist())) == [(1, 2), (2, 1)]
    assert directed.dropped_self_loops == 1 and directed.dropped_duplicates == 1
    undirected = load_edge_list(p, undirected=True)
    assert sorted(map(tuple, undirected.edges.tolist())) == [(1, 2), (2, 1)]
    assert undirected.dropped_self_loops == 1


def test_empty_file(tmp_path: Path) -> None:
    g = load_edge_list(write(tmp_path, "# nothing\n\n"))
    assert g.n_users == 0 and len(g) == 0


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("7", "expected 2 fields"),
        ("7 8 9", "expected 2 fields"),
        ("7 x", "not an integer"),
        ("7 1.5", "not an integer"),
        ("-7 8", "negative"),
        ("7 -8", "negative"),
        ("0x1 2", "not an integer"),
    ],
)
def test_malformed_line_is_named(tmp_path: Path, bad_line: str, reason: str) -> None:
    p = write(tmp_path, f"# header\n1 2\n\n{bad_line}\n3 4\n")
    with pytest.raises(EdgeListError) as info:
        load_edge_list(p)
    err = info.value
    assert err.line_no == 4
    assert "line 4" in str(err) and bad_line in str(err) and reason in str(err)
    assert isinstance(err, ValueError)


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    g = power_law_graph(500, mean_following=8, seed=9)
    p = tmp_path / "out.edges"
    write_edge_list(g, p, header="seed 9")
    back = load_edge_list(p)
    assert np.array_equal(back.edges, g.edges)
