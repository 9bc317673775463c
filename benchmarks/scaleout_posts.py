"""Issue 14's posts goal on the scale-out profile: durable posts over HTTP against home
reads, where the fan-out and the indexer run in a worker process beside the API, not in it.

On the embedded profile one process does everything on one event loop: a post's request,
its SQLite commit, its pushes into ~33 followers' cached timelines, its index entry and its
notifications. There a post costs ~7 home reads of CPU (``issue14_table.py``), and the goal
"posts ≥ 0.5 × the home-read rate" cannot be met. The scale-out profile is the shape the
goal describes in production: ``homefeed serve`` answers the post once it is durable in
PostgreSQL (the post and its outbox row, one transaction), and ``homefeed worker`` applies
it: fan-out into Redis, the search index, notifications.

This script starts both processes on PostgreSQL + Redis, on the demo world loaded into a
scratch database (``--pg``, dropped and made again) and a Redis database it flushes
(``--redis``), and drives, with ``wrk -t1 -c32``, rounds of:

- ``home``: ``GET /v1/timelines/home?limit=20``, rotating tokens (``wrk/home.lua``);
- ``post``: ``POST /v1/posts``, rotating tokens (``wrk/post.lua``); the figure ends when
  ``wrk`` ends AND every consumer has applied every post (the worker's lag is 0), so each
  post carries its whole fan-out, indexing and notifications;
- after each round's posts, every reader's page once more with one keep-alive client
  (so the next reads are warm), timed as the **first read after posts**: each of those
  pages changed (a post reaches ~33 followers), so it is the read of a page not kept.

Each figure's CPU per request, by tier (``/proc/PID/stat``; each tier's idle rate over the
two seconds before the figure subtracted): the API process, the worker, PostgreSQL (every
process of the server: backends, WAL writer, checkpointer; the server is assumed to serve
nothing else meanwhile) and Redis (``INFO cpu``). Rates on a 2-core machine shared by all
of them and by ``wrk`` are bounded by the machine; the CPU per request of each tier is what
sizes it (how many API processes, workers, database cores a rate needs), and the API
process's CPU ratio is the rate ratio one API process would reach with a core to itself.

    .venv/bin/python benchmarks/scaleout_posts.py                       # load, then 3 rounds
    .venv/bin/python benchmarks/scaleout_posts.py --keep /tmp/hf14scale  # reuse a loaded world
    .venv/bin/python benchmarks/scaleout_posts.py --keep /tmp/hf14scale --roles indexer  # one consumer's cost
    .venv/bin/python benchmarks/scaleout_posts.py --keep /tmp/hf14scale --paced 10  # below saturation

Needs ``wrk``, a PostgreSQL it may create a database in, and a Redis database it may flush.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_http import ROOT, free_port, parse_wrk, stop, wait_healthy  # noqa: E402
from issue14_table import cpu_seconds, warm_all  # noqa: E402

HOMEFEED = str(ROOT / ".venv" / "bin" / "homefeed")


def pids_of(command: str) -> list[int]:
    """Every process whose command name is ``command`` (``/proc/PID/comm``)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == command:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


class Tiers:
    """CPU seconds so far of each tier: the API process, the worker, PostgreSQL, Redis."""

    def __init__(self, api: int, worker: int, redis_url: str) -> None:
        import redis

        self.api, self.worker = api, worker
        self.redis = redis.Redis.from_url(redis_url)

    def _pg(self) -> float:
        total = 0.0
        for pid in pids_of("postgres"):
            try:
                total += cpu_seconds(pid)
            except OSError:  # a backend that ended between listing and reading
                pass
        return total

    def sample(self) -> tuple[float, ...]:
        info = self.redis.info("cpu")
        return (time.perf_counter(), cpu_seconds(self.api), cpu_seconds(self.worker), self._pg(),
                float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))


NAMES = ("api", "worker", "pg", "redis")


def load(env: dict[str, str], pg_url: str, redis_url: str, data: Path) -> None:
    """The demo world into a new database ``pg_url`` and the flushed Redis db ``redis_url``."""
    import psycopg
    import redis

    base, _, db = pg_url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{db}"')
    redis.Redis.from_url(redis_url).flushdb()
    subprocess.run([HOMEFEED, "migrate"], env=env, check=True)
    subprocess.run([HOMEFEED, "demo", "--no-serve", "--data-dir", str(data)], env=env, check=True)


