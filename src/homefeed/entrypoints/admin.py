"""The serving process's side of the operator commands: the admin operations it answers on
``POST /admin/{op}`` (``admin``), their token (``admin_token``, ``check_admin``), and the
address file through which a command pointed at the same data dir finds it
(``write_server_file`` at start, ``remove_server_file`` at exit, ``read_server_file``).

Why a serving process answers at all: in the embedded profile the timeline cache and the
consumers' offsets live only inside ``homefeed serve`` (see ``ops``, the commands).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from homefeed.config import Settings
from homefeed.domain.errors import InvalidInput, NotFound, Unauthorized

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed


ADMIN_TOKEN_ENV = "HOMEFEED_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "admin-token"
#: Written by ``homefeed serve`` in the data dir when it listens: ``{"url", "pid"}``.
SERVER_FILE = "server.json"
#: The operations of ``POST /admin/{op}`` (see ``admin``); the OpenAPI document lists these.
ADMIN_OPS = ("audit", "rebuild-timelines", "job", "replay", "reconcile-celebrities",
             "webhooks-add", "webhooks-list", "webhooks-remove", "webhooks-rotate-secret")
#: The longest ``settle_timeout`` an audit accepts, in seconds.
MAX_SETTLE_TIMEOUT = 600


# --------------------------------------------------------------------------------------------
# the token and the address file
# --------------------------------------------------------------------------------------------
def admin_token(settings: Settings) -> str:
    """``HOMEFEED_ADMIN_TOKEN``, else the token in ``<data dir>/admin-token`` (created, mode
    0600, by ``homefeed serve`` at start, or by whichever process needs it first)."""
    env = os.environ.get(ADMIN_TOKEN_ENV, "")
    if env:
        return env
    path = Path(settings.data_dir) / ADMIN_TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def check_admin(settings: Settings, authorization: str | None) -> None:
    """Raise Unauthorized unless ``authorization`` is ``Bearer <admin token>``."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), admin_token(settings).encode()):
        raise Unauthorized(
            f"admin operations need 'Authorization: Bearer <token>': ${ADMIN_TOKEN_ENV}, or the"
            f" token in {ADMIN_TOKEN_FILE} in the data dir")


def serves_admin(settings: Settings) -> bool:
    """Whether the operator commands need the serving process (in-process cache, or
    consumers reading the SQLite outbox), and so whether ``serve`` writes its token and
    address in the data dir at start."""
    return not (settings.database_url and settings.cache_url)


@dataclass(frozen=True)
class ServerInfo:
    """What ``server.json`` holds: where the serving process of a data dir listens."""

    url: str
    pid: int


def _server_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / SERVER_FILE


def write_server_file(settings: Settings, url: str) -> None:
    """Write ``server.json`` (mode 0600, atomically: a reader never sees half of it)."""
    path = _server_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "pid": os.getpid()}, f)
        f.write("\n")
    os.replace(tmp, path)


def remove_server_file(settings: Settings) -> None:
    """Remove ``server.json`` at exit, if it is still ours (a newer server may have taken the
    data dir meanwhile)."""
    found = read_server_file(settings, check_alive=False)
    if found is not None and found.pid == os.getpid():
        _server_path(settings).unlink(missing_ok=True)


