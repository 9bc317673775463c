"""Structured logs: one JSON object a line, carrying the request id of whatever is running.

Every HTTP request gets a request id (the client's ``X-Request-Id`` when it sends a sane one,
else a fresh one), returned in the response's ``X-Request-Id`` header and kept in
:data:`request_id` (a context variable) while the request runs. Each log line written while
it is set carries it as ``"request_id"``. A write stores it in its outbox event
(``data["request_id"]``), so the consumer that applies the event, in this process or in a
``homefeed worker`` on another machine, logs the same id: ``grep`` one id to follow a post
from the API to the timelines.

``configure()`` installs the JSON formatter on the root logger (``HOMEFEED_LOG_FORMAT=text``
keeps the old human format). Which requests are logged is ``HOMEFEED_ACCESS_LOG``:
``writes`` (default: every request that is not a GET/HEAD, plus every 5xx and every request
slower than ``HOMEFEED_SLOW_REQUEST_MS``, default 1000), ``all``, or ``off``.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Any, Iterable, TextIO

import orjson

#: The request id of the request (or event) being handled by the current task, if any.
request_id: ContextVar[str | None] = ContextVar("homefeed_request_id", default=None)

#: A client's ``X-Request-Id`` is kept (and echoed) if it is 1 to this many characters of
#: ``REQUEST_ID_CHARS``; else a new id is made. The OpenAPI document states the same.
MAX_REQUEST_ID_LENGTH = 128
REQUEST_ID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/+=@")


_prefix = os.urandom(5).hex()
_counter = itertools.count(1)


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(5).hex()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """A random per-process prefix and a counter (``3fa9c2b1d0-1b2``): unique across
    processes and restarts for any practical purpose, and ~0.1 us to make (a random id per
    request costs three times that, on the hot path)."""
    return f"{_prefix}-{next(_counter):x}"


def clean_request_id(raw: bytes | str | None) -> str | None:
    """A client's ``X-Request-Id`` if it is 1-128 printable, unsurprising characters (it is
    echoed in a header and written in logs), else None (a fresh id is made)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii")
        except UnicodeEncodeError:
            return None
    if not 0 < len(raw) <= MAX_REQUEST_ID_LENGTH or not REQUEST_ID_CHARS.issuperset(raw):
        return None
    return raw.decode("ascii")


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's id: the client's ``X-Request-Id`` (ASGI header pairs) if it is clean,
    else a fresh one."""
    for key, value in headers:
        if key == b"x-request-id":
            rid = clean_request_id(value)
            return rid if rid is not None else new_request_id()
    return new_request_id()


def current_request_id() -> str | None:
    return request_id.get()


# -- the formatter ---------------------------------------------------------------------------
# Attributes every LogRecord has: anything else on a record came from ``extra=`` and is
# written as a field of its own.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


def _default(obj: Any) -> Any:
    return repr(obj)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id"?, ...extra fields, "exc"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


class _TextWithRequestId(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None) or request_id.get()
        return f"{line} [request_id={rid}]" if rid else line


def configure(level: str | int = "INFO", fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) in JSON (or ``fmt="text"``; default from
    ``HOMEFEED_LOG_FORMAT``). Replaces the root logger's handlers, so call it once, early,
    and start uvicorn with ``log_config=None`` so that its loggers come here too."""
    fmt = (fmt or os.environ.get("HOMEFEED_LOG_FORMAT") or "json").lower()
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "text":
        handler.setFormatter(_TextWithRequestId("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)


def access_log_mode() -> str:
    mode = os.environ.get("HOMEFEED_ACCESS_LOG", "writes").strip().lower()
    return mode if mode in ("writes", "all", "off") else "writes"


def slow_request_seconds() -> float:
    try:
        return float(os.environ.get("HOMEFEED_SLOW_REQUEST_MS", "1000")) / 1000.0
    except ValueError:
        return 1.0
