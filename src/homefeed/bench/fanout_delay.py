"""Fan-out delay, measured from outside: from a post's commit to its appearance in followers'
home timelines, split by the author's follower count.

How: authors are picked in buckets of follower count (1-9, 10-99, 100-999, ...); for each,
a seeded sample of its followers are the *probes*. The probes' timelines are read once first
(an active follower has a cached timeline; fan-out skips the others, who get theirs rebuilt
on their next read). Then the author posts, and every probe polls its home timeline
(``limit=20``) until the post is there. Two delays per probe:

* ``from_id`` -- from the instant in the post's id (made just before the commit, in the
  server's clock, which is this machine's clock) to the probe's answer containing the post.
  The closest outside view of "commit to visible".
* ``from_ack`` -- from the POST's 2xx to the same answer (what a user who posted and asked a
  follower would see).

A probe that has not seen the post after ``timeout_s`` counts as ``missed`` (and is recorded
at ``timeout_s``, a lower bound). Resolution is the poll interval (default 20 ms, so that the probes themselves do not load
the server much) plus one round trip.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from homefeed.bench.server import Client, warm_timelines
from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS

__all__ = ["BUCKETS", "bucket_of", "pick_authors", "measure_fanout_delay", "format_delay"]

#: Lower edges of the follower-count buckets.
BUCKETS: tuple[int, ...] = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def bucket_of(followers: int) -> str:
    lo = max([b for b in BUCKETS if b <= followers], default=0)
    return f"{lo:,}+" if lo else "0"


def id_wall_s(id_: int) -> float:
    """The wall-clock instant (seconds since the Unix epoch) encoded in a Snowflake id."""
    return ((id_ >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS) / 1000.0


def pick_authors(db_path: str | Path, per_bucket: int, probes: int, seed: int = 3,
                 min_followers: int = 1) -> list[dict[str, Any]]:
    """Authors by bucket, with ``probes`` sampled followers each (handles), read from the
    world's SQLite file (read only)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, handle, followers_count FROM users WHERE followers_count >= ?",
            (min_followers,),
        ).fetchall()
        rng = random.Random(seed)
        by_bucket: dict[str, list[tuple[int, str, int]]] = {}
        for r in rows:
            by_bucket.setdefault(bucket_of(r[2]), []).append(r)
        out = []
        for b in sorted(by_bucket, key=lambda s: int(s.rstrip("+").replace(",", "") or 0)):
            group = by_bucket[b]
            group.sort(key=lambda r: -r[2])
            # the biggest author of the bucket always, then a seeded sample of the rest
            chosen = [group[0]] + rng.sample(group[1:], min(per_bucket - 1, len(group) - 1))
            for uid, handle, followers in chosen:
                fol = conn.execute(
                    "SELECT u.handle FROM follows f JOIN users u ON u.id = f.follower_id"
                    " WHERE f.followee_id = ?", (uid,)).fetchall()
                sample = rng.sample(fol, min(probes, len(fol)))
                out.append({"handle": handle, "followers": followers, "bucket": b,
                            "probes": [h for (h,) in sample]})
        return out
    finally:
        conn.close()


async def _probe(url: str, token: str, post_id: str, deadline: float, interval_s: float) -> float | None:
    """Poll one follower's home timeline until ``post_id`` shows; wall time seen, or None."""
    c = Client(url, timeout_s=5)
    try:
        while time.time() < deadline:
            status, body = await c.request("GET", "/v1/timelines/home?limit=20", token)
            now = time.time()
            if status == 200 and any(p["id"] == post_id for p in body["posts"]):
                return now
            await asyncio.sleep(interval_s)
        return None
    finally:
        await c.close()


async def measure_fanout_delay(
    url: str,
    authors: Sequence[dict[str, Any]],
    tokens: dict[str, str],
    *,
    posts_per_author: int = 1,
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Post as each author and probe its sampled followers; samples and percentiles by
    bucket. ``tokens``: handle -> token."""
    samples: list[dict[str, Any]] = []
    all_probes = sorted({h for a in authors for h in a["probes"]})
    await warm_timelines(url, [tokens[h] for h in all_probes])
    poster = Client(url)
    try:
        for a in authors:
            for k in range(posts_per_author):
                probes = [tokens[h] for h in a["probes"]]
                status, body = await poster.request(
                    "POST", "/v1/posts", tokens[a["handle"]], {"text": f"fanout probe {k} coffee"})
                ack = time.time()
                if status // 100 != 2:
                    log(f"    post by {a['handle']} failed: {status} {body}")
                    continue
                post_id = body["id"]
                t_id = id_wall_s(int(post_id))
                seen = await asyncio.gather(*(
                    _probe(url, tok, post_id, ack + timeout_s, interval_s) for tok in probes))
                for s in seen:
                    samples.append({
                        "author": a["handle"], "followers": a["followers"], "bucket": a["bucket"],
                        "from_id_s": (s if s is not None else ack + timeout_s) - t_id,
                        "from_ack_s": (s if s is not None else ack + timeout_s) - ack,
                        "missed": s is None,
                    })
    finally:
        await poster.close()
    return {"samples": samples, "by_bucket": summarize(samples),
            "timeout_s": timeout_s, "interval_s": interval_s}


def summarize(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    buckets: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        buckets.setdefault(s["bucket"], []).append(s)
    for b, group in buckets.items():
        v = np.asarray([s["from_id_s"] for s in group]) * 1e3
        w = np.asarray([s["from_ack_s"] for s in group]) * 1e3
        out[b] = {
            "authors": len({s["author"] for s in group}),
            "max_followers": max(s["followers"] for s in group),
            "probes": len(group),
            "missed": sum(s["missed"] for s in group),
            **{f"p{p:g}_ms": float(np.percentile(v, p)) for p in (50, 90, 99)},
            "max_ms": float(v.max()),
            "ack_p50_ms": float(np.percentile(w, 50)),
            "ack_p99_ms": float(np.percentile(w, 99)),
        }
    return out


def format_delay(by_bucket: dict[str, dict[str, Any]]) -> str:
    head = ["author followers", "authors", "probes", "missed", "p50 ms", "p90 ms", "p99 ms",
            "max ms", "from 2xx p50", "p99"]
    rows = [head]
    for b in sorted(by_bucket, key=lambda s: int(s.rstrip("+").replace(",", "") or 0)):
        r = by_bucket[b]
        rows.append([f"{b} (max {r['max_followers']:,})", str(r["authors"]), str(r["probes"]),
                     str(r["missed"])] + [f"{r[k]:.1f}" for k in
                     ("p50_ms", "p90_ms", "p99_ms", "max_ms", "ack_p50_ms", "ack_p99_ms")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def median_by_bucket(runs: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Median, over repeated runs, of each bucket's figures."""
    out: dict[str, dict[str, Any]] = {}
    for b in {b for r in runs for b in r}:
        rows = [r[b] for r in runs if b in r]
        out[b] = {k: (statistics.median([x[k] for x in rows]) if isinstance(rows[0][k], (int, float)) else rows[0][k])
                  for k in rows[0]}
        out[b]["runs"] = len(rows)
    return out
