"""Repair commands: ``homefeed audit``, ``rebuild``, ``replay``, ``dead-letters``: their
flags, what each does, and the client that asks the serving process for what only it holds
(the serving process's side, ``POST /admin/{op}``, is ``homefeed.entrypoints.admin``).

Where each one runs
-------------------
The record store, the search index, Redis and JetStream are visible from any process, so
these commands work on them directly, while the service serves. Two things of the
embedded profile live only inside the ``homefeed serve`` process: the in-process timeline
cache, and the offsets of the consumers reading the SQLite outbox (a running consumer keeps
its offset in memory). For those the command asks the serving process, through the admin
route ``POST /admin/{op}`` (body JSON, answer JSON), authenticated by a bearer token: the
``HOMEFEED_ADMIN_TOKEN`` variable if set, else a random token in ``<data dir>/admin-token``
(mode 0600; both processes read the same file, so file permissions are the access
control). ``homefeed serve`` writes the token and ``<data dir>/server.json`` (its address
and pid, mode 0600, removed at exit) when it starts, so that a command pointed at the same
data dir finds it. ``--url`` says where the serving process listens instead (the
scale-out profile has no data dir; default there: ``HOMEFEED_HOST``/``HOMEFEED_PORT``).

These commands never create a data dir or a database: the command line checks that the
SQLite file exists before building anything (``cli.require_database``).

- ``audit``: timeline parts of the embedded profile in the serving process (if none
  answers, the in-process cache does not exist: nothing to audit there); the rest here.
- ``rebuild timelines``: Redis here; the in-process cache in the serving process, as a
  job whose progress this command shows. ``rebuild search|counters|notifications``: here
  (the notifications are in the system of record). Counters feed
  the celebrity set, so ``rebuild counters`` then reconciles it (in the serving process
  for the in-process cache).
- ``replay``: JetStream: the durable consumer is recreated at the event (here). SQLite
  outbox: the serving process stops its consumers, moves the offset and starts them
  again; with no serving process the offset is moved in the file. PostgreSQL outbox
  (consumers in workers): the offset is moved twice, ``--settle`` seconds apart, because a
  batch fetched before the first move and acknowledged after it would undo it.
- ``dead-letters``: here, for every stream (a retry is picked up by the running consumer).

``EVENT_ID`` is ``Event.seq``, as ``dead-letters list`` and the logs show it: the outbox
seq (SQLite), ``xid << 16 | rank`` (PostgreSQL outbox), and on JetStream the same number
carried by the relayed message (``Nats-Msg-Id``); replay starts at the first event whose
id is at least ``EVENT_ID`` (0: from the beginning of what the stream keeps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TextIO

from homefeed.config import Settings
from homefeed.domain.errors import HomefeedError, OpsError

# The serving process's side, re-exported: http.py and the tests reach it as ops.*.
from homefeed.entrypoints.admin import (ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE, SERVER_FILE, Job, ServerInfo,
                                        admin, admin_token, check_admin, read_server_file,
                                        remove_server_file, replay_in_process, serves_admin,
                                        write_server_file)

if TYPE_CHECKING:
    from homefeed.ports import DeadLetter
    from homefeed.service_layer.services import Homefeed

COMMANDS = ("audit", "rebuild", "replay", "dead-letters")
REBUILDS = ("timelines", "search", "counters", "notifications")


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
PROFILES = (" Embedded profile: give the serving process's --data-dir (its SQLite file must exist;"
            " nothing is created). Scale-out profile: the backends of the HOMEFEED_*_URL variables.")


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="embedded profile: the serving process's data dir, holding its SQLite file"
                        " (HOMEFEED_DATA_DIR, default ./data); never created")


def _feed(p: argparse.ArgumentParser) -> None:
    """The rules the expected timelines are computed with: the serving process's values."""
    p.add_argument("--celebrity-threshold", type=int, default=None, metavar="N",
                   help="as the service runs with (HOMEFEED_CELEBRITY_THRESHOLD, default 10000)")
    p.add_argument("--timeline-cap", type=int, default=None, metavar="N",
                   help="as the service runs with (HOMEFEED_TIMELINE_CAP, default 800)")


def _url_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None,
                   help="the serving process, for what lives only inside it (in-process cache, SQLite"
                        " consumers). Default: the address it wrote in the data dir, else"
                        " http://HOMEFEED_HOST:HOMEFEED_PORT")


