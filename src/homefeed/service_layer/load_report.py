"""The load report: DDIA's "describing load", computed from this system's own records.

Load parameters (ch. 1): the distribution of followers per account, posts/s and home
timeline reads/s, and from them the fan-out: how many timeline writes a post costs. The
report then answers the question the hybrid fan-out poses: at which follower count should
an author stop being pushed and start being pulled (``celebrity_threshold``)?

For each threshold ``T`` (authors with at least ``T`` followers are celebrities):

- timeline writes per post: the followers of the authors below ``T``, weighted by how
  often each posts (``sum(posts_a * followers_a) / sum(posts_a)`` over pushed authors),
  and per second, times the posting rate;
- memory: the entries the cached home timelines hold in steady state: each account's
  timeline holds ``min(timeline_cap, inflow * inactive_days)`` ids, where ``inflow`` is
  the posts per day of the pushed accounts it follows (a timeline unread for
  ``inactive_days`` is dropped), times the bytes an entry costs in the cache backend;
- extra read work: each home read pulls the recent posts of every celebrity the reader
  follows: ``sum(followers of celebrities) / accounts`` pulls per read, times reads/s.

The recommendation minimises ``writes + PULL_COST * pulls`` per post, with ``PULL_COST``
the cost of a pull relative to one timeline insert (an assumption the report states), among
the thresholds that keep one post's fan-out under ``MAX_BURST`` timeline writes. The
real workload's reads per post is used when both are recorded; otherwise Twitter's
(300k reads/s for 4.6k posts/s, DDIA ch. 1), and the report says which.

Where the figures come from: ``users`` (counts kept by the record store), ``follows``,
``posts`` (ids are time-ordered, so "posts of the last hour" is an id range), and
``home_reads``: the durable counter that every serving process flushes each minute (see
``jobs.reads``; nothing else recorded reads per hour across processes).
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

from homefeed.service_layer.jobs.trends import id_at, id_seconds

if TYPE_CHECKING:
    from homefeed.service_layer.jobs.records import BatchReads, JobRecords
    from homefeed.service_layer.services import Homefeed

NAME = "load-report"
PERCENTILES = (50, 90, 99, 99.9)
THRESHOLDS = (10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 10_000_000)
#: One pull (a celebrity's recent posts: an index range read, merged into the page)
#: relative to one timeline insert. An assumption, stated in the report.
PULL_COST = 10.0
#: Twitter's reads per post (DDIA ch. 1: 300k home reads/s, 4.6k posts/s), used when this
#: system has not recorded both.
TWITTER_READS_PER_POST = 300_000 / 4_600
#: Bytes one cached timeline entry costs, as measured by ``benchmarks/memory_per_entry.py``
#: (full 800-id lists grown by fan-out, rounded up): Redis (a list of integers, stored as
#: listpacks: ``MEMORY USAGE`` 11.6) and the in-process cache (``array('q')``: 8.8 by
#: tracemalloc, list overhead included).
BYTES_PER_ENTRY = {"redis": 12, "memory": 9}
TOP = 10
#: The most timeline writes one post may cost (its fan-out burst): a post by an account
#: above this is pulled whatever the averages say, so that one post never occupies the
#: fan-out for long (10k Redis inserts, pipelined, take about 0.1 s). The service's default
#: threshold is this value.
MAX_BURST = 10_000


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of ascending ``sorted_values`` (0 when empty)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return int(sorted_values[rank - 1])


def _pkey(p: float) -> str:
    return f"p{p:g}"


def distribution(values: Sequence[int]) -> dict[str, Any]:
    v = sorted(values)
    out: dict[str, Any] = {"accounts": len(v), "mean": round(sum(v) / len(v), 3) if v else 0.0}
    for p in PERCENTILES:
        out[_pkey(p)] = percentile(v, p)
    out["max"] = v[-1] if v else 0
    # Accounts per decade: [0], [1, 10), [10, 100), ...
    buckets: dict[str, int] = {}
    for x in v:
        label = "0" if x == 0 else f"{10 ** int(math.log10(x)):d}-{10 ** (int(math.log10(x)) + 1) - 1:d}"
        buckets[label] = buckets.get(label, 0) + 1
    out["histogram"] = buckets
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


async def compute(hf: "Homefeed", now: float | None = None,
                  thresholds: Sequence[int] | None = None) -> dict[str, Any]:
    assert hf.job_store is not None
    return await compute_from(hf.job_store, hf.job_store, now=now, thresholds=thresholds,
                              timeline_cap=hf.settings.timeline_cap, inactive_days=hf.settings.inactive_days,
                              current_threshold=hf.settings.celebrity_threshold,
                              cache_backend=hf.cache.backend)


async def compute_from(
    store: "BatchReads", records: "JobRecords", *, now: float | None = None,
    thresholds: Sequence[int] | None = None, timeline_cap: int = 800, inactive_days: float = 14.0,
    current_threshold: int = 10_000, cache_backend: str = "memory",
) -> dict[str, Any]:
    now = time.time() if now is None else now
    users = await store.user_counts()
    n_users = len(users)
    followers = {u.id: u.followers for u in users}
    report: dict[str, Any] = {"generated_at": _iso(now), "accounts": n_users,
                              "follows": sum(u.following for u in users)}
    report["followers"] = distribution([u.followers for u in users])
    report["followers"]["top"] = [{"handle": u.handle, "followers": u.followers}
                                  for u in sorted(users, key=lambda u: (-u.followers, u.id))[:TOP]]
    report["following"] = distribution([u.following for u in users])

    # -- posts/s and home reads/s ---------------------------------------------------------
    posts_hour = await store.posts_since(id_at(now - 3600))
    posts_day = await store.posts_since(id_at(now - 86400))
    hour = int(now // 3600)
    reads = await records.home_reads(hour - 24)
    reads_hour = reads.get(hour, 0)  # the hour in progress
    elapsed = now - hour * 3600
    reads_day = sum(n for h, n in reads.items() if h > hour - 24)
    report["posts"] = {"last_hour": posts_hour, "last_day": posts_day,
                       "per_s_hour": round(posts_hour / 3600, 4), "per_s_day": round(posts_day / 86400, 4)}
    report["home_reads"] = {
        "this_hour": reads_hour, "last_day": reads_day,
        "per_s_hour": round(reads_hour / max(elapsed, 60.0), 4),
        "per_s_day": round(reads_day / 86400, 4),
        "source": "home_reads: a durable per-hour counter every serving process flushes each minute",
    }

    # -- posting frequency per author -----------------------------------------------------
    by_author = await store.author_post_counts(id_at(now - 86400))
    window_days = 1.0
    window = "last day"
    if not by_author:
        by_author = {u.id: u.posts for u in users if u.posts}
        window = "all posts (none in the last day)"
        window_days = 1.0
        async for chunk in store.public_posts_since(0):
            window_days = max(1.0, (now - id_seconds(chunk[0][0])) / 86400)
            break
    total_posts = sum(by_author.values())
    post_rate = total_posts / (window_days * 86400)  # posts/s in the window
    weighted = sum(n * followers.get(a, 0) for a, n in by_author.items())
    report["fanout"] = {
        "window": window,
        "posts": total_posts,
        "posting_accounts": len(by_author),
        "amplification": round(weighted / total_posts, 3) if total_posts else 0.0,
        "unweighted_mean_followers": report["followers"]["mean"],
    }

    # -- thresholds -----------------------------------------------------------------------
    max_f = report["followers"]["max"]
    # Up to the first threshold above the largest account: every higher one pulls nobody too.
    above = next((t for t in THRESHOLDS if t > max_f), THRESHOLDS[-1])
    ts = sorted(set(thresholds or [t for t in THRESHOLDS if t <= above]) | {current_threshold})
    rate_per_day = {a: n / window_days for a, n in by_author.items()}
    # Steady-state entries per timeline, per threshold: stream the follow edges once.
    entries = [0.0] * len(ts)
    horizon = inactive_days

    def settle(sums: list[float]) -> None:
        acc = 0.0
        for j in range(len(ts)):
            acc += sums[j]
            entries[j] += min(timeline_cap, acc * horizon)

    # Per posting author: the first threshold it is pushed at (and every higher one), and
    # its posts per day; computed once per author, not once per edge (millions of them).
    pushed_from: dict[int, tuple[int, float]] = {}
    for a, r in rate_per_day.items():
        j = _first_above(ts, followers.get(a, 0))
        if r and j < len(ts):
            pushed_from[a] = (j, r)
    current, sums = None, [0.0] * len(ts)
    async for edges in store.follow_edges():
        for u, a in edges:
            if u != current:
                if current is not None:
                    settle(sums)
                current, sums = u, [0.0] * len(ts)
            push = pushed_from.get(a)
            if push is not None:
                sums[push[0]] += push[1]
    if current is not None:
        settle(sums)

    recorded_ratio = (reads_day / posts_day) if reads_day and posts_day else None
    ratio = recorded_ratio if recorded_ratio is not None else TWITTER_READS_PER_POST
    reads_per_s = report["home_reads"]["per_s_day"] if recorded_ratio is not None else post_rate * ratio
    per_entry = BYTES_PER_ENTRY.get(cache_backend, BYTES_PER_ENTRY["memory"])
    rows = []
    for j, t in enumerate(ts):
        pushed = sum(n * followers.get(a, 0) for a, n in by_author.items() if followers.get(a, 0) < t)
        writes_per_post = pushed / total_posts if total_posts else 0.0
        celeb_edges = sum(f for f in followers.values() if f >= t)
        pulls_per_read = celeb_edges / n_users if n_users else 0.0
        cost_per_post = writes_per_post + ratio * pulls_per_read * PULL_COST
        rows.append({
            "threshold": t,
            "celebrities": sum(1 for f in followers.values() if f >= t),
            "timeline_writes_per_post": round(writes_per_post, 3),
            "timeline_writes_per_s": round(writes_per_post * post_rate, 4),
            "timeline_entries": int(entries[j]),
            "memory_bytes": int(entries[j] * per_entry),
            "extra_pulls_per_read": round(pulls_per_read, 4),
            "extra_pulls_per_s": round(pulls_per_read * reads_per_s, 4),
            "cost_per_post": round(cost_per_post, 3),
        })
    # Within the burst limit; ties (every threshold above the largest account costs the
    # same): the lowest of them.
    allowed = [r for r in rows if r["threshold"] <= MAX_BURST] or rows[:1]
    best = min(allowed, key=lambda r: (r["cost_per_post"], r["threshold"]))
    report["celebrity_thresholds"] = rows
    report["recommended_celebrity_threshold"] = best["threshold"]
    report["current_celebrity_threshold"] = current_threshold
    report["assumptions"] = {
        "pull_cost_in_timeline_inserts": PULL_COST,
        "reads_per_post": round(ratio, 3),
        "reads_per_post_source": "recorded (home_reads / posts, last day)" if recorded_ratio is not None
        else "Twitter's, DDIA ch. 1 (this system has not recorded both reads and posts in the last day)",
        "bytes_per_timeline_entry": per_entry,
        "cache_backend": cache_backend,
        "timeline_cap": timeline_cap,
        "inactive_days": inactive_days,
        "posting_window": window,
        "max_writes_per_post": MAX_BURST,
    }
    report["why"] = _why(rows, best, ratio, recorded_ratio is not None)
    return report


def _first_above(ts: Sequence[int], f: int) -> int:
    """Index of the first threshold greater than ``f`` (an author with ``f`` followers is
    pushed at that threshold and every higher one)."""
    for j, t in enumerate(ts):
        if f < t:
            return j
    return len(ts)


def _why(rows: list[dict[str, Any]], best: dict[str, Any], ratio: float, recorded: bool) -> str:
    i = rows.index(best)
    parts = [
        f"At {best['threshold']} followers, {best['celebrities']} account(s) are pulled: a post costs"
        f" {best['timeline_writes_per_post']} timeline writes and a home read"
        f" {best['extra_pulls_per_read']} extra pulls. With {ratio:.1f} reads per post"
        f" ({'recorded' if recorded else 'Twitter’s, nothing recorded here yet'}) and a pull costing"
        f" {PULL_COST:g} timeline inserts, that is the lowest total ({best['cost_per_post']} insert-equivalents"
        " per post)."
    ]
    if i > 0:
        lo = rows[i - 1]
        parts.append(f"Lowering it to {lo['threshold']} would cost {lo['cost_per_post']} (more pulls on"
                     " every read).")
    if best["celebrities"] == 0:
        parts.append("No account has that many followers: every post is pushed, which is what this"
                     " workload favours; the threshold only matters once an account grows past it.")
    elif i + 1 < len(rows):
        hi = rows[i + 1]
        if hi["threshold"] > MAX_BURST:
            parts.append(f"A higher threshold would let one post cost more than {MAX_BURST} timeline writes"
                         " (its fan-out burst), however cheap on average.")
        else:
            parts.append(f"Raising it to {hi['threshold']} would cost {hi['cost_per_post']} (more writes per"
                         f" post, {hi['memory_bytes']} bytes of timelines instead of {best['memory_bytes']}).")
    return " ".join(parts)
