"""Home reads while posts arrive: what a live server sees, where readers read between their
followees' posts (issue 14's steady state for the Mastodon home).

A kept page serves a read only until something on it changes; issue14_table.py reads with no
writes at all, so it never shows what a trickle of posts costs the reads. Here, per source
tree (one ``homefeed serve`` each, on its own copy of a demo world, every page read once
first), each round drives, with ``wrk -t1 -c32``:

- each read figure alone (``home``: ``GET /v1/timelines/home?limit=20``; ``mastodon``:
  ``GET /api/v1/timelines/home?limit=20``; both with ``Accept-Encoding: gzip``, as real
  clients send), then
- the same while a paced poster (``wrk/post_paced.lua``, ``-c1``, ``--delay-ms`` between posts:
  ~40-80 posts/s, each pushed to its author's followers) posts beside it.

It prints each figure's rate alone and with posts, their ratio, and ``mastodon / home`` with
posts (the issue's "Mastodon home ≥ 0.8 × the native home read", in that steady state), the
median of the rounds. Trees are measured in turns, in the same run, so compare them by ratio.

    git archive <base> src benchmarks | tar -x -C /tmp/base
    .venv/bin/python benchmarks/reads_under_posts.py --world /tmp/hf14world --trees new=. base=/tmp/base
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_http import WRK, free_port, parse_wrk, stop, wait_healthy  # noqa: E402
from issue14_table import warm_all, wrk  # noqa: E402

READS = {"home": ("home.lua", "/v1/timelines/home?limit=20"),
         "mastodon": ("mastodon_home.lua", "/api/v1/timelines/home?limit=20")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True, help="a data dir made by `homefeed demo --no-serve`")
    ap.add_argument("--trees", nargs="+", default=["this=."], help="name=path of a tree holding src/")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=3000)
    ap.add_argument("--delay-ms", type=int, default=10, help="the poster's pause between posts")
    ap.add_argument("--accept-encoding", default="gzip")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="hf-rup-"))
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        tokens = tmp / "tokens.txt"
        lines = (args.world / "demo-tokens.tsv").read_text().splitlines()
        tokens.write_text("\n".join(line.split("\t")[1] for line in lines[1 : args.tokens + 1]) + "\n")
        listed = tokens.read_text().split()
        for spec in args.trees:
            name, _, path = spec.partition("=")
            data = tmp / name
            data.mkdir()
            for f in args.world.iterdir():
                if f.name.startswith("homefeed.db"):
                    shutil.copy(f, data / f.name)
            port = free_port()
            env = {**os.environ, "HOMEFEED_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path(path).resolve() / "src")}
            log = open(tmp / f"{name}.log", "wb")
            proc = subprocess.Popen([sys.executable, "-m", "homefeed", "serve", "--data-dir", str(data),
                                     "--port", str(port)], stdout=log, stderr=log, env=env, start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url)
            servers[name] = (proc, url)
            for script, path_q in READS.values():
                warm_all(url, path_q, listed, args.accept_encoding)
        rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        names = list(servers)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                proc, url = servers[name]
                for fig, (script, _) in READS.items():
                    alone = wrk(url, WRK / script, tokens, args.seconds, 32, proc.pid, args.accept_encoding)
                    poster = subprocess.Popen(
                        ["wrk", "-t1", "-c1", f"-d{args.seconds + 2}s", "--latency", "-s", str(WRK / "post_paced.lua"), url],
                        env={**os.environ, "TOKENS": str(tokens), "DELAY_MS": str(args.delay_ms)},
                        stdout=subprocess.PIPE, text=True)
                    time.sleep(1)
                    mixed = wrk(url, WRK / script, tokens, args.seconds, 32, proc.pid, args.accept_encoding)
                    posts_per_s, _ = parse_wrk(poster.communicate()[0])
                    rows.setdefault((name, fig), []).append((alone[0], mixed[0], posts_per_s))
                    print(f"round {r + 1} (load {os.getloadavg()[0]:.1f}) {name} {fig}: alone {alone[0]:,.0f} req/s,"
                          f" with {posts_per_s:.0f} posts/s {mixed[0]:,.0f} req/s ({mixed[0] / alone[0]:.2f})", flush=True)
        print(f"\nmedian of {args.rounds} rounds, wrk -t1 -c32 -d{args.seconds}s, Accept-Encoding: {args.accept_encoding or '-'}:")
        print("| tree | figure | alone req/s | with posts req/s | with / alone | posts/s | mastodon / home, with posts |")
        print("|---|---|---|---|---|---|---|")
        for name in names:
            for fig in READS:
                got = rows[(name, fig)]
                vs = ""
                if fig == "mastodon":
                    vs = f"{statistics.median(m[1] / h[1] for m, h in zip(got, rows[(name, 'home')])):.2f}"
                print(f"| {name} | {fig} | {statistics.median(g[0] for g in got):,.0f} |"
                      f" {statistics.median(g[1] for g in got):,.0f} | {statistics.median(g[1] / g[0] for g in got):.2f} |"
                      f" {statistics.median(g[2] for g in got):.0f} | {vs} |")
    finally:
        for proc, _ in servers.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
