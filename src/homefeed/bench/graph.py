"""Social graphs for load tests: synthetic power-law follow graphs, and real ones (SNAP files).

Why power law: the cost of hybrid fan-out is driven by the *followers-per-user* distribution.
On Twitter a tiny share of accounts holds a large share of all follows (some have tens of
millions of followers), which is exactly why homefeed pulls celebrities' posts at read time
instead of pushing them. A benchmark on a graph where everybody has ~75 followers would never
exercise that path, so the generator draws followers-per-user from a heavy-tailed law whose
exponent and maximum are knobs, and whose mean is the average follow count asked for.

The law: follower count ``k = 0, 1, 2, ... max_followers`` with probability proportional to
the mass of the shifted Pareto (Lomax) density ``(x + k0) ** -exponent`` over ``[k, k+1)``.
Its tail is a power law of the asked ``exponent`` (a smaller exponent = a heavier tail = more
of the follows held by the few); the shift ``k0`` lets most users have few or no followers,
as in real networks, and is solved for so that the mean follower count (= the mean following
count, since every edge has one of each) equals ``mean_following``.

Who follows whom: each user's followers are drawn uniformly from everybody else, without
repeats. So following counts are roughly Poisson around the mean (Twitter caps how many one
may follow; it does not cap followers), and there are no self-follows or duplicate edges.

Edges are a numpy ``int64`` array of shape ``(m, 2)``: column 0 the follower, column 1 the
followee. numpy earns its place here: a pure-Python generator spends ~1 µs per edge in the
interpreter, i.e. tens of seconds for the few million edges of a 100k-user graph; vectorised,
that graph takes about a second. Output is deterministic for a given seed and numpy version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = [
    "EdgeListError",
    "FollowGraph",
    "follower_count_pmf",
    "follower_count_shift",
    "load_edge_list",
    "power_law_graph",
    "write_edge_list",
]

#: Above this share of the other users, a followee's followers are drawn by sampling without
#: replacement directly; below it, by the vectorised draw-then-deduplicate rounds (whose
#: collision rate is at most this share, so they converge in a few rounds).
_DIRECT_SAMPLE_SHARE = 0.05


class EdgeListError(ValueError):
    """A malformed line in an edge-list file. The message names the file, the line number
    (1-based) and the line's content, so the bad line can be found and fixed by hand."""

    def __init__(self, path: str | Path, line_no: int, line: str, reason: str) -> None:
        self.path = str(path)
        self.line_no = line_no
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}: line {line_no}: {reason}: {line!r}")


