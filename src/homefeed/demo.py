"""``homefeed demo``: a fresh data dir holding a demo world, with a power-law follower
distribution so that a few accounts are celebrities (pulled at read time)."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from pathlib import Path

from tqdm import tqdm

from homefeed.bench.graph import power_law_graph
from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS
from homefeed.service_layer.batch import rebuild_search
from homefeed.service_layer.services import hash_token

ADJECTIVES = "amber brave calm dusty eager fuzzy gentle happy icy jolly keen lucky mellow noble odd proud quiet rapid shy tidy witty young zesty bold".split()
NOUNS = "fox owl lynx otter heron badger finch koala panda raven seal tiger whale yak zebra moth crane bison gecko lemur".split()
WORDS = (
    "coffee morning deploy rust python sqlite postgres redis timeline cache fanout latency "
    "weekend music garden rain sunset code review coffee bug release train book movie cat "
    "dog pizza tea bike hike ocean city night build test ship design data stream index"
).split()
TAGS = ["#rust", "#python", "#ddia", "#coffee", "#music", "#launch", "#weekend", "#sqlite"]


def _handle(i: int) -> str:
    return f"{ADJECTIVES[i % len(ADJECTIVES)]}_{NOUNS[(i // len(ADJECTIVES)) % len(NOUNS)]}_{i}"


def _text(rng: random.Random, handles: list[str]) -> str:
    words = rng.choices(WORDS, k=rng.randint(4, 14))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words) + 1), rng.choice(TAGS))
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words) + 1), "@" + rng.choice(handles))
    return " ".join(words).capitalize()


def load_demo(settings: Settings, users: int = 10_000, posts: int = 50_000, reset: bool = False) -> str:
    """Load the demo world (unless the data dir already holds one); returns a curl line with
    ``{base}`` left to fill."""
    return asyncio.run(_load(settings, users, posts, reset))


async def _load(settings: Settings, n_users: int, n_posts: int, reset: bool) -> str:
    db_path = settings.database_path
    tokens_path = Path(settings.data_dir) / "demo-tokens.tsv"
    if reset:
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
    hf = build(settings)
    await hf.start(run_consumers=False)
    try:
        existing = await hf.store.count_users()
        if existing and tokens_path.exists():
            handle, token = tokens_path.read_text().splitlines()[0].split("\t")
            print(f"{db_path} already holds a world ({existing} users); --reset reloads it")
            return _curl(token)
        if existing:
            raise SystemExit(f"{db_path} already holds data that is not a demo world; use another --data-dir")

        rng = random.Random(42)
        graph = power_law_graph(n_users, exponent=2.1, mean_following=30, seed=42)
        now_ms = int(time.time() * 1000) - EPOCH_MS
        span_ms = 30 * 86400 * 1000
        shift = NODE_BITS + SEQ_BITS
        uid = lambda i: ((now_ms - span_ms - 1000 + i) << shift) | 1  # noqa: E731

        handles = [_handle(i) for i in range(n_users)]
        handles[0] = "demo"
        tokens = [secrets.token_urlsafe(32) for _ in range(n_users)]
        users = [(uid(i), handles[i], handles[i].replace("_", " ").title(), hash_token(tokens[i]))
                 for i in range(n_users)]
        follows = [(uid(a), uid(b), uid(a) + 2 + k) for k, (a, b) in enumerate(graph)]
        # The demo user follows the most followed accounts and a few ordinary ones.
        counts = graph.follower_counts()
        top = sorted(range(n_users), key=lambda i: -counts[i])[:10]
        follows += [(uid(0), uid(b), uid(0) + 10_000_000 + b) for b in top + rng.sample(range(1, n_users), 40) if b != 0]
        # Active accounts post more: weight authors by their follower count (plus one).
        weights = [c + 1 for c in counts.tolist()]
        authors = rng.choices(range(n_users), weights=weights, k=n_posts)
        stamps = sorted(rng.sample(range(span_ms), n_posts))  # distinct ms: distinct ids
        post_rows = [
            (((now_ms - span_ms + t) << shift) | (2 << SEQ_BITS) | (k & 0xFFF), uid(a), _text(rng, handles))
            for k, (t, a) in enumerate(zip(stamps, authors))
        ]
        with tqdm(total=3, desc="loading records", unit="step") as bar:
            await hf.store.bulk_load(users, follows, post_rows)
            bar.update(3)
        with tqdm(total=n_posts, desc="indexing posts", unit="post") as bar:
            await rebuild_search(hf, bar.update)
        tokens_path.parent.mkdir(parents=True, exist_ok=True)
        tokens_path.write_text("".join(f"{h}\t{t}\n" for h, t in zip(handles, tokens)))
        celebs = int((counts >= settings.celebrity_threshold).sum())
        print(
            f"demo world: {n_users} users, {len(follows)} follows, {n_posts} posts; "
            f"{celebs} celebrities (>= {settings.celebrity_threshold} followers); "
            f"tokens of every user in {tokens_path}"
        )
        return _curl(tokens[0])
    finally:
        await hf.close()


def _curl(token: str) -> str:
    return f"curl -s -H 'Authorization: Bearer {token}' '{{base}}/v1/timelines/home?limit=5'"
