"""Hybrid against pull as the book draws it: home-read cost against the reader's followees,
on the scale-out profile (PostgreSQL holding the posts, Redis the timeline and post caches).

World (loaded with ``bulk_load`` into a scratch database ``hf14hvp`` on the PostgreSQL at
127.0.0.1:5432, dropped and made again each run; Redis database 14, flushed): 5,000
authors with ``--posts-per-author`` posts each (spread over 30 days), and one reader per
followee count (10, 100, 1,000, 5,000) following the first N authors. The celebrity
threshold stays above every author's follower count, so hybrid pushes everything.

Two ``Homefeed``s are open on the same database at once: ``feed_strategy=pull`` (every read
is the record store's query over the followees) and ``hybrid`` (the cached home list in
Redis, posts from the Redis post cache). Each reader's timeline is warmed by one read per
strategy. Then each round reads ``--reads`` pages of 20 per (reader, strategy), in a
rotated order, one at a time, and counts **server CPU per read**: this process's CPU time
(the API's work: Python, the drivers) plus the CPU time of the PostgreSQL backends serving
the scratch database (``/proc/<pid>/stat``, the server's own work). Redis's CPU is not
counted (the Redis server is shared with other users here; its work per hybrid read is two
LRANGE-like commands and one MGET). Wall time per read (serial, so it is latency, not
throughput) is reported too. The answer: median over rounds, the ratio pull / hybrid, and a
chart (``--chart``).

    .venv/bin/python benchmarks/hybrid_vs_pull.py --chart benchmarks/charts/hybrid_vs_pull.png

Needs the PostgreSQL (trust auth) and Redis of the test machine; touches only ``hf14hvp``
and Redis db 14.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import psycopg

from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS

SHIFT = NODE_BITS + SEQ_BITS
PG = "postgresql://postgres@127.0.0.1:5432"
DB = "hf14hvp"
REDIS = "redis://127.0.0.1:6379/14"
TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def world(authors: int, per_author: int, readers: list[int]) -> tuple[list, list, list]:
    """(users, follows, posts) for ``bulk_load``, the same rows for both profiles."""
    now_ms = int(time.time() * 1000) - EPOCH_MS
    base = now_ms - 40 * 86400 * 1000
    n_users = authors + len(readers)
    uids = [((base + i) << SHIFT) | (1 << SEQ_BITS) for i in range(n_users)]
    users = [(u, f"u{i}", f"u{i}", bytes(32 - len(str(i))) + str(i).encode()) for i, u in enumerate(uids)]
    follows = []
    k = 0
    for j, n in enumerate(readers):
        reader = uids[authors + j]
        for a in range(n):
            follows.append((reader, uids[a], ((base + 100_000 + (k >> SEQ_BITS)) << SHIFT) | (3 << SEQ_BITS) | (k & 0xFFF)))
            k += 1
    span = 30 * 86400 * 1000
    total = authors * per_author
    posts = []
    for p in range(total):  # round robin over authors, time ascending
        ms = now_ms - span + p * (span // total)
        posts.append((((ms) << SHIFT) | (2 << SEQ_BITS) | (p & 0xFFF), uids[p % authors],
                      f"post {p} about timelines"))
    return users, follows, posts


async def setup(authors: int, per_author: int, readers: list[int], embedded_dir: Path) -> None:
    """The world into the scratch PostgreSQL database (Redis db flushed) and into a SQLite
    file under ``embedded_dir`` (the embedded profile)."""
    async with await psycopg.AsyncConnection.connect(PG + "/postgres", autocommit=True) as c:
        await c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await c.execute(f"CREATE DATABASE {DB}")
    from homefeed.adapters.pg_schema import migrate_url

    await migrate_url(f"{PG}/{DB}")
    import redis.asyncio as aioredis

    r = aioredis.from_url(REDIS)
    await r.flushdb()
    await r.aclose()
    users, follows, posts = world(authors, per_author, readers)
    for settings in (Settings(database_url=f"{PG}/{DB}", cache_url=REDIS, celebrity_threshold=10**9),
                     Settings(data_dir=embedded_dir, celebrity_threshold=10**9, sqlite_synchronous="OFF")):
        hf = build(settings)
        await hf.start(run_consumers=False)
        try:
            await hf.store.bulk_load(users, follows, posts)  # type: ignore[attr-defined]
        finally:
            await hf.close()


def redis_cpu(client: Any) -> float:
    """The Redis server's CPU seconds so far (user + system, all its threads)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def read_home_cached_v1(self: Any, user_id: int, before: int | None, limit: int) -> Any:
    """The hybrid read before this branch (``FeedManager._read_home_cached`` at c7b2e7c), for
    a same-run baseline: the whole following set from Redis (SMEMBERS, frozenset), the
    celebrity version, then one script per list (home, the reader's own author list)."""
    from homefeed.service_layer.feed import _CachedHomeIds

    following = await self.following_of(user_id)
    pulled = self._pulled_authors(user_id, following, await self.celebrities())
    return await self._home_page(user_id, following, _CachedHomeIds(self, user_id, pulled, before), limit)


