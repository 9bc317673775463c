"""An open-loop HTTP load generator for homefeed, correcting for coordinated omission.

Why open loop. A closed-loop tester (N clients, each sending its next request when the last
one answers) slows down exactly when the server does: during a 1 s stall it sends nothing,
so the thousand requests real users would have sent in that second are never measured and
the percentiles look fine. That is *coordinated omission*. Real users do not wait for each
other, so here requests are *due* on a schedule fixed before the run (a constant interval or
Poisson arrivals at the asked rate, per request type, mixed by weights) and each is timed
**from when it was due**, not from when it could be sent. If the generator falls behind
(the server is slow, every allowed connection is busy) the waiting is charged to the
requests that waited, as their users would have felt it. This is wrk2's model.

Two latencies are recorded per request type:

* ``corrected`` -- due time to response complete: what users experience. The headline.
* ``service`` -- send time (after a connection was obtained) to response complete: what a
  naive closed-loop tool would report. The gap between the two is queueing on the client
  side; a large gap means the run needed more connections, or the server stalled.

Why not httpx. Measured on this machine against a trivial loopback server (keep-alive, 2 KB
JSON responses): httpx spends ~600-1600 µs of client CPU per request (~500-1,400 req/s per
process); a raw asyncio client with the ``httptools`` parser (already a homefeed dependency)
spends ~16-20 µs (20-39k req/s). A generator that eats the CPU the server needs measures
itself, so the client here is raw HTTP/1.1 with keep-alive connections.

Safety: it only ever talks to loopback (127.0.0.0/8, ::1, ``localhost``), it is bounded in
time (``duration_s`` + ``drain_timeout_s``) and in count (the schedule; ``max_requests``),
and it stops by itself. It runs in its own process(es), never inside the server: use
``run_load_processes`` (or several ``python -m homefeed.bench.loadgen`` processes and
``merge_results``) to drive more load than one Python process can generate.

One job per module: this one (the spec, the schedule, the run, in one or more processes),
``loadgen_http`` (the HTTP/1.1 client), ``loadgen_results`` (what a run measured, merged
across processes) and ``loadgen_cli`` (the command line). Their names are importable from
here too.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import math
import multiprocessing
import random
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from homefeed.bench.hdr import LatencyReport, Recorder
from homefeed.bench.loadgen_http import Connection, Pool, RequestFactory
from homefeed.bench.loadgen_results import LoadResult, merge_results

__all__ = [
    "DEFAULT_MIX",
    "REQUEST_TYPES",
    "LoadResult",
    "LoadSpec",
    "User",
    "build_arg_parser",
    "check_loopback",
    "load_users",
    "main",
    "merge_results",
    "run_load",
    "run_load_processes",
    "run_load_sync",
    "schedule",
    "spec_from_args",
]

#: The request types the generator knows, named for the homefeed endpoints they hit.
REQUEST_TYPES: tuple[str, ...] = ("home_timeline", "post", "user_timeline", "search")

#: Default weights. Twitter (DDIA ch. 1): 300k home-timeline reads/s against 4.6k posts/s,
#: i.e. ~65 home reads per post. User-timeline reads and searches are not given there; these
#: are guesses of the same order (profile views are common, searches rarer), to be tuned.
DEFAULT_MIX: Mapping[str, float] = {
    "home_timeline": 65.0,
    "post": 1.0,
    "user_timeline": 10.0,
    "search": 3.0,
}

from homefeed.bench.vocabulary import WORDS  # noqa: E402  (shared with world.py)

Arrival = Literal["constant", "poisson"]


@dataclass(frozen=True)
class User:
    """An account the generator acts as: its handle (for user-timeline reads) and a bearer
    token (for posting and reading its home timeline)."""

    handle: str
    token: str


@dataclass(frozen=True)
class LoadSpec:
    """What load to apply. ``rate`` is the total over all generator processes of a run.

    ``max_connections`` bounds the open connections per process. Requests beyond it wait for
    a free connection, and that wait is charged to them (corrected latency), as in wrk2; set it
    above ``rate x expected latency`` if you want to measure the server rather than the wait.
    """

    url: str = "http://127.0.0.1:8080"
    rate: float = 100.0
    duration_s: float = 10.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    arrival: Arrival = "poisson"
    #: Hard cap on requests scheduled (over all processes); None = whatever the schedule holds.
    max_requests: int | None = None
    max_connections: int = 256
    #: A request not answered this long after it was due fails as ``timeout``.
    request_timeout_s: float = 10.0
    #: After the schedule ends, how long to wait for outstanding requests before giving up.
    drain_timeout_s: float = 15.0
    timeline_limit: int = 20
    seed: int = 0

    def validate(self) -> None:
        check_loopback(self.url)
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number of requests per second")
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError("duration_s must be positive and finite: the run must end")
        if self.arrival not in ("constant", "poisson"):
            raise ValueError("arrival must be 'constant' or 'poisson'")
        unknown = set(self.mix) - set(REQUEST_TYPES)
        if unknown:
            raise ValueError(f"unknown request types in mix: {sorted(unknown)}")
        if any(w < 0 for w in self.mix.values()) or not any(w > 0 for w in self.mix.values()):
            raise ValueError("mix weights must be >= 0 and not all zero")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if self.max_requests is not None and self.max_requests < 0:
            raise ValueError("max_requests must be >= 0")
        if not (0 < self.request_timeout_s < math.inf and 0 < self.drain_timeout_s < math.inf):
            raise ValueError("request_timeout_s and drain_timeout_s must be positive and finite")

    def rates(self) -> dict[str, float]:
        """Requests per second for each request type with a positive weight."""
        total = sum(w for w in self.mix.values() if w > 0)
        return {k: self.rate * w / total for k, w in self.mix.items() if w > 0}


# --------------------------------------------------------------------------------------------
# Safety: loopback only
# --------------------------------------------------------------------------------------------


def check_loopback(url: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``url`` if it is plain ``http://`` to a loopback address,
    else raise ValueError. No name other than ``localhost`` is resolved, so a typo can never
    send load anywhere else; ``localhost`` must itself resolve only to loopback addresses."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// targets are supported, got {url!r}")
    host = parts.hostname or ""
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    if host == "localhost":
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addrs = {info[4][0] for info in infos}
        if not addrs or not all(ipaddress.ip_address(a).is_loopback for a in addrs):
            raise ValueError(f"localhost resolves to non-loopback addresses {sorted(addrs)}")
        return host, port
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"target host {host!r} is not loopback: use 127.0.0.1, ::1 or localhost"
        ) from None
    if not ip.is_loopback:
        raise ValueError(f"target {host} is not a loopback address; refusing to send load")
    return host, port


# --------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------


def schedule(
    spec: LoadSpec, *, process_index: int = 0, processes: int = 1
) -> Iterator[tuple[float, str]]:
    """When each request is due, as ``(seconds after start, request type)``, in time order.

    Fixed before the run and independent of how the server answers: that is what makes the
    generator open-loop. Each request type is its own arrival stream at ``rate x weight /
    sum(weights) / processes``: evenly spaced (``constant``; process ``i`` of ``n`` is offset
    by ``i / n`` of an interval, so the processes interleave into one even stream) or with
    exponential gaps (``poisson``; seeded per process and type, so a run repeats exactly).
    Only due times in ``[0, duration_s)`` are produced, at most ``max_requests / processes``.
    """
    if not 0 <= process_index < processes:
        raise ValueError("process_index must be in 0 .. processes - 1")

    def stream(kind: str, rate: float) -> Iterator[tuple[float, str]]:
        if spec.arrival == "constant":
            interval = 1.0 / rate
            j = 0
            while True:
                t = (j + process_index / processes) * interval
                if t >= spec.duration_s:
                    return
                yield t, kind
                j += 1
        else:
            rng = random.Random(f"{spec.seed}/{process_index}/{kind}")
            t = 0.0
            while True:
                t += rng.expovariate(rate)
                if t >= spec.duration_s:
                    return
                yield t, kind

    streams = [stream(kind, rate / processes) for kind, rate in sorted(spec.rates().items())]
    limit = None
    if spec.max_requests is not None:
        base, extra = divmod(spec.max_requests, processes)
        limit = base + (1 if process_index < extra else 0)
    for n, item in enumerate(heapq.merge(*streams)):
        if limit is not None and n >= limit:
            return
        yield item


def _spec_dict(spec: LoadSpec) -> dict[str, Any]:
    d = asdict(spec)
    d["mix"] = dict(spec.mix)
    return d


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


async def run_load(
    spec: LoadSpec,
    users: Sequence[User],
    *,
    process_index: int = 0,
    processes: int = 1,
    start_at: float | None = None,
) -> LoadResult:
    """Apply this process's share of ``spec`` and return what it measured.

    ``start_at`` is a ``time.time()`` wall-clock instant at which the schedule begins, so that
    several processes started a little apart begin together; None means "now".

    The run ends by itself: no request is due after ``duration_s``; each request fails as
    ``timeout`` ``request_timeout_s`` after it was due; and whatever is still running
    ``drain_timeout_s`` after the schedule ends is cancelled and counted as ``unfinished``
    (with its wait so far as latency, a lower bound).
    """
    spec.validate()
    host, port = check_loopback(spec.url)
    factory = RequestFactory(
        spec, users, host, port, seed=f"{spec.seed}/{process_index}/content"
    )
    pool = Pool(host, port, spec.max_connections)
    corrected, service = LatencyReport(), LatencyReport()
    lag = Recorder()
    # The spec recorded is this process's share, so merged results add up to the whole.
    share = _spec_dict(spec)
    share["rate"] = spec.rate / processes
    share["processes_in_run"] = processes
    share["process_index"] = process_index
    result = LoadResult(spec=share, processes=1, corrected=corrected, service=service, lag=lag)

    # Clocks: perf_counter for all timing (monotonic, sub-µs); wall time only to agree on
    # a common start with sibling processes.
    clock = time.perf_counter
    now_wall, now_mono = time.time(), clock()
    start = now_mono if start_at is None else now_mono + (start_at - now_wall)
    timeout = spec.request_timeout_s
    pending: dict[asyncio.Task[None], tuple[float, str]] = {}

    async def one(due: float, kind: str, request: bytes) -> None:
        conn: Connection | None = None
        reusable = False
        sent_at: float | None = None
        error: str | None = None
        acquired = False
        try:
            async with asyncio.timeout_at(_loop_deadline(due + timeout, clock)):
                conn = await pool.acquire()
                acquired = True
                sent_at = clock()
                result.sent += 1
                status, keep_alive = await conn.exchange(request)
                reusable = keep_alive
                if not 200 <= status < 300:
                    error = f"http {status}"
        except TimeoutError:
            error = "timeout"
        except Exception as exc:  # refused, reset, bad HTTP...: a failed request, not a crash
            error = type(exc).__name__
        finally:
            if acquired:
                pool.release(conn, reusable)
        done = clock()
        corrected.record(kind, done - due, error)
        if sent_at is not None:
            service.record(kind, done - sent_at, error)

    loop = asyncio.get_running_loop()
    behind = 0
    try:
        for offset, kind in schedule(spec, process_index=process_index, processes=processes):
            due = start + offset
            delay = due - clock()
            if delay > 0:
                behind = 0
                # Timers may fire up to a millisecond early (uvloop rounds to ms): sleep
                # again until due, so no request leaves before its time.
                while delay > 0:
                    await asyncio.sleep(delay)
                    delay = due - clock()
            else:
                # Already late: dispatch at once, but let the requests in flight run now and
                # then, or a generator that has fallen behind would never read a response.
                behind += 1
                if behind % 32 == 0:
                    await asyncio.sleep(0)
            lag.record(max(0.0, clock() - due))
            result.scheduled += 1
            task = loop.create_task(one(due, kind, factory.build(kind)))
            pending[task] = (due, kind)
            task.add_done_callback(pending.pop)
        end_of_schedule = start + spec.duration_s
        if pending:
            await asyncio.wait(
                list(pending), timeout=max(0.0, end_of_schedule + spec.drain_timeout_s - clock())
            )
        stragglers = [(t, dk) for t, dk in pending.items() if not t.done()]
        if stragglers:
            for task, (due, kind) in stragglers:
                task.cancel()
                corrected.record(kind, clock() - due, "unfinished")
            await asyncio.gather(*(t for t, _ in stragglers), return_exceptions=True)
    finally:
        pool.close()
    corrected.duration_s = service.duration_s = spec.duration_s
    result.elapsed_s = clock() - start
    return result


def _loop_deadline(deadline_perf: float, clock: Any) -> float:
    """Convert a perf_counter instant into the running loop's clock (asyncio.timeout_at)."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline_perf - clock())


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # homefeed depends on it where it exists; ~2x cheaper per request
    except ImportError:  # pragma: no cover - windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_load_sync(
    spec: LoadSpec,
    users: Sequence[User],
    *,
    process_index: int = 0,
    processes: int = 1,
    start_at: float | None = None,
) -> LoadResult:
    """``run_load`` on a fresh event loop (uvloop when installed), for plain callers."""
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(
            run_load(spec, users, process_index=process_index, processes=processes,
                     start_at=start_at)
        )