@dataclass(frozen=True)
class FollowGraph:
    """A directed follow graph on users ``0 .. n_users - 1``.

    ``edges[i] = (follower, followee)``. No self-follows, no duplicate edges (both generator
    and loader guarantee it). ``dropped_self_loops`` and ``dropped_duplicates`` say what the
    loader removed from its input to get there (always 0 for a generated graph).
    """

    n_users: int
    edges: np.ndarray
    dropped_self_loops: int = 0
    dropped_duplicates: int = 0

    def __len__(self) -> int:
        return int(self.edges.shape[0])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Edges as plain ``(follower, followee)`` int pairs, e.g. to feed a follow API."""
        for a, b in self.edges.tolist():
            yield a, b

    def follower_counts(self) -> np.ndarray:
        """Followers per user (the in-degree): ``counts[u]`` is how many follow ``u``."""
        return np.bincount(self.edges[:, 1], minlength=self.n_users)

    def following_counts(self) -> np.ndarray:
        """Follows per user (the out-degree): ``counts[u]`` is how many ``u`` follows."""
        return np.bincount(self.edges[:, 0], minlength=self.n_users)

    def top_share(self, fraction: float = 0.01) -> float:
        """Share of all follows held by the most-followed ``fraction`` of users (at least one
        user). The headline number of a skewed graph: on Twitter the top 1% hold most."""
        counts = np.sort(self.follower_counts())[::-1]
        top = max(1, int(round(self.n_users * fraction)))
        total = int(counts.sum())
        return float(counts[:top].sum()) / total if total else 0.0


# --------------------------------------------------------------------------------------------
# The degree law
# --------------------------------------------------------------------------------------------


def _lomax_cdf(x: np.ndarray | float, k0: float, exponent: float) -> np.ndarray | float:
    """CDF on [0, inf) of the density proportional to ``(x + k0) ** -exponent``, exponent > 1."""
    return 1.0 - (1.0 + np.asarray(x, dtype=np.float64) / k0) ** (1.0 - exponent)


def follower_count_pmf(max_followers: int, exponent: float, k0: float) -> np.ndarray:
    """``pmf[k]`` = probability of exactly ``k`` followers, ``k = 0 .. max_followers``.

    It is the shifted-Pareto mass over ``[k, k + 1)``, truncated to ``[0, max_followers + 1)``
    and renormalised: what ``power_law_graph`` samples (by inverse CDF, then floor).
    """
    edges = np.arange(max_followers + 2, dtype=np.float64)
    cdf = _lomax_cdf(edges, k0, exponent)
    pmf = np.diff(cdf)
    return pmf / pmf.sum()


def follower_count_shift(mean: float, max_followers: int, exponent: float) -> float:
    """The shift ``k0`` that makes the truncated law's mean equal ``mean`` (public so that a
    test or a report can state the exact law a graph was drawn from).

    The mean grows monotonically with ``k0`` (a bigger shift flattens the law towards uniform
    on ``0..max``, whose mean is ``max / 2``), so bisection on ``log k0`` finds it.
    """
    ks = np.arange(max_followers + 1, dtype=np.float64)

    def mean_of(k0: float) -> float:
        return float(ks @ follower_count_pmf(max_followers, exponent, k0))

    lo, hi = math.log(1e-9), math.log(1e12)
    if not (mean_of(math.exp(lo)) < mean < mean_of(math.exp(hi))):
        raise ValueError(
            f"mean_following={mean} cannot be reached with max_followers={max_followers} and "
            f"exponent={exponent}: it must lie between {mean_of(math.exp(lo)):.3g} and "
            f"{mean_of(math.exp(hi)):.3g} (raise max_followers or lower mean_following)"
        )
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mean_of(math.exp(mid)) < mean:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return math.exp(0.5 * (lo + hi))


def _sample_follower_counts(
    rng: np.random.Generator, n: int, max_followers: int, exponent: float, k0: float
) -> np.ndarray:
    """Draw ``n`` follower counts: inverse CDF of the truncated shifted Pareto, floored."""
    top = _lomax_cdf(float(max_followers + 1), k0, exponent)
    u = rng.random(n) * top
    x = k0 * ((1.0 - u) ** (1.0 / (1.0 - exponent)) - 1.0)
    return np.minimum(np.floor(x).astype(np.int64), max_followers)


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


def power_law_graph(
    n_users: int,
    exponent: float = 2.1,
    max_followers: int | None = None,
    mean_following: float = 75.0,
    seed: int = 0,
) -> FollowGraph:
    """A directed follow graph whose followers-per-user follow a power law.

    Args:
        n_users: number of users, ids ``0 .. n_users - 1``.
        exponent: tail exponent of the followers-per-user law, ``P(k) ~ k ** -exponent``;
            must be > 1. Measured social networks sit around 2 to 2.5; lower it for a
            heavier tail (a larger share of all follows held by the top accounts).
        max_followers: the most followers any one user may have (at most ``n_users - 1``,
            which is also the default). Twitter's largest account had ~10% of all users.
        mean_following: the average number of follows per user (= average followers per
            user). DDIA quotes ~75 for Twitter.
        seed: the same seed gives the same graph (with the same numpy version).

    Returns:
        A ``FollowGraph``; ``len(graph)`` is about ``n_users * mean_following``.

    Raises:
        ValueError: on arguments no graph can satisfy.
    """
    if n_users < 2:
        raise ValueError("n_users must be at least 2")
    if not exponent > 1.0:
        raise ValueError("exponent must be > 1 (the tail must be normalisable)")
    cap = n_users - 1 if max_followers is None else int(max_followers)
    if not 1 <= cap <= n_users - 1:
        raise ValueError(f"max_followers must be in 1 .. n_users - 1 = {n_users - 1}")
    if not mean_following > 0:
        raise ValueError("mean_following must be > 0")

    rng = np.random.default_rng(seed)
    k0 = follower_count_shift(float(mean_following), cap, float(exponent))
    degrees = _sample_follower_counts(rng, n_users, cap, float(exponent), k0)

    others = n_users - 1
    big = degrees > _DIRECT_SAMPLE_SHARE * others
    parts: list[np.ndarray] = []

    # Heavily followed users (few): choose their followers without replacement directly.
    for followee in np.flatnonzero(big).tolist():
        d = int(degrees[followee])
        followers = rng.choice(others, size=d, replace=False).astype(np.int64)
        followers += followers >= followee  # skip self: map 0..n-2 onto everyone but followee
        parts.append(followee * np.int64(n_users) + followers)

    # Everybody else: draw with replacement, drop repeats, redraw what is missing.
    small_deg = np.where(big, 0, degrees)
    parts.append(_draw_distinct(rng, n_users, small_deg))

    keys = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    keys.sort()  # by followee, then follower: a stable, seed-determined order
    edges = np.empty((keys.shape[0], 2), dtype=np.int64)
    edges[:, 1], edges[:, 0] = np.divmod(keys, n_users)
    return FollowGraph(n_users=n_users, edges=edges)


def _draw_distinct(rng: np.random.Generator, n: int, need: np.ndarray) -> np.ndarray:
    """For each followee ``u``, ``need[u]`` distinct followers other than ``u``, as edge keys
    ``followee * n + follower``. Every ``need[u]`` is small relative to ``n``, so each round of
    draws collides rarely and the loop ends after a handful of rounds."""
    have = np.empty(0, dtype=np.int64)
    missing = need.astype(np.int64)
    for _ in range(1000):
        total = int(missing.sum())
        if total == 0:
            return have
        followee = np.repeat(np.arange(n, dtype=np.int64), missing)
        follower = rng.integers(0, n - 1, size=total, dtype=np.int64)
        follower += follower >= followee
        have = _sorted_unique(np.concatenate([have, followee * n + follower]))
        got = np.bincount(have // n, minlength=n)
        missing = need - got
    raise RuntimeError("could not draw distinct followers (degrees too close to n_users)")


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """The distinct values of ``keys``, sorted (sorts ``keys`` in place).

    Not ``np.unique``: numpy 2.x may pick a hash-based path that is ~10x slower than a sort
    on millions of int64 keys."""
    keys.sort()
    if keys.shape[0] == 0:
        return keys
    keep = np.empty(keys.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


# --------------------------------------------------------------------------------------------
# SNAP edge lists
# --------------------------------------------------------------------------------------------


def load_edge_list(path: str | Path, undirected: bool = False) -> FollowGraph:
    """Read a SNAP-style edge list: one ``a b`` pair a line, whitespace-separated.

    Lines that are blank or whose first non-blank character is ``#`` or ``%`` are comments
    (SNAP uses ``#``, the Network Repository ``%``). Ids must be non-negative integers; users
    are ``0 .. max id``, so ``n_users = max id + 1`` (SNAP ids are often dense; sparse ids
    just leave users with no edges).

    Directed (default): ``a b`` means ``a`` follows ``b``. Undirected: each line is a mutual
    friendship, so ``a`` follows ``b`` and ``b`` follows ``a``. Either way self-loops and
    repeated edges are dropped (one cannot follow oneself, and a follow is a set membership);
    the counts dropped are kept on the result.

    Raises:
        EdgeListError: for a line with other than two fields, or a field that is not a
            non-negative integer; names the line number and content.
        OSError: if the file cannot be read.
    """
    src: list[int] = []
    dst: list[int] = []
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for line_no, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line[0] in "#%":
                continue
            fields = line.split()
            if len(fields) != 2:
                raise EdgeListError(
                    path, line_no, line, f"expected 2 fields (a b), got {len(fields)}"
                )
            a, b = fields
            for tok in (a, b):
                if not (tok.isascii() and tok.isdigit()):
                    if tok.startswith("-") and tok[1:].isascii() and tok[1:].isdigit():
                        raise EdgeListError(path, line_no, line, f"negative id {tok}")
                    raise EdgeListError(path, line_no, line, f"not an integer id: {tok!r}")
            src.append(int(a))
            dst.append(int(b))

    a_arr = np.asarray(src, dtype=np.int64)
    b_arr = np.asarray(dst, dtype=np.int64)
    n_users = int(max(a_arr.max(initial=-1), b_arr.max(initial=-1))) + 1
    if undirected:
        a_arr, b_arr = np.concatenate([a_arr, b_arr]), np.concatenate([b_arr, a_arr])
    loops = a_arr == b_arr
    n_loops = int(loops.sum())
    if undirected:
        n_loops //= 2  # a self-loop line was doubled above; count it once, as in the file
    a_arr, b_arr = a_arr[~loops], b_arr[~loops]
    if n_users == 0:
        return FollowGraph(0, np.empty((0, 2), dtype=np.int64), n_loops, 0)
    keys = b_arr * n_users + a_arr
    uniq = _sorted_unique(keys.copy())
    edges = np.empty((uniq.shape[0], 2), dtype=np.int64)
    edges[:, 1], edges[:, 0] = np.divmod(uniq, n_users)
    return FollowGraph(
        n_users=n_users,
        edges=edges,
        dropped_self_loops=n_loops,
        dropped_duplicates=int(keys.shape[0] - uniq.shape[0]),
    )


def write_edge_list(graph: FollowGraph, path: str | Path, header: str | None = None) -> None:
    """Write ``graph`` as a directed SNAP edge list (``follower followee`` lines), so that a
    generated graph can be kept, inspected, and read back with ``load_edge_list``."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"# homefeed follow graph: {graph.n_users} users, {len(graph)} follows\n")
        if header:
            for line in header.splitlines():
                fh.write(f"# {line}\n")
        fh.write("# follower followee\n")
        np.savetxt(fh, graph.edges, fmt="%d")
