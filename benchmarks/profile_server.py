"""Where the server's time goes under load: py-spy on a `homefeed serve` process while the
open-loop generator (this process, not the server) applies a fixed rate.

    .venv/bin/python benchmarks/profile_server.py --world /tmp/hfbench/w100k \
        --strategy hybrid --rate 1500 --mix home_timeline=65,post=1 --out benchmarks/results/profile_hybrid

Writes <out>.txt (py-spy raw collapsed stacks) and prints the functions with the most samples,
by self time and by inclusive time (homefeed, starlette/uvicorn, sqlite3, asyncio...).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from homefeed.bench.loadgen import _parse_mix
from homefeed.bench.runner import pick_users, run_workload
from homefeed.bench.server import ServerProcess, copy_world, warm_timelines
from homefeed.bench.world import read_tokens


def aggregate(raw: Path, top: int = 25) -> str:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        n_i = int(n)
        total += n_i
        frames = stack.split(";")
        self_c[_short(frames[-1])] += n_i
        for f in set(_short(f) for f in frames):
            incl[f] += n_i
    out = [f"{total} samples"]
    out.append("\nby self time:")
    out += [f"  {c / total:6.1%}  {f}" for f, c in self_c.most_common(top)]
    out.append("\nby inclusive time (homefeed and library frames):")
    out += [f"  {c / total:6.1%}  {f}" for f, c in incl.most_common(top * 2)
            if "homefeed" in f or "starlette" in f or "uvicorn" in f or "sqlite" in f][:top]
    return "\n".join(out)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    p.add_argument("--strategy", default="hybrid")
    p.add_argument("--rate", type=float, default=1500)
    p.add_argument("--mix", default="home_timeline=65,post=1")
    p.add_argument("--active", type=int, default=5000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    users = pick_users(read_tokens(Path(a.world) / "tokens.tsv"), a.active)
    raw = Path(a.out + ".txt")
    raw.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hf-prof-") as tmp:
        run = copy_world(a.world, Path(tmp) / "run")
        with ServerProcess(run, env={"HOMEFEED_FEED_STRATEGY": a.strategy}) as srv:
            asyncio.run(warm_timelines(srv.url, [u.token for u in users]))
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw",
                                    "-o", str(raw), "-d", str(a.seconds), "-r", "200", "--nonblocking",
                                    "-p", str(srv.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)
            res = run_workload(srv.url, users, a.rate, a.seconds + 1, _parse_mix(a.mix))
            try:
                spy.wait(timeout=a.seconds + 20)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
    print(res.format())
    report = aggregate(raw)
    Path(a.out + "_top.txt").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
