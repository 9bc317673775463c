"""Fan-out delay (homefeed.bench.fanout_delay) and the bench's server handling: the helpers,
then a real measurement against a tiny world on a fresh embedded server, which must be
stopped afterwards."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from homefeed.bench.fanout_delay import bucket_of, id_wall_s, pick_authors, measure_fanout_delay, summarize
from homefeed.bench.server import ServerProcess, copy_world
from homefeed.bench.world import WorldSpec, make_world, read_tokens
from homefeed.config import Settings
from homefeed.domain.ids import IdGenerator


@pytest.mark.parametrize("n, bucket", [(0, "0"), (1, "1+"), (9, "1+"), (10, "10+"), (999, "100+"),
                                       (1_000_000, "1,000,000+"), (12_345_678, "1,000,000+")])
def test_buckets(n: int, bucket: str) -> None:
    assert bucket_of(n) == bucket


def test_id_time_is_the_wall_clock_of_its_making() -> None:
    before = time.time()
    i = IdGenerator(node=3).next_id()
    after = time.time()
    assert before - 0.002 <= id_wall_s(i) <= after + 0.002


def test_summary_percentiles_and_misses() -> None:
    samples = [{"author": "a", "followers": 50, "bucket": "10+", "from_id_s": k / 1000,
                "from_ack_s": k / 2000, "missed": k == 100} for k in range(1, 101)]
    s = summarize(samples)["10+"]
    assert s["probes"] == 100 and s["missed"] == 1 and s["authors"] == 1
    assert s["p50_ms"] == pytest.approx(50.5, abs=0.6)
    assert s["max_ms"] == pytest.approx(100)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("world")
    make_world(Settings(data_dir=d, celebrity_threshold=100),
               WorldSpec(users=300, mean_following=10, posts=600, seed=4, star_followers=150),
               quiet=True)
    return d


def test_authors_are_picked_per_bucket_with_their_followers(tiny_world: Path) -> None:
    authors = pick_authors(tiny_world / "homefeed.db", per_bucket=2, probes=4)
    buckets = {a["bucket"] for a in authors}
    assert {"1+", "10+", "100+"} <= buckets
    import sqlite3

    with sqlite3.connect(tiny_world / "homefeed.db") as conn:
        most = conn.execute("SELECT max(followers_count) FROM users").fetchone()[0]
        star = conn.execute("SELECT followers_count FROM users WHERE handle = 'u0'").fetchone()[0]
    assert star >= 150
    top = max(authors, key=lambda a: a["followers"])  # each bucket's biggest is always picked
    assert top["followers"] == most and len(top["probes"]) == 4


@pytest.mark.parametrize("strategy", ["hybrid", "push"])
def test_fanout_delay_is_measured_from_outside(tiny_world: Path, tmp_path: Path, strategy: str) -> None:
    authors = pick_authors(tiny_world / "homefeed.db", per_bucket=1, probes=3)
    tokens = dict(read_tokens(tiny_world / "tokens.tsv"))
    run = copy_world(tiny_world, tmp_path / "run")
    server = ServerProcess(run, env={"HOMEFEED_FEED_STRATEGY": strategy,
                                     "HOMEFEED_CELEBRITY_THRESHOLD": "100"})
    with server:
        res = asyncio.run(measure_fanout_delay(server.url, authors, tokens, timeout_s=5))
    assert server.proc is not None and server.proc.poll() is not None  # stopped
    samples = res["samples"]
    assert len(samples) == sum(len(a["probes"]) for a in authors)
    assert not any(s["missed"] for s in samples)
    # seen after the post was made, well within the timeout
    assert all(0 < s["from_id_s"] < 5 and s["from_ack_s"] < s["from_id_s"] for s in samples)
