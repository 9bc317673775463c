"""Run: HOMEFEED_ACCESS_LOG=off .venv/bin/python benchmarks/rate_limit_overhead.py

The rate-limit middleware's cost on the real app, in process: GET /v1/users/{handle}
(store read, bearer header sent) through create_app with limits off vs on (both limits,
memory limiter, limits never reached). Interleaved rounds, medians."""
import asyncio, statistics, sys, tempfile, time
from pathlib import Path
import uvloop
from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.entrypoints.http import create_app

async def drive(app, scopes):
    async def receive(): return {"type": "http.request", "body": b"", "more_body": False}
    statuses = []
    async def send(m):
        if m["type"] == "http.response.start": statuses.append(m["status"])
    t0 = time.process_time()
    for s in scopes:
        await app(s, receive, send)
    dt = (time.process_time() - t0) / len(scopes) * 1e6
    assert set(statuses) == {200}, set(statuses)
    return dt

async def main():
    tmp = tempfile.mkdtemp(prefix="hf-rlbench-")
    base = Settings(data_dir=Path(tmp))
    hf = await open_homefeed(base)
    user = await hf.register("bencher")
    off = create_app(hf, manage_lifecycle=False)
    hf_on_settings = base.replace(rate_limit_per_token="1000000/s", rate_limit_per_address="1000000/s")
    hf.settings = hf_on_settings
    on = create_app(hf, manage_lifecycle=False)
    hf.settings = base
    def scope(i):
        return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                "scheme": "http", "path": "/v1/users/bencher", "raw_path": b"/v1/users/bencher",
                "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8080),
                "client": ("10.0.%d.%d" % (i % 200, i % 250), 5555),
                "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench"),
                            (b"authorization", b"Bearer " + user["token"].encode())]}
    n = 20_000
    scopes = [scope(i) for i in range(n)]
    await drive(off, scopes[:2000]); await drive(on, scopes[:2000])
    offs, ons = [], []
    for _ in range(15):
        offs.append(await drive(off, scopes)); ons.append(await drive(on, scopes))
    o, m = min(offs), min(ons)
    ratios = sorted(b / a for a, b in zip(offs, ons))
    print(f'  paired ratio on/off: median {statistics.median(ratios):.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f}); CPU time, min of 15 rounds below')
    print(f"real app GET /v1/users/{{handle}}: off {o:.1f} us/req, on {m:.1f} us/req, "
          f"middleware {m - o:.1f} us/req, ratio on/off {m / o:.3f}")
    print("  rounds off:", " ".join(f"{x:.1f}" for x in offs))
    print("  rounds on: ", " ".join(f"{x:.1f}" for x in ons))
    await hf.close()

uvloop.run(main())
