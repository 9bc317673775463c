"""What blocks the event loop while durable posts are served: issue 14's "posts p99 < 50 ms"
(``benchmarks/results/issue14_p16post.md``).

At saturation a post's latency is queueing for the one event loop (``wrk -c32``: ~32 posts
in flight, each waiting for its turn and for its commit). Its p99 is set by the stretches
during which the loop runs one thing without yielding: a consumer's batch applied in one go,
a garbage collection of the whole heap, a callback resolving many futures. This script
serves one tree over HTTP (``homefeed serve`` on a copy of a demo world, uvloop as in
production), with probes put in from outside the code (nothing in the tree changes):

- a heartbeat task on the loop, sleeping 1 ms at a time: how late it wakes is how long the
  loop was busy with something else (the loop's stalls, whoever made them);
- every step of each consumer's batch handler, of its fetch and of its acknowledgement
  (the time between two suspensions of its coroutine: how long it held the loop at once),
  and each handler call's events;
- the garbage collector (``gc.callbacks``: each collection's generation and duration);
- the SQLite writer thread's commit batches (duration, writes).

Each stall of the heartbeat over ``--big`` ms is attributed to what overlapped it (a step
or a collection that ended within it). It drives ``--seconds`` of ``wrk -t1 -c32`` posts
(3,000 rotating tokens, their home timelines warmed first), polling ``/healthz`` twice a
second for the consumers' lag ("behind"), then home reads for the rate ratio, and prints
the report. Run it per tree, alternately:

    .venv/bin/python benchmarks/inproc_post_stalls.py --world /tmp/p16post/world --src src
    .venv/bin/python benchmarks/inproc_post_stalls.py --world /tmp/p16post/world --src /work/main/src
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


# -- inside the served process ---------------------------------------------------------------
def install_probes(out: Path) -> None:
    """Patch the classes both trees have; dump what was seen to ``out`` at exit."""
    import asyncio
    import atexit
    import gc

    from homefeed.adapters import outbox_stream, sqlite_db
    from homefeed.service_layer import consumers

    t0 = 0.0  # CLOCK_MONOTONIC: the driver's perf_counter is the same clock
    seen: dict[str, Any] = {"beats": [], "steps": [], "gc": [], "commits": [], "batches": [], "heap2": []}
    gc_began = [0.0, 0.0]
    knob = os.environ.get("HF_PROBE_GC", "")  # tried from outside the tree: freeze, t0=N

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            if info["generation"] == 2 and len(seen["heap2"]) < 3:  # how big the heap is, then
                import collections
                kinds = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
                seen["heap2"].append([sum(kinds.values()), kinds.most_common(10)])
            gc_began[0], gc_began[1] = time.perf_counter(), time.thread_time()
        elif threading.current_thread() is threading.main_thread():
            seen["gc"].append((now - t0, (now - gc_began[0]) * 1e3, info["generation"],
                               (time.thread_time() - gc_began[1]) * 1e3))

    gc.callbacks.append(on_gc)

    class Timed:
        """An awaitable driving ``coro`` and timing each of its steps."""

        def __init__(self, coro: Any, label: str) -> None:
            self.coro, self.label = coro, label

        def __await__(self) -> Any:
            coro, label, steps = self.coro, self.label, seen["steps"]
            clock, now = time.thread_time, time.perf_counter
            value: Any = None
            exc: BaseException | None = None
            while True:
                t, c = now(), clock()
                try:
                    y = coro.throw(exc) if exc is not None else coro.send(value)
                except StopIteration as stop:
                    e = now()
                    steps.append((e - t0, (e - t) * 1e3, label, (clock() - c) * 1e3))
                    return stop.value
                except BaseException:
                    e = now()
                    steps.append((e - t0, (e - t) * 1e3, label, (clock() - c) * 1e3))
                    raise
                e = now()
                steps.append((e - t0, (e - t) * 1e3, label, (clock() - c) * 1e3))
                try:
                    value, exc = (yield y), None
                except BaseException as thrown:  # noqa: BLE001 - passed on to the coroutine
                    value, exc = None, thrown

    start = consumers.Consumers.start

    skip = set(filter(None, os.environ.get("HF_PROBE_SKIP", "").split(",")))

    def timed_start(self: Any, *a: Any, **kw: Any) -> None:
        if skip:  # run elsewhere (--indexer-apart): the names this process runs
            names = [n for n in (a[0] if a and a[0] is not None else kw.get("names") or self.handlers) if n not in skip]
            a, kw = (names, *a[1:]), {k: v for k, v in kw.items() if k != "names"}
        for name, handler in list(self.handlers.items()):
            def wrapped(events: Any, handler: Any = handler, name: str = name) -> Any:
                seen["batches"].append((time.perf_counter() - t0, name, len(events)))
                return Timed(handler(events), name)
            self.handlers[name] = wrapped
        fetch, ack = self.stream.fetch, self.stream.ack
        self.stream.fetch = lambda *a, **kw: Timed(fetch(*a, **kw), "fetch")
        self.stream.ack = lambda *a, **kw: Timed(ack(*a, **kw), "ack")
        start(self, *a, **kw)
        asyncio.get_running_loop().create_task(beat())
        if os.environ.get("HF_PROBE_SLICE"):  # consumers.SLICE and fts5_index.TOKENIZE_SLICE
            from homefeed.adapters import fts5_index
            consumers.SLICE = fts5_index.TOKENIZE_SLICE = float(os.environ["HF_PROBE_SLICE"])  # type: ignore[attr-defined]
        for k in knob.split(","):
            if k == "freeze":
                gc.collect()
                gc.freeze()
            elif k.startswith("t0="):
                gc.set_threshold(int(k[3:]), *gc.get_threshold()[1:])

    async def beat() -> None:
        beats = seen["beats"]
        clock = time.thread_time
        while True:
            t, c = time.perf_counter(), clock()
            await asyncio.sleep(0.001)
            e = time.perf_counter()
            beats.append((e - t0, (e - t - 0.001) * 1e3, (clock() - c) * 1e3))

    consumers.Consumers.start = timed_start  # type: ignore[method-assign]
    commit_batch = sqlite_db.SqliteDatabase._commit_batch

    def timed_commit(self: Any, conn: Any, batch: list[Any]) -> None:
        spent = [0.0, 0.0]  # in the writes somebody waits for, in deferred ones (background_writes)

        def timed(fn: Any, deferred: bool) -> Any:
            def run(c: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(c)
                finally:
                    spent[deferred] += time.perf_counter() - t
            return run

        t = time.perf_counter()
        commit_batch(self, conn, [(timed(j[0], bool(j[3])), *j[1:]) for j in batch])
        e = time.perf_counter()
        seen["commits"].append((e - t0, (e - t) * 1e3, len(batch), spent[0] * 1e3, spent[1] * 1e3,
                                sum(1 for j in batch if not j[3])))

    sqlite_db.SqliteDatabase._commit_batch = timed_commit  # type: ignore[method-assign]
    _ = outbox_stream

    def dump() -> None:
        import collections
        kinds = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        seen["heap"] = [len(gc.get_objects(g)) for g in (0, 1, 2)] + [gc.get_freeze_count()]
        seen["kinds"] = kinds.most_common(12)
        out.write_text(json.dumps(seen))

    atexit.register(dump)


# -- the driver ------------------------------------------------------------------------------
def q(xs: Sequence[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def wrk(url: str, script: str, seconds: int, tokens: Path) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s",
                          str(ROOT / "benchmarks" / "wrk" / script), url],
                         env={**os.environ, "TOKENS": str(tokens)}, capture_output=True, text=True,
                         check=True).stdout
    got = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m is not None, out
        got[f"p{pct}"] = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    if "Non-2xx" in out:
        print("  warning: non-2xx answers:", re.search(r"Non-2xx.*", out).group(0))  # type: ignore[union-attr]
    return got


def behind(url: str, skip: Sequence[str] = ()) -> int:
    """The most behind consumer's lag, events (``/healthz``), but those in ``skip`` (run by
    another process: the server's figure for them is its cached offset, not theirs)."""
    with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
        body = json.loads(r.read())
    return max((int(c.get("behind") or 0) for n, c in body.get("consumers", {}).items() if n not in skip), default=0)


