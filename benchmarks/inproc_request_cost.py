"""CPU per request inside the process, without the HTTP server: the app's own cost.

Each request is an ASGI call on a synthesized scope, awaited on one event loop; CPU time
(``time.process_time``) over ``--n`` requests, per figure, in interleaved rounds (rotated
order), median per figure, and every figure's ratio to the bare Starlette route of the same
round. Figures:

- ``bare``:          ``benchmarks/bare_app.py`` (Starlette, one route);
- ``healthz``:       homefeed's ``/healthz``, the whole middleware stack;
- ``healthz_noobs``: the same without ``Observe`` (``create_app(observe=False)``): what the
                     request id, metrics and access log cost;
- ``stack``:         the bare route's handler mounted first in homefeed's app: homefeed's
                     middleware (Observe, CORS) and exception layers, nothing else;
- ``home``:          ``GET /v1/timelines/home?limit=20`` (warm, rotating tokens);
- ``mastodon``:      ``GET /api/v1/timelines/home?limit=20`` (warm, same tokens);
- ``mastodon_gz``:   the same with ``Accept-Encoding: gzip`` (the kept rendering's compressed
                     body: in process it costs what identity does; what it saves is the
                     kernel's copy of 37 KB, seen only over HTTP: ``issue14_table.py``).

    .venv/bin/homefeed demo --no-serve --data-dir /tmp/hf14world       # once
    .venv/bin/python benchmarks/inproc_request_cost.py --world /tmp/hf14world
    .venv/bin/python benchmarks/inproc_request_cost.py --world /tmp/hf14world --profile healthz

``--fresh`` adds ``home_fresh`` and ``mastodon_fresh``: the same reads with the kept first
home pages (``service_layer/home_pages.py``) switched off, i.e. computed and rendered on
every read as before issue 14's kept pages, to compare in the same run.

``--old-route-order`` adds ``home_old`` and ``mastodon_old``: the same reads on an app whose
routes are in the order before issue 14 (about, operations, users, then the timelines), to
measure the route order's cost in the same run.

``--profile FIGURE`` prints cProfile's top functions (by total time) for that figure instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import cProfile
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def scope_for(path: str, token: bytes | None, extra: tuple[tuple[bytes, bytes], ...] = ()) -> dict[str, Any]:
    p, _, q = path.partition("?")
    headers = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*"), *extra]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token))
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": p, "raw_path": p.encode(), "root_path": "",
            "query_string": q.encode(), "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080)}


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def make_runner(app: Any, path: str, tokens: list[bytes] | None,
                without_pages: Any = None, extra: tuple[tuple[bytes, bytes], ...] = ()) -> Callable[[int], Any]:
    """``without_pages``: a Homefeed whose kept first home pages are switched off while
    this figure runs (``*_fresh``: the read as computed before issue 14's kept pages)."""
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run(n: int) -> None:
        statuses.clear()
        pages = None
        if without_pages is not None:
            pages, without_pages.home_pages = without_pages.home_pages, None
        try:
            for i in range(n):
                tok = tokens[i % len(tokens)] if tokens else None
                await app(scope_for(path, tok, extra), receive, send)
        finally:
            if without_pages is not None:
                without_pages.home_pages = pages
        bad = [s for s in statuses if s != 200]
        if bad:
            raise SystemExit(f"{path}: {len(bad)} answers not 200 (e.g. {bad[0]})")

    return run


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=2000, help="requests per figure per round")
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--old-route-order", action="store_true")
    ap.add_argument("--profile", help="cProfile this figure instead of timing")
    ap.add_argument("--fresh", action="store_true",
                    help="add home_fresh and mastodon_fresh: the same reads with the kept first "
                         "pages switched off (computed and rendered on every read)")
    args = ap.parse_args()

    from bare_app import app as bare

    from homefeed.bootstrap import open_homefeed
    from homefeed.config import Settings
    from homefeed.entrypoints.http import create_app

    tmp = Path(tempfile.mkdtemp(prefix="hf14inproc-"))
    for f in args.world.iterdir():
        if f.name.startswith("homefeed.db"):
            shutil.copy(f, tmp / f.name)
    lines = (args.world / "demo-tokens.tsv").read_text().splitlines()[1 : args.tokens + 1]
    tokens = [line.split("\t")[1].encode() for line in lines]
    hf = await open_homefeed(Settings(data_dir=tmp))
    try:
        app = create_app(hf, manage_lifecycle=False)
        app_noobs = create_app(hf, manage_lifecycle=False, observe=False)
        from starlette.routing import Route

        app.router.routes.insert(0, Route("/__bare", bare.routes[0].endpoint))
        runs = {
            "bare": make_runner(bare, "/", None),
            "healthz": make_runner(app, "/healthz", None),
            "healthz_noobs": make_runner(app_noobs, "/healthz", None),
            "stack": make_runner(app, "/__bare", None),
            "home": make_runner(app, "/v1/timelines/home?limit=20", tokens),
            "mastodon": make_runner(app, "/api/v1/timelines/home?limit=20", tokens),
            "mastodon_gz": make_runner(app, "/api/v1/timelines/home?limit=20", tokens,
                                       extra=((b"accept-encoding", b"gzip, deflate, br"),)),
        }
        if args.fresh:
            runs["home_fresh"] = make_runner(app, "/v1/timelines/home?limit=20", tokens, hf)
            runs["mastodon_fresh"] = make_runner(app, "/api/v1/timelines/home?limit=20", tokens, hf)
        if args.old_route_order:
            from homefeed.entrypoints.mastodon import timelines as mt
            from homefeed.entrypoints.routes import about, operations, timelines, users

            old = create_app(hf, manage_lifecycle=False)
            hot = {id(r) for r in [*timelines.routes, *mt.routes]}
            rest = [r for r in old.router.routes if id(r) not in hot]
            head = [*about.routes, *operations.routes, *users.routes]
            ids = {id(r) for r in head}
            old.router.routes[:] = [*head, *timelines.routes, *mt.routes, *(r for r in rest if id(r) not in ids)]
            runs["home_old"] = make_runner(old, "/v1/timelines/home?limit=20", tokens)
            runs["mastodon_old"] = make_runner(old, "/api/v1/timelines/home?limit=20", tokens)
        for run in runs.values():  # warm every timeline and cache
            await run(max(args.n, len(tokens)))
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            await runs[args.profile](args.n * 5)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            return
        names = list(runs)
        us: dict[str, list[float]] = {k: [] for k in names}
        ratios: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            got: dict[str, float] = {}
            for name in order:
                t0 = time.process_time()
                await runs[name](args.n)
                got[name] = (time.process_time() - t0) / args.n * 1e6
                us[name].append(got[name])
            for name in names:
                ratios[name].append(got[name] / got["bare"])
        print(f"CPU µs per request, in process (median of {args.rounds} rounds x {args.n}):")
        print("| figure | µs/request | × bare (same round) | bare-route equivalents/s ratio |")
        print("|---|---|---|---|")
        for name in names:
            m = statistics.median(ratios[name])
            print(f"| {name} | {statistics.median(us[name]):.1f} | {m:.2f} | {1 / m:.2f} |")
        if "mastodon" in us:
            print("mastodon / home CPU:", f"{statistics.median(a / b for a, b in zip(us['mastodon'], us['home'])):.2f}")
        for name in ("home", "mastodon"):
            if f"{name}_fresh" in us:
                print(f"{name}_fresh / {name} CPU:",
                      f"{statistics.median(a / b for a, b in zip(us[name + '_fresh'], us[name])):.2f}")
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        await hf.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
