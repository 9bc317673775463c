"""A/B of source trees over HTTP: one `homefeed serve` per tree (each on its own copy of a
demo world) beside the bare Starlette route, every token's page read once per server
(keep-alive client), then rotated rounds of `wrk -t1 -c32`; per (tree, script) the server's
CPU µs per request (/proc) and the rate. A script ending in `+gz` sends Accept-Encoding: gzip.

    git archive <base> src benchmarks | tar -x -C /tmp/base
    .venv/bin/python benchmarks/ab_trees.py --world /tmp/hf14world --tokens /tmp/tokens.txt \
        --trees base=/tmp/base new=. --scripts home,mastodon_home \
        --extra "new:home+gz,new:mastodon_home+gz" --rounds 4 --seconds 5 --warmup 3

(`--tokens`: one token a line, e.g. `cut -f2 <world>/demo-tokens.tsv | sed -n 2,3001p`.)
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_http import free_port, stop, wait_healthy, parse_wrk
from issue14_table import cpu_seconds
WRK = Path(__file__).resolve().parent / "wrk"
ap = argparse.ArgumentParser()
ap.add_argument("--trees", nargs="+", required=True)  # name=path
ap.add_argument("--scripts", default="home,mastodon_home")
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--seconds", type=int, default=5)
ap.add_argument("--warmup", type=int, default=8)
ap.add_argument("--extra", default="", help="more tree:script figures, comma-separated")
ap.add_argument("--world", type=Path, required=True)
ap.add_argument("--tokens", type=Path, required=True)
a = ap.parse_args()
world = a.world
tmp = Path(tempfile.mkdtemp(prefix="p16ab-"))
tokens = a.tokens
procs = []; servers = {}
try:
    bport = free_port()
    procs.append(subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(WRK.parent), "bare_app:app",
        "--host", "127.0.0.1", "--port", str(bport), "--no-access-log", "--log-level", "warning"], start_new_session=True))
    servers["bare"] = (f"http://127.0.0.1:{bport}/", procs[-1].pid)
    for t in a.trees:
        name, path = t.split("=")
        d = tmp / name; d.mkdir()
        for f in world.iterdir():
            if f.name.startswith("homefeed.db"): shutil.copy(f, d / f.name)
        port = free_port()
        env = {**os.environ, "HOMEFEED_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path(path) / "src")}
        procs.append(subprocess.Popen([sys.executable, "-m", "homefeed", "serve", "--data-dir", str(d), "--port", str(port)],
            env=env, start_new_session=True, stdout=open(tmp / f"{name}.log", "wb"), stderr=subprocess.STDOUT))
        servers[name] = (f"http://127.0.0.1:{port}", procs[-1].pid)
        wait_healthy(servers[name][0])
    def run(url, script, secs, pid=None):
        cmd = ["wrk", "-t1", "-c32", f"-d{secs}s", "--latency"]
        ae = ""
        if script and script.endswith("+gz"):
            script, ae = script[:-3], "gzip"
        if script: cmd += ["-s", str(WRK / f"{script}.lua")]
        b = cpu_seconds(pid) if pid else 0
        out = subprocess.run(cmd + [url], env={**os.environ, "TOKENS": str(tokens), "ACCEPT_ENCODING": ae}, capture_output=True, text=True, check=True).stdout
        used = cpu_seconds(pid) - b if pid else 0
        rps, p99 = parse_wrk(out)
        return rps, used / max(1, rps * secs) * 1e6
    from issue14_table import warm_all
    toks = tokens.read_text().split()
    for n in servers:
        if n != "bare":
            warm_all(servers[n][0], "/v1/timelines/home?limit=20", toks, "")
            warm_all(servers[n][0], "/api/v1/timelines/home?limit=20", toks, "gzip")
    figs = [("bare", None)] + [(t.split("=")[0], s) for t in a.trees for s in a.scripts.split(",")]
    extra = [f.split(":") for f in a.extra.split(",") if f]
    figs += [(n, s) for n, s in extra]
    for n, s in figs:
        if n != "bare": run(servers[n][0], s, a.warmup)
    res = {f: [] for f in figs}
    for r in range(a.rounds):
        order = figs[r % len(figs):] + figs[:r % len(figs)]
        for f in order:
            res[f].append(run(servers[f[0]][0], f[1], a.seconds, servers[f[0]][1]))
        print(f"round {r+1} load {os.getloadavg()[0]:.1f}: " + "; ".join(f"{n}/{s} {res[(n,s)][-1][1]:.1f}us {res[(n,s)][-1][0]:.0f}/s" for n, s in figs), flush=True)
    print("medians (cpu us/req, rate, cpu ratio to bare same round):")
    for f in figs:
        print(f, f"{statistics.median(x[1] for x in res[f]):.1f}", f"{statistics.median(x[0] for x in res[f]):.0f}",
              f"{statistics.median(b[1]/x[1] for x, b in zip(res[f], res[figs[0]])):.2f}")
finally:
    for p in procs: stop(p)
    shutil.rmtree(tmp, ignore_errors=True)
