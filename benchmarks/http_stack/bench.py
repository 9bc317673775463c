"""HTTP stack benchmark + process-model probes for homefeed.

One file, three roles:

* ASGI apps (imported by uvicorn / granian as ``bench:<name>``):
    starlette_orjson  Starlette route -> orjson.dumps -> Response(bytes)
    starlette_json    Starlette route -> JSONResponse (stdlib json)
    raw_asgi          bare ASGI callable, orjson, no framework
    probe_app         Starlette app whose lifespan starts an asyncio task and a
                      SQLite writer thread; /probe reports pid/ppid/progress
* ``python bench.py run [--rounds 3 --duration 10 --connections 64]``
  runs every configuration ``rounds`` times, interleaved, with wrk, and prints a
  markdown table of medians and ratios vs. configuration 1 (and writes
  results.json next to this file).
* ``python bench.py paired [--pairs 5 --duration 3]`` keeps all servers up and
  runs bracketed A/B pairs (baseline, candidate, baseline, ...) of short wrk
  runs; each candidate run is compared with the mean of the two baseline runs
  around it. Use this when the machine is shared (writes results_paired.json).
  ``run`` also records server CPU per request and "foreign" CPU (other
  processes' load during each run) so noisy runs can be spotted.
* ``python bench.py facts`` answers the process-model questions:
  (a) granian process tree with --workers 1, SIGKILL of the parent,
  (b) lifespan startup/shutdown + background tasks under granian,
  (c) granian's embedded (in-process) server.
* ``python bench.py embed --port P --app NAME`` runs granian embedded in this
  process (used by both ``run`` and ``facts``).

Only ever talks to 127.0.0.1. Every server started is stopped by its pid.
Run with the project venv:  /work/main/.venv/bin/python bench.py run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"

# --------------------------------------------------------------------------
# Payload: 20 small post objects, ~2 KB once serialized.
# --------------------------------------------------------------------------

POSTS = [
    {
        "id": 1_700_000_000_000 + i,
        "author": f"user_{4200 + i}",
        "text": f"post {i}: short text",
        "created_at": f"2024-05-01T12:{i:02d}:00Z",
        "likes": i * 3,
    }
    for i in range(20)
]
PAYLOAD_BYTES = len(orjson.dumps({"items": POSTS, "next_cursor": "c1700000000019"}))


def _timeline_body() -> bytes:
    return orjson.dumps({"items": POSTS, "next_cursor": "c1700000000019"})


# --------------------------------------------------------------------------
# Apps under test
# --------------------------------------------------------------------------


async def _timeline_orjson(request):
    return Response(_timeline_body(), media_type="application/json")


async def _timeline_json(request):
    return JSONResponse({"items": POSTS, "next_cursor": "c1700000000019"})


starlette_orjson = Starlette(routes=[Route("/timeline", _timeline_orjson)])
starlette_json = Starlette(routes=[Route("/timeline", _timeline_json)])

_RAW_HEADERS = [(b"content-type", b"application/json")]
_NOT_FOUND = {"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]}


async def raw_asgi(scope, receive, send):
    t = scope["type"]
    if t == "http":
        if scope["path"] == "/timeline":
            body = _timeline_body()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": _RAW_HEADERS + [(b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        else:
            await send(_NOT_FOUND)
            await send({"type": "http.response.body", "body": b""})
    elif t == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


# --- probe app: mimics the embedded profile (asyncio task + SQLite writer thread)

_probe = {"ticks": 0, "db_rows": 0, "startup_pid": None, "thread": None}
PROBE_MARKER_DIR = os.environ.get("PROBE_MARKER_DIR", tempfile.gettempdir())


def _sqlite_writer(stop: threading.Event, path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("create table if not exists t (ts real)")
    while not stop.is_set():
        conn.execute("insert into t values (?)", (time.time(),))
        conn.commit()
        _probe["db_rows"] += 1
        stop.wait(0.05)
    conn.close()


@contextlib.asynccontextmanager
async def _probe_lifespan(app):
    _probe["startup_pid"] = os.getpid()
    Path(PROBE_MARKER_DIR, f"startup.{os.getpid()}").write_text("ok")

    async def ticker():
        while True:
            _probe["ticks"] += 1
            await asyncio.sleep(0.05)

    task = asyncio.get_running_loop().create_task(ticker())
    stop = threading.Event()
    th = threading.Thread(
        target=_sqlite_writer, args=(stop, str(Path(PROBE_MARKER_DIR, f"db.{os.getpid()}.sqlite"))), daemon=True
    )
    th.start()
    _probe["thread"] = th
    try:
        yield
    finally:
        task.cancel()
        stop.set()
        th.join(2)
        Path(PROBE_MARKER_DIR, f"shutdown.{os.getpid()}").write_text("ok")


async def _probe_route(request):
    th = _probe["thread"]
    return Response(
        orjson.dumps(
            {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "startup_pid": _probe["startup_pid"],
                "ticks": _probe["ticks"],
                "db_rows": _probe["db_rows"],
                "writer_thread_alive": bool(th and th.is_alive()),
                "loop": type(asyncio.get_running_loop()).__module__,
                "threads": threading.active_count(),
            }
        ),
        media_type="application/json",
    )


probe_app = Starlette(routes=[Route("/probe", _probe_route)], lifespan=_probe_lifespan)


# --------------------------------------------------------------------------
# Embedded granian (in-process)
# --------------------------------------------------------------------------


def embed_main(app_name: str, port: int, runtime_threads: int = 1) -> None:
    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server

    app = globals()[app_name]
    server = Server(
        app,
        address=HOST,
        port=port,
        interface=Interfaces.ASGI,
        runtime_threads=runtime_threads,
        websockets=False,
        log_enabled=False,
        backlog=1024,
    )

    async def main():
        loop = asyncio.get_running_loop()
        # the embedded server installs no signal handlers of its own
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    uvloop.run(main())


# --------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def wait_port_closed(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_open(port):
            return True
        time.sleep(0.05)
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); treat it as dead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def get_json(port: int, path: str):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=3) as r:
        return json.loads(r.read())


def ps_forest(pids: list[int]) -> str:
    pids = [p for p in pids if pid_alive(p)]
    if not pids:
        return "(none alive)"
    return subprocess.run(
        ["ps", "--forest", "-o", "pid,ppid,stat,args", "-p", ",".join(map(str, pids))],
        capture_output=True,
        text=True,
    ).stdout.rstrip()


def stop_tree(root: int, sig=signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop `root` and any children it has, by pid; escalate to SIGKILL."""
    pids = [root] + children_of(root)
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for p in pids:
        if pid_alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


