"""Streaming: the delay from a post's commit to its ``update`` on the open streams of its
readers, and the memory an idle stream costs (issue 11, Speed: p99 < 1 s at 1,000 open
connections on one API process; under 20 KiB per idle connection).

One ``homefeed serve`` (the embedded profile: consumers and API in one process, the
in-process live bus), with the celebrity threshold at 1,001: 1,000 readers follow a
*pushed* author (1,000 followers) and a *celebrity* (1,001 followers: pulled, never pushed,
but published on the live bus all the same). Each reader opens ``/api/v1/streaming/user``
(server-sent events, raw sockets in this process, so that 1,000 of them are cheap here).

- memory: the server's RSS (``/proc/PID/status``) with the world made and no stream open,
  then with the 1,000 streams open and idle; the difference divided by 1,000;
- delay: each author posts ``--posts`` times, one post every ``--gap`` seconds (alternating
  authors); for each post and each stream, the time from just before the POST was sent
  (an upper bound of commit → update) to the chunk holding its ``update`` being read, and
  also from the POST's answer (after the commit: a lower bound). p50/p99 over all
  (post, stream) pairs, per author.

    .venv/bin/python benchmarks/streaming_delay.py                # writes results/streaming_delay.txt
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
MARK = re.compile(rb"benchmark-(\d+)-")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Reader:
    """One SSE stream on a raw socket: records when each post's marker first arrives."""

    def __init__(self, arrivals: dict[int, list[float]]) -> None:
        self.arrivals = arrivals
        self.seen: set[int] = set()

    async def open(self, host: str, port: int, token: str) -> None:
        self.r, self.w = await asyncio.open_connection(host, port)
        self.w.write(f"GET /api/v1/streaming/user HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        head = await self.r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]

    async def run(self) -> None:
        tail = b""
        while True:
            chunk = await self.r.read(65536)
            if not chunk:
                return
            now = time.perf_counter()
            buf = tail + chunk
            for m in MARK.finditer(buf):
                n = int(m.group(1))
                if n not in self.seen:
                    self.seen.add(n)
                    self.arrivals.setdefault(n, []).append(now)
            tail = buf[-64:]


async def bench(args: argparse.Namespace, base: str, pid: int) -> dict[str, object]:
    host, port = base.removeprefix("http://").split(":")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async def user(h: str) -> tuple[str, str]:
            r = await http.post("/v1/users", json={"handle": h})
            r.raise_for_status()
            return r.json()["id"], r.json()["token"]

        pushed_id, pushed = await user("pushed")
        star_id, star = await user("star")
        readers: list[str] = []
        for i in range(args.connections):
            _, t = await user(f"reader{i}")
            readers.append(t)
            for who in (pushed, star):
                r = await http.post(f"/v1/users/{'pushed' if who == pushed else 'star'}/follow",
                                    headers={"Authorization": f"Bearer {t}"})
                r.raise_for_status()
        _, extra = await user("extrafan")  # the celebrity's 1,001st follower
        (await http.post("/v1/users/star/follow", headers={"Authorization": f"Bearer {extra}"})).raise_for_status()
        for t in readers:  # each home read once: the timelines exist (active readers)
            (await http.get("/api/v1/timelines/home", headers={"Authorization": f"Bearer {t}"})).raise_for_status()
        # warm the rendering and the hub's start with one stream and one post
        await asyncio.sleep(1.0)
        rss_before = rss_kib(pid)

        arrivals: dict[int, list[float]] = {}
        streams = [Reader(arrivals) for _ in readers]
        for s, t in zip(streams, readers):
            await s.open(host, int(port), t)
        tasks = [asyncio.create_task(s.run()) for s in streams]
        await asyncio.sleep(args.settle)
        gc.collect()
        rss_after = rss_kib(pid)

        sent: dict[int, tuple[str, float, float]] = {}
        for n in range(args.posts * 2):
            who, token = ("pushed", pushed) if n % 2 == 0 else ("celebrity", star)
            t0 = time.perf_counter()
            r = await http.post("/api/v1/statuses", data={"status": f"benchmark-{n}- hello"},
                                headers={"Authorization": f"Bearer {token}"})
            t1 = time.perf_counter()
            r.raise_for_status()
            sent[n] = (who, t0, t1)
            await asyncio.sleep(args.gap)
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline and any(len(arrivals.get(n, ())) < len(streams) for n in sent):
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        for s in streams:
            s.w.close()

    out: dict[str, object] = {"rss_before_kib": rss_before, "rss_after_kib": rss_after,
                              "per_connection_kib": (rss_after - rss_before) / len(streams)}
    for who in ("pushed", "celebrity"):
        upper: list[float] = []
        lower: list[float] = []
        missing = 0
        for n, (w, t0, t1) in sent.items():
            if w != who:
                continue
            got = arrivals.get(n, [])
            missing += len(streams) - len(got)
            upper += [a - t0 for a in got]
            lower += [max(0.0, a - t1) for a in got]
        out[who] = {"deliveries": len(upper), "missing": missing,
                    "p50_ms": 1000 * pct(upper, 0.5), "p99_ms": 1000 * pct(upper, 0.99),
                    "max_ms": 1000 * max(upper),
                    "after_answer_p50_ms": 1000 * pct(lower, 0.5), "after_answer_p99_ms": 1000 * pct(lower, 0.99)}
    out["post_answer_ms_median"] = 1000 * statistics.median(t1 - t0 for _, t0, t1 in sent.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--posts", type=int, default=30, help="posts per author")
    ap.add_argument("--gap", type=float, default=0.25, help="seconds between posts")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds the streams stay idle before RSS is read")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "streaming_delay.txt")
    args = ap.parse_args()

    data = Path(tempfile.mkdtemp(prefix="streamdelay-"))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
    env.update({"HOMEFEED_CELEBRITY_THRESHOLD": str(args.connections + 1), "HOMEFEED_LOG_LEVEL": "WARNING",
                "HOMEFEED_ACCESS_LOG": "off"})
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen([PYTHON, "-m", "homefeed", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        res = asyncio.run(bench(args, base, proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

    lines = [
        "streaming delay (benchmarks/streaming_delay.py): commit -> `update` on /api/v1/streaming/user",
        f"command: .venv/bin/python benchmarks/streaming_delay.py --connections {args.connections} "
        f"--posts {args.posts} --gap {args.gap}",
        f"machine: {os.cpu_count()} cores shared with other work; server and client on 127.0.0.1; "
        "embedded profile (one process, in-process live bus)",
        f"open SSE connections on one API process: {args.connections}",
        "",
        f"memory: server RSS {res['rss_before_kib']} KiB before, {res['rss_after_kib']} KiB with the streams open"
        f" and idle: {res['per_connection_kib']:.1f} KiB per idle connection (goal < 20 KiB)",
        "",
        "delay per (post, stream), from just before the POST was sent (upper bound of commit -> update);"
        " in brackets from the POST's answer (after the commit)",
    ]
    for who, label in (("pushed", "author with 1,000 followers (pushed)"),
                       ("celebrity", "celebrity (1,001 followers, pulled: never pushed)")):
        r = res[who]
        assert isinstance(r, dict)
        lines.append(f"  {label}: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms"
                     f" [p50 {r['after_answer_p50_ms']:.1f} ms, p99 {r['after_answer_p99_ms']:.1f} ms];"
                     f" {r['deliveries']} deliveries, {r['missing']} missing (goal p99 < 1000 ms)")
    lines.append(f"  POST /api/v1/statuses answered in {res['post_answer_ms_median']:.1f} ms (median)")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
