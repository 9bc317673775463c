"""One line for an error at start-up: what is wrong and what to do about it.

A newcomer whose PostgreSQL is not running, or who mistyped a URL parameter, used to get 30
lines of asyncio and driver frames; the line that mattered was the last one, and it did not
say which setting to fix. ``describe`` turns the exception into one line naming the backend
(found from the exception's and the traceback's modules, so no driver is imported here),
the address (password hidden) and the setting to change. ``--debug`` keeps the traceback.
"""

from __future__ import annotations

import os
import re
import sqlite3
from types import TracebackType

#: Set by the command line from ``--debug`` / ``HOMEFEED_LOG_LEVEL=DEBUG``: tracebacks are shown.
DEBUG = False


class CliError(Exception):
    """A problem the user can fix; the message names it and the fix (one line, exit status 2)."""


#: backend -> (name, variable, what to do when it cannot be reached)
_BACKENDS = {
    "postgresql": ("PostgreSQL", "HOMEFEED_DATABASE_URL", "start it, or fix"),
    "redis": ("Redis", "HOMEFEED_CACHE_URL", "start it, or fix"),
    "nats": ("NATS", "HOMEFEED_BUS_URL", "start it (nats-server -js), or fix"),
}
_MODULES = (
    ("psycopg", "postgresql"), ("homefeed.adapters.pg_", "postgresql"),
    ("redis", "redis"), ("homefeed.adapters.redis", "redis"),
    ("nats", "nats"), ("homefeed.adapters.jetstream", "nats"),
)


def redact(url: str) -> str:
    """``url`` without its password (it goes to a terminal, and maybe to a bug report)."""
    return re.sub(r"(://[^/:@]*):[^@/]*@", r"\1:***@", url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _module_of_frames(tb: TracebackType | None) -> list[str]:
    names = []
    while tb is not None:
        names.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return names


def backend_of(exc: BaseException) -> str | None:
    """Which backend an exception comes from: its type's module first, then the deepest
    frame of ours or of a driver in its traceback."""
    for e in _chain(exc):
        module = type(e).__module__ or ""
        for prefix, backend in _MODULES:
            if module.startswith(prefix):
                return backend
    for e in _chain(exc):
        for name in reversed(_module_of_frames(e.__traceback__)):
            for prefix, backend in _MODULES:
                if name.startswith(prefix):
                    return backend
    return None


def _url_of(backend: str) -> str:
    return redact(os.environ.get(_BACKENDS[backend][1], ""))


#: Optional packages -> (what needs them, the extra that installs them).
OPTIONAL = {
    "hdrh": ("the benchmarks' latency histograms", "bench"),
    "matplotlib": ("the benchmarks' charts (--charts)", "bench"),
}


def missing_extra(exc: BaseException) -> str | None:
    """The one line for an optional package that is not installed, or None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    root = exc.name.split(".")[0]
    if root not in OPTIONAL:
        return None
    what, extra = OPTIONAL[root]
    return f"{root} is not installed; {what} need it: pip install 'homefeed[{extra}]'"


def describe(exc: BaseException) -> str:
    """One line: the problem and the fix. Falls back to the exception's first line and a
    pointer to ``--debug``."""
    if isinstance(exc, CliError):
        return str(exc)
    extra = missing_extra(exc)
    if extra is not None:
        return extra
    from homefeed.domain.errors import ProfileError

    if isinstance(exc, ProfileError):
        return f"refusing to start: {exc}"
    message = _first_line(exc)
    backend = backend_of(exc)
    if backend is not None:
        name, variable, action = _BACKENDS[backend]
        url = _url_of(backend)
        at = f" at {url}" if url else ""
        low = message.lower()
        m = re.search(r"unexpected keyword argument '([^']+)'", message)
        if m:  # redis-py hands unknown URL parameters to its connection class
            return f"unknown parameter {m.group(1)!r} in {variable}{at}: remove it, or fix its spelling"
        if "unknown parameter" in low:
            return f"{message}: fix {variable}"
        m = re.search(r'database "([^"]+)" does not exist', message)
        if m:
            return (f"{name}{at} has no database {m.group(1)!r}: create it (createdb {m.group(1)})"
                    f" or fix {variable}")
        if "password authentication failed" in low or "role" in low and "does not exist" in low:
            return f"{name}{at} refused the login ({message}): fix the user or password in {variable}"
        if "cannot connect" in low or "start it" in low:  # our adapters' messages say how already
            return f"{message.rstrip('.')} (or fix {variable})"
        return f"cannot reach {name}{at} ({message}): {action} {variable}"
    if isinstance(exc, sqlite3.Error):
        return (f"SQLite: {message}: check the data dir (--data-dir or HOMEFEED_DATA_DIR) and its"
                " permissions")
    if isinstance(exc, PermissionError):
        return f"{message}: check the permissions, or choose another --data-dir"
    if isinstance(exc, ValueError) and "URL" in message:
        return message
    return f"{type(exc).__name__}: {message} (run with --debug for the traceback)"
