"""Micro-benchmarks of the building blocks, each beside the raw ceiling of its engine,
measured in the same run (so the ratio holds whatever else the machine is doing):

| block | homefeed figure | engine ceiling |
|---|---|---|
| durable post ingest, SQLite | ``Homefeed.create_post`` from C concurrent callers (group commit, synchronous=FULL) | single-row commits/s, and rows/s in commits of 512, raw ``sqlite3``, same pragmas |
| durable post ingest, PostgreSQL | the same on a scratch database | ``pgbench -N`` (simple-update, no branch contention), same database |
| fan-out, memory | ``MemoryTimelineCache.push`` inserts/s | appending to Python lists in a dict (the interpreter's own ceiling) |
| fan-out, Redis | ``RedisTimelineCache.push`` inserts/s | ``redis-benchmark`` LPUSH pipelined 16 deep (and RPUSH 64 deep) to random keys |
| hydration | ``FeedManager.hydrate`` of 20 ids/s: post-cache hits, and misses read from SQLite | dict lookups; raw ``SELECT ... WHERE id IN (20 ids)`` |

Everything runs in this process against private resources: a temporary directory, a private
``redis-server`` on a free loopback port (stopped afterwards), a scratch PostgreSQL database
(dropped afterwards). Every loop is bounded by a time budget.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from homefeed.adapters.memory_cache import MemoryPostCache
from homefeed.bench.server import free_port

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

__all__ = ["run_micro", "format_micro"]

PG_ADMIN_URL = os.environ.get("HOMEFEED_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _timed(budget_s: float, fn: Callable[[], int]) -> float:
    """Call ``fn`` (returns units done) until ``budget_s`` passed; units per second."""
    t0 = time.perf_counter()
    done = 0
    while True:
        done += fn()
        el = time.perf_counter() - t0
        if el >= budget_s:
            return done / el


# -- SQLite ------------------------------------------------------------------------------------


def sqlite_ceiling(directory: Path, budget_s: float) -> dict[str, float]:
    """Raw sqlite3, WAL, synchronous=FULL: one-row commits/s and rows/s in 512-row commits."""
    path = directory / "ceiling.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, author_id INTEGER, text TEXT)")
    text = "a post of about sixty characters, like the ones the bench makes"
    k = [0]

    def one() -> int:
        k[0] += 1
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t VALUES (?, ?, ?)", (k[0], k[0] % 1000, text))
        conn.execute("COMMIT")
        return 1

    def batch() -> int:
        conn.execute("BEGIN")
        base = k[0]
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)",
                         ((base + i, i % 1000, text) for i in range(1, 513)))
        conn.execute("COMMIT")
        k[0] += 512
        return 512

    single = _timed(budget_s, one)
    batched = _timed(budget_s, batch)
    conn.close()
    return {"single_row_commits_per_s": single, "rows_per_s_in_512_row_commits": batched}


async def _ingest(hf: Homefeed, budget_s: float, concurrency: int, user_ids: list[int]) -> float:
    """Posts/s through ``Homefeed.create_post`` (validation, record + outbox row, group
    commit, post cache) from ``concurrency`` concurrent callers; consumers not running."""
    done = 0
    stop = time.perf_counter() + budget_s

    async def caller(i: int) -> None:
        nonlocal done
        uid = user_ids[i % len(user_ids)]
        while time.perf_counter() < stop:
            await hf.create_post(uid, "durable ingest bench post with a few words")
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return done / (time.perf_counter() - t0)


async def _with_homefeed(settings: Any, fn: Callable[[Any, list[int]], Any]) -> Any:
    from homefeed.bootstrap import build

    hf = build(settings)
    await hf.start(run_consumers=False)
    try:
        ids = []
        for i in range(16):
            u = await hf.register(f"mb{i}{uuid.uuid4().hex[:8]}")
            ids.append(int(u["id"]))
        return await fn(hf, ids)
    finally:
        await hf.close()


def post_ingest_sqlite(directory: Path, budget_s: float, concurrency: int) -> dict[str, float]:
    from homefeed.config import Settings

    settings = Settings(data_dir=directory / "ingest")
    rate = asyncio.run(_with_homefeed(settings, lambda hf, ids: _ingest(hf, budget_s, concurrency, ids)))
    return {"posts_per_s": rate, "concurrency": concurrency}


# -- fan-out -----------------------------------------------------------------------------------


def memory_fanout(followers: int, budget_s: float) -> dict[str, float]:
    """Inserts/s of ``MemoryTimelineCache.push`` into ``followers`` warm timelines, beside
    appending to the same number of lists in a dict."""
    from homefeed.adapters.memory_cache import MemoryTimelineCache

    cache = MemoryTimelineCache(cap=800, max_lists=followers + 10)
    keys = list(range(1, followers + 1))

    async def setup() -> None:
        for k in keys:
            await cache.install("home", k, [], 0)

    asyncio.run(setup())
    nid = [1 << 40]

    # one event loop for all pushes (asyncio.run per call would measure loop start-up)
    loop = asyncio.new_event_loop()
    try:
        def push_loop() -> int:
            nid[0] += 1
            return loop.run_until_complete(cache.push("home", keys, nid[0]))
        rate = _timed(budget_s, push_loop)
    finally:
        loop.close()
    lists: dict[int, list[int]] = {k: [] for k in keys}

    def raw() -> int:
        nid[0] += 1
        i = nid[0]
        for k in keys:
            lst = lists[k]
            lst.append(i)
            if len(lst) > 800:
                del lst[0]
        return len(keys)

    ceiling = _timed(budget_s, raw)
    return {"inserts_per_s": rate, "ceiling_dict_of_lists_per_s": ceiling, "followers": followers}


class RedisServer:
    """A private redis-server on a free loopback port, no persistence; always stopped."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hf-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def _redis_cpu_s(info: dict[str, Any]) -> float:
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _redis_benchmark(port: int, n: int, pipeline: int, keys: int, command: str) -> float:
    """Requests/s of ``redis-benchmark -P pipeline`` ``command`` to ``keys`` random keys."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", "-n", str(n),
         "-P", str(pipeline), "-r", str(keys), command, "bench:__rand_int__", "__rand_int__"],
        capture_output=True, text=True, timeout=120)
    m = re.search(r"([\d.]+) requests per second", out.stdout)
    return float(m.group(1)) if m else 0.0


def redis_fanout(followers: int, budget_s: float, rounds: int = 3) -> dict[str, Any]:
    """``RedisTimelineCache.push`` inserts/s into ``followers`` warm timelines on a private
    Redis, beside ``redis-benchmark`` on the same server: LPUSH pipelined 16 deep (the issue's
    ceiling) and RPUSH 64 deep (the earlier one), random keys among ``followers``.

    Interleaved rounds (push by the fast path, push by the checked path, the two
    redis-benchmark runs), each part ~``budget_s / rounds``; the figures are medians of the
    rounds, the ratios medians of the same-round ratios. The fast path is the default (a new
    id above the kind's top, ``lua/push.lua``); the checked path is what every push did
    before (LINDEX + RPUSH per list), forced here by a top no id exceeds. Redis CPU per insert
    is the server's ``used_cpu_user + used_cpu_sys`` over the pushes, and the same per LPUSH
    over the redis-benchmark run: their ratio (``cpu_ratio_lpush_p16_vs_insert``, the share of
    the ceiling by Redis CPU) holds better than the rates on a busy machine, where the
    benchmark's client process competes for the cores."""
    from homefeed.adapters.redis_timeline_cache import RedisTimelineCache
    from homefeed.domain.ids import MAX_ID, IdGenerator

    part = max(0.5, budget_s / rounds)
    n_bench = 200_000
    with RedisServer() as srv:
        gen = IdGenerator(node=1)
        loop = asyncio.new_event_loop()
        fast = RedisTimelineCache(srv.url, cap=800, prefix="mbf", top_if_unknown=0)  # fresh server
        checked = RedisTimelineCache(srv.url, cap=800, prefix="mbc", top_if_unknown=MAX_ID)
        keys = list(range(1, followers + 1))
        try:
            first = gen.next_id()

            async def setup() -> None:
                for c in (fast, checked):
                    for k in keys:
                        await c.install("home", k, [first], 0)

            loop.run_until_complete(setup())

            async def pushes(cache: RedisTimelineCache) -> tuple[float, float]:
                i0 = _redis_cpu_s(await cache.client.info("cpu"))
                t0 = time.perf_counter()
                done = 0
                while time.perf_counter() - t0 < part:
                    done += await cache.push("home", keys, gen.next_id())
                el = time.perf_counter() - t0
                cpu = _redis_cpu_s(await cache.client.info("cpu")) - i0
                return done / el, cpu / max(1, done)

            per: dict[str, list[float]] = {}
            for _ in range(rounds):
                f_rate, f_cpu = loop.run_until_complete(pushes(fast))
                c_rate, c_cpu = loop.run_until_complete(pushes(checked))
                i0 = _redis_cpu_s(loop.run_until_complete(fast.client.info("cpu")))
                lp16 = _redis_benchmark(srv.port, n_bench, 16, followers, "LPUSH")
                lp16_cpu = (_redis_cpu_s(loop.run_until_complete(fast.client.info("cpu"))) - i0) / n_bench
                rp64 = _redis_benchmark(srv.port, n_bench, 64, followers, "RPUSH")
                for k, v in (("fast", f_rate), ("fast_cpu", f_cpu), ("checked", c_rate),
                             ("checked_cpu", c_cpu), ("lp16", lp16), ("lp16_cpu", lp16_cpu), ("rp64", rp64),
                             ("r_cpu_lp16_fast", lp16_cpu / f_cpu if f_cpu else 0.0),
                             ("r_fast_lp16", f_rate / lp16 if lp16 else 0.0),
                             ("r_checked_lp16", c_rate / lp16 if lp16 else 0.0),
                             ("r_fast_rp64", f_rate / rp64 if rp64 else 0.0),
                             ("r_fast_checked", f_rate / c_rate if c_rate else 0.0)):
                    per.setdefault(k, []).append(v)
            assert fast.counters["fast_push_calls"] > 0 and checked.counters["fast_push_calls"] == 0
        finally:
            for c in (fast, checked):
                loop.run_until_complete(c.close())
            loop.close()
    med = {k: statistics.median(v) for k, v in per.items()}
    return {"inserts_per_s": med["fast"], "checked_inserts_per_s": med["checked"],
            "redis_cpu_us_per_insert": med["fast_cpu"] * 1e6,
            "checked_redis_cpu_us_per_insert": med["checked_cpu"] * 1e6,
            "ceiling_redis_benchmark_lpush_p16_per_s": med["lp16"],
            "lpush_p16_redis_cpu_us_per_command": med["lp16_cpu"] * 1e6,
            "cpu_ratio_lpush_p16_vs_insert": med["r_cpu_lp16_fast"],
            "ceiling_redis_benchmark_rpush_per_s": med["rp64"],
            "ratio_vs_lpush_p16": med["r_fast_lp16"], "checked_ratio_vs_lpush_p16": med["r_checked_lp16"],
            "ratio_vs_rpush_p64": med["r_fast_rp64"], "fast_vs_checked": med["r_fast_checked"],
            "followers": followers, "rounds": rounds,
            "redis_benchmark": f"LPUSH -P 16 and RPUSH -P 64, -r followers, {n_bench:,} requests"}


# -- hydration -------------------------------------------------------------------------------


def hydration(directory: Path, budget_s: float, n_posts: int = 50_000) -> dict[str, float]:
    """Posts hydrated/s (20 ids per call): from the post cache (hits), and from SQLite (the
    post cache emptied before each call), beside dict lookups and a raw ``IN`` query."""
    from homefeed.bootstrap import build
    from homefeed.config import Settings

    settings = Settings(data_dir=directory / "hydrate", cache_max_posts=n_posts + 10)
    out: dict[str, float] = {}

    async def go() -> None:
        hf = build(settings)
        await hf.start(run_consumers=False)
        try:
            u = await hf.register("hyd" + uuid.uuid4().hex[:8])
            uid = int(u["id"])
            rows = []
            base = int(time.time() * 1000) - 1_704_067_200_000 - 10_000_000
            for i in range(n_posts):
                rows.append((((base + i) << 22) | (2 << 12), uid, f"hydration post number {i} coffee"))
            await hf.store.bulk_load([], [], rows)
            ids = [r[0] for r in rows]
            rng = random.Random(1)
            feed = hf.feed
            await feed.hydrate(ids[: n_posts])  # fill the post cache
            t0 = time.perf_counter(); done = 0
            while time.perf_counter() - t0 < budget_s:
                got = await feed.hydrate(rng.sample(ids, 20)); done += len(got)
            out["cache_hits_posts_per_s"] = done / (time.perf_counter() - t0)
            cache_dict = {i: object() for i in ids}
            t0 = time.perf_counter(); done = 0
            while time.perf_counter() - t0 < budget_s:
                looked_up = {i: cache_dict[i] for i in rng.sample(ids, 20)}; done += len(looked_up)
            out["ceiling_dict_lookups_posts_per_s"] = done / (time.perf_counter() - t0)
            posts_cache = feed.posts
            assert isinstance(posts_cache, MemoryPostCache), "the embedded profile's post cache"
            t0 = time.perf_counter(); done = 0
            while time.perf_counter() - t0 < budget_s:
                batch = rng.sample(ids, 20)
                for i in batch:  # evict (not delete: a delete would leave tombstones)
                    posts_cache._posts.pop(i, None)
                got = await feed.hydrate(batch); done += len(got)
            out["db_misses_posts_per_s"] = done / (time.perf_counter() - t0)
            conn = sqlite3.connect(settings.database_path)
            t0 = time.perf_counter(); done = 0
            q = "SELECT p.id, p.author_id, u.handle, p.text FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id IN (%s)" % ",".join("?" * 20)
            while time.perf_counter() - t0 < budget_s:
                done += len(conn.execute(q, rng.sample(ids, 20)).fetchall())
            out["ceiling_sqlite_in_query_posts_per_s"] = done / (time.perf_counter() - t0)
            conn.close()
        finally:
            await hf.close()

    asyncio.run(go())
    return out


# -- PostgreSQL ----------------------------------------------------------------------------


def postgres(budget_s: float, concurrency: int) -> dict[str, Any]:
    """Durable post ingest on a scratch PostgreSQL database beside ``pgbench -N`` on the
    same database, both with ``concurrency`` clients; the database is dropped afterwards."""
    import psycopg
    from psycopg import conninfo

    from homefeed.config import Settings

    name = "homefeed_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = conninfo.make_conninfo(PG_ADMIN_URL, dbname=name)
        from homefeed.adapters.pg_db import migrate_url

        asyncio.run(migrate_url(url))
        settings = Settings(database_url=url)
        rate = asyncio.run(_with_homefeed(settings, lambda hf, ids: _ingest(hf, budget_s, concurrency, ids)))
        params = conninfo.conninfo_to_dict(url)
        base = ["-h", str(params.get("host", "127.0.0.1")), "-p", str(params.get("port", 5432)),
                "-U", str(params.get("user", "postgres"))]
        subprocess.run(["pgbench", *base, "-i", "-s", "1", "-q", name], check=True,
                       capture_output=True, timeout=120)
        out = subprocess.run(["pgbench", *base, "-N", "-c", str(concurrency), "-j", "2",
                              "-T", str(max(1, int(round(budget_s)))), name],
                             capture_output=True, text=True, timeout=120)
        m = re.search(r"tps = ([\d.]+)", out.stdout)
        return {"posts_per_s": rate, "ceiling_pgbench_N_tps": float(m.group(1)) if m else 0.0,
                "concurrency": concurrency}
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- all -------------------------------------------------------------------------------------


def run_micro(budget_s: float = 3.0, followers: int = 10_000, concurrency: int = 64,
              only: set[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every micro-benchmark whose engine is present; a missing engine is reported as
    skipped with the reason, not as a failure."""
    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="hf-micro-"))
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "sqlite_ceiling": lambda: sqlite_ceiling(tmp, budget_s),
        "post_ingest_sqlite": lambda: post_ingest_sqlite(tmp, budget_s, concurrency),
        "fanout_memory": lambda: memory_fanout(followers, budget_s),
        "fanout_redis": lambda: redis_fanout(followers, budget_s),
        "hydration": lambda: hydration(tmp, budget_s),
        "postgres": lambda: postgres(budget_s, min(concurrency, 16)),
    }
    try:
        for name, fn in parts.items():
            if only and name not in only:
                continue
            try:
                out[name] = fn()
                log(f"  {name}: " + ", ".join(f"{k} {v:,.0f}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in out[name].items()))
            except Exception as exc:  # a missing engine is a skip, said plainly
                out[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
                log(f"  {name}: skipped ({type(exc).__name__}: {exc})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def format_micro(m: dict[str, Any]) -> str:
    """The micro-benchmarks as rows: block, homefeed rate, ceiling, share of the ceiling."""
    pairs = [
        ("durable posts/s, SQLite (vs single-row commits/s)", "post_ingest_sqlite", "posts_per_s",
         "sqlite_ceiling", "single_row_commits_per_s"),
        ("durable posts/s, SQLite (vs rows/s in 512-row commits)", "post_ingest_sqlite", "posts_per_s",
         "sqlite_ceiling", "rows_per_s_in_512_row_commits"),
        ("durable posts/s, PostgreSQL (vs pgbench -N tps)", "postgres", "posts_per_s",
         "postgres", "ceiling_pgbench_N_tps"),
        ("fan-out inserts/s, memory (vs dict of lists)", "fanout_memory", "inserts_per_s",
         "fanout_memory", "ceiling_dict_of_lists_per_s"),
        ("fan-out inserts/s, Redis (vs redis-benchmark LPUSH -P16)", "fanout_redis", "inserts_per_s",
         "fanout_redis", "ceiling_redis_benchmark_lpush_p16_per_s"),
        ("  the checked path (vs redis-benchmark LPUSH -P16)", "fanout_redis", "checked_inserts_per_s",
         "fanout_redis", "ceiling_redis_benchmark_lpush_p16_per_s"),
        ("fan-out inserts/s, Redis (vs redis-benchmark RPUSH -P64)", "fanout_redis", "inserts_per_s",
         "fanout_redis", "ceiling_redis_benchmark_rpush_per_s"),
        ("hydrated posts/s, post cache (vs dict lookups)", "hydration", "cache_hits_posts_per_s",
         "hydration", "ceiling_dict_lookups_posts_per_s"),
        ("hydrated posts/s, SQLite misses (vs raw IN query)", "hydration", "db_misses_posts_per_s",
         "hydration", "ceiling_sqlite_in_query_posts_per_s"),
    ]
    rows = [["building block", "homefeed", "ceiling", "share"]]
    for label, a, ak, b, bk in pairs:
        x, y = m.get(a, {}).get(ak), m.get(b, {}).get(bk)
        if x is None or y is None:
            reason = m.get(a, {}).get("skipped") or m.get(b, {}).get("skipped") or "not run"
            rows.append([label, "-", "-", f"skipped: {reason[:60]}"])
            continue
        rows.append([label, f"{x:,.0f}", f"{y:,.0f}", f"{x / y:.0%}" if y else "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in rows)
