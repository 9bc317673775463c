"""``homefeed`` command line: every process (serve, worker, migrate, demo), the operator
commands (audit, rebuild, replay, dead-letters, status) and the benchmarks. The parser and
the dispatch live here; the processes themselves in ``processes``.

Errors a person can fix print ONE line on stderr naming the problem and the fix, and exit
with status 2; the traceback only with ``--debug`` (or ``HOMEFEED_LOG_LEVEL=DEBUG``), since
30 lines of asyncio frames hide the one line that matters from a newcomer. No process of
ours ignores SIGTERM or SIGINT, at start-up included.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from homefeed.config import Settings
from homefeed.entrypoints import explain
from homefeed.entrypoints.explain import CliError
from homefeed.entrypoints.processes import bind, run_migrate, run_worker, serve, url_host

#: Commands that inspect or repair a deployment: they never create a data dir or a database.
OPERATOR_COMMANDS = ("audit", "rebuild", "replay", "dead-letters", "status", "jobs", "report", "webhooks")


def version() -> str:
    """The installed distribution's version (one place: pyproject.toml)."""
    import homefeed

    return str(homefeed.__version__)


# --------------------------------------------------------------------------------------------
# the parser: each command offers only the flags that apply to it
# --------------------------------------------------------------------------------------------
def _debug_flag(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's default must not undo `homefeed --debug serve`.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="print the traceback of an error, and log at DEBUG (also HOMEFEED_LOG_LEVEL=DEBUG)")


def _data_dir_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help=f"{what} (HOMEFEED_DATA_DIR, default ./data)")


def _feed_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--celebrity-threshold", type=int, default=None, metavar="N",
                   help="authors with at least N followers are pulled at read time, not pushed"
                        " (HOMEFEED_CELEBRITY_THRESHOLD, default 10000)")
    p.add_argument("--timeline-cap", type=int, default=None, metavar="N",
                   help="newest post ids kept per cached timeline (HOMEFEED_TIMELINE_CAP, default 800)")


def _listen_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="address to listen on (HOMEFEED_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (HOMEFEED_PORT, default 8080)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="homefeed",
        description="A self-hostable timeline service. Embedded profile (no URL set): one"
                    " `homefeed serve` process on a SQLite file in the data dir. Scale-out profile"
                    " (HOMEFEED_DATABASE_URL, HOMEFEED_CACHE_URL, HOMEFEED_BUS_URL): `homefeed migrate`"
                    " once, then any number of `serve` and `worker` processes.")
    p.add_argument("--version", action="version", version=f"homefeed {version()}")
    p.add_argument("--debug", action="store_true", default=False,
                   help="print the traceback of an error, and log at DEBUG (also HOMEFEED_LOG_LEVEL=DEBUG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the HTTP API",
        description="Run the HTTP API. Embedded profile: the whole service in this one process (API,"
                    " fan-out and indexer consumers, in-process cache) on the SQLite file in --data-dir,"
                    " created on first start; it writes its address and admin token there for the"
                    " operator commands. Scale-out profile (URLs set): a stateless API process; start"
                    " any number, and `homefeed worker` beside them.")
    _listen_flags(serve)
    _data_dir_flag(serve, "embedded profile: where the SQLite file, the admin token and the address file live")
    _feed_flags(serve)
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="API processes (more than 1 needs HOMEFEED_DATABASE_URL and HOMEFEED_CACHE_URL)")
    _debug_flag(serve)

    worker = sub.add_parser(
        "worker", help="scale-out profile: run the event consumers and the outbox relay",
        description="Scale-out profile only: run the event consumers (fan-out, indexer, notifier, webhooks,"
                    " mailer) and the outbox relay"
                    " (needs HOMEFEED_DATABASE_URL, and HOMEFEED_CACHE_URL for fan-out). The embedded"
                    " profile runs its consumers inside `homefeed serve` and needs no worker.")
    _feed_flags(worker)
    from homefeed.bootstrap import ROLES

    worker.add_argument("--role", default="all",
                        help=f"{', '.join(ROLES)}, or all (comma-separated for several)")
    worker.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve /metrics and /metrics.json on this port (workers serve no API)")
    _debug_flag(worker)

    migrate = sub.add_parser(
        "migrate", help="create or upgrade the database schema",
        description="Create or upgrade the schema. Scale-out profile: of the PostgreSQL database of"
                    " HOMEFEED_DATABASE_URL, once per upgrade, before starting the new processes."
                    " Embedded profile: of the SQLite file in --data-dir (created if missing;"
                    " `homefeed serve` also does this at start).")
    _data_dir_flag(migrate, "embedded profile: where the SQLite file lives")
    _debug_flag(migrate)

    from homefeed.entrypoints import status as status_cmd

    status = status_cmd.register(sub)
    _data_dir_flag(status, "embedded profile: find the serving process through the address file it"
                           " writes here (used when no --url is given)")
    _debug_flag(status)

    sub.add_parser("bench", help="benchmarks: make a world, run a workload, compare strategies "
                   "(`homefeed bench --help`)", add_help=False)

    from homefeed.entrypoints import ops

    for op_parser in ops.register(sub):  # audit, rebuild, replay, dead-letters
        _debug_flag(op_parser)
    from homefeed.entrypoints import webhooks_cli

    for op_parser in webhooks_cli.register(sub):
        _debug_flag(op_parser)

    from homefeed.entrypoints import jobs_cli

    for jobs_parser in jobs_cli.register(sub):  # jobs list|run, report load
        _debug_flag(jobs_parser)

    demo = sub.add_parser(
        "demo", help="load a demo world (10,000 users, 50,000 posts) and serve it",
        description="Load a demo world, then serve it as `homefeed serve` does. Embedded profile: into"
                    " --data-dir (default ./demo-data), kept between runs. With URLs set: into those"
                    " backends (the tokens file still goes to --data-dir).")
    _listen_flags(demo)
    _data_dir_flag(demo, "where the world and its tokens file go (default ./demo-data)")
    _feed_flags(demo)
    demo.add_argument("--users", type=int, default=10_000)
    demo.add_argument("--posts", type=int, default=50_000)
    demo.add_argument("--reset", action="store_true", help="delete the data dir's database first")
    demo.add_argument("--no-serve", action="store_true", help="load the world and exit")
    _debug_flag(demo)
    return p


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {
        name: getattr(args, name, None)
        for name in ("data_dir", "host", "port", "celebrity_threshold", "timeline_cap")
    }
    overrides.update(extra)
    return Settings.from_env(**overrides)


