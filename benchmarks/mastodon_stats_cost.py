"""What the counters and viewer flags cost the Mastodon home read (issue 11), in process.

A warm Mastodon home page is spliced from cached parts plus ONE ``post_stats`` statement (the
counters and the reader's ``favourited``/``reblogged``). This measures, in the same run and
on the same warm caches, interleaved rounds of: the native ``/v1`` read (``home_timeline``),
the Mastodon read (``MastodonApi.home`` + ``statuses_bytes``), and the Mastodon read with
``post_stats`` answered by a constant (what the read cost before the counters existed). The
answer: microseconds per read of each, and the ratios.

    .venv/bin/homefeed demo --no-serve --data-dir /tmp/mhworld --users 2000 --posts 20000
    .venv/bin/python benchmarks/mastodon_stats_cost.py --world /tmp/mhworld
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.domain.mastodon.entities import Urls
from homefeed.domain.mastodon.pagination import Page
from homefeed.service_layer.mastodon import MastodonApi


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="statscost-"))
    shutil.copy(args.world / "homefeed.db", tmp / "homefeed.db")
    hf = await open_homefeed(Settings(data_dir=tmp), run_consumers=False)
    try:
        api = MastodonApi(hf)
        urls = Urls("http://127.0.0.1:8080")
        users = await hf.store.sample_user_ids(args.users)
        real_stats = hf.store.post_stats

        async def constant_stats(ids: Any, viewer: Any) -> dict[int, Any]:
            return {}

        async def native(uid: int) -> None:
            await hf.home_timeline(uid, limit=20)

        async def mastodon(uid: int) -> None:
            posts = await api.home(uid, Page(limit=20))
            await api.statuses_bytes(urls, posts, uid)

        for uid in users:  # warm every cache once
            await native(uid)
            await mastodon(uid)
        results: dict[str, list[float]] = {"native": [], "mastodon": [], "mastodon, stats constant": []}
        for r in range(args.rounds):
            order = list(results) if r % 2 == 0 else list(reversed(results))
            for name in order:
                hf.store.post_stats = constant_stats if name.endswith("constant") else real_stats  # type: ignore[method-assign]
                fn = native if name == "native" else mastodon
                t0 = time.perf_counter()
                for uid in users:
                    await fn(uid)
                results[name].append((time.perf_counter() - t0) / len(users) * 1e6)
        hf.store.post_stats = real_stats  # type: ignore[method-assign]
        med = {k: statistics.median(v) for k, v in results.items()}
        for k, v in results.items():
            print(f"{k:28s} median {med[k]:7.1f} us/read  rounds {' '.join(f'{x:.1f}' for x in v)}")
        print(f"mastodon / native: {med['mastodon'] / med['native']:.2f}; "
              f"mastodon / mastodon with constant stats: {med['mastodon'] / med['mastodon, stats constant']:.2f}")
    finally:
        await hf.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    asyncio.run(main(ap.parse_args()))
