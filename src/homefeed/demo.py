"""``homefeed demo``: a fresh data dir holding a demo world, with a power-law follower
distribution so that a few accounts are celebrities (pulled at read time).

The world is made by the bench's world loader (``homefeed.bench.world``), the one place
where worlds are made; the demo only adds readable handles, the ``demo`` account (user 0,
which follows the top accounts and a few ordinary ones) and its tokens file."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from homefeed.bench.graph import FollowGraph
from homefeed.bench.world import WorldSpec, load_world
from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.service_layer.services import Homefeed

ADJECTIVES = "amber brave calm dusty eager fuzzy gentle happy icy jolly keen lucky mellow noble odd proud quiet rapid shy tidy witty young zesty bold".split()
NOUNS = "fox owl lynx otter heron badger finch koala panda raven seal tiger whale yak zebra moth crane bison gecko lemur".split()


def _handle(i: int) -> str:
    if i == 0:
        return "demo"
    return f"{ADJECTIVES[i % len(ADJECTIVES)]}_{NOUNS[(i // len(ADJECTIVES)) % len(NOUNS)]}_{i}"


def demo_handle() -> str:
    """The account a person logs in as to explore the demo (it follows the top accounts)."""
    return _handle(0)


def _demo_follows(graph: FollowGraph) -> list[tuple[int, int]]:
    """The demo user follows the 10 most followed accounts and 40 ordinary ones."""
    rng = random.Random(42)
    counts = graph.follower_counts()
    n = graph.n_users
    top = sorted(range(n), key=lambda i: -counts[i])[:10]
    picks = top + rng.sample(range(1, n), min(40, n - 1))
    return [(0, b) for b in dict.fromkeys(picks) if b != 0]


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

        spec = WorldSpec(users=n_users, exponent=2.1, mean_following=30, posts=n_posts,
                         span_days=30, seed=42)
        world = await load_world(hf, spec, handle_of=_handle,
                                 display_of=lambda h: h.replace("_", " ").title(), extra_follows=_demo_follows,
                                 tokens_path=tokens_path)
        handle, token = tokens_path.read_text().splitlines()[0].split("\t")
        await _give_passwords(hf)
        print(
            f"demo world: {world.users} users, {world.follows} follows, {world.posts} posts; "
            f"{world.celebrities} celebrities (>= {settings.celebrity_threshold} followers); "
            f"tokens of every user in {tokens_path}"
        )
        print(f"Mastodon apps: log in as any demo user (e.g. {handle}) with the password {DEMO_PASSWORD!r}")
        return _curl(token)
    finally:
        await hf.close()


#: Every demo user's password (a demo world is public test data, never a real server's).
DEMO_PASSWORD = "homefeed-demo"


async def _give_passwords(hf: Homefeed) -> None:
    """One argon2id hash of ``DEMO_PASSWORD`` (hashing costs ~0.1 s: once, not per user),
    set on every user, many writes at a time (the writer commits them in groups)."""
    from homefeed.service_layer.accounts import hash_password

    pw_hash = await hash_password(DEMO_PASSWORD)
    after = 0
    while ids := await hf.store.user_ids_after(after, 1000):
        await asyncio.gather(*(hf.store.set_password(uid, pw_hash) for uid in ids))
        after = ids[-1]


def _curl(token: str) -> str:
    return f"curl -s -H 'Authorization: Bearer {token}' '{{base}}/v1/timelines/home?limit=5'"