async def smembers_following(self: Any, user_id: int) -> Any:
    """``RedisTimelineCache.following`` before this branch: SMEMBERS, no copy kept."""
    members = await self.client.smembers(self._fol % user_id)
    if not members:
        return None
    return frozenset(int(m) for m in members if m != b"0")


async def http_phase(levels: list[int], authors: int, rate: float, seconds: float) -> list[dict[str, Any]]:
    """p99 of home reads over HTTP at a fixed rate (Poisson arrivals, coordinated omission
    corrected), one reader at a time, against two ``homefeed serve`` processes on the
    scale-out profile (pull, hybrid) open at once on the world already loaded; the servers'
    CPU per request from ``/proc`` (the server process only: PostgreSQL and Redis are not
    in it). Order alternates per level."""
    from homefeed.bench.loadgen import LoadSpec, User, run_load
    from homefeed.bench.server import ServerProcess
    from homefeed.service_layer.services import hash_token

    tokens = {n: f"hvp-reader-{j}" for j, n in enumerate(levels)}
    async with await psycopg.AsyncConnection.connect(f"{PG}/{DB}", autocommit=True) as c:
        for j, n in enumerate(levels):
            await c.execute("UPDATE users SET token_hash = %s WHERE handle = %s",
                            (hash_token(tokens[n]), f"u{authors + j}"))
    tmp = Path(tempfile.mkdtemp(prefix="hf14hvp-http-"))
    servers = {}
    for s in ("pull", "hybrid"):
        servers[s] = ServerProcess(tmp / s, env={
            "HOMEFEED_DATABASE_URL": f"{PG}/{DB}", "HOMEFEED_CACHE_URL": REDIS,
            "HOMEFEED_FEED_STRATEGY": s, "HOMEFEED_CELEBRITY_THRESHOLD": str(10**9)}).start()
    rows = []
    try:
        for k, n in enumerate(levels):
            users = [User(f"u{authors + levels.index(n)}", tokens[n])]
            for s in (("pull", "hybrid") if k % 2 == 0 else ("hybrid", "pull")):
                srv = servers[s]
                warm = LoadSpec(url=srv.url, rate=20, duration_s=1.0, mix={"home_timeline": 1.0}, seed=k)
                await run_load(warm, users)
                spec = LoadSpec(url=srv.url, rate=rate, duration_s=seconds, mix={"home_timeline": 1.0},
                                arrival="poisson", seed=k)
                c0 = backend_cpu([srv.pid])  # type: ignore[list-item]
                res = await run_load(spec, users)
                c1 = backend_cpu([srv.pid])  # type: ignore[list-item]
                summ = res.summary()
                row = summ["corrected"].get("home_timeline", summ["corrected"]["all"])
                done = max(1, row["count"])
                rows.append({"strategy": s, "followees": n, "rate": rate, "count": row["count"],
                             "errors": row["errors"], "p50_ms": row.get("p50_ms"), "p99_ms": row.get("p99_ms"),
                             "server_cpu_us": (c1 - c0) / done * 1e6, "loadavg": os.getloadavg()})
                print(f"http {s} {n}: p50 {row.get('p50_ms', 0):.2f} ms, p99 {row.get('p99_ms', 0):.2f} ms,"
                      f" {row['count']} done, {row['errors']} errors, server CPU"
                      f" {rows[-1]['server_cpu_us']:.0f} µs/request; load {os.getloadavg()}", flush=True)
    finally:
        for srv in servers.values():
            srv.stop()
    return rows


