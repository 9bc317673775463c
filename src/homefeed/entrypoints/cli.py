"""``homefeed`` command line: serve, worker, migrate, demo."""

from __future__ import annotations

import argparse
import logging
import os
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

    serve.add_argument("--workers", type=int, default=1,
                       help="API processes (more than 1 needs HOMEFEED_DATABASE_URL and HOMEFEED_CACHE_URL)")

    worker = sub.add_parser("worker", help="run event consumers (scale-out profile): fan-out, indexer, relay")
    _common(worker)
    worker.add_argument("--role", default="all",
                        help="fanout, indexer, relay, or all (comma-separated for several)")
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="serve /metrics and /metrics.json on this port (workers serve no API)")

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    _common(migrate)

    from homefeed.entrypoints import status as status_cmd

    status_cmd.register(sub)

    sub.add_parser("bench", help="benchmarks: make a world, run a workload, compare strategies "
                   "(`homefeed bench --help`)", add_help=False)

    from homefeed.entrypoints import ops

    ops.register(sub)  # audit, rebuild, replay, dead-letters

    demo = sub.add_parser("demo", help="load a demo world into a fresh data dir, then serve it")
    _serve_flags(demo)
    _common(demo)
    demo.add_argument("--users", type=int, default=10_000)
    demo.add_argument("--posts", type=int, default=50_000)
    demo.add_argument("--reset", action="store_true", help="delete the data dir's database first")
    demo.add_argument("--no-serve", action="store_true", help="load the world and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from homefeed.bench.cli import main as bench_main

        return bench_main(argv[1:])
    args = parser().parse_args(argv)
    if args.command == "status":
        from homefeed.entrypoints import status as status_cmd

        return status_cmd.run(args)
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
    from homefeed.logging_setup import configure

    configure(settings.log_level)
    from homefeed.bootstrap import ProfileError

    try:
        from homefeed.entrypoints import ops

        if args.command in ops.COMMANDS:
            return ops.run(args, settings)
        if args.command == "serve":
            serve(settings, processes=args.workers)
            return 0
        if args.command == "worker":
            return run_worker(settings, args.role, args.metrics_port)
        if args.command == "migrate":
            return run_migrate(settings)
    except ProfileError as exc:
        print(f"homefeed: refusing to start: {exc}", file=sys.stderr)
        return 2
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


def serve(settings: Settings, processes: int = 1) -> None:
    import uvicorn

    from homefeed.bootstrap import build, plan
    from homefeed.entrypoints.http import create_app

    process_plan = plan(settings, "api", processes=processes)  # refuses wrong combinations
    for note in process_plan.notes:
        logging.getLogger("homefeed").warning(note)
    common = dict(
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
        log_config=None,  # uvicorn's lines go through our (JSON) logging too
        # The client address (rate limits per address, logs) from X-Forwarded-For, when the
        # peer is one of these proxies.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    if processes > 1:
        # Each worker process builds its app from the environment: hand the flags down.
        from homefeed.config import ENV_PREFIX
        from homefeed.entrypoints.asgi import PROCESSES_ENV

        for name in ("data_dir", "celebrity_threshold", "timeline_cap", "host", "port"):
            os.environ[ENV_PREFIX + name.upper()] = str(getattr(settings, name))
        os.environ[PROCESSES_ENV] = str(processes)
        uvicorn.run("homefeed.entrypoints.asgi:app_from_env", factory=True, workers=processes, **common)
        return
    hf = build(settings, node=None if settings.database_url else 0)
    _serve_until_drained(create_app(hf, process_plan), **common)


#: Seconds between refusing new connections and closing idle keep-alive ones on SIGTERM.
DRAIN_SETTLE_S = 0.05


def _serve_until_drained(app: object, **config: object) -> None:
    """uvicorn's ``run`` for one process, with a shutdown that loses no request and an exit
    status of 0 once drained.

    On SIGTERM/SIGINT uvicorn stops accepting, lets every request in progress finish
    (``timeout_graceful_shutdown``), runs the lifespan shutdown (consumers finish and
    acknowledge their batch, the store closes) and exits. Two gaps closed here: uvicorn
    closes idle keep-alive connections at once, so a request that reached the process just
    before the signal but was not read yet would be reset: the loop first gets one more
    pass to read it (it is then answered); and uvicorn re-raises the signal once shut down,
    so the process would die "killed by SIGTERM" after a clean drain: it exits 0 instead,
    which is what supervisors (systemd, Kubernetes) expect of a graceful stop."""
    import asyncio
    import signal

    import uvicorn

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: list | None = None) -> None:
            for listener in getattr(self, "servers", []):
                listener.close()  # refuse new connections from now on
            await asyncio.sleep(DRAIN_SETTLE_S)  # read what reached us before the signal
            await super().shutdown(sockets)

    server = DrainingServer(uvicorn.Config(app, **config))

    def after_drain(signum: int, frame: object) -> None:
        if server.started:
            return  # uvicorn handled the signal and drained: exit normally, status 0
        signal.signal(signum, signal.SIG_DFL)  # before start-up ends: die of it, as before
        signal.raise_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, after_drain)  # uvicorn restores this handler, then re-raises
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits


def run_worker(settings: Settings, role: str, metrics_port: int | None = None) -> int:
    """Consume until SIGTERM/SIGINT; then finish and acknowledge the batch in hand, exit 0."""
    import asyncio
    import signal

    from homefeed.bootstrap import ROLES, build, plan

    roles = ROLES if role == "all" else tuple(r.strip() for r in role.split(",") if r.strip())
    process_plan = plan(settings, "worker", worker_roles=roles)
    log = logging.getLogger("homefeed.worker")

    async def main() -> None:
        hf = build(settings, node=None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        from homefeed.entrypoints import metrics as obs

        hf.consumers.on_applied = obs.observe_fanout_event
        await hf.start(consumers=process_plan.consumers, relay=process_plan.relay,
                       exclusive=process_plan.exclusive)
        metrics = None
        if metrics_port is not None:
            metrics = await obs.MetricsServer.start(hf, settings.host, metrics_port, role="worker")
        log.info("worker running: consumers=%s relay=%s", ",".join(process_plan.consumers) or "-",
                 process_plan.relay)
        await stop.wait()
        log.info("stopping: finishing the batch in hand")
        if metrics is not None:
            await metrics.close()
        await hf.close()

    asyncio.run(main())
    return 0


def run_migrate(settings: Settings) -> int:
    import asyncio

    if settings.database_url:
        from homefeed.adapters.pg_db import migrate_url

        version = asyncio.run(migrate_url(settings.database_url))
        print(f"PostgreSQL schema at version {version}")
        return 0
    from homefeed.adapters.sqlite_db import connect, migrate

    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    conn = connect(settings.database_path)
    try:
        version = migrate(conn)
    finally:
        conn.close()
    print(f"SQLite schema of {settings.database_path} at version {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
