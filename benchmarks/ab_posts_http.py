"""Two source trees over HTTP, side by side: home reads and durable posts, with the serving
process's CPU per request. Issue 14's posts goal (``benchmarks/results/issue14_p15posts.md``).

Both servers (``homefeed serve``, default settings, on copies of one demo world) stay up for
the whole run, their home timelines warmed first; each round drives ``wrk -t1 -c32`` home
reads then posts on each side, the order of the sides alternating. Per side and round:
req/s, p99, post/home, and the CPU per request of the process and of its event-loop thread
(``/proc/<pid>/stat`` and ``/proc/<pid>/task/<pid>/stat``, utime + stime over the ``wrk``
run) — the figure that the machine's load disturbs least — and, during each post run, the
most behind consumer's lag (``/healthz`` "behind", polled every 0.5 s): with consumers in
the same loop as the requests, the lag must stay bounded while posts saturate the server.

    .venv/bin/python benchmarks/ab_posts_http.py base=/path/to/base/src this=src --world /tmp/hf14world
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, threading, urllib.request
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_http import WRK, free_port, parse_wrk, stop, wait_healthy
ap = argparse.ArgumentParser()
ap.add_argument("sides", nargs="+", help="name=srcdir")
ap.add_argument("--rounds", type=int, default=4); ap.add_argument("--seconds", type=int, default=5)
ap.add_argument("--warmup", type=int, default=6)
ap.add_argument("--world", required=True, help="a data dir made by `homefeed demo --no-serve`")
args = ap.parse_args()
world = Path(args.world); tmp = Path(tempfile.mkdtemp(prefix="hf-abposts-"))
tokens = tmp / "tokens.txt"
lines = (world / "demo-tokens.tsv").read_text().splitlines()
tokens.write_text("\n".join(l.split("\t")[1] for l in lines[1:3001]) + "\n")
TICK = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    def ticks(path):
        f = open(path).read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    return ticks(f"/proc/{pid}/stat") / TICK, ticks(f"/proc/{pid}/task/{pid}/stat") / TICK
def behind(url):
    """The most behind consumer's lag, in events (``/healthz``)."""
    with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
        return max((int(c.get("behind") or 0) for c in json.loads(r.read()).get("consumers", {}).values()), default=0)
def wrk(url, script, secs, pid=None):
    """(req/s, p99, process µs/req, loop µs/req, p50, most behind) of one ``wrk`` run."""
    c0 = cpu(pid) if pid else None
    lags, done = [0], threading.Event()
    def poll():
        while not done.wait(0.5):
            try:
                lags.append(behind(url))
            except OSError:  # a /healthz answered later than 5 s: no figure this time
                pass
    poller = threading.Thread(target=poll); poller.start()
    try:
        out = subprocess.run(["wrk", "-t1", "-c32", f"-d{secs}s", "--latency", "-s", str(script), url],
                             env={**os.environ, "TOKENS": str(tokens)}, capture_output=True, text=True, check=True).stdout
    finally:
        done.set(); poller.join()
    rps, p99 = parse_wrk(out)
    m = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p50 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
    if pid:
        c1 = cpu(pid); n = rps * secs
        return rps, p99, (c1[0] - c0[0]) / n * 1e6, (c1[1] - c0[1]) / n * 1e6, p50, max(lags)
    return rps, p99
sides = dict(s.split("=", 1) for s in args.sides); procs = {}; urls = {}
res = {n: {"home": [], "post": []} for n in sides}
try:
    for name, src in sides.items():
        data = tmp / name / "data"; data.mkdir(parents=True)
        shutil.copy(world / "homefeed.db", data / "homefeed.db")
        port = free_port(); urls[name] = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HOMEFEED_LOG_LEVEL": "WARNING", "PYTHONPATH": src}
        procs[name] = subprocess.Popen([sys.executable, "-m", "homefeed", "serve", "--data-dir", str(data), "--port", str(port)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for name in sides:
        wait_healthy(urls[name]); wrk(urls[name], WRK / "home.lua", args.warmup)
        wrk(urls[name], WRK / "post.lua", 2)  # each user's first post (its handle read) out of the figures
    for r in range(args.rounds):
        names = list(sides); names = names[r % len(names):] + names[:r % len(names)]
        load = os.getloadavg()[0]
        for kind in ("home", "post"):
            for name in names:
                res[name][kind].append(wrk(urls[name], WRK / f"{kind}.lua", args.seconds, procs[name].pid))
        print(f"round {r+1} load {load:4.1f}-{os.getloadavg()[0]:4.1f}: " + " | ".join(
            f"{n} home {res[n]['home'][-1][0]:6.0f} ({res[n]['home'][-1][2]:.0f}/{res[n]['home'][-1][3]:.0f} µs) post {res[n]['post'][-1][2]:.0f}/{res[n]['post'][-1][3]:.0f} µs {res[n]['post'][-1][0]:5.0f} (p50 {res[n]['post'][-1][4]:4.1f} p99 {res[n]['post'][-1][1]:5.1f}, behind <= {res[n]['post'][-1][5]}) ratio {res[n]['post'][-1][0]/res[n]['home'][-1][0]:.3f}"
            for n in sides), flush=True)
finally:
    for p in procs.values(): stop(p)
    shutil.rmtree(tmp, ignore_errors=True)
for n in sides:
    h, p = res[n]["home"], res[n]["post"]
    print(f"{n:5}: home {statistics.median(x[0] for x in h):.0f}/s p99 {statistics.median(x[1] for x in h):.1f}; post {statistics.median(x[0] for x in p):.0f}/s p50 {statistics.median(x[4] for x in p):.1f} p99 {statistics.median(x[1] for x in p):.1f} ms (rounds {', '.join(f'{x[1]:.0f}' for x in p)}), behind at most {max(x[5] for x in p)}; post/home median {statistics.median(a[0]/b[0] for a, b in zip(p, h)):.3f}; CPU µs/req (process/loop thread) home {statistics.median(x[2] for x in h):.0f}/{statistics.median(x[3] for x in h):.0f} post {statistics.median(x[2] for x in p):.0f}/{statistics.median(x[3] for x in p):.0f}; CPU home/post (loop) {statistics.median(b[3]/a[3] for a, b in zip(p, h)):.3f}")