def report(seen: dict[str, Any], t_from: float, t_to: float, big: float) -> None:
    def within(rows: list[Any]) -> list[Any]:
        return [r for r in rows if t_from <= r[0] <= t_to]

    beats, steps, gcs = within(seen["beats"]), within(seen["steps"]), within(seen["gc"])
    commits, batches = within(seen["commits"]), within(seen["batches"])
    late = [b[1] for b in beats]
    cpu = [b[2] for b in beats]
    print(f"loop thread CPU in the window: {sum(cpu) / 1e3:.2f} s of {t_to - t_from:.1f} s")
    print(f"loop stalls (heartbeat lateness, ms): n {len(late)} p50 {q(late, .5):.2f} p90 {q(late, .9):.2f}"
          f" p99 {q(late, .99):.2f} p99.9 {q(late, .999):.2f} max {max(late):.1f};"
          f" > 10 ms: {sum(x > 10 for x in late)}, > 20 ms: {sum(x > 20 for x in late)},"
          f" > 50 ms: {sum(x > 50 for x in late)}")
    print(f"  the loop thread's CPU during them (ms): p50 {q(cpu, .5):.2f} p99 {q(cpu, .99):.2f}"
          f" p99.9 {q(cpu, .999):.2f} max {max(cpu):.1f}; > 5 ms {sum(x > 5 for x in cpu)}, > 10 ms"
          f" {sum(x > 10 for x in cpu)}, > 20 ms {sum(x > 20 for x in cpu)}; wall - CPU (preempted, or waiting for the GIL)"
          f" p99 {q([a - b for a, b in zip(late, cpu)], .99):.2f}")
    for h in seen["heap2"]:
        print(f"  heap at a gen-2 collection: {h}")
    print(f"  heap at exit (tracked objects gen0/1/2/frozen): {seen.get('heap')}; {seen.get('kinds')}")
    labels = sorted({s[2] for s in steps})
    print("| steps of | n | p50 ms | p99 ms | max ms | CPU p99 ms | CPU max ms | CPU total s |\n|---|---|---|---|---|---|---|---|")
    rows = [(label, [s[1] for s in steps if s[2] == label], [s[3] for s in steps if s[2] == label]) for label in labels]
    rows += [(f"gc gen {gen}", [g[1] for g in gcs if g[2] == gen], [g[3] for g in gcs if g[2] == gen]) for gen in (0, 1, 2)]
    for label, d, c in rows:
        if d:
            print(f"| {label} | {len(d)} | {q(d, .5):.2f} | {q(d, .99):.2f} | {max(d):.1f} | {q(c, .99):.2f} | {max(c):.1f} | {sum(c) / 1e3:.2f} |")
    for name in sorted({b[1] for b in batches}):
        n = [b[2] for b in batches if b[1] == name]
        print(f"batch sizes {name}: n {len(n)} median {q(n, .5):.0f} p90 {q(n, .9):.0f} max {max(n)}")
    if commits:
        d, w = [c[1] for c in commits], [c[2] for c in commits]
        print(f"commit batches: n {len(d)} ms p50 {q(d, .5):.2f} p99 {q(d, .99):.2f} max {max(d):.1f};"
              f" writes median {q(w, .5):.0f} max {max(w)}")
        mixed = [c for c in commits if c[5] and c[5] < c[2]]
        if mixed:
            dw, dd = [c[3] for c in mixed], [c[4] for c in mixed]
            print(f"  commits holding requests' writes and deferred ones: {len(mixed)} of {len(d)}; ms in the"
                  f" requests' writes p50 {q(dw, .5):.2f} p99 {q(dw, .99):.2f}, in the deferred ones"
                  f" p50 {q(dd, .5):.2f} p99 {q(dd, .99):.2f}; whole commit p50 {q([c[1] for c in mixed], .5):.2f}"
                  f" p99 {q([c[1] for c in mixed], .99):.2f}")
    # what overlapped each big stall: a step or collection ending inside it
    causes: dict[str, float] = {}
    n_big = 0
    for end, ms, _ in beats:
        if ms <= big:
            continue
        n_big += 1
        start = end - ms / 1e3 - 0.001
        found = [(s[1], s[2]) for s in steps if start <= s[0] <= end and s[1] > 1.0]
        found += [(g[1], f"gc{g[2]}") for g in gcs if start <= g[0] <= end and g[1] > 1.0]
        if not found:
            causes["(nothing probed: requests, uvicorn)"] = causes.get("(nothing probed: requests, uvicorn)", 0) + ms
        for d, label in found:
            causes[label] = causes.get(label, 0) + d
    for end, ms, c in sorted(beats, key=lambda b: -b[2])[:4]:
        start = end - ms / 1e3 - 0.001
        inside = [(round(x[3], 1), x[2]) for x in steps if start <= x[0] <= end and x[3] > 0.5]
        inside += [(round(g[3], 1), f"gc{g[2]}") for g in gcs if start <= g[0] <= end and g[3] > 0.5]
        print(f"  a stall of {c:.1f} ms of CPU ({ms:.1f} wall) at +{start - t_from:.2f} s: {inside}")
    print(f"stalls over {big:g} ms: {n_big}; ms inside them by cause: "
          + ", ".join(f"{k} {v:.0f}" for k, v in sorted(causes.items(), key=lambda kv: -kv[1])))