def register(subparsers: Any) -> list[argparse.ArgumentParser]:
    """Add ``audit``, ``rebuild``, ``replay`` and ``dead-letters`` to ``homefeed``'s parser;
    returns their parsers."""
    a = subparsers.add_parser(
        "audit", help="compare every derived store with the system of record; exit 1 on a difference",
        description="Recompute from the system of record what the derived stores should hold (home"
                    " timelines, user timelines, search index, user and post counters, notifications),"
                    " print each difference."
                    " Exit 0: clean; 1: differences; 3: only differences that reads hide (stale ids,"
                    " index entries of deleted posts); 2: could not run. Read-only, safe while serving."
                    + PROFILES)
    _data_dir(a)
    _feed(a)
    _url_flag(a)
    a.add_argument("--sample", type=int, default=None, metavar="N",
                   help="audit N users (half of them among those with a cached timeline) and N*10 posts"
                        " instead of everything")
    a.add_argument("--only", default=None, metavar="PARTS",
                   help="comma-separated: timelines, authors (user timelines), search, counters,"
                        " notifications")
    a.add_argument("--settle-timeout", type=float, default=30.0, metavar="S",
                   help="how long to wait for the events in flight before confirming a difference")
    a.add_argument("--seed", type=int, default=None, help="random seed of the sample")
    a.add_argument("--json", action="store_true", help="print the report as JSON")

    r = subparsers.add_parser(
        "rebuild", help="recompute a derived store from the system of record, while serving",
        description="timelines: every cached home timeline and author list (and the celebrity set);"
                    " search: the index, in place; counters: followers/following/posts counts and the"
                    " posts' replies/reblogs/favourites counts; notifications: every user's"
                    " notifications, from the follows, favourites, boosts and mentions."
                    + PROFILES)
    _data_dir(r)
    _feed(r)
    _url_flag(r)
    r.add_argument("what", choices=REBUILDS)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = subparsers.add_parser(
        "replay", help="make a consumer apply the events again from EVENT_ID (idempotent)",
        description="Move a consumer back so that it applies again every event from EVENT_ID"
                    " (Event.seq, as `dead-letters list` and the logs show it; 0: from the start)."
                    + PROFILES)
    _data_dir(p)
    _url_flag(p)
    p.add_argument("--consumer", required=True, help="fanout, indexer or notifier")
    p.add_argument("--from", dest="from_event", type=int, default=None, metavar="EVENT_ID")
    p.add_argument("--from-time", default=None, metavar="ISO8601",
                   help="JetStream only: every event stored since this time (e.g. 2025-01-31T12:00:00Z)")
    p.add_argument("--settle", type=float, default=2.0, metavar="S",
                   help="PostgreSQL outbox: seconds between the two moves of the offset")

    d = subparsers.add_parser(
        "dead-letters", help="list or retry the events consumers gave up on",
        description="List the events a consumer gave up on after repeated failures, or hand them back"
                    " to it." + PROFILES)
    _data_dir(d)
    d.add_argument("action", choices=("list", "retry"))
    d.add_argument("--consumer", default=None, help="only this consumer's")
    d.add_argument("--id", type=int, default=None, help="retry only this dead letter")
    d.add_argument("--json", action="store_true", help="list as JSON")
    return [a, r, p, d]


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one of ``COMMANDS``; returns the exit status."""
    return asyncio.run(run_async(args, settings))


async def run_async(
    args: argparse.Namespace,
    settings: Settings,
    *,
    build: Callable[[Settings], Any] | None = None,
    out: TextIO | None = None,
) -> int:
    """``run`` in a running loop. ``build(settings) -> Homefeed`` (default: bootstrap's)."""
    out = out or sys.stdout
    from homefeed.domain.errors import Unavailable

    if build is None:
        from homefeed.bootstrap import build as default_build

        def build(s: Settings) -> Any:
            return default_build(s, node=0)  # these commands never make ids

    try:
        hf = build(settings)
        await hf.start(consumers=())
    except (Unavailable, OSError) as exc:
        print(f"homefeed {args.command}: {exc}", file=sys.stderr)
        return 2
    try:
        command = {
            "audit": _audit,
            "rebuild": _rebuild,
            "replay": _replay,
            "dead-letters": _dead_letters,
        }[args.command]
        return await command(hf, args, settings, out)
    except (OpsError, ValueError, Unavailable) as exc:
        print(f"homefeed {args.command}: {exc}", file=sys.stderr)
        return 2
    finally:
        await hf.close()


def _in_process_cache(settings: Settings) -> bool:
    return not settings.cache_url


async def _audit(hf: Homefeed, args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from homefeed.service_layer.audit import PARTS, AuditReport, Auditor

    parts = tuple(p.strip() for p in (args.only or ",".join(PARTS)).split(",") if p.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise OpsError(f"unknown part(s) {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
    if args.sample is not None and args.sample < 1:
        raise OpsError("--sample must be at least 1")
    remote = tuple(p for p in parts if p in ("timelines", "authors")) if _in_process_cache(settings) else ()
    local = tuple(p for p in parts if p not in remote)
    report = AuditReport()
    progress = _audit_progress(sys.stderr)
    if remote:
        url = _base_url(args, settings)
        got = await _admin_call(settings, url, "audit", {
            "parts": list(remote), "sample": args.sample, "settle_timeout": args.settle_timeout,
            "seed": args.seed, "job": True,
        }, timeout=3600.0)  # an older server answers with the report itself, after minutes
        while got is not None and "job" in got and not got["finished"]:
            await asyncio.sleep(0.5)
            got = await _admin_call(settings, url, "job", {"id": got["job"]})
            if got is None:
                raise OpsError(f"the serving process at {url} stopped answering during the audit")
            if got.get("phase"):
                progress(got["phase"], got["done"], got["total"])
        if got is not None and "job" in got:
            if got.get("error"):
                raise OpsError(f"the audit failed in the serving process: {got['error']}")
            got = got["result"]
        if got is None:
            report.notes.append(
                f"no serving process answered at {url}: the in-process timeline cache exists only"
                " inside `homefeed serve` (and is empty while it is stopped), so "
                f"{' and '.join(remote)} were not audited")
        else:
            report.merge(AuditReport.from_dict(got))
    if local:
        report.merge(await Auditor(hf, sample=args.sample, parts=local, settle_timeout=args.settle_timeout,
                                   seed=args.seed, progress=progress).run())
    if args.json:
        print(json.dumps(report.as_dict(), indent=2), file=out)
    else:
        for line in report.lines():
            print(line, file=out)
    return report.exit_code()


def _audit_progress(err: TextIO, every: float = 2.0) -> Callable[[str, int, int | None], None]:
    """``audit: <phase> <done>/<total>`` on ``err`` when the phase changes, else at most
    every ``every`` seconds (a full audit of a big world takes minutes)."""
    last_phase, last_at = "", 0.0

    def progress(phase: str, done: int, total: int | None) -> None:
        nonlocal last_phase, last_at
        now = time.monotonic()
        if phase == last_phase and now - last_at < every and done != total:
            return
        last_phase, last_at = phase, now
        print(f"audit: {phase} {done}/{'?' if total is None else total}", file=err, flush=True)

    return progress


async def _rebuild(hf: Homefeed, args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from tqdm import tqdm

    from homefeed.service_layer import batch

    what = args.what
    bar = tqdm(desc=f"rebuild {what}",
               unit={"search": "post", "counters": "user", "notifications": "user"}.get(what, "list"),
               unit_scale=True, disable=args.no_progress, file=sys.stderr)
    try:
        if what == "search":
            n = await batch.rebuild_search(hf, bar.update)
            bar.close()
            print(f"search index rebuilt from {n} posts", file=out)
            return 0
        if what == "counters":
            bar.total = await hf.store.count_users()
            changed = await batch.rebuild_counters(hf, bar.update)
            bar.close()
            print(f"counters recomputed for every user: {changed} changed", file=out)
            posts_changed = await batch.rebuild_post_counters(hf)
            print(f"counters recomputed for every post: {posts_changed} changed", file=out)
            if _in_process_cache(settings):
                got = await _admin_call(settings, _base_url(args, settings), "reconcile-celebrities", {})
                if got is None:
                    print("no serving process answered: its celebrity set is loaded from the counts"
                          " when it starts", file=out)
                else:
                    print("celebrity set of the serving process reconciled with the counts", file=out)
            else:
                await hf.feed.reconcile_celebrities()
                print("celebrity set reconciled with the counts", file=out)
            return 0
        if what == "notifications":  # in the system of record: here, in every profile
            bar.total = await hf.store.count_users()
            changed = await batch.rebuild_notifications(hf, bar.update)
            bar.close()
            print(f"notifications recomputed for every user: {changed} changed", file=out)
            return 0
        # timelines
        if not _in_process_cache(settings):
            def total(n: int) -> None:
                bar.total = n
                bar.refresh()

            result = await batch.rebuild_timelines(hf, bar.update, total=total)
            bar.close()
            print(f"rebuilt {result['home_timelines']} home timelines and {result['author_lists']}"
                  f" author lists; {result.get('cached_posts_fixed', 0)} cached posts fixed", file=out)
            return 0
        url = _base_url(args, settings)
        job = await _admin_call(settings, url, "rebuild-timelines", {})
        if job is None:
            bar.close()
            print(f"no serving process answered at {url}: the in-process timeline cache is empty while"
                  " the service is stopped, and every timeline is rebuilt from the database on its"
                  " first read: nothing to rebuild", file=out)
            return 0
        while True:
            status = await _admin_call(settings, url, "job", {"id": job["job"]})
            if status is None:
                raise OpsError(f"the serving process at {url} stopped answering during the rebuild")
            if status.get("total") is not None:
                bar.total = status["total"]
            bar.update(status["done"] - bar.n)
            if status["finished"]:
                break
            await asyncio.sleep(0.3)
        bar.close()
        if status.get("error"):
            raise OpsError(f"the rebuild failed in the serving process: {status['error']}")
        result = status["result"]
        print(f"rebuilt {result['home_timelines']} home timelines and {result['author_lists']}"
              f" author lists in the serving process; {result.get('cached_posts_fixed', 0)} cached"
              " posts fixed", file=out)
        return 0
    finally:
        bar.close()


async def _replay(hf: Homefeed, args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    consumer = args.consumer
    if consumer not in hf.consumers.handlers:
        raise OpsError(f"unknown consumer {consumer!r}; consumers: {', '.join(hf.consumers.handlers)}")
    if (args.from_event is None) == (args.from_time is None):
        raise OpsError("give --from EVENT_ID (or, on JetStream, --from-time)")
    if args.from_event is not None and args.from_event < 0:
        raise OpsError("--from must be 0 or a positive event id")
    stream = hf.stream
    if stream.backend == "jetstream":  # the durable consumer is recreated: every worker follows
        start_time = _parse_time(args.from_time) if args.from_time else None
        got = await stream.replay_from(consumer, event_seq=args.from_event, start_time=start_time)
        print(f"{consumer}: durable consumer recreated; it applies again every event from"
              f" {_describe_start(got)}", file=out)
        return 0
    if args.from_time:
        raise OpsError("--from-time needs the JetStream event stream (HOMEFEED_BUS_URL)")
    if settings.database_url:
        # PostgreSQL outbox: every consumer, wherever it runs, reads its stored offset again
        # once the move's NOTIFY reaches it. A batch fetched before the move and
        # acknowledged after it moves it forward again, so move it again once such a batch
        # is done.
        await stream.replay_from(consumer, event_seq=args.from_event)
        await asyncio.sleep(max(0.0, args.settle))
        await stream.replay_from(consumer, event_seq=args.from_event)
        print(f"{consumer}: offset moved to event {args.from_event}; the running consumers apply"
              " every event from there again", file=out)
        return 0
    # SQLite outbox: a running consumer keeps its offset in memory: ask the serving process.
    url = _base_url(args, settings)
    answered = await _admin_call(settings, url, "replay", {"consumer": consumer, "from": args.from_event})
    if answered is not None:
        print(f"{consumer}: the serving process applies again every event from {args.from_event}", file=out)
        return 0
    await stream.replay_from(consumer, event_seq=args.from_event)
    print(f"{consumer}: no serving process answered at {url}; offset moved in the database file"
          f" to event {args.from_event} (the consumers apply every event from there when the service"
          " starts; a `homefeed serve` running elsewhere keeps its own offset: use --url)", file=out)
    return 0


async def _dead_letters(hf: Homefeed, args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from homefeed.service_layer import outside  # webhook deliveries and mails given up on

    stream = hf.stream
    if args.action == "list":
        letters = await stream.dead_letters(args.consumer) + await outside.dead_letters(hf, args.consumer)
        if args.json:
            print(json.dumps([_dead_letter_dict(d) for d in letters], indent=2), file=out)
            return 0
        if not letters:
            print("no dead letters", file=out)
            return 0
        for d in letters:
            e = d.event
            what = f"event {e.seq} {e.type}" if e is not None else "undecodable message"
            retry = "  (retry pending)" if d.retrying else ""
            print(f"{d.id:>6}  {d.consumer:<8} {what}  at {d.at}  x{d.deliveries}: {d.reason}{retry}", file=out)
        print(f"{len(letters)} dead letter(s)", file=out)
        return 0
    if args.id is not None:
        d = await (outside.retry(hf, args.id) if outside.is_outside_id(args.id) else stream.retry_dead_letter(args.id))
        print(f"dead letter {d.id} ({d.consumer}, event {d.event.seq if d.event else '?'}) handed back"
              " to its consumer", file=out)
        return 0
    n = await stream.retry_dead_letters(args.consumer) + await outside.retry_all(hf, args.consumer)
    print(f"{n} dead letter(s) handed back to their consumer", file=out)
    return 0


def _dead_letter_dict(d: DeadLetter) -> dict[str, Any]:
    e = d.event
    return {
        "id": d.id, "consumer": d.consumer, "reason": d.reason, "deliveries": d.deliveries,
        "stream_seq": d.stream_seq, "source": d.source, "at": d.at,
        "retrying": d.retrying,
        "event": None if e is None else {"seq": e.seq, "type": e.type, "data": e.data},
    }


def _parse_time(raw: str) -> datetime:
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise OpsError(f"--from-time {raw!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _describe_start(got: dict[str, Any]) -> str:
    if "start_time" in got:
        return got["start_time"]
    if got.get("event_seq") == 0:
        return "the start of the stream"
    return f"event {got['event_seq']} (stream sequence {got['stream_seq']})"


# --------------------------------------------------------------------------------------------
# talking to the serving process (its side is in ``admin``)
# --------------------------------------------------------------------------------------------
def _client_token(settings: Settings) -> str:
    """The admin token, as a command reads it: it never creates the data dir (the token file
    in an existing one is made if missing, as the serving process would)."""
    if not os.environ.get(ADMIN_TOKEN_ENV) and not (Path(settings.data_dir) / ADMIN_TOKEN_FILE).exists():
        if not Path(settings.data_dir).is_dir():
            raise OpsError(f"no admin token: {settings.data_dir} does not exist; give the serving"
                           f" process's --data-dir, or set {ADMIN_TOKEN_ENV} to its token")
    return admin_token(settings)


def _base_url(args: argparse.Namespace, settings: Settings) -> str:
    if getattr(args, "url", None):
        return args.url.rstrip("/")
    found = read_server_file(settings)
    if found is not None:
        return found.url
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


async def _admin_call(
    settings: Settings, url: str, op: str, body: dict[str, Any], timeout: float = 60.0
) -> dict[str, Any] | None:
    """POST ``body`` to ``url/admin/op``; the answer, or None if nothing listens there."""
    token = _client_token(settings)

    def call() -> dict[str, Any] | None:
        req = urllib.request.Request(
            f"{url}/admin/{op}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            if exc.code == 404 and "unknown admin operation" not in detail:
                raise OpsError(f"the server at {url} has no admin route (POST /admin/{{op}}): {detail}") from None
            raise OpsError(f"{op} at {url}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (ConnectionRefusedError, FileNotFoundError)) or "refused" in str(reason).lower():
                return None
            raise OpsError(f"{op} at {url}: {reason}") from None

    return await asyncio.to_thread(call)


__all__ = [
    "COMMANDS", "register", "run", "run_async", "admin", "check_admin", "admin_token",
    "replay_in_process", "read_server_file", "write_server_file", "remove_server_file",
    "serves_admin", "ServerInfo", "Job", "ADMIN_TOKEN_ENV", "ADMIN_TOKEN_FILE", "SERVER_FILE",
    "HomefeedError",
]
