"""``homefeed`` command line: serve, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from homefeed.config import Settings


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, help="where the SQLite file lives (HOMEFEED_DATA_DIR)")
    p.add_argument("--celebrity-threshold", type=int, default=None, help="HOMEFEED_CELEBRITY_THRESHOLD")
    p.add_argument("--timeline-cap", type=int, default=None, help="HOMEFEED_TIMELINE_CAP")


def _serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="address to listen on (HOMEFEED_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (HOMEFEED_PORT, default 8080)")


def _settings(args: argparse.Namespace, **extra) -> Settings:
    overrides = {
        "data_dir": getattr(args, "data_dir", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "celebrity_threshold": getattr(args, "celebrity_threshold", None),
        "timeline_cap": getattr(args, "timeline_cap", None),
    }
    overrides.update(extra)
    return Settings.from_env(**overrides)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="homefeed", description="A self-hostable timeline service.")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (embedded profile: one process, one SQLite file)")
    _serve_flags(serve)
    _common(serve)

    demo = sub.add_parser("demo", help="load a demo world into a fresh data dir, then serve it")
    _serve_flags(demo)
    _common(demo)
    demo.add_argument("--users", type=int, default=10_000)
    demo.add_argument("--posts", type=int, default=50_000)
    demo.add_argument("--reset", action="store_true", help="delete the data dir's database first")
    demo.add_argument("--no-serve", action="store_true", help="load the world and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            settings = _settings(
                args,
                data_dir=args.data_dir or Path("./demo-data"),
                celebrity_threshold=args.celebrity_threshold or 1_000,
            )
        else:
            settings = _settings(args)
    except ValueError as exc:
        print(f"homefeed: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        serve(settings)
        return 0
    if args.command == "demo":
        from homefeed.demo import load_demo

        token_line = load_demo(settings, users=args.users, posts=args.posts, reset=args.reset)
        if args.no_serve:
            return 0
        base = f"http://{settings.host}:{settings.port}"
        print(f"\nhomefeed demo is at {base}\nTry:\n  {token_line.format(base=base)}\n", flush=True)
        serve(settings)
        return 0
    return 2


def serve(settings: Settings) -> None:
    import uvicorn

    from homefeed.bootstrap import build
    from homefeed.entrypoints.http import create_app

    app = create_app(build(settings))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    raise SystemExit(main())