def read_server_file(settings: Settings, check_alive: bool = True) -> ServerInfo | None:
    """The serving process of the data dir, or None (no file, unreadable, or its process is
    gone: a server killed with SIGKILL leaves a stale file)."""
    try:
        raw = json.loads(_server_path(settings).read_text())
        info = ServerInfo(url=str(raw["url"]).rstrip("/"), pid=int(raw["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive:
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
    return info


# --------------------------------------------------------------------------------------------
# the serving process's side: POST /admin/{op}
# --------------------------------------------------------------------------------------------
@dataclass
class Job:
    id: str
    what: str
    total: int | None = None
    done: int = 0
    phase: str | None = None
    finished: bool = False
    result: dict[str, Any] | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    task: asyncio.Task | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.id, "what": self.what, "phase": self.phase, "total": self.total, "done": self.done,
                "finished": self.finished, "result": self.result, "error": self.error,
                "seconds": round(time.time() - self.started, 1)}


_JOBS: "weakref.WeakKeyDictionary[Any, dict[str, Job]]" = weakref.WeakKeyDictionary()


async def admin(hf: Homefeed, op: str, body: dict[str, Any]) -> dict[str, Any]:
    """One admin operation in the serving process (call ``check_admin`` first):

    - ``audit`` ``{"parts"?, "sample"?, "settle_timeout"?, "seed"?, "job"?}`` -> the report;
      with ``"job": true`` at once ``{"job", ...}``: poll ``job`` for its phase and progress,
      the report is the finished job's ``result``
    - ``rebuild-timelines`` ``{}`` -> ``{"job", ...}`` (one at a time: the running one)
    - ``job`` ``{"id"}`` -> ``{"job", "total", "done", "finished", "result", "error"}``
    - ``replay`` ``{"consumer", "from"}`` -> stops the consumers, moves the offset, starts them
    - ``reconcile-celebrities`` ``{}`` -> ``{}``

    Raises InvalidInput / NotFound (4xx) for a bad operation or body."""
    from homefeed.service_layer import batch
    from homefeed.service_layer.audit import PARTS, Auditor

    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    if op == "audit":
        parts = body.get("parts") or list(PARTS)
        if not isinstance(parts, list) or not set(parts) <= set(PARTS):
            raise InvalidInput(f"parts must be a list of {', '.join(PARTS)}")
        sample = _opt_int(body, "sample", 1)
        settle = body.get("settle_timeout", 30.0)
        if not isinstance(settle, (int, float)) or isinstance(settle, bool) or not 0 <= settle <= MAX_SETTLE_TIMEOUT:
            raise InvalidInput(f"settle_timeout must be a number of seconds from 0 to {MAX_SETTLE_TIMEOUT}")
        seed = _opt_int(body, "seed", None)

        def auditor(progress: Callable[[str, int, int | None], None] | None = None) -> Auditor:
            return Auditor(hf, sample=sample, parts=parts, settle_timeout=float(settle), seed=seed,
                           progress=progress)

        if not body.get("job"):
            return (await auditor().run()).as_dict()
        audit_job = Job(id=secrets.token_hex(6), what="audit")

        def audit_progress(phase: str, done: int, total: int | None) -> None:
            audit_job.phase, audit_job.done, audit_job.total = phase, done, total

        async def audit_work() -> None:
            try:
                report = await auditor(audit_progress).run()
                audit_job.result = report.as_dict()
            except Exception as exc:  # reported through the job
                audit_job.error = f"{type(exc).__name__}: {exc}"
            finally:
                audit_job.finished = True

        audit_job.task = asyncio.create_task(audit_work(), name=f"homefeed-audit-{audit_job.id}")
        _JOBS.setdefault(hf, {})[audit_job.id] = audit_job
        return audit_job.as_dict()
    if op == "rebuild-timelines":
        jobs = _JOBS.setdefault(hf, {})
        for job in jobs.values():
            if not job.finished and job.what == "timelines":
                return job.as_dict()
        job = Job(id=secrets.token_hex(6), what="timelines")

        def total(n: int) -> None:
            job.total = n

        def progress(n: int) -> None:
            job.done += n

        async def work() -> None:
            try:
                job.result = await batch.rebuild_timelines(hf, progress, total=total)
            except Exception as exc:  # reported through the job
                job.error = f"{type(exc).__name__}: {exc}"
            finally:
                job.finished = True

        job.task = asyncio.create_task(work(), name=f"homefeed-rebuild-{job.id}")
        jobs[job.id] = job
        for old in [j for j in jobs.values() if j.finished and time.time() - j.started > 86400]:
            jobs.pop(old.id, None)
        return job.as_dict()
    if op == "job":
        found = _JOBS.get(hf, {}).get(str(body.get("id", "")))
        if found is None:
            raise NotFound("no such job")
        return found.as_dict()
    if op == "replay":
        consumer = body.get("consumer")
        start = body.get("from")
        if not isinstance(consumer, str) or consumer not in hf.consumers.handlers:
            raise InvalidInput(f"consumer must be one of {', '.join(hf.consumers.handlers)}")
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise InvalidInput("from must be an event id (0: from the start)")
        return await replay_in_process(hf, consumer, start)
    if op == "reconcile-celebrities":
        await hf.feed.reconcile_celebrities()
        return {}
    if op.startswith("webhooks-"):
        return await _webhooks(hf, op.removeprefix("webhooks-"), body)
    raise NotFound(f"unknown admin operation {op!r}")


async def _webhooks(hf: Homefeed, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """``webhooks-add`` ``{"url", "events"}`` -> ``{"id", "url", "events", "secret"}``;
    ``webhooks-list`` ``{}`` -> ``{"subscriptions": [...]}``; ``webhooks-remove`` ``{"id"}``;
    ``webhooks-rotate-secret`` ``{"id"}`` -> the new secret (the old signs for 24 h more)."""
    from homefeed.bootstrap import webhook_store
    from homefeed.service_layer.webhooks import WebhookAdmin

    hooks = WebhookAdmin(webhook_store(hf), hf.settings.webhooks_allow_private)
    if action == "add":
        return await hooks.add(body.get("url"), body.get("events"))
    if action == "list":
        return {"subscriptions": await hooks.list()}
    if action == "remove":
        return await hooks.remove(body.get("id"))
    if action == "rotate-secret":
        return await hooks.rotate_secret(body.get("id"))
    raise NotFound(f"unknown admin operation 'webhooks-{action}'")


def _opt_int(body: dict[str, Any], name: str, minimum: int | None) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or (minimum is not None and v < minimum):
        raise InvalidInput(f"{name} must be an integer" + (f" >= {minimum}" if minimum is not None else ""))
    return v


async def replay_in_process(hf: Homefeed, consumer: str, from_event: int) -> dict[str, Any]:
    """Make ``consumer`` apply again every event from ``from_event``, in the process that
    runs it. JetStream: recreate the durable consumer. Outbox streams: stop the consumers
    (each finishes and acknowledges the batch in hand), move the offset, start them again,
    so no batch in flight can move the offset forward past the events to replay."""
    stream = hf.stream
    if stream.backend == "jetstream":  # the durable consumer is recreated: every worker follows
        return {"consumer": consumer, **(await stream.replay_from(consumer, event_seq=from_event))}
    consumers = hf.consumers
    running = tuple(consumers.running)
    parts = hf.relay_parts
    leader = parts.get("consumer_leader") if "sink" not in parts else None
    if running:
        await consumers.stop()
    try:
        await stream.replay_from(consumer, event_seq=from_event)
    finally:
        if running:
            consumers.start(running, leader=leader)
    return {"consumer": consumer, "from": from_event, "restarted": list(running)}




__all__ = [
    "ADMIN_OPS", "ADMIN_TOKEN_ENV", "ADMIN_TOKEN_FILE", "MAX_SETTLE_TIMEOUT", "SERVER_FILE",
    "ServerInfo", "Job", "admin", "admin_token",
    "check_admin", "serves_admin", "write_server_file", "remove_server_file", "read_server_file",
    "replay_in_process",
]
