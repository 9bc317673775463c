"""Making a world: users, a follow graph and seeded posts, bulk-loaded into the record store.

The one place where worlds are made (``homefeed demo`` uses it too). A world is loaded the way
a batch job would load it, not through HTTP: ``RecordStore.bulk_load`` writes every user,
follow and post in one transaction (bypassing the outbox, since derived stores are rebuilt
afterwards), then the search index is rebuilt from the records. Timelines are not built here:
the service rebuilds a missing home timeline on its first read, as it does after a restart.

What the world directory holds afterwards (``data_dir``):

* ``homefeed.db`` -- the embedded profile's SQLite file (or the data lives in PostgreSQL when
  ``HOMEFEED_DATABASE_URL`` is set);
* ``tokens.tsv`` -- ``handle<TAB>token`` per user, in user-index order (what the load generator
  and the fan-out probe act as);
* ``world.json`` -- how it was made and what came out (follower-count summary, timings).

Ids are made here as the service would make them (Snowflake layout, time-ordered): users
first, then follows, then posts spread over the ``span_days`` before now, all in the past so
that ids the service makes later are larger. Node bits 1..3 keep the three kinds apart.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from homefeed.bench.graph import FollowGraph, load_edge_list, power_law_graph
from homefeed.config import Settings
from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

__all__ = [
    "WorldSpec",
    "World",
    "bench_handle",
    "make_graph",
    "load_world",
    "make_world",
    "read_world",
    "post_texts",
]

SHIFT = NODE_BITS + SEQ_BITS

#: Words of seeded post texts; searches pick from the same list (``loadgen.WORDS``), so they
#: find posts.
from homefeed.bench.vocabulary import WORDS  # noqa: E402  (one vocabulary for posts and queries)

TAGS = ("#rust", "#python", "#ddia", "#coffee", "#music", "#launch", "#weekend", "#sqlite")


def bench_handle(i: int) -> str:
    """Handles of a bench world: ``u0``, ``u1``, ... (short, valid, and the index is visible)."""
    return f"u{i}"


@dataclass(frozen=True)
class WorldSpec:
    """How to make a world. Either a power law (``users``, ``exponent``, ``max_followers``,
    ``mean_following``) or an ``edge_list`` file (SNAP format; ``undirected`` follows both
    ways). ``posts`` seeded posts, authors weighted by follower count + 1 (the popular post
    more), spread over the ``span_days`` before now."""

    users: int = 10_000
    exponent: float = 2.1
    max_followers: int | None = None
    mean_following: float = 30.0
    edge_list: str | None = None
    undirected: bool = False
    posts: int = 20_000
    span_days: float = 7.0
    seed: int = 1
    #: If > 0, user 0 is also followed by users 1 .. star_followers: one account with that
    #: many followers on top of the law (to measure the fan-out of a huge account).
    star_followers: int = 0


@dataclass
class World:
    """What was made: sizes, the follower-count summary, where the tokens are, timings."""

    data_dir: str
    users: int
    follows: int
    posts: int
    celebrities: int
    celebrity_threshold: int
    max_followers: int
    top1pct_share: float
    follower_percentiles: dict[str, float]
    tokens_path: str
    timings_s: dict[str, float] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        t = self.timings_s
        return (
            f"world: {self.users:,} users, {self.follows:,} follows, {self.posts:,} posts; "
            f"most followed has {self.max_followers:,} followers, top 1% hold "
            f"{self.top1pct_share:.0%} of follows, {self.celebrities} celebrities "
            f"(>= {self.celebrity_threshold:,} followers); loaded in {t.get('total', 0):.1f} s"
        )


def make_graph(spec: WorldSpec) -> FollowGraph:
    """The follow graph the spec asks for."""
    if spec.edge_list:
        graph = load_edge_list(spec.edge_list, undirected=spec.undirected)
    else:
        graph = power_law_graph(
            spec.users,
            exponent=spec.exponent,
            max_followers=spec.max_followers,
            mean_following=spec.mean_following,
            seed=spec.seed,
        )
    if spec.star_followers > 0:
        n = graph.n_users
        k = min(int(spec.star_followers), n - 1)
        star = np.column_stack([np.arange(1, k + 1, dtype=np.int64), np.zeros(k, dtype=np.int64)])
        keys = np.concatenate([graph.edges[:, 1] * n + graph.edges[:, 0], star[:, 1] * n + star[:, 0]])
        keys = np.unique(keys)
        edges = np.empty((keys.shape[0], 2), dtype=np.int64)
        edges[:, 1], edges[:, 0] = np.divmod(keys, n)
        graph = FollowGraph(n_users=n, edges=edges)
    return graph


def post_texts(rng: np.random.Generator, n: int, handles: Sequence[str]) -> list[str]:
    """``n`` seeded post texts of 4..14 words; 30% carry a hashtag, 10% a mention."""
    words = np.asarray(WORDS, dtype=object)
    lengths = rng.integers(4, 15, size=n)
    picks = rng.integers(0, len(WORDS), size=int(lengths.sum()))
    tag = rng.random(n) < 0.3
    mention = rng.random(n) < 0.1
    tags = rng.integers(0, len(TAGS), size=n)
    who = rng.integers(0, len(handles), size=n)
    out: list[str] = []
    pos = 0
    flat = words[picks].tolist()
    for k in range(n):
        ln = int(lengths[k])
        ws = flat[pos : pos + ln]
        pos += ln
        if tag[k]:
            ws.append(TAGS[tags[k]])
        if mention[k]:
            ws.append("@" + handles[who[k]])
        out.append(" ".join(ws).capitalize())
    return out


def _tick(iterable: Iterable[Any], total: int, desc: str, unit: str, quiet: bool) -> Iterator[Any]:
    """Iterate with a progress bar updated every 10,000 items (cheap on millions of rows)."""
    with tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=quiet, leave=not quiet) as bar:
        k = 0
        for item in iterable:
            yield item
            k += 1
            if k == 10_000:
                bar.update(k)
                k = 0
        bar.update(k)


async def load_world(
    hf: Homefeed,
    spec: WorldSpec,
    *,
    graph: FollowGraph | None = None,
    handle_of: Callable[[int], str] = bench_handle,
    display_of: Callable[[str], str] = str,
    extra_follows: Callable[[FollowGraph], list[tuple[int, int]]] | None = None,
    tokens_path: Path | None = None,
    quiet: bool = False,
) -> World:
    """Load a world into an open, empty ``Homefeed`` (``hf.store`` must support
    ``bulk_load``), rebuild its search index and write the tokens file.

    ``extra_follows(graph)`` may add ``(follower index, followee index)`` pairs (the demo
    user follows the top accounts); duplicates of graph edges are ignored by the store.
    """
    from homefeed.service_layer.batch import rebuild_search
    from homefeed.service_layer.services import hash_token

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if graph is None:
        with tqdm(total=1, desc="follow graph", unit="graph", disable=quiet) as bar:
            graph = make_graph(spec)
            bar.update(1)
    timings["graph"] = time.perf_counter() - t0
    n = graph.n_users
    rng = np.random.default_rng(spec.seed + 1)

    t = time.perf_counter()
    now_ms = int(time.time() * 1000) - EPOCH_MS
    span_ms = int(spec.span_days * 86400 * 1000)
    n_follows = len(graph)
    # Users, then follows, then posts: each kind in its own id range and node bits.
    user_base = now_ms - span_ms - 3_000_000 - (n >> 12) - (n_follows >> 12)
    uids = ((user_base + np.arange(n, dtype=np.int64)) << SHIFT) | (1 << SEQ_BITS)
    handles = [handle_of(i) for i in range(n)]
    tokens = [secrets.token_urlsafe(24) for _ in _tick(range(n), n, "tokens", "user", quiet)]
    users = (
        (u, h, display_of(h), hash_token(tok)) for u, h, tok in zip(uids.tolist(), handles, tokens)
    )

    edges = graph.edges
    if extra_follows is not None:
        extra = np.asarray(extra_follows(graph), dtype=np.int64).reshape(-1, 2)
        edges = np.concatenate([edges, extra]) if extra.size else edges
    order = np.argsort(edges[:, 0], kind="stable")  # primary-key order: cheaper B-tree inserts
    edges = edges[order]
    m = edges.shape[0]
    k = np.arange(m, dtype=np.int64)
    follow_base = user_base + (n >> 12) + 1_000
    fids = ((follow_base + (k >> SEQ_BITS)) << SHIFT) | (3 << SEQ_BITS) | (k & 0xFFF)
    follow_rows = np.column_stack([uids[edges[:, 0]], uids[edges[:, 1]], fids])

    counts = graph.follower_counts()
    n_posts = int(spec.posts)
    weights = counts.astype(np.float64) + 1.0
    authors = rng.choice(n, size=n_posts, p=weights / weights.sum()) if n_posts else np.empty(0, np.int64)
    stamps = np.sort(rng.integers(0, max(span_ms, 1), size=n_posts))
    kk = np.arange(n_posts, dtype=np.int64)
    pids = ((now_ms - span_ms - 1_000 + stamps) << SHIFT) | (2 << SEQ_BITS) | (kk & 0xFFF)
    texts = post_texts(rng, n_posts, handles)
    timings["rows"] = time.perf_counter() - t

    t = time.perf_counter()
    await hf.store.bulk_load(
        _tick(users, n, "users", "user", quiet),
        _tick(map(tuple, follow_rows.tolist()), m, "follows", "follow", quiet),
        _tick(zip(pids.tolist(), uids[authors].tolist(), texts), n_posts, "posts", "post", quiet),
    )
    timings["bulk_load"] = time.perf_counter() - t

    t = time.perf_counter()
    with tqdm(total=n_posts, desc="search index", unit="post", unit_scale=True, disable=quiet) as bar:
        await rebuild_search(hf, bar.update)
    timings["search_index"] = time.perf_counter() - t

    tokens_path = tokens_path or Path(hf.settings.data_dir) / "tokens.tsv"
    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    tokens_path.write_text("".join(f"{h}\t{tok}\n" for h, tok in zip(handles, tokens)))
    timings["total"] = time.perf_counter() - t0

    threshold = hf.settings.celebrity_threshold
    pct = np.percentile(counts, [50, 90, 99, 99.9]) if n else np.zeros(4)
    world = World(
        data_dir=str(hf.settings.data_dir),
        users=n,
        follows=m,
        posts=n_posts,
        celebrities=int((counts >= threshold).sum()),
        celebrity_threshold=threshold,
        max_followers=int(counts.max()) if n else 0,
        top1pct_share=graph.top_share(0.01) if n else 0.0,
        follower_percentiles={f"p{p:g}": float(v) for p, v in zip((50, 90, 99, 99.9), pct)},
        tokens_path=str(tokens_path),
        timings_s={k: round(v, 3) for k, v in timings.items()},
        spec=asdict(spec),
    )
    meta = Path(hf.settings.data_dir) / "world.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps(asdict(world), indent=1))
    return world


def make_world(settings: Settings, spec: WorldSpec, *, reset: bool = True, quiet: bool = False) -> World:
    """Make a world in ``settings``' data dir (deleting an embedded database there first when
    ``reset``), in a fresh event loop. Refuses a store that already holds users."""
    return asyncio.run(_make(settings, spec, reset, quiet))


async def _make(settings: Settings, spec: WorldSpec, reset: bool, quiet: bool) -> World:
    from homefeed.bootstrap import build

    if reset and not settings.database_url:
        for suffix in ("", "-wal", "-shm"):
            Path(str(settings.database_path) + suffix).unlink(missing_ok=True)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    hf = build(settings)
    await hf.start(run_consumers=False)
    try:
        if await hf.store.count_users():
            raise SystemExit(
                f"the store of {settings.data_dir} already holds users; use an empty one "
                "(a fresh --data-dir, or a scratch PostgreSQL database)"
            )
        return await load_world(hf, spec, quiet=quiet)
    finally:
        await hf.close()


def read_world(data_dir: str | Path) -> dict[str, Any]:
    """``world.json`` of a world directory."""
    return json.loads((Path(data_dir) / "world.json").read_text())


def read_tokens(path: str | Path) -> list[tuple[str, str]]:
    """``(handle, token)`` per user, in user-index order."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line:
            h, _, tok = line.partition("\t")
            out.append((h, tok))
    return out