def proc_cpu(pid: int) -> float:
    return backend_cpu([pid])


async def http_vs_embedded(levels: list[int], authors: int, embedded_dir: Path, rate: float, seconds: float,
                           rounds: int, baseline_src: str | None = None) -> list[dict[str, Any]]:
    """Server CPU per HTTP home read (``GET /v1/timelines/home``, 20 posts), the scale-out
    profile against the embedded one, same world, same reader, open at once: two ``homefeed
    serve`` processes, one on PostgreSQL + Redis (hybrid), one on the SQLite file of the same
    rows (memory caches). Per (round, reader, server), rotated: a one-second warm-up at the
    rate, a one-second idle measure, then ``seconds`` of reads at ``rate`` (Poisson). Server
    CPU = the serve process + (scale-out) the PostgreSQL backends of the database and the
    Redis server (INFO cpu), each less its idle rate over the idle second (both processes run
    background work: relays, consumers, timers)."""
    import sqlite3

    import redis

    from homefeed.bench.loadgen import LoadSpec, User, run_load
    from homefeed.bench.server import ServerProcess
    from homefeed.service_layer.services import hash_token

    tokens = {n: f"hvp-reader-{j}" for j, n in enumerate(levels)}
    async with await psycopg.AsyncConnection.connect(f"{PG}/{DB}", autocommit=True) as c:
        for j, n in enumerate(levels):
            await c.execute("UPDATE users SET token_hash = %s WHERE handle = %s",
                            (hash_token(tokens[n]), f"u{authors + j}"))
    db = sqlite3.connect(Settings(data_dir=embedded_dir).database_path)
    for j, n in enumerate(levels):
        db.execute("UPDATE users SET token_hash = ? WHERE handle = ?", (hash_token(tokens[n]), f"u{authors + j}"))
    db.commit()
    db.close()
    tmp = Path(tempfile.mkdtemp(prefix="hf14hvp-emb-"))
    servers = {
        "scale-out": ServerProcess(tmp / "scaleout", env={
            "HOMEFEED_DATABASE_URL": f"{PG}/{DB}", "HOMEFEED_CACHE_URL": REDIS,
            "HOMEFEED_FEED_STRATEGY": "hybrid", "HOMEFEED_CELEBRITY_THRESHOLD": str(10**9)}).start(),
        "embedded": ServerProcess(embedded_dir, env={"HOMEFEED_CELEBRITY_THRESHOLD": str(10**9)}).start(),
    }
    if baseline_src:  # the scale-out server from another source tree (e.g. before a change)
        servers["scale-out-baseline"] = ServerProcess(tmp / "baseline", env={
            "HOMEFEED_DATABASE_URL": f"{PG}/{DB}", "HOMEFEED_CACHE_URL": REDIS, "PYTHONPATH": baseline_src,
            "HOMEFEED_FEED_STRATEGY": "hybrid", "HOMEFEED_CELEBRITY_THRESHOLD": str(10**9)}).start()
    rcli = redis.Redis.from_url(REDIS)
    rows: list[dict[str, Any]] = []
    try:
        async with await psycopg.AsyncConnection.connect(f"{PG}/{DB}", autocommit=True) as c:
            combos = [(s, n) for n in levels for s in servers]
            for s, n in combos:  # start-up work (relays, consumers catching up) out of the way
                await run_load(LoadSpec(url=servers[s].url, rate=rate, duration_s=1.0, mix={"home_timeline": 1.0}),
                               [User(f"u{authors + levels.index(n)}", tokens[n])])
            await asyncio.sleep(3.0)
            for r in range(rounds):
                order = combos[r % len(combos):] + combos[: r % len(combos)]
                for s, n in order:
                    srv = servers[s]
                    users = [User(f"u{authors + levels.index(n)}", tokens[n])]
                    await run_load(LoadSpec(url=srv.url, rate=rate, duration_s=1.0,
                                            mix={"home_timeline": 1.0}, seed=r), users)
                    cur = await c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s"
                                          " AND pid <> pg_backend_pid()", (DB,))
                    scaleout = s.startswith("scale-out")
                    pids = [row[0] for row in await cur.fetchall()] if scaleout else []

                    def sample() -> tuple[float, float, float, float]:
                        return (time.perf_counter(), proc_cpu(srv.pid),  # type: ignore[arg-type]
                                backend_cpu(pids), redis_cpu(rcli) if scaleout else 0.0)

                    i0 = sample()
                    await asyncio.sleep(2.0)
                    i1 = sample()
                    idle = [(b - a) / (i1[0] - i0[0]) for a, b in zip(i0[1:], i1[1:])]
                    spec = LoadSpec(url=srv.url, rate=rate, duration_s=seconds, mix={"home_timeline": 1.0},
                                    arrival="poisson", seed=r)
                    m0 = sample()
                    res = await run_load(spec, users)
                    m1 = sample()
                    wall = m1[0] - m0[0]
                    parts = [max(0.0, (b - a) - rate_ * wall) for a, b, rate_ in zip(m0[1:], m1[1:], idle)]
                    summ = res.summary()
                    row = summ["corrected"].get("home_timeline", summ["corrected"]["all"])
                    done = max(1, row["count"] - row["errors"])
                    out = {"round": r, "server": s, "followees": n, "count": row["count"], "errors": row["errors"],
                           "process_us": parts[0] / done * 1e6, "pg_us": parts[1] / done * 1e6,
                           "redis_us": parts[2] / done * 1e6, "total_us": sum(parts) / done * 1e6,
                           "p50_ms": row.get("p50_ms"), "p99_ms": row.get("p99_ms"), "loadavg": os.getloadavg(),
                           "idle_cpu_per_s": idle}
                    rows.append(out)
                    print(f"http r{r} {s} {n}: {out['total_us']:.0f} µs/request (process {out['process_us']:.0f},"
                          f" PG {out['pg_us']:.0f}, Redis {out['redis_us']:.0f}); p50 {out['p50_ms']} ms;"
                          f" {row['count']} done, {row['errors']} errors; idle CPU/s {[round(x, 4) for x in idle]};"
                          f" load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        rcli.close()
        for srv in servers.values():
            srv.stop()
    med = statistics.median
    print("\n| followees | scale-out µs/request (process + PG + Redis) | embedded µs/request |"
          " scale-out / embedded (median of per-round ratios) |")
    print("|---|---|---|---|")
    for n in levels:
        so = [x for x in rows if x["server"] == "scale-out" and x["followees"] == n]
        em = [x for x in rows if x["server"] == "embedded" and x["followees"] == n]
        ratios = [a["total_us"] / b["total_us"] for a, b in zip(so, em) if b["total_us"] > 0]
        print(f"| {n:,} | {med(x['total_us'] for x in so):,.0f} ({med(x['process_us'] for x in so):,.0f} +"
              f" {med(x['pg_us'] for x in so):,.0f} + {med(x['redis_us'] for x in so):,.0f}) |"
              f" {med(x['total_us'] for x in em):,.0f} | {med(ratios):.2f}x ({', '.join(f'{x:.2f}' for x in ratios)}) |")
    if baseline_src:
        print("\n| followees | baseline scale-out µs/request (process + PG + Redis) | baseline / this tree |"
              " baseline / embedded |")
        print("|---|---|---|---|")
        for n in levels:
            so = [x for x in rows if x["server"] == "scale-out" and x["followees"] == n]
            bl = [x for x in rows if x["server"] == "scale-out-baseline" and x["followees"] == n]
            em = [x for x in rows if x["server"] == "embedded" and x["followees"] == n]
            r1 = [b["total_us"] / a["total_us"] for a, b in zip(so, bl) if a["total_us"] > 0]
            r2 = [b["total_us"] / e["total_us"] for e, b in zip(em, bl) if e["total_us"] > 0]
            print(f"| {n:,} | {med(x['total_us'] for x in bl):,.0f} ({med(x['process_us'] for x in bl):,.0f} +"
                  f" {med(x['pg_us'] for x in bl):,.0f} + {med(x['redis_us'] for x in bl):,.0f}) |"
                  f" {med(r1):.2f}x ({', '.join(f'{x:.2f}' for x in r1)}) | {med(r2):.2f}x |")
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--followees", default="10,100,1000,5000")
    ap.add_argument("--posts-per-author", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reads", type=int, default=200, help="reads per (reader, variant) per round")
    ap.add_argument("--no-baseline", action="store_true", help="leave out hybrid-v1 (the read before this branch)")
    ap.add_argument("--http-rate", type=float, default=0.0,
                    help="then home reads over HTTP at this rate per (reader, strategy) for the p99 (0: skip)")
    ap.add_argument("--http-seconds", type=float, default=10.0)
    ap.add_argument("--http-embedded", type=float, default=0.0,
                    help="then home reads over HTTP at this rate, scale-out server against embedded server"
                         " (server CPU per request, Redis and PostgreSQL included; 0: skip)")
    ap.add_argument("--http-rounds", type=int, default=3)
    ap.add_argument("--http-baseline-src", help="also a scale-out server run from this source tree"
                    " (PYTHONPATH; e.g. `git archive <commit> src | tar -x -C DIR`, then DIR/src)")
    ap.add_argument("--skip-inprocess", action="store_true", help="load the world, then only the HTTP phases")
    ap.add_argument("--http-only", action="store_true", help="only the HTTP phase, on the world of the last run")
    ap.add_argument("--db", default="hf14hvp", help="the scratch PostgreSQL database (dropped and made again)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="the Redis URL, with a database number of its own (flushed)")
    ap.add_argument("--private-redis", action="store_true",
                    help="start a redis-server of this run's own (a free port, no persistence) instead of --redis:"
                         " its CPU is then this run's alone (a shared server charges the neighbours' commands)")
    ap.add_argument("--chart", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    globals().update(DB=args.db, REDIS=args.redis)
    if args.private_redis:
        import atexit
        import shutil
        import socket
        import subprocess

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        rdir = Path(tempfile.mkdtemp(prefix="hf14hvp-redis-"))
        proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                 "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(rdir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(proc.terminate)
        globals()["REDIS"] = f"redis://127.0.0.1:{port}/0"
        import redis as _redis

        for _ in range(100):
            try:
                _redis.Redis.from_url(REDIS).ping()
                break
            except _redis.ConnectionError:
                time.sleep(0.05)
        print(f"private redis-server on port {port} (pid {proc.pid})", flush=True)
    levels = [int(x) for x in args.followees.split(",")]
    authors = max(levels)
    if args.http_only:
        rows = await http_phase(levels, authors, args.http_rate or 50.0, args.http_seconds)
        if args.json:
            args.json.write_text(json.dumps({"http": rows}, indent=1))
        return
    tmp = Path(tempfile.mkdtemp(prefix="hf14hvp-"))
    t = time.perf_counter()
    await setup(authors, args.posts_per_author, levels, tmp / "embedded")
    print(f"world: {authors} authors x {args.posts_per_author} posts, readers following {levels};"
          f" loaded in {time.perf_counter() - t:.1f} s; load average {os.getloadavg()}", flush=True)

    if args.skip_inprocess:
        rows = await http_vs_embedded(levels, authors, tmp / "embedded", args.http_embedded or 200.0,
                                      args.http_seconds, args.http_rounds, args.http_baseline_src)
        if args.json:
            args.json.write_text(json.dumps({"http_embedded": rows}, indent=1))
        return
    import redis

    rcli = redis.Redis.from_url(REDIS)
    variants = (["pull", "hybrid", "hybrid-nokeep"] + ([] if args.no_baseline else ["hybrid-redispy", "hybrid-v1"])
                + ["embedded"])
    hfs = {}
    for v in variants:
        if v == "embedded":
            settings = Settings(data_dir=tmp / "embedded", celebrity_threshold=10**9)
        else:
            settings = Settings(data_dir=tmp / v, database_url=f"{PG}/{DB}", cache_url=REDIS,
                                celebrity_threshold=10**9, feed_strategy="pull" if v == "pull" else "hybrid")
        hfs[v] = build(settings)
        await hfs[v].start(run_consumers=False)
    for v in ("hybrid-nokeep", "hybrid-redispy", "hybrid-v1"):  # no kept first pages (ViewPages)
        if v in hfs:
            hfs[v].view_pages = None
    for v in ("hybrid-redispy", "hybrid-v1"):  # redis-py's client for every command
        if v in hfs:
            for cache in (hfs[v].feed.cache, hfs[v].feed.posts):
                cache._fast.close()  # type: ignore[attr-defined]
                cache._fast = None  # type: ignore[attr-defined]
    if "hybrid-v1" in hfs:
        feed = hfs["hybrid-v1"].feed
        feed._read_home_cached = types.MethodType(read_home_cached_v1, feed)  # type: ignore[method-assign]
        feed.cache.following = types.MethodType(smembers_following, feed.cache)  # type: ignore[method-assign]
    loads: list[tuple[float, float, float]] = []
    try:
        async with await psycopg.AsyncConnection.connect(f"{PG}/{DB}", autocommit=True) as c:
            readers = {}
            for j, n in enumerate(levels):
                cur = await c.execute("SELECT id FROM users WHERE handle = %s", (f"u{authors + j}",))
                readers[n] = (await cur.fetchone())[0]  # type: ignore[index]
            for v, hf in hfs.items():  # warm: hybrid builds each cached home list here
                for n, uid in readers.items():
                    page = await hf.home_timeline(uid, limit=20)
                    assert len(page["posts"]) == 20, (v, n, len(page["posts"]))
            # the same page from every variant
            for n, uid in readers.items():
                pages = {v: [p["id"] for p in (await hf.home_timeline(uid, limit=20))["posts"]]
                         for v, hf in hfs.items()}
                assert len({tuple(p) for p in pages.values()}) == 1, f"variants disagree at {n} followees"
            cpu: dict[tuple[str, int], list[float]] = {}
            rcpu: dict[tuple[str, int], list[float]] = {}
            wall: dict[tuple[str, int], list[float]] = {}
            combos = [(v, n) for n in levels for v in hfs]
            for r in range(args.rounds):
                # Redis's own background CPU (it is shared): its rate over an idle second
                i0, iw0 = redis_cpu(rcli), time.perf_counter()
                await asyncio.sleep(1.0)
                idle_rate = (redis_cpu(rcli) - i0) / (time.perf_counter() - iw0)
                order = combos[r % len(combos):] + combos[: r % len(combos)]
                for v, n in order:
                    cur = await c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (DB,))
                    pids = [row[0] for row in await cur.fetchall()]
                    hf, uid = hfs[v], readers[n]
                    r0 = redis_cpu(rcli)
                    b0, p0, w0 = backend_cpu(pids), time.process_time(), time.perf_counter()
                    for _ in range(args.reads):
                        await hf.home_timeline(uid, limit=20)
                    w1, p1, b1 = time.perf_counter(), time.process_time(), backend_cpu(pids)
                    r1 = redis_cpu(rcli)
                    cpu.setdefault((v, n), []).append(((p1 - p0) + (b1 - b0)) / args.reads * 1e6)
                    red = 0.0 if v == "embedded" else max(0.0, (r1 - r0) - idle_rate * (w1 - w0))
                    rcpu.setdefault((v, n), []).append(red / args.reads * 1e6)
                    wall.setdefault((v, n), []).append((w1 - w0) / args.reads * 1e6)
                loads.append(os.getloadavg())
                print(f"round {r + 1} done; load average {loads[-1]}", flush=True)
    finally:
        for hf in hfs.values():
            await hf.close()
        rcli.close()

    med = statistics.median

    def total(v: str, n: int) -> list[float]:
        return [a + b for a, b in zip(cpu[(v, n)], rcpu[(v, n)])]

    def ratio(a: list[float], b: list[float]) -> float:
        return med(x / y for x, y in zip(a, b))  # per round: same-run ratios

    print(f"\nhome read of 20 posts, median of {args.rounds} rounds x {args.reads} reads; CPU = this"
          " process + PostgreSQL backends (+ Redis: the server's INFO cpu delta, less its idle rate);"
          f" load average per round {[round(x[0], 2) for x in loads]}")
    print("| followees | pull CPU µs | hybrid CPU µs | pull / hybrid | pull+Redis | hybrid+Redis |"
          " pull / hybrid (with Redis) | hybrid-v1 CPU µs (+Redis; / hybrid) |"
          " hybrid-redispy CPU µs (+Redis; / hybrid) | embedded CPU µs |"
          " scale-out / embedded (hybrid+Redis) | pull wall µs | hybrid wall µs |"
          " hybrid without kept pages CPU µs (+Redis; / hybrid; pull / it) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    table = []
    for n in levels:
        row: dict[str, Any] = {"followees": n}
        for v in hfs:
            row[f"{v}_cpu_us"] = med(cpu[(v, n)])
            row[f"{v}_redis_us"] = med(rcpu[(v, n)])
            row[f"{v}_total_us"] = med(total(v, n))
            row[f"{v}_wall_us"] = med(wall[(v, n)])
        row["ratio"] = ratio(cpu[("pull", n)], cpu[("hybrid", n)])
        row["ratio_with_redis"] = ratio(total("pull", n), total("hybrid", n))
        row["scaleout_over_embedded"] = ratio(cpu[("hybrid", n)], cpu[("embedded", n)])
        row["scaleout_over_embedded_with_redis"] = ratio(total("hybrid", n), cpu[("embedded", n)])
        row["nokeep_over_hybrid"] = ratio(total("hybrid-nokeep", n), total("hybrid", n))
        row["pull_over_nokeep"] = ratio(cpu[("pull", n)], cpu[("hybrid-nokeep", n)])
        if "hybrid-v1" in hfs:
            row["v1_over_hybrid"] = ratio(total("hybrid-v1", n), total("hybrid", n))
            row["redispy_over_hybrid"] = ratio(total("hybrid-redispy", n), total("hybrid", n))
        table.append(row)
        v1 = (f"{row['hybrid-v1_cpu_us']:,.0f} ({row['hybrid-v1_total_us']:,.0f}; {row['v1_over_hybrid']:.1f}x) |"
              f" {row['hybrid-redispy_cpu_us']:,.0f} ({row['hybrid-redispy_total_us']:,.0f};"
              f" {row['redispy_over_hybrid']:.1f}x)" if "hybrid-v1" in hfs else "- | -")
        print(f"| {n:,} | {row['pull_cpu_us']:,.0f} | {row['hybrid_cpu_us']:,.0f} | {row['ratio']:.1f}x |"
              f" {row['pull_total_us']:,.0f} | {row['hybrid_total_us']:,.0f} | {row['ratio_with_redis']:.1f}x |"
              f" {v1} | {row['embedded_cpu_us']:,.0f} | {row['scaleout_over_embedded_with_redis']:.1f}x"
              f" ({row['scaleout_over_embedded']:.1f}x without Redis) |"
              f" {row['pull_wall_us']:,.0f} | {row['hybrid_wall_us']:,.0f} |"
              f" {row['hybrid-nokeep_cpu_us']:,.0f} ({row['hybrid-nokeep_total_us']:,.0f};"
              f" {row['nokeep_over_hybrid']:.1f}x; pull / it {row['pull_over_nokeep']:.1f}x) |")
    http = await http_phase(levels, authors, args.http_rate, args.http_seconds) if args.http_rate else []
    http_emb = (await http_vs_embedded(levels, authors, tmp / "embedded", args.http_embedded, args.http_seconds,
                                       args.http_rounds, args.http_baseline_src) if args.http_embedded else [])
    if args.json:
        args.json.write_text(json.dumps({
            "table": table, "http": http, "http_embedded": http_emb, "loadavg": loads, "rounds": args.rounds, "reads": args.reads,
            "cpu": {f"{v}:{n}": x for (v, n), x in cpu.items()},
            "redis_cpu": {f"{v}:{n}": x for (v, n), x in rcpu.items()},
        }, indent=1))
    if args.chart:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(levels, [row["pull_total_us"] for row in table], "o-", label="pull (scale-out)")
        ax.plot(levels, [row["hybrid_total_us"] for row in table], "s-", label="hybrid (scale-out)")
        if "hybrid-v1" in hfs:
            ax.plot(levels, [row["hybrid-v1_total_us"] for row in table], "x--", color="grey",
                    label="hybrid before (whole following set per read, redis-py)")
            ax.plot(levels, [row["hybrid-redispy_total_us"] for row in table], "+--", color="tab:olive",
                    label="hybrid, home_view over redis-py's client")
        ax.plot(levels, [row["embedded_cpu_us"] for row in table], "^:", label="hybrid (embedded)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("accounts the reader follows")
        ax.set_ylabel("server CPU per home read (µs)")
        ax.set_title("home read, 20 posts: API + PostgreSQL + Redis CPU")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.chart, dpi=100)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    asyncio.run(main())
