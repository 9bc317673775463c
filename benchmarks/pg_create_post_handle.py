"""Run: HOMEFEED_LOG_LEVEL=WARNING .venv/bin/python benchmarks/pg_create_post_handle.py

create_post on PostgreSQL, sequential, with the handle cached (new) or read per post (old:
the cache cleared before each post), alternating rounds in one run."""
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.backends import scratch_pg_database
from homefeed.config import Settings
from homefeed.bootstrap import build

async def main(dsn):
    hf = build(Settings(database_url=dsn))
    await hf.start(run_consumers=False)
    u = await hf.register("bench_author")
    uid = await hf.authenticate(u["token"])
    res = {"old": [], "new": []}
    for r in range(6):
        for mode in (("old", "new") if r % 2 == 0 else ("new", "old")):
            t0 = time.perf_counter()
            for i in range(500):
                if mode == "old":
                    hf._handles.clear()
                await hf.create_post(uid, f"post {r} {i}")
            res[mode].append(500 / (time.perf_counter() - t0))
    await hf.close()
    for k, v in res.items():
        print(k, " ".join(f"{x:.0f}" for x in v), "median %.0f posts/s" % sorted(v)[len(v)//2])
    print("new/old median ratio %.2f" % (sorted(res["new"])[3] / sorted(res["old"])[3]))

with scratch_pg_database() as dsn:
    asyncio.run(main(dsn))