# --------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------

UVICORN = [str(VENV_BIN / "uvicorn")]
GRANIAN = [str(VENV_BIN / "granian")]
UV_OPTS = ["--loop", "uvloop", "--http", "httptools", "--workers", "1", "--no-access-log", "--log-level", "warning"]
GR_OPTS = ["--interface", "asgi", "--workers", "1", "--no-ws", "--log-level", "warning", "--no-access-log"]

# name -> (argv builder taking port)
CONFIGS: dict[str, callable] = {
    "1 uvicorn+starlette(orjson)": lambda p: UVICORN + UV_OPTS + ["--port", str(p), "bench:starlette_orjson"],
    "2a granian+starlette (defaults: loop auto=uvloop, 1 rt thread)": lambda p: GRANIAN
    + GR_OPTS
    + ["--port", str(p), "bench:starlette_orjson"],
    "2b granian+starlette --loop asyncio": lambda p: GRANIAN
    + GR_OPTS
    + ["--loop", "asyncio", "--port", str(p), "bench:starlette_orjson"],
    "2c granian+starlette --loop uvloop --runtime-threads 2": lambda p: GRANIAN
    + GR_OPTS
    + ["--loop", "uvloop", "--runtime-threads", "2", "--port", str(p), "bench:starlette_orjson"],
    "2d granian+starlette --loop uvloop --runtime-mode st": lambda p: GRANIAN
    + GR_OPTS
    + ["--loop", "uvloop", "--runtime-mode", "st", "--port", str(p), "bench:starlette_orjson"],
    "2e granian+starlette embedded (in-process, uvloop)": lambda p: [
        sys.executable,
        str(HERE / "bench.py"),
        "embed",
        "--app",
        "starlette_orjson",
        "--port",
        str(p),
    ],
    "3a uvicorn+raw ASGI": lambda p: UVICORN + UV_OPTS + ["--port", str(p), "bench:raw_asgi"],
    "3b granian+raw ASGI --loop uvloop": lambda p: GRANIAN
    + GR_OPTS
    + ["--loop", "uvloop", "--port", str(p), "bench:raw_asgi"],
    "4a uvicorn+starlette JSONResponse": lambda p: UVICORN + UV_OPTS + ["--port", str(p), "bench:starlette_json"],
    "4b granian+starlette JSONResponse --loop uvloop": lambda p: GRANIAN
    + GR_OPTS
    + ["--loop", "uvloop", "--port", str(p), "bench:starlette_json"],
}

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(tok: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", tok)
    if not m:
        raise ValueError(tok)
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out: str) -> dict:
    res = {}
    res["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1).strip() if m else ""
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    return res


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all cpus from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def _proc_jiffies(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime (fields 14, 15)
    except (FileNotFoundError, IndexError):
        return 0


def machine_busy(interval: float = 1.0) -> float:
    """Fraction of all cpus busy over `interval` seconds."""
    b0, t0 = _cpu_jiffies()
    time.sleep(interval)
    b1, t1 = _cpu_jiffies()
    return (b1 - b0) / max(1, t1 - t0)


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (bounded) until the machine is mostly idle; returns the last busy fraction."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = machine_busy()
    return busy


def run_one(name: str, argv_fn, duration: int, connections: int, threads: int) -> dict:
    port = free_port()
    argv = argv_fn(port)
    proc = subprocess.Popen(
        argv, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_port(port)
        url = f"http://{HOST}:{port}/timeline"
        with urllib.request.urlopen(url, timeout=3) as r:
            body = r.read()
            assert r.status == 200 and len(body) == PAYLOAD_BYTES, (r.status, len(body))
        # warm-up (bounded), then the measured run
        subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", "-d2s", url], capture_output=True, check=True)
        spids = [proc.pid] + children_of(proc.pid)
        s0 = sum(_proc_jiffies(p) for p in spids)
        b0, t0 = _cpu_jiffies()
        w = subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
            stdout=subprocess.PIPE,
            text=True,
        )
        out = w.stdout.read()
        _, status, ru = os.wait4(w.pid, 0)
        w.returncode = os.waitstatus_to_exitcode(status)
        b1, t1 = _cpu_jiffies()
        s1 = sum(_proc_jiffies(p) for p in spids)
        assert w.returncode == 0, out
        hz = os.sysconf("SC_CLK_TCK")
        res = parse_wrk(out)
        res["server_procs"] = len(spids)
        res["server_cpu_s"] = (s1 - s0) / hz
        res["wrk_cpu_s"] = ru.ru_utime + ru.ru_stime
        # cpu-seconds burnt on this machine during the run by anything other than server + wrk
        res["foreign_cpu_s"] = max(0.0, (b1 - b0) / hz - res["server_cpu_s"] - res["wrk_cpu_s"])
        return res
    finally:
        stop_tree(proc.pid)
        proc.wait(timeout=15)
        if proc.stderr:
            proc.stderr.close()
        if not wait_port_closed(port):
            print(f"WARNING: port {port} still open after stopping {name}", file=sys.stderr)


def cmd_run(args) -> None:
    names = list(CONFIGS)
    if args.only:
        names = [n for n in names if any(n.startswith(o) for o in args.only)]
        if names[0] != next(iter(CONFIGS)):
            names.insert(0, next(iter(CONFIGS)))  # always keep the baseline
    print(f"payload {PAYLOAD_BYTES} bytes; wrk -t{args.threads} -c{args.connections} -d{args.duration}s; "
          f"{args.rounds} rounds interleaved; {os.cpu_count()} cpus", flush=True)
    results: dict[str, list[dict]] = {n: [] for n in names}
    for rnd in range(args.rounds):
        # rotate the order each round so no config always runs first/last in a round
        for n in names[rnd % len(names):] + names[: rnd % len(names)]:
            idle_before = None
            if args.quiet_threshold < 1.0:
                idle_before = wait_quiet(args.quiet_threshold, args.quiet_max_wait)
            r = run_one(n, CONFIGS[n], args.duration, args.connections, args.threads)
            r["busy_before"] = idle_before
            results[n].append(r)
            print(f"round {rnd + 1} | {n:60s} | {r['rps']:9.0f} rps | p50 {r['p50_ms']:.2f} ms | "
                  f"p99 {r['p99_ms']:.2f} ms | procs {r['server_procs']} | server cpu {r['server_cpu_s']:.1f}s "
                  f"wrk cpu {r['wrk_cpu_s']:.1f}s foreign cpu {r['foreign_cpu_s']:.1f}s "
                  f"{r['socket_errors']}", flush=True)

    (HERE / "results.json").write_text(json.dumps({"payload_bytes": PAYLOAD_BYTES, "results": results}, indent=1))
    base = names[0]
    print()
    print("| config | req/s (median) | p50 ms | p99 ms | req/s vs 1 (per-round ratios) | server cpu-s/10k req "
          "| foreign cpu-s (median) |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for n in names:
        rps = statistics.median(r["rps"] for r in results[n])
        p50 = statistics.median(r["p50_ms"] for r in results[n])
        p99 = statistics.median(r["p99_ms"] for r in results[n])
        ratios = [a["rps"] / b["rps"] for a, b in zip(results[n], results[base])]
        cpu = statistics.median(r["server_cpu_s"] / (r["rps"] * args.duration) * 1e4 for r in results[n])
        print(f"| {n} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | "
              f"x{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) | {cpu:.2f} | "
              f"{statistics.median(r['foreign_cpu_s'] for r in results[n]):.1f} |")
    foreign = [r["foreign_cpu_s"] for rs in results.values() for r in rs]
    print(f"\nforeign cpu-seconds per {args.duration}s run (other processes on the machine): "
          f"median {statistics.median(foreign):.1f}, max {max(foreign):.1f}")


def _wrk_once(url: str, duration: int, connections: int, threads: int, spids: list[int]) -> dict:
    s0 = sum(_proc_jiffies(p) for p in spids)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    r = parse_wrk(out)
    r["server_cpu_s"] = (sum(_proc_jiffies(p) for p in spids) - s0) / os.sysconf("SC_CLK_TCK")
    return r


def cmd_paired(args) -> None:
    """Bracketed A/B runs: B C B C ... B, short runs, all servers kept up.

    Robust to slowly varying load from other processes sharing the machine: each
    candidate run is compared to the mean of the two baseline runs around it.
    """
    names = list(CONFIGS)
    base = names[0]
    procs, ports = {}, {}
    try:
        for n in names:
            port = free_port()
            procs[n] = subprocess.Popen(CONFIGS[n](port), cwd=HERE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
            ports[n] = port
        for n in names:
            wait_port(ports[n])
            url = f"http://{HOST}:{ports[n]}/timeline"
            subprocess.run(["wrk", "-t1", f"-c{args.connections}", "-d1s", url], capture_output=True, check=True)
        spids = {n: [procs[n].pid] + children_of(procs[n].pid) for n in names}
        print(f"paired mode: {args.pairs} bracketed pairs of {args.duration}s runs per config, "
              f"wrk -t{args.threads} -c{args.connections}", flush=True)
        rows = {}
        for n in names[1:]:
            url_b = f"http://{HOST}:{ports[base]}/timeline"
            url_c = f"http://{HOST}:{ports[n]}/timeline"
            b = [_wrk_once(url_b, args.duration, args.connections, args.threads, spids[base])]
            c = []
            for _ in range(args.pairs):
                c.append(_wrk_once(url_c, args.duration, args.connections, args.threads, spids[n]))
                b.append(_wrk_once(url_b, args.duration, args.connections, args.threads, spids[base]))
            ratios = [ci["rps"] / ((b[i]["rps"] + b[i + 1]["rps"]) / 2) for i, ci in enumerate(c)]
            p50r = [ci["p50_ms"] / ((b[i]["p50_ms"] + b[i + 1]["p50_ms"]) / 2) for i, ci in enumerate(c)]
            p99r = [ci["p99_ms"] / ((b[i]["p99_ms"] + b[i + 1]["p99_ms"]) / 2) for i, ci in enumerate(c)]
            cpu = lambda rs: statistics.median(r["server_cpu_s"] / (r["rps"] * args.duration) * 1e4 for r in rs)
            rows[n] = dict(
                ratio=statistics.median(ratios), ratios=ratios, p50_ratio=statistics.median(p50r),
                p99_ratio=statistics.median(p99r), rps=statistics.median(r["rps"] for r in c),
                base_rps=statistics.median(r["rps"] for r in b), cpu=cpu(c), base_cpu=cpu(b),
            )
            print(f"{n:62s} req/s x{rows[n]['ratio']:.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) "
                  f"p50 x{rows[n]['p50_ratio']:.2f} p99 x{rows[n]['p99_ratio']:.2f} "
                  f"cpu/10k {rows[n]['cpu']:.2f} vs {rows[n]['base_cpu']:.2f}", flush=True)
        (HERE / "results_paired.json").write_text(json.dumps(rows, indent=1))
        print("\n| config | req/s vs 1 (median of bracketed ratios) | p50 vs 1 | p99 vs 1 | server cpu-s/10k req (config / baseline) |")
        print("|---|---|---:|---:|---:|")
        for n, r in rows.items():
            print(f"| {n} | x{r['ratio']:.2f} ({', '.join(f'{x:.2f}' for x in r['ratios'])}) | "
                  f"x{r['p50_ratio']:.2f} | x{r['p99_ratio']:.2f} | {r['cpu']:.2f} / {r['base_cpu']:.2f} |")
    finally:
        for n, pr in procs.items():
            stop_tree(pr.pid)
            pr.wait(timeout=15)
        for n, port in ports.items():
            if not wait_port_closed(port):
                print(f"WARNING: port {port} ({n}) still open", file=sys.stderr)


# --------------------------------------------------------------------------
# Facts (a)-(c)
# --------------------------------------------------------------------------


def _start(argv, marker_dir):
    env = dict(os.environ, PROBE_MARKER_DIR=marker_dir)
    return subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _probe_twice(port):
    a = get_json(port, "/probe")
    time.sleep(1.0)
    b = get_json(port, "/probe")
    return a, b


def _markers(d):
    return sorted(p.name for p in Path(d).iterdir() if not p.name.startswith("db."))


def fact_server(label, argv_fn) -> None:
    print(f"\n===== {label} =====")
    # --- run 1: liveness, process tree, graceful SIGTERM
    with tempfile.TemporaryDirectory() as md:
        port = free_port()
        proc = _start(argv_fn(port), md)
        app_pid = None
        try:
            wait_port(port)
            a, b = _probe_twice(port)
            app_pid = a["pid"]
            kids = children_of(proc.pid)
            print(f"started pid={proc.pid}; children={kids}")
            print(ps_forest([proc.pid] + kids))
            print(f"app runs in pid={a['pid']} (ppid={a['ppid']}); same as started process: {a['pid'] == proc.pid}")
            print(f"lifespan startup ran in pid={a['startup_pid']}; markers={_markers(md)}")
            print(f"asyncio task ticks {a['ticks']} -> {b['ticks']} over 1s; sqlite rows {a['db_rows']} -> "
                  f"{b['db_rows']}; writer thread alive={b['writer_thread_alive']}; loop={a['loop']}")
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print("did not exit on SIGTERM within 15s")
            print(f"after SIGTERM to started pid: rc={proc.returncode}, app pid alive={pid_alive(a['pid'])}, "
                  f"port closed={wait_port_closed(port, 5)}, markers={_markers(md)} "
                  f"(shutdown.<pid> present => lifespan shutdown ran)")
        finally:
            stop_tree(proc.pid)
            if app_pid and pid_alive(app_pid):
                stop_tree(app_pid)
    # --- run 2: SIGKILL the started pid
    with tempfile.TemporaryDirectory() as md:
        port = free_port()
        proc = _start(argv_fn(port), md)
        app_pid = None
        try:
            wait_port(port)
            app_pid = get_json(port, "/probe")["pid"]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            time.sleep(3.0)
            alive = pid_alive(app_pid)
            print(f"SIGKILL started pid {proc.pid} (app pid {app_pid}); after 3s: app pid alive={alive}, "
                  f"port still accepting={port_open(port)}")
            if alive and app_pid != proc.pid:
                p = get_json(port, "/probe")
                print(f"  orphan still serving: pid={p['pid']} ppid={p['ppid']} ticks={p['ticks']}")
                print("  " + ps_forest([app_pid]).replace("\n", "\n  "))
                time.sleep(12.0)
                p = get_json(port, "/probe")
                print(f"  15s after the SIGKILL: orphan alive={pid_alive(app_pid)}, still serving, ticks={p['ticks']}")
        finally:
            if app_pid and pid_alive(app_pid):
                stop_tree(app_pid)
                print(f"  (cleanup: stopped orphan {app_pid}; port closed={wait_port_closed(port, 5)})")
            stop_tree(proc.pid)
    # --- run 3: SIGKILL the whole process group (what a test harness can do instead)
    with tempfile.TemporaryDirectory() as md:
        port = free_port()
        proc = _start(argv_fn(port), md)
        app_pid = None
        try:
            wait_port(port)
            app_pid = get_json(port, "/probe")["pid"]
            os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session=True, so pgid == pid
            proc.wait(timeout=5)
            time.sleep(1.0)
            print(f"os.killpg(SIGKILL) on the started pid's group: app pid alive={pid_alive(app_pid)}, "
                  f"port still accepting={port_open(port)}")
        finally:
            if app_pid and pid_alive(app_pid):
                stop_tree(app_pid)
            stop_tree(proc.pid)


def cmd_facts(args) -> None:
    import granian
    import uvicorn

    print(f"granian {granian.__version__}, uvicorn {uvicorn.__version__}, python {sys.version.split()[0]}")
    fact_server(
        "uvicorn --workers 1 (reference)",
        lambda p: UVICORN + UV_OPTS + ["--port", str(p), "bench:probe_app"],
    )
    fact_server(
        "granian --interface asgi --workers 1 --loop uvloop",
        lambda p: GRANIAN + GR_OPTS + ["--loop", "uvloop", "--port", str(p), "bench:probe_app"],
    )
    fact_server(
        "granian embedded: granian.server.embed.Server inside uvloop.run() in this script's process",
        lambda p: [sys.executable, str(HERE / "bench.py"), "embed", "--app", "probe_app", "--port", str(p)],
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--duration", type=int, default=10)
    r.add_argument("--connections", type=int, default=64)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--only", nargs="*", help="config name prefixes (baseline always included)")
    r.add_argument("--quiet-threshold", type=float, default=0.10,
                   help="before each run wait until the machine is below this busy fraction (1.0 = don't wait)")
    r.add_argument("--quiet-max-wait", type=float, default=120.0, help="seconds to wait for quiet at most")
    pr = sub.add_parser("paired")
    pr.add_argument("--pairs", type=int, default=4)
    pr.add_argument("--duration", type=int, default=3)
    pr.add_argument("--connections", type=int, default=64)
    pr.add_argument("--threads", type=int, default=1)
    sub.add_parser("facts")
    e = sub.add_parser("embed")
    e.add_argument("--app", default="starlette_orjson")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--runtime-threads", type=int, default=1)
    a = ap.parse_args()
    if a.cmd == "run":
        cmd_run(a)
    elif a.cmd == "paired":
        cmd_paired(a)
    elif a.cmd == "facts":
        cmd_facts(a)
    else:
        embed_main(a.app, a.port, a.runtime_threads)


if __name__ == "__main__":
    main()
