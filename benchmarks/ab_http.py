"""Two versions of homefeed side by side over HTTP: home reads and durable posts, same run.

Why: the machines are shared and noisy, so a figure means something only beside a reference
measured in the same run. This script serves the same world from two source trees (a git
revision, checked out into a temporary worktree, and this working tree), alternating which
goes first in each round, and drives each with ``wrk``:

- home reads: ``GET /v1/timelines/home?limit=20`` with rotating bearer tokens
  (``benchmarks/wrk/home.lua``);
- posts: ``POST /v1/posts`` with rotating tokens (``benchmarks/wrk/post.lua``), durable,
  with fan-out and indexing running in the same process.

Each server starts on a fresh copy of the world's SQLite file, so posts of one side never
reach the other. The answer is a table of req/s and p99 per side and round, and the ratio
this-tree / base for each figure (median over the rounds).

    .venv/bin/homefeed demo --no-serve --data-dir /tmp/abworld     # the demo world, once
    .venv/bin/python benchmarks/ab_http.py --base ac8ef76 --world /tmp/abworld

Needs ``wrk`` (Debian's package). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK = ROOT / "benchmarks" / "wrk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not become healthy in {timeout:.0f} s")


def parse_wrk(out: str) -> tuple[float, float]:
    """(requests/s, p99 in ms) from wrk's --latency output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if m is None:
        raise SystemExit("no p99 in wrk output:\n" + out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors.group(1)} non-2xx answers", file=sys.stderr)
    return rps, float(m.group(1)) * scale


def run_wrk(script: Path, url: str, tokens: Path, seconds: int, connections: int) -> tuple[float, float]:
    env = {**os.environ, "TOKENS": str(tokens)}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    return parse_wrk(out)


def serve(tree: Path, world: Path, work: Path, port: int) -> subprocess.Popen[bytes]:
    data = work / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    shutil.copy(world / "homefeed.db", data / "homefeed.db")
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "HOMEFEED_ACCESS_LOG": "off",
           "HOMEFEED_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-m", "homefeed", "serve", "--data-dir", str(data), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--world", type=Path, required=True, help="a demo world's data dir")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=1000, help="rotating tokens")
    ap.add_argument("--warmup", type=int, default=4, help="seconds of home reads before measuring")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="hf-ab-"))
    base_tree = tmp / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), args.base],
                   check=True, capture_output=True)
    tokens = tmp / "tokens.txt"
    lines = (args.world / "demo-tokens.tsv").read_text().splitlines()
    tokens.write_text("\n".join(line.split("\t")[1] for line in lines[1 : args.tokens + 1]) + "\n")
    sides = {"base": base_tree, "this": ROOT}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for rnd in range(args.rounds):
            order = ["base", "this"] if rnd % 2 == 0 else ["this", "base"]
            for side in order:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = serve(sides[side], args.world, tmp / side, port)
                try:
                    wait_healthy(url)
                    run_wrk(WRK / "home.lua", url, tokens, args.warmup, args.connections)  # warm the caches
                    home = run_wrk(WRK / "home.lua", url, tokens, args.seconds, args.connections)
                    post = run_wrk(WRK / "post.lua", url, tokens, args.seconds, args.connections)
                finally:
                    stop(proc)
                results.setdefault((side, "home"), []).append(home)
                results.setdefault((side, "post"), []).append(post)
                print(f"round {rnd + 1} {side:4}: home {home[0]:8.0f} req/s p99 {home[1]:6.1f} ms | "
                      f"posts {post[0]:7.0f} req/s p99 {post[1]:6.1f} ms", flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nthis tree / {args.base} (median of {args.rounds} paired rounds):")
    for kind in ("home", "post"):
        ratios = [t[0] / b[0] for t, b in zip(results[("this", kind)], results[("base", kind)])]
        p99s = [t[1] / b[1] for t, b in zip(results[("this", kind)], results[("base", kind)])]
        print(f"  {kind:4}: throughput x{statistics.median(ratios):.2f}  p99 x{statistics.median(p99s):.2f}  "
              f"(base median {statistics.median(r[0] for r in results[('base', kind)]):.0f} req/s)")


if __name__ == "__main__":
    main()
