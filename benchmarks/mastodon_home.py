"""The Mastodon home timeline against the native one, same server, same run.

One ``homefeed serve`` on a demo world; each round drives, with ``wrk`` and the same
rotating tokens, ``GET /v1/timelines/home?limit=20`` (``wrk/home.lua``) and
``GET /api/v1/timelines/home?limit=20`` (``wrk/mastodon_home.lua``), alternating which goes
first. The answer: req/s and p99 of each per round, and the ratio Mastodon / native (the
median over rounds). The issue asks for at least 0.8.

    .venv/bin/homefeed demo --no-serve --data-dir /tmp/mhworld      # the demo world, once
    .venv/bin/python benchmarks/mastodon_home.py --world /tmp/mhworld

Needs ``wrk``. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_http import WRK, free_port, run_wrk, stop, wait_healthy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True, help="a data dir made by `homefeed demo --no-serve`")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=1000)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="mastohome-"))
    try:
        data = tmp / "data"
        data.mkdir()
        for f in args.world.iterdir():
            if f.name.startswith("homefeed.db"):
                shutil.copy(f, data / f.name)
        tokens = tmp / "tokens.txt"
        lines = (args.world / "demo-tokens.tsv").read_text().splitlines()
        tokens.write_text("\n".join(line.split("\t")[1] for line in lines[1 : args.tokens + 1]) + "\n")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(tmp / "server.log", "wb")
        env = {**os.environ, "HOMEFEED_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "homefeed", "serve", "--data-dir", str(data),
                                 "--port", str(port)], stdout=log, stderr=log, env=env)
        try:
            wait_healthy(url)
            scripts = {"native": WRK / "home.lua", "mastodon": WRK / "mastodon_home.lua"}
            for script in scripts.values():  # warm every cache both reads use
                run_wrk(script, url, tokens, args.warmup, args.connections)
            rows: dict[str, list[tuple[float, float]]] = {"native": [], "mastodon": []}
            for r in range(args.rounds):
                order = ["native", "mastodon"] if r % 2 == 0 else ["mastodon", "native"]
                for side in order:
                    rows[side].append(run_wrk(scripts[side], url, tokens, args.seconds, args.connections))
                print(f"round {r + 1}: native {rows['native'][-1][0]:.0f} req/s p99 {rows['native'][-1][1]:.1f} ms;"
                      f" mastodon {rows['mastodon'][-1][0]:.0f} req/s p99 {rows['mastodon'][-1][1]:.1f} ms;"
                      f" ratio {rows['mastodon'][-1][0] / rows['native'][-1][0]:.2f}")
            ratios = [m[0] / n[0] for m, n in zip(rows["mastodon"], rows["native"])]
            print(f"median ratio mastodon/native: {statistics.median(ratios):.2f}"
                  f" (native median {statistics.median(x[0] for x in rows['native']):.0f} req/s,"
                  f" mastodon median {statistics.median(x[0] for x in rows['mastodon']):.0f} req/s)")
        finally:
            stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