class Lag:
    """Events committed and not yet applied by some consumers (the worker's lag), asked on
    one connection kept open: the statement ``PgOutboxEventStream.lags`` runs, and nothing
    else, so the polls while a worker drains add one statement each to PostgreSQL's CPU."""

    def __init__(self, pg_url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(pg_url, autocommit=True)

    def __call__(self, consumers: list[str]) -> int:
        from homefeed.adapters.pg_outbox import _LAGS

        if not consumers:
            return 0
        return sum(int(n) for _, n in self.conn.execute(_LAGS, {"cs": consumers}).fetchall())

    def close(self) -> None:
        self.conn.close()


def catch_up(env: dict[str, str], data: Path, lag: Lag) -> None:
    """Every consumer up to date before the figures (a run with ``--roles`` leaves the
    others behind): a worker with every role, until their lag is 0."""
    from homefeed.bootstrap import CONSUMERS

    if not lag(list(CONSUMERS)):
        return
    worker = subprocess.Popen([HOMEFEED, "worker"], env=env, stdout=open(data / "catch-up.log", "w"),
                              stderr=subprocess.STDOUT)
    try:
        while lag(list(CONSUMERS)):
            time.sleep(0.5)
    finally:
        stop(worker)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default="postgresql://127.0.0.1:5432/hf14scale", help="a database to drop and make")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/11", help="a Redis database to flush")
    ap.add_argument("--keep", type=Path, help="a data dir of an earlier run: reuse its world, do not load")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=3000)
    ap.add_argument("--roles", default="all",
                    help="the worker's roles (`homefeed worker --role`), e.g. fanout or indexer; none: no"
                         " worker (a post's figure is then its request and commit alone)")
    ap.add_argument("--paced", type=float, metavar="MS",
                    help="post at a paced rate, not at saturation: wrk/post_paced.lua, each of 4"
                         " connections waiting MS milliseconds between its posts (consumers then"
                         " apply small batches, as below a worker's capacity)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    data = args.keep or Path(tempfile.mkdtemp(prefix="hf14scale-"))
    env = {**os.environ, "HOMEFEED_DATABASE_URL": args.pg, "HOMEFEED_CACHE_URL": args.redis,
           "HOMEFEED_DATA_DIR": str(data)}
    for k in ("HOMEFEED_BUS_URL", "HOMEFEED_PORT", "HOMEFEED_HOST"):
        env.pop(k, None)
    if args.keep is None:
        load(env, args.pg, args.redis, data)
    lines = (data / "demo-tokens.tsv").read_text().splitlines()[1 : args.tokens + 1]
    tokens = [line.split("\t")[1] for line in lines]
    token_file = data / "wrk-tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = subprocess.Popen([HOMEFEED, "serve", "--port", str(port)], env=env,
                           stdout=open(data / "serve.log", "w"), stderr=subprocess.STDOUT)
    from homefeed.bootstrap import CONSUMERS

    lag = Lag(args.pg)
    catch_up(env, data, lag)
    roles = [] if args.roles == "none" else list(CONSUMERS) if args.roles == "all" else args.roles.split(",")
    applying = [r for r in roles if r in CONSUMERS]
    worker = subprocess.Popen([HOMEFEED, "worker", "--role", ",".join(roles)] if roles else ["sleep", "infinity"],
                              env=env, stdout=open(data / "worker.log", "w"), stderr=subprocess.STDOUT)
    scripts = {"home": (ROOT / "benchmarks/wrk/home.lua", "/v1/timelines/home?limit=20"),
               "post": (ROOT / "benchmarks/wrk/post.lua", "/v1/posts")}
    connections = {"home": args.connections, "post": args.connections}
    if args.paced is not None:
        scripts["post"] = (ROOT / "benchmarks/wrk/post_paced.lua", "/v1/posts")
        connections["post"] = 4
    rows: dict[str, list[dict[str, float]]] = {"home": [], "post": [], "first read after posts": []}
    try:
        wait_healthy(url)
        tiers = Tiers(api.pid, worker.pid, args.redis)
        warm_all(url, "/v1/timelines/home?limit=20", tokens, "")
        for r in range(args.rounds):
            for name in (["home", "post"] if r % 2 == 0 else ["post", "home"]):
                script, path = scripts[name]
                i0 = tiers.sample()
                time.sleep(2.0)
                i1 = tiers.sample()
                idle = [(b - a) / (i1[0] - i0[0]) for a, b in zip(i0[1:], i1[1:])]
                m0 = tiers.sample()
                out = subprocess.run(
                    ["wrk", "-t1", f"-c{connections[name]}", f"-d{args.seconds}s", "--latency", "-s", str(script),
                     url + path], env={**os.environ, "TOKENS": str(token_file),
                                       "DELAY_MS": str(args.paced if args.paced is not None else 0)},
                    capture_output=True, text=True, check=True).stdout
                rps, p99 = parse_wrk(out)
                drained_after = 0.0
                if name == "post":
                    t = time.perf_counter()
                    while lag(applying):
                        time.sleep(0.1)
                    drained_after = time.perf_counter() - t
                m1 = tiers.sample()
                wall = m1[0] - m0[0]
                n = max(1.0, rps * args.seconds)
                cpu = {k: max(0.0, (b - a) - idle_rate * wall) / n * 1e6
                       for k, a, b, idle_rate in zip(NAMES, m0[1:], m1[1:], idle)}
                rows[name].append({"rps": rps, "p99": p99, "drain_s": drained_after, **cpu})
                print(f"round {r + 1} {name}: {rps:,.0f} req/s, p99 {p99:.1f} ms; CPU µs/request "
                      + ", ".join(f"{k} {cpu[k]:.0f}" for k in NAMES)
                      + (f"; worker drained {drained_after:.1f} s after wrk" if name == "post" else "")
                      + f"; load {os.getloadavg()[0]:.1f}", flush=True)
                if name == "post":  # every reader's page read again: the next reads are warm
                    f0 = tiers.sample()
                    warm_all(url, "/v1/timelines/home?limit=20", tokens, "")
                    f1 = tiers.sample()
                    first = {k: (b - a) / len(tokens) * 1e6 for k, a, b in zip(NAMES, f0[1:], f1[1:])}
                    rows["first read after posts"].append({"rps": len(tokens) / (f1[0] - f0[0]), "p99": 0.0,
                                                           "drain_s": 0.0, **first})
                    print(f"round {r + 1} first read of each page after the posts (one client): CPU µs/page "
                          + ", ".join(f"{k} {first[k]:.0f}" for k in NAMES), flush=True)
    finally:
        stop(api)
        stop(worker)
        lag.close()
    med = statistics.median
    print(f"\nmedian of {args.rounds} rounds, wrk -t1 -c{args.connections} -d{args.seconds}s, scale-out profile"
          + (f", posts paced {args.paced:g} ms apart on 4 connections" if args.paced is not None else "")
          + f" (one API process, one worker with roles {args.roles}, PostgreSQL, Redis):\n")
    print("| figure | req/s | p99 ms | API µs | worker µs | PostgreSQL µs | Redis µs | all tiers µs |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        p99 = f"{med(x['p99'] for x in rs):.1f}" if name != "first read after posts" else "(one client)"
        print(f"| {name} | {med(x['rps'] for x in rs):,.0f} | {p99} | "
              + " | ".join(f"{med(x[k] for x in rs):.0f}" for k in NAMES)
              + f" | {med(sum(x[k] for k in NAMES) for x in rs):.0f} |")
    pairs = list(zip(rows["home"], rows["post"]))
    rate = [p["rps"] / h["rps"] for h, p in pairs]
    api_cpu = [h["api"] / p["api"] for h, p in pairs if p["api"]]
    print(f"\nposts / home, rates in the same round: {med(rate):.2f} ({', '.join(f'{x:.2f}' for x in rate)})")
    print(f"posts / home, by the API process's CPU per request (the rate ratio of an API process with a core"
          f" to itself): {med(api_cpu):.2f} ({', '.join(f'{x:.2f}' for x in api_cpu)})")


if __name__ == "__main__":
    main()
