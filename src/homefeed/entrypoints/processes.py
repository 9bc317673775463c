"""The long-running processes and the schema: ``homefeed serve`` (uvicorn on a socket bound
first, a drain that loses no request, the address announced in the data dir), ``homefeed
worker`` (consumers and relay until SIGTERM) and ``homefeed migrate``.

No process here ignores SIGTERM or SIGINT: during start-up (a backend that does not answer
yet) they end the process at once; afterwards they drain, and a second one ends it.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from homefeed.config import Settings
from homefeed.entrypoints import explain
from homefeed.entrypoints.explain import CliError


#: The collector's first threshold once a process serves (Python's default: 700). Issue 14
#: (``benchmarks/results/issue14_p16post.md``): under a load of posts each young collection
#: promoted the requests and batches in flight, and the full collections that followed
#: traversed the whole heap, 30-40 ms of CPU during which the event loop, and every request
#: in it, stood still: 3-4 of them in 15 s at 400 posts/s.
GC_YOUNG_THRESHOLD = 10_000


def settle_gc() -> None:
    """Once a process has started (modules, configuration, connections: objects it keeps
    until it exits): move them out of the collector's sight (``gc.freeze``), so that no
    collection traverses them again, and collect the young generation less often, so that
    fewer short-lived objects of the requests in flight are promoted into the old
    generations, whose collections are what stops the loop for tens of milliseconds. Cycles
    are still collected; memory held by start-up objects that would become cyclic garbage
    later is not (there are none to speak of)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts, so that a port in use is one
    line and exit status 2 at once (uvicorn binding after the app's start-up left threads
    running, and the process hung ignoring SIGTERM)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is fine
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"port {port} on {host} is in use (another process listens there, perhaps another"
                " `homefeed serve`: stop it, or choose another port with --port or HOMEFEED_PORT)") from exc
        if exc.errno == errno.EACCES:
            raise CliError(f"no permission to listen on port {port} on {host} (ports below 1024 need"
                           " privileges: choose another with --port or HOMEFEED_PORT)") from exc
        raise CliError(f"cannot listen on {host} port {port}: {exc.strerror or exc} (fix --host or"
                       " HOMEFEED_HOST)") from exc
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    """The host part of a URL that reaches ``host`` from this machine (a wildcard listens on
    loopback too; IPv6 literals need brackets)."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(settings: Settings, processes: int = 1, sock: socket.socket | None = None) -> None:
    """Run the API until SIGTERM/SIGINT: one process on ``sock`` (bound here if not given),
    or ``processes`` uvicorn workers (scale-out: each builds its app from the environment)."""
    import uvicorn

    from homefeed.bootstrap import build, plan
    from homefeed.entrypoints.coalesce import CoalescingHttpToolsProtocol
    from homefeed.entrypoints.http import create_app

    process_plan = plan(settings, "api", processes=processes)  # refuses wrong combinations
    log = logging.getLogger("homefeed")
    for note in process_plan.notes:
        log.warning(note)
    if sock is None:
        sock = bind(settings.host, settings.port)
    common: dict[str, Any] = dict(
        host=settings.host,
        port=sock.getsockname()[1],
        access_log=False,
        # httptools (a dependency), with a response's head and body in one send (coalesce.py)
        http=CoalescingHttpToolsProtocol,
        log_level="debug" if explain.DEBUG else "warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
        log_config=None,  # uvicorn's lines go through our (JSON) logging too
        # The client address (rate limits per address, logs) from X-Forwarded-For, when the
        # peer is one of these proxies.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # The streaming WebSocket's heartbeat, as Mastodon's: a ping frame every
        # stream_heartbeat_seconds, and a peer that has not answered by the next one is
        # closed (1011). ASGI has no ping message, so the server sends them.
        ws_ping_interval=settings.stream_heartbeat_seconds,
        ws_ping_timeout=settings.stream_heartbeat_seconds,
    )
    if processes > 1:
        # uvicorn binds in the supervisor and hands the socket to its workers; our check
        # above has told a port in use; free it for uvicorn.
        sock.close()
        # Each worker process builds its app from the environment: hand the flags down.
        from homefeed.config import ENV_PREFIX
        from homefeed.entrypoints.asgi import PROCESSES_ENV

        for name in ("data_dir", "celebrity_threshold", "timeline_cap", "host", "port"):
            os.environ[ENV_PREFIX + name.upper()] = str(getattr(settings, name))
        os.environ[PROCESSES_ENV] = str(processes)
        log.info("listening on http://%s:%d (%d processes)", url_host(settings.host), settings.port, processes)
        uvicorn.run("homefeed.entrypoints.asgi:app_from_env", factory=True, workers=processes, **common)
        return
    hf = build(settings, node=None if settings.database_url else 0)
    _serve_until_drained(create_app(hf, process_plan), sock, settings, **common)


#: Seconds between refusing new connections and closing idle keep-alive ones on SIGTERM.
DRAIN_SETTLE_S = 0.05


class _StartupWatch:
    """The app, with the exception behind a failed lifespan start-up kept (for the one-line
    message) and left out of uvicorn's log unless debugging."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)
        await self.app(scope, receive, self.wrap(send))

    def wrap(self, send: Any) -> Any:
        """``send`` of the lifespan, watched."""

        async def watched(message: Any) -> None:
            if message.get("type") == "lifespan.startup.failed":
                self.error = sys.exc_info()[1]  # Starlette sends this inside its except block
                if self.error is not None and not explain.DEBUG:
                    message = {**message, "message": ""}  # no traceback in the log
            await send(message)

        return watched


