"""How long a log-in takes, password hashing included: the OAuth password grant
(``POST /oauth/token``, grant_type=password) against a real embedded server, measured from
the client, sequentially (one at a time: the figure is the latency a person waits, not a
throughput). Also the bare argon2id verify, in process, for comparison.

    .venv/bin/python benchmarks/login.py [-n 30]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return (f"{name}: n={len(ms)} median {statistics.median(ms):.1f} ms, p90 {p(0.9):.1f} ms, "
            f"min {ms[0]:.1f} ms, max {ms[-1]:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    n = ap.parse_args().n

    from argon2 import PasswordHasher

    ph = PasswordHasher()
    stored = ph.hash("correct horse battery")
    bare = []
    for _ in range(n):
        t0 = time.perf_counter()
        ph.verify(stored, "correct horse battery")
        bare.append((time.perf_counter() - t0) * 1000)

    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
        env["HOMEFEED_LOGIN_LIMIT"] = "100000/s"  # measure the log-in, not the throttle
        proc = subprocess.Popen([sys.executable, "-m", "homefeed", "serve", "--host", "127.0.0.1",
                                 "--port", str(port), "--data-dir", data], env=env, cwd=str(ROOT),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=30) as c:
                for _ in range(200):
                    try:
                        if c.get("/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                scope = "read write follow push"
                app = c.post("/api/v1/apps", data={"client_name": "bench", "redirect_uris": "urn:ietf:wg:oauth:2.0:oob",
                                                   "scopes": scope}).json()
                creds = {"client_id": app["client_id"], "client_secret": app["client_secret"]}
                tok = c.post("/oauth/token", data={"grant_type": "client_credentials", "scope": scope, **creds}).json()
                r = c.post("/api/v1/accounts", headers={"Authorization": "Bearer " + tok["access_token"]},
                           data={"username": "bench", "email": "bench@example.org",
                                 "password": "correct horse battery", "agreement": "1"})
                assert r.status_code == 200, r.text
                logins = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = c.post("/oauth/token", data={"grant_type": "password", "username": "bench@example.org",
                                                     "password": "correct horse battery", "scope": scope, **creds})
                    logins.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
        finally:
            proc.terminate()
            proc.wait(10)
    print(summary("argon2id verify (in process, argon2-cffi defaults: t=3, m=64 MiB, p=4)", bare))
    print(summary("password-grant log-in over HTTP (embedded profile)", logins))


if __name__ == "__main__":
    main()