def _debug_requested(argv: Sequence[str]) -> bool:
    level = os.environ.get("HOMEFEED_LOG_LEVEL", "").strip().upper()
    return "--debug" in argv or level == "DEBUG"


def _command_of(argv: Sequence[str]) -> str:
    return next((a for a in argv if not a.startswith("-")), "")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. Every error becomes one line and status 2 (the
    traceback too with ``--debug``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args_list)
    explain.DEBUG = debug
    command = _command_of(args_list)
    prefix = f"homefeed {command}" if command else "homefeed"
    try:
        return _main(args_list, command, debug)
    except KeyboardInterrupt:
        return 130
    except CliError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"{prefix}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an error at start-up: one line, unless debugging
        if debug:
            raise
        print(f"{prefix}: {explain.describe(exc)}", file=sys.stderr)
        return 2


def _main(argv: list[str], command: str, debug: bool) -> int:
    if command == "bench":
        from homefeed.bench.cli import main as bench_main

        return bench_main(argv[argv.index("bench") + 1:])
    args = parser().parse_args(argv)
    try:
        if args.command == "demo":
            settings = _settings(args, data_dir=args.data_dir or Path("./demo-data"),
                                 celebrity_threshold=args.celebrity_threshold or 1_000)
        else:
            settings = _settings(args)
    except ValueError as exc:  # the message names the variable or flag and what it accepts
        raise CliError(str(exc)) from exc
    if debug:
        settings = settings.replace(log_level="DEBUG")
    if args.command == "status":
        return _status(args, settings)
    from homefeed.logging_setup import configure

    configure(settings.log_level)
    from homefeed.domain.errors import ProfileError

    try:
        from homefeed.entrypoints import ops

        if args.command in ops.COMMANDS:
            require_database(settings, args.command)
            return ops.run(args, settings)
        from homefeed.entrypoints import jobs_cli

        if args.command in jobs_cli.COMMANDS:
            require_database(settings, args.command)
            return jobs_cli.run(args, settings)
        if args.command == "webhooks":
            from homefeed.entrypoints import webhooks_cli

            require_database(settings, args.command)
            return webhooks_cli.run(args, settings)
        if args.command == "serve":
            serve(settings, processes=args.workers)
            return 0
        if args.command == "worker":
            return run_worker(settings, args.role, args.metrics_port)
        if args.command == "migrate":
            return run_migrate(settings)
        if args.command == "demo":
            return run_demo(args, settings)
    except ProfileError as exc:
        raise CliError(f"refusing to start: {exc}") from exc
    return 2


def require_database(settings: Settings, command: str) -> None:
    """Operator commands look at a deployment; they never make one. Without a database URL
    the SQLite file must exist already: building the adapters on a missing path would create
    an empty database and report it clean."""
    if settings.database_url:
        return
    path = settings.database_path
    if not path.is_file():
        where = "data dir" if Path(settings.data_dir).is_dir() else "data dir, which does not exist"
        raise CliError(
            f"no database at {path} (the {where}): point at the service's data with --data-dir DIR"
            " or HOMEFEED_DATA_DIR (for the scale-out profile, set HOMEFEED_DATABASE_URL)")


def _status(args: argparse.Namespace, settings: Settings) -> int:
    """``homefeed status``: without ``--url``, the address the embedded serving process wrote
    in its data dir, if any (else status's own default)."""
    from homefeed.entrypoints import admin
    from homefeed.entrypoints import status as status_cmd

    if not args.url:
        found = admin.read_server_file(settings)
        if found is not None:
            args.url = [found.url]
        elif args.data_dir is not None:
            raise CliError(
                f"no running `homefeed serve` has its address in {args.data_dir} (no {admin.SERVER_FILE},"
                " or its process is gone): start it with this --data-dir, or give --url")
    return status_cmd.run(args)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from homefeed.demo import load_demo

    if args.no_serve:
        load_demo(settings, users=args.users, posts=args.posts, reset=args.reset)
        return 0
    sock = bind(settings.host, settings.port)  # before loading: a port in use fails at once
    token_line = load_demo(settings, users=args.users, posts=args.posts, reset=args.reset)
    base = f"http://{url_host(settings.host)}:{sock.getsockname()[1]}"
    from homefeed.demo import DEMO_PASSWORD, demo_handle

    print(f"\nhomefeed demo is at {base}\nIn a browser: open {base}/ , click Log in, and log in as"
          f" {demo_handle()!r} with the password {DEMO_PASSWORD!r}\nTry:\n  {token_line.format(base=base)}\n",
          flush=True)
    serve(settings, sock=sock)
    return 0


__all__ = ["main", "parser", "serve", "bind", "run_worker", "run_migrate", "version"]


if __name__ == "__main__":
    raise SystemExit(main())