class _DropStartupFailed(logging.Filter):
    """uvicorn's "Application startup failed. Exiting.": our one line says more."""

    def __init__(self, watch: _StartupWatch) -> None:
        super().__init__()
        self.watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.watch.error is not None and "startup failed" in record.getMessage())


def _serve_until_drained(app: object, sock: socket.socket, settings: Settings, **config: Any) -> None:
    """uvicorn's ``run`` for one process on the socket bound already, with a shutdown that
    loses no request and an exit status of 0 once drained.

    On SIGTERM/SIGINT uvicorn stops accepting, lets every request in progress finish
    (``timeout_graceful_shutdown``), runs the lifespan shutdown (consumers finish and
    acknowledge their batch, the store closes) and exits. Two gaps closed here: uvicorn
    closes idle keep-alive connections at once, so a request that reached the process just
    before the signal but was not read yet would be reset: the loop first gets one more
    pass to read it (it is then answered); and uvicorn re-raises the signal once shut down,
    so the process would die "killed by SIGTERM" after a clean drain: it exits 0 instead,
    which is what supervisors (systemd, Kubernetes) expect of a graceful stop.

    Once listening it logs ``listening on http://HOST:PORT`` and writes the address file in
    the data dir (removed at exit), which the operator commands read to find it."""
    import asyncio

    import uvicorn

    from homefeed.entrypoints import admin
    from homefeed.entrypoints.routes._request import HomefeedApp

    watch = _StartupWatch(app)
    log = logging.getLogger("homefeed")
    port = sock.getsockname()[1]
    url = f"http://{url_host(settings.host)}:{port}"
    writes_file = admin.serves_admin(settings)
    if writes_file:
        admin.admin_token(settings)  # made now, not on the first admin call

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.started:
                # Still starting (a backend that does not answer yet holds the lifespan
                # start-up, which uvicorn does not interrupt): nothing to drain, so die of
                # the signal now rather than ignore it until the start-up gives up.
                signal.signal(sig, signal.SIG_DFL)
                signal.raise_signal(sig)
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                settle_gc()
                if writes_file:
                    admin.write_server_file(settings, url)
                log.info("listening on %s", url)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for listener in getattr(self, "servers", []):
                listener.close()  # refuse new connections from now on
            await asyncio.sleep(DRAIN_SETTLE_S)  # read what reached us before the signal
            hf = getattr(app, "homefeed", None)
            if hf is not None:
                hf.streams.close_all()  # open streams never end by themselves: end them now
            await super().shutdown(sockets)

    # homefeed's app takes the watch as a hook on its lifespan: no wrapper on every request
    if isinstance(app, HomefeedApp):
        app.lifespan_send = watch.wrap
    server = DrainingServer(uvicorn.Config(app if isinstance(app, HomefeedApp) else watch, **config))

    def after_drain(signum: int, frame: object) -> None:
        if server.started:
            return  # uvicorn handled the signal and drained: exit normally, status 0
        signal.signal(signum, signal.SIG_DFL)  # before start-up ends: die of it, as before
        signal.raise_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, after_drain)  # uvicorn restores this handler, then re-raises
    quiet = _DropStartupFailed(watch)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        if watch.error is None:
            raise
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)
        if writes_file:
            admin.remove_server_file(settings)
        sock.close()
    if watch.error is not None:
        raise watch.error
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE, as uvicorn.run exits


# --------------------------------------------------------------------------------------------
# worker, migrate
# --------------------------------------------------------------------------------------------
def run_worker(settings: Settings, role: str, metrics_port: int | None = None) -> int:
    """Consume until SIGTERM/SIGINT; then finish and acknowledge the batch in hand, exit 0.
    A signal during start-up (a backend that does not answer yet) stops it at once, and a
    second signal while draining ends the process: no signal is ever ignored."""
    import asyncio

    from homefeed.bootstrap import ROLES, build, plan

    roles = ROLES if role == "all" else tuple(r.strip() for r in role.split(",") if r.strip())
    process_plan = plan(settings, "worker", worker_roles=roles)
    log = logging.getLogger("homefeed.worker")
    stopped_by: list[int] = []
    state = {"started": False}

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal(signum: int) -> None:
            stopped_by.append(signum)
            if not state["started"] and task is not None:
                task.cancel()  # still starting: nothing to finish
            elif stop.is_set():
                signal.signal(signum, signal.SIG_DFL)  # asked twice: die of it now
                signal.raise_signal(signum)
            else:
                stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        hf = build(settings, node=None)
        from homefeed.entrypoints import metrics as obs

        hf.consumers.on_applied = obs.observe_fanout_event
        try:
            await hf.start(consumers=process_plan.consumers, relay=process_plan.relay,
                           exclusive=process_plan.exclusive, scheduler=True)
        except asyncio.CancelledError:
            await asyncio.shield(hf.close())
            return
        state["started"] = True
        settle_gc()
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
    if stopped_by and not state["started"]:
        log.info("stopped by signal %d during start-up", stopped_by[0])
        return 128 + stopped_by[0]
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


__all__ = ["bind", "serve", "url_host", "run_worker", "run_migrate", "DRAIN_SETTLE_S"]