def run_apart(data: Path, names: list[str], out: Path) -> None:
    """The consumers ``names`` in a process of their own, on the served database (the
    embedded profile's outbox read from another process: ``FOREIGN_POLL``), until SIGTERM;
    writes this process's CPU seconds to ``out``."""
    import asyncio

    from homefeed.bootstrap import build
    from homefeed.config import Settings

    async def go() -> None:
        hf = build(Settings(data_dir=data), node=None)
        await hf.start(consumers=names)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        c0 = time.process_time()
        await stop.wait()
        out.write_text(str(time.process_time() - c0))
        await hf.close()

    asyncio.run(go())


def position(db: Path, consumer: str) -> tuple[int, int]:
    """(the outbox's last seq, ``consumer``'s acknowledged seq), read from the file."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        head = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
        row = conn.execute("SELECT seq FROM consumer_offsets WHERE consumer = ?", (consumer,)).fetchone()
        return int(head), int(row[0]) if row else 0
    finally:
        conn.close()


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--apart":
        run_apart(Path(sys.argv[2]), sys.argv[3].split(","), Path(sys.argv[4]))
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-probe":
        install_probes(Path(sys.argv[2]))
        from homefeed.entrypoints.cli import main as cli
        raise SystemExit(cli(sys.argv[3:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--src", type=Path, default=ROOT / "src")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--big", type=float, default=10.0, help="a stall worth attributing, ms")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    ap.add_argument("--apart", default="", help="consumers to run in a second process (e.g. indexer)")
    args = ap.parse_args()
    from ab_http import free_port, stop, wait_healthy

    tmp = Path(tempfile.mkdtemp(prefix="hf-stalls-"))
    tokens = tmp / "tokens.txt"
    lines = (args.world / "demo-tokens.tsv").read_text().splitlines()
    tokens.write_text("\n".join(line.split("\t")[1] for line in lines[1:3001]) + "\n")
    data = tmp / "data"
    data.mkdir()
    shutil.copy(args.world / "homefeed.db", data / "homefeed.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp / "seen.json"
    env = {**os.environ, "HOMEFEED_LOG_LEVEL": "WARNING", "PYTHONPATH": str(args.src.resolve())}
    env.update(dict(e.split("=", 1) for e in args.env))
    apart = [n for n in args.apart.split(",") if n]
    if apart:
        env["HF_PROBE_SKIP"] = ",".join(apart)
    proc = subprocess.Popen([sys.executable, __file__, "--serve-probe", str(out), "serve", "--data-dir", str(data),
                             "--port", str(port)], env=env, start_new_session=True)
    side = None
    apart_lags: list[int] = []
    try:
        wait_healthy(url)
        if apart:
            side = subprocess.Popen([sys.executable, __file__, "--apart", str(data), ",".join(apart), str(tmp / "side.cpu")],
                                    env=env, start_new_session=True)
        wrk(url, "home.lua", args.warmup, tokens)
        wrk(url, "post.lua", 2, tokens)  # the post path's first use (each user's handle) out of the figures
        lags: list[int] = []
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                lags.append(behind(url, apart))
                if apart:
                    head, at = position(data / "homefeed.db", apart[0])
                    apart_lags.append(head - at)

        poller = threading.Thread(target=poll)
        load0 = os.getloadavg()[0]
        t_from = time.perf_counter()
        poller.start()
        posts = wrk(url, "post.lua", args.seconds, tokens)
        done.set()
        poller.join()
        t_end = time.perf_counter()
        drained = time.perf_counter()
        while behind(url, apart) or apart and (position(data / "homefeed.db", apart[0])[0] - position(data / "homefeed.db", apart[0])[1]):
            time.sleep(0.05)
        drained = time.perf_counter() - drained
        home = wrk(url, "home.lua", args.seconds, tokens)
        print(f"source {args.src} (load {load0:.1f} -> {os.getloadavg()[0]:.1f}) {' '.join(args.env)}")
        print(f"posts {posts['rps']:.0f}/s p50 {posts['p50']:.1f} p90 {posts['p90']:.1f} p99 {posts['p99']:.1f} ms;"
              f" home {home['rps']:.0f}/s p99 {home['p99']:.1f} ms; post/home {posts['rps'] / home['rps']:.3f}")
        print(f"behind (the most behind consumer, /healthz every 0.5 s): median {q(lags, .5):.0f} max {max(lags)};"
              f" drained {drained:.2f} s after the last post")
        if apart:
            print(f"{','.join(apart)} in a process apart: behind median {q(apart_lags, .5):.0f} max {max(apart_lags)}")
    finally:
        if side is not None:
            stop(side)
            if (tmp / "side.cpu").exists():
                print(f"the process apart used {float((tmp / 'side.cpu').read_text()):.2f} s of CPU")
        stop(proc)
    seen = json.loads(out.read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    report(seen, t_from, t_end, args.big)


if __name__ == "__main__":
    main()
