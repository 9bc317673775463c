"""Home-read latency while a full audit runs, against the same server just before it.

Run (after ``.venv/bin/homefeed demo --data-dir DIR --no-serve`` built the demo world):

    HOMEFEED_ACCESS_LOG=off .venv/bin/python benchmarks/audit_responsiveness.py --data-dir DIR

Starts ``homefeed demo`` (which serves) on the demo world (embedded profile: the audit of the timelines
runs inside the serving process, through ``POST /admin/audit``), reads home timelines at a
fixed rate with the demo tokens (``DIR/demo-tokens.tsv``), and midway runs
``homefeed audit`` (everything). Prints p50/p99 of the reads before and during the audit,
the audit's duration and exit status, and its progress lines as they come.

Reads are paced on a schedule (open loop): each read's latency is measured from the time it
was due, so a read that waited behind a stalled event loop counts the wait too.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

#: ``python -m homefeed``: PYTHONPATH=<another checkout>/src measures that code instead.
HOMEFEED = [sys.executable, "-m", "homefeed"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server on port {port} did not become healthy in {timeout} s")


class Reader(threading.Thread):
    """GET /v1/timelines/home at ``rate`` per second, one keep-alive connection; records
    (due time, latency from due time, status)."""

    def __init__(self, port: int, tokens: list[str], rate: float) -> None:
        super().__init__(daemon=True)
        self.port, self.tokens, self.interval = port, tokens, 1.0 / rate
        self.samples: list[tuple[float, float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rng = random.Random(1)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        due = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            token = rng.choice(self.tokens)
            try:
                conn.request("GET", "/v1/timelines/home?limit=20", headers={"Authorization": f"Bearer {token}"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                status = 0
            self.samples.append((due, time.monotonic() - due, status))
            due += self.interval
            if time.monotonic() - due > 1.0:  # far behind: do not fire a burst to catch up
                due = time.monotonic()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux): the audit's cost without the machine's
    other load, which wall time includes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("demo-data"))
    ap.add_argument("--rate", type=float, default=50.0, help="home reads per second")
    ap.add_argument("--before", type=float, default=15.0, help="seconds of reads before the audit")
    ap.add_argument("--audit-args", default="", help="extra arguments for homefeed audit (e.g. '--sample 500')")
    args = ap.parse_args()
    tokens = [line.split("\t")[1].strip() for line in (args.data_dir / "demo-tokens.tsv").read_text().splitlines()
              if "\t" in line]
    port = free_port()
    env = {**os.environ, "HOMEFEED_ACCESS_LOG": os.environ.get("HOMEFEED_ACCESS_LOG", "off")}
    # ``demo`` serves the demo world as the README gives it (celebrity threshold 1000);
    # it loads nothing when the data dir already holds the world.
    server = subprocess.Popen([*HOMEFEED, "demo", "--data-dir", str(args.data_dir), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port)
        reader = Reader(port, tokens, args.rate)
        reader.start()
        time.sleep(args.before)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(server.pid)
        audit = subprocess.Popen(
            [*HOMEFEED, "audit", "--data-dir", str(args.data_dir), "--url", f"http://127.0.0.1:{port}", "--json",
             "--celebrity-threshold", "1000",
             *args.audit_args.split()],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        progress: list[str] = []
        phases: list[tuple[float, str]] = []  # (monotonic time, phase) as each phase starts

        def relay() -> None:
            assert audit.stderr is not None
            for line in audit.stderr:
                progress.append(line.rstrip())
                words = line.split()
                if len(words) >= 3 and words[0] == "audit:":
                    phase = " ".join(words[1:-1])
                    if not phases or phases[-1][1] != phase:
                        phases.append((time.monotonic(), phase))
                print(f"  [{time.monotonic() - t0:6.1f} s] {line.rstrip()}", file=sys.stderr)

        t = threading.Thread(target=relay, daemon=True)
        t.start()
        out, _ = audit.communicate()
        t1 = time.monotonic()
        cpu1 = cpu_seconds(server.pid)
        t.join(5)
        reader.stop.set()
        reader.join(35)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    before = [lat for due, lat, st in reader.samples if due < t0 and st == 200]
    during = [lat for due, lat, st in reader.samples if t0 <= due < t1 and st == 200]
    failed = sum(1 for _, _, st in reader.samples if st != 200)
    print(f"audit: {t1 - t0:.1f} s, exit {audit.returncode}, {len(progress)} progress line(s) on stderr;"
          f" serving process CPU meanwhile {cpu1 - cpu0:.1f} s (audit + the reads); load average"
          f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"home reads at {args.rate:g}/s: before  n={len(before)} p50={pct(before, .5):.2f} ms"
          f" p99={pct(before, .99):.2f} ms max={pct(before, 1.0):.2f} ms")
    print(f"home reads at {args.rate:g}/s: during  n={len(during)} p50={pct(during, .5):.2f} ms"
          f" p99={pct(during, .99):.2f} ms max={pct(during, 1.0):.2f} ms")
    # per phase (a phase's reads: those due from its first progress line to the next one's)
    bounds = phases + [(t1, "")]
    for (start, phase), (end, _) in zip(bounds, bounds[1:]):
        xs = [lat for due, lat, st in reader.samples if start <= due < end and st == 200]
        if xs:
            print(f"  during {phase:<14} {end - start:6.1f} s  n={len(xs)} p50={pct(xs, .5):.2f} ms"
                  f" p99={pct(xs, .99):.2f} ms max={pct(xs, 1.0):.2f} ms")
    if failed:
        print(f"{failed} read(s) failed (status not 200)")
    if during:
        print(f"mean during: {statistics.mean(during) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