def _process_main(
    spec: LoadSpec, users: Sequence[User], index: int, processes: int, start_at: float
) -> dict[str, Any]:
    """Entry point of one generator process: returns its result as a JSON-safe dict."""
    return run_load_sync(
        spec, users, process_index=index, processes=processes, start_at=start_at
    ).to_dict()


def run_load_processes(
    spec: LoadSpec, users: Sequence[User], processes: int = 1, *, start_delay_s: float = 1.0
) -> LoadResult:
    """Run the load from ``processes`` separate generator processes and merge their results.

    One Python process drives some thousands of requests per second before its own event
    loop becomes the bottleneck (visible as generator lag); several share the rate (each
    takes ``rate / processes``) and begin together ``start_delay_s`` from now, once all are
    up. Processes are spawned, not forked, so a generator never carries a copy of the
    caller's state (and never of a server's).
    """
    spec.validate()
    if processes < 1:
        raise ValueError("processes must be >= 1")
    if processes == 1:  # nothing to synchronise with: start now, in this process
        return merge_results([run_load_sync(spec, users)])
    start_at = time.time() + start_delay_s
    ctx = multiprocessing.get_context("spawn")
    users = [User(u.handle, u.token) for u in users]
    with ctx.Pool(processes) as mp_pool:
        asyncs = [
            mp_pool.apply_async(_process_main, (spec, users, i, processes, start_at))
            for i in range(processes)
        ]
        hard_limit = start_delay_s + spec.duration_s + spec.drain_timeout_s + 30.0
        dicts = [a.get(timeout=hard_limit) for a in asyncs]
    return merge_results([LoadResult.from_dict(d) for d in dicts])


# The command line lives in loadgen_cli, which imports this module: its names are found there
# on first use (importing them here at the top would be a cycle).
_CLI_NAMES = ("_parse_mix", "build_arg_parser", "load_users", "spec_from_args")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m homefeed.bench.loadgen``: see ``loadgen_cli.main``."""
    from homefeed.bench import loadgen_cli

    return loadgen_cli.main(argv)


def __getattr__(name: str) -> Any:
    if name in _CLI_NAMES:
        from homefeed.bench import loadgen_cli

        return getattr(loadgen_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
