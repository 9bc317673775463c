"""Issue 14's table, re-measured: every figure beside the bare Starlette route, same run.

Two servers stay up for the whole run: a bare Starlette route on uvicorn
(``benchmarks/bare_app.py``, the reference) and one ``homefeed serve`` on a copy of a demo
world (embedded profile, default settings: access log of writes, metrics, request ids, CORS,
rate limits). Each round drives, with ``wrk -t1 -c32``, in a rotated order:

- ``bare``:     ``GET /`` on the bare app;
- ``healthz``:  ``GET /healthz`` on homefeed;
- ``home``:     ``GET /v1/timelines/home?limit=20``, rotating tokens (``wrk/home.lua``);
- ``mastodon``: ``GET /api/v1/timelines/home?limit=20``, same tokens (``wrk/mastodon_home.lua``);
- ``post``:     ``POST /v1/posts``, durable, fan-out and indexing running (``wrk/post.lua``).

With ``--accept-encoding VALUE`` (e.g. ``gzip``: every Mastodon client and browser sends
it), two more figures, ``home_ae`` and ``mastodon_ae``: the same reads sending
``Accept-Encoding: VALUE`` (the kept Mastodon renderings then go gzip-compressed; the
``/v1`` home answers as before), so the ratios with and without it come from one run.

``--floor`` adds two figures served by ``benchmarks/floor_app.py`` (homefeed's server, none
of homefeed's work): ``bare_1send``, the bare route answered in one send as homefeed's
routes are, and ``floor``, ``POST /v1/posts`` as one durable row through homefeed's SQLite
writer: what any durable post over HTTP costs on this stack, to read ``post / home`` against.

``--warm-all`` reads every token's first page once through each read figure before the
timed warm-up (a plain keep-alive client): on a loaded machine a timed warm-up can end
with pages still cold, and a cold read (a timeline rebuilt from SQLite) costs ~50 warm ones.

``--rewarm`` reads every token's page again through each read figure after each round's
posts, so that every read figure of the next round is measured warm, in the same state.
Without it, whichever page read runs first after the posts pays for every page they changed
(a kept page rebuilt, a Mastodon rendering rendered again) and the reads after it find them
warm: with the rotation of 3 rounds, ``mastodon`` was first after the posts in rounds 2 and 3
and ``mastodon_ae`` never (session 7's table: 0.66 against 0.85 of home). Those passes are
timed too, as the cost of a **first read after posts** (server CPU per page): the figure that
runs first alternates between ``home`` and ``mastodon`` from round to round, so each is
measured paying for its own page (a Mastodon rendering is made from the native kept page:
after ``home`` it pays only the rendering, first it pays both).

Posts run last in each round (they grow the timelines the next round reads). The answer is
req/s and p99 per figure and round, and the ratio of each figure to the bare route **of the
same round** (median over rounds); ``mastodon`` is also given against ``home``, and ``post``
against ``home``, as the issue's goals are stated. Beside the rates: each server's CPU time
per request during the figure (``/proc/PID/stat``, user + system), and the bare route's
CPU per request over the figure's: the rate ratio the server would reach with a core to
itself, steadier than rates on a shared machine (wrk and other work compete for the cores).

    .venv/bin/homefeed demo --no-serve --data-dir /tmp/hf14world       # the demo world, once
    .venv/bin/python benchmarks/issue14_table.py --world /tmp/hf14world

Needs ``wrk``. Everything runs on 127.0.0.1; both servers are stopped by their pid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_http import ROOT, WRK, free_port, parse_wrk, stop, wait_healthy  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, script: Path | None, tokens: Path, seconds: int, connections: int,
        pid: int | None = None, accept_encoding: str = "") -> tuple[float, float, float]:
    """req/s, p99 ms and the server's CPU µs per request (``pid``'s, 0 if not given)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(cmd + [url], env={**os.environ, "TOKENS": str(tokens), "ACCEPT_ENCODING": accept_encoding},
                         capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before if pid is not None else 0.0
    rps, p99 = parse_wrk(out)
    return rps, p99, used / max(1.0, rps * seconds) * 1e6


def warm_all(url: str, path: str, tokens: list[str], accept_encoding: str, pid: int | None = None) -> float:
    """GET ``path`` once per token (keep-alive), so that every reader's page is kept. Returns
    the server's CPU µs per page (``pid``'s; 0 if not given)."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    before = cpu_seconds(pid) if pid is not None else 0.0
    try:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            if accept_encoding:
                headers["Accept-Encoding"] = accept_encoding
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"warm-up: {path} answered {resp.status}")
    finally:
        conn.close()
    used = cpu_seconds(pid) - before if pid is not None else 0.0
    return used / max(1, len(tokens)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True, help="a data dir made by `homefeed demo --no-serve`")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=3000, help="rotating tokens")
    ap.add_argument("--skip", default="", help="comma-separated figures to leave out (e.g. post)")
    ap.add_argument("--json", type=Path, help="write every round's figures here")
    ap.add_argument("--warm-all", action="store_true", help="read every token's page once per read figure first")
    ap.add_argument("--rewarm", action="store_true",
                    help="after each round's posts, read every token's page again through each read figure "
                         "(timed: the first read after posts)")
    ap.add_argument("--floor", action="store_true",
                    help="also run benchmarks/floor_app.py: bare_1send (the bare route answered in one send, "
                         "as homefeed answers) and floor (a durable JSON write with none of homefeed's work)")
    ap.add_argument("--accept-encoding", default="",
                    help="also run both home reads sending this Accept-Encoding (home_ae, mastodon_ae)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    tmp = Path(tempfile.mkdtemp(prefix="hf14-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        data = tmp / "data"
        data.mkdir()
        for f in args.world.iterdir():
            if f.name.startswith("homefeed.db"):
                shutil.copy(f, data / f.name)
        tokens = tmp / "tokens.txt"
        lines = (args.world / "demo-tokens.tsv").read_text().splitlines()
        tokens.write_text("\n".join(line.split("\t")[1] for line in lines[1 : args.tokens + 1]) + "\n")
        env = {**os.environ, "HOMEFEED_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT / "src")}
        log = open(tmp / "server.log", "wb")
        bare_port, hf_port = free_port(), free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "benchmarks"), "bare_app:app",
             "--host", "127.0.0.1", "--port", str(bare_port), "--no-access-log", "--log-level", "warning"],
            stdout=log, stderr=log, start_new_session=True))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "homefeed", "serve", "--data-dir", str(data), "--port", str(hf_port)],
            stdout=log, stderr=log, env=env, start_new_session=True))
        bare, hf = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{hf_port}"
        if args.floor:
            floor_port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, str(ROOT / "benchmarks" / "floor_app.py"), "--port", str(floor_port),
                 "--data-dir", str(tmp / "floor")],
                stdout=log, stderr=log, env=env, start_new_session=True))
            floor, floor_pid = f"http://127.0.0.1:{floor_port}", procs[-1].pid
            wait_healthy(floor)
        wait_healthy(hf)
        bare_pid, hf_pid = procs[0].pid, procs[1].pid
        ae = args.accept_encoding
        targets: dict[str, tuple[str, Path | None, int, str]] = {
            "bare": (bare + "/", None, bare_pid, ""),
            "healthz": (hf + "/healthz", None, hf_pid, ""),
            "home": (hf, WRK / "home.lua", hf_pid, ""),
            "mastodon": (hf, WRK / "mastodon_home.lua", hf_pid, ""),
            "home_ae": (hf, WRK / "home.lua", hf_pid, ae),
            "mastodon_ae": (hf, WRK / "mastodon_home.lua", hf_pid, ae),
            "post": (hf, WRK / "post.lua", hf_pid, ""),
        }
        if args.floor:
            targets = {"bare": targets["bare"], "bare_1send": (floor + "/", None, floor_pid, ""),
                       **{n: t for n, t in targets.items() if n != "bare"},
                       "floor": (floor, WRK / "post.lua", floor_pid, "")}
        if not ae:
            del targets["home_ae"], targets["mastodon_ae"]
        for name in [s for s in args.skip.split(",") if s]:
            targets.pop(name)
        paths = {"home.lua": "/v1/timelines/home?limit=20", "mastodon_home.lua": "/api/v1/timelines/home?limit=20"}
        listed = tokens.read_text().split()
        page_reads = [n for n, t in targets.items() if t[1] is not None and t[1].name in paths]
        if args.warm_all:
            for name in page_reads:
                url, script, _, enc = targets[name]
                assert script is not None
                warm_all(url, paths[script.name], listed, enc)
        #: figure -> server CPU µs per page of its first read after a round's posts, when it
        #: ran first (``--rewarm``)
        cold: dict[str, list[float]] = {}
        for name, (url, script, _, enc) in targets.items():  # warm every cache, JIT-less but page cache
            if name != "post":
                wrk(url, script, tokens, args.warmup, args.connections, accept_encoding=enc)
        reads = [n for n in targets if n != "post"]
        rows: dict[str, list[tuple[float, float, float]]] = {n: [] for n in targets}
        for r in range(args.rounds):
            order = reads[r % len(reads):] + reads[: r % len(reads)]
            if "post" in targets:
                order.append("post")
            for name in order:
                url, script, pid, enc = targets[name]
                rows[name].append(wrk(url, script, tokens, args.seconds, args.connections, pid, enc))
            print(f"round {r + 1} (load {os.getloadavg()[0]:.1f}): " + "; ".join(
                f"{n} {rows[n][-1][0]:.0f} req/s p99 {rows[n][-1][1]:.1f} ms cpu {rows[n][-1][2]:.1f} us"
                for n in targets), flush=True)
            if args.rewarm and "post" in targets and page_reads:
                first = [n for n in ("home", "mastodon") if n in page_reads][r % 2:][:1] or page_reads[:1]
                again = first + [n for n in page_reads if n not in first]
                passes = []
                for name in again:
                    url, script, pid, enc = targets[name]
                    assert script is not None
                    passes.append((name, warm_all(url, paths[script.name], listed, enc, pid)))
                cold.setdefault(again[0], []).append(passes[0][1])
                print("  after the posts, each page once: " + "; ".join(
                    f"{n} {us:.0f} us/page" for n, us in passes) + f" ({again[0]} first)", flush=True)

        def ratio(a: str, b: str) -> float:
            return statistics.median(x[0] / y[0] for x, y in zip(rows[a], rows[b]))

        def cpu_ratio(a: str, b: str) -> float:  # b's CPU per request over a's: a rate ratio
            return statistics.median(y[2] / x[2] for x, y in zip(rows[a], rows[b]) if x[2] > 0)

        print(f"\nmedian of {args.rounds} rounds, wrk -t1 -c{args.connections} -d{args.seconds}s:")
        print("| figure | req/s | p99 ms | ratio to bare (same round) | server CPU µs/request | bare's CPU / this CPU |")
        print("|---|---|---|---|---|---|")
        for n in targets:
            rps = statistics.median(x[0] for x in rows[n])
            p99 = statistics.median(x[1] for x in rows[n])
            us = statistics.median(x[2] for x in rows[n])
            vs = f"{ratio(n, 'bare'):.2f}" if "bare" in targets else "-"
            by_cpu = f"{cpu_ratio(n, 'bare'):.2f}" if "bare" in targets else "-"
            print(f"| {n} | {rps:,.0f} | {p99:.1f} | {vs} | {us:.1f} | {by_cpu} |")
        if "mastodon" in targets and "home" in targets:
            print(f"mastodon / home: {ratio('mastodon', 'home'):.2f} (by CPU: {cpu_ratio('mastodon', 'home'):.2f})")
        if "mastodon_ae" in targets and "home_ae" in targets:
            print(f"with Accept-Encoding: {ae}: mastodon_ae / home_ae: {ratio('mastodon_ae', 'home_ae'):.2f} "
                  f"(by CPU: {cpu_ratio('mastodon_ae', 'home_ae'):.2f})")
        if "post" in targets and "home" in targets:
            print(f"post / home: {ratio('post', 'home'):.2f}")
        if "floor" in targets and "home" in targets:
            print(f"floor / home: {ratio('floor', 'home'):.2f} (by CPU: {cpu_ratio('floor', 'home'):.2f})")
        if "floor" in targets and "post" in targets:
            print(f"post / floor: {ratio('post', 'floor'):.2f} (by CPU: {cpu_ratio('post', 'floor'):.2f})")
        if "bare_1send" in targets and "home" in targets:
            print(f"home / bare_1send: {ratio('home', 'bare_1send'):.2f} "
                  f"(by CPU: {cpu_ratio('home', 'bare_1send'):.2f})")
        for n, us in cold.items():
            print(f"first read after posts, {n} first: {statistics.median(us):.0f} µs of server CPU per page"
                  f" ({len(us)} rounds)")
        if args.json:
            out: dict[str, object] = {n: rows[n] for n in rows}
            if cold:
                out["first_read_after_posts_us"] = cold
            args.json.write_text(json.dumps(out, indent=1))
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
