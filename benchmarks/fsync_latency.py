"""fsync latency of the disk under a directory, and a 1-row SQLite WAL commit with
``synchronous=FULL`` (what every durable write waits for at least once). Issue 14: the share
of the posts' p99 that the disk is (``benchmarks/results/issue14_p15posts.md``).

    python3 benchmarks/fsync_latency.py --dir /tmp --n 500
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time


def q(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]


def report(name: str, xs: list[float]) -> None:
    print(f"{name}: n={len(xs)} median {q(xs, .5):.2f} ms p90 {q(xs, .9):.2f} p99 {q(xs, .99):.2f} max {max(xs):.2f}"
          f" (load average {os.getloadavg()[0]:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    d = tempfile.mkdtemp(dir=args.dir, prefix="fsync-")
    try:
        fd = os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT)
        lat = []
        for _ in range(args.n):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fsync(fd)
            lat.append((time.perf_counter() - t) * 1e3)
        os.close(fd)
        report("fsync after a 4 KiB append", lat)
        c = sqlite3.connect(os.path.join(d, "db"), isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT)")
        lat = []
        for _ in range(args.n):
            t = time.perf_counter()
            c.execute("BEGIN IMMEDIATE")
            c.execute("INSERT INTO t(b) VALUES (?)", ("y" * 200,))
            c.execute("COMMIT")
            lat.append((time.perf_counter() - t) * 1e3)
        c.close()
        report("SQLite WAL commit, synchronous=FULL, one row", lat)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
