"""Every adapter implements every member of its ports, with a compatible signature.

``ports.py`` is the whole contract a backend must meet: the core and the entrypoints call
nothing else on an adapter. ``typing.runtime_checkable`` would only check that the names
exist, so this compares each method's signature too (parameter names, kinds, defaults, and
coroutine or not). The type checker proves the same structurally where ``bootstrap`` assigns
each adapter to a variable typed with its port; this test also covers the adapters that
``bootstrap`` does not wire, and runs in a second, without a type checker.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from homefeed import ports
from homefeed.service_layer.jobs.records import JobStore

#: port -> the adapters of it, as "module:Class" (imported lazily: each backend's client
#: library is imported only by its adapter).
ADAPTERS: dict[type, list[str]] = {
    ports.RecordStore: [
        "homefeed.adapters.sqlite_store:SqliteRecordStore",
        "homefeed.adapters.pg_store:PgRecordStore",
    ],
    ports.EventStream: [
        "homefeed.adapters.outbox_stream:OutboxEventStream",
        "homefeed.adapters.pg_outbox:PgOutboxEventStream",
        "homefeed.adapters.jetstream:JetStreamEventStream",
    ],
    ports.EventSink: ["homefeed.adapters.jetstream:JetStreamEventStream"],
    ports.SearchIndex: [
        "homefeed.adapters.fts5_index:Fts5SearchIndex",
        "homefeed.adapters.pg_search:PgSearchIndex",
    ],
    ports.TimelineCache: [
        "homefeed.adapters.memory_cache:MemoryTimelineCache",
        "homefeed.adapters.redis_timeline_cache:RedisTimelineCache",
    ],
    ports.PostCache: [
        "homefeed.adapters.memory_cache:MemoryPostCache",
        "homefeed.adapters.redis_post_cache:RedisPostCache",
    ],
    ports.TokenRevocations: ["homefeed.adapters.redis_revocations:RedisTokenRevocations"],
    ports.LiveBus: [
        "homefeed.adapters.local_live:LocalLiveBus",
        "homefeed.adapters.redis_live:RedisLiveBus",
    ],
    JobStore: [  # the batch side's records (issue 12): its port is in service_layer.jobs.records
        "homefeed.adapters.sqlite_jobs:SqliteJobStore",
        "homefeed.adapters.pg_jobs:PgJobStore",
    ],
    ports.RateLimiter: [
        "homefeed.adapters.memory_ratelimit:MemoryRateLimiter",
        "homefeed.adapters.redis_ratelimit:RedisRateLimiter",
    ],
    ports.WebhookStore: [
        "homefeed.adapters.sqlite_webhooks:SqliteWebhookStore",
        "homefeed.adapters.pg_webhooks:PgWebhookStore",
    ],
    ports.MailStore: [
        "homefeed.adapters.sqlite_mail:SqliteMailStore",
        "homefeed.adapters.pg_mail:PgMailStore",
    ],
}

#: Members an adapter does not have yet, with why: each is a strict xfail, so the test
#: fails (and says to delete the line) the moment the adapter gains the member.
PENDING: dict[tuple[str, str], str] = {}

_PROTOCOL_BASES = {"Protocol", "Generic", "object"}


def _load(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def members(port: type) -> dict[str, Any]:
    """The port's members, its bases' included: name -> the function, or ``"attribute"``
    for a declared (annotated) attribute."""
    out: dict[str, Any] = {}
    for base in reversed(port.__mro__):
        if base.__name__ in _PROTOCOL_BASES:
            continue
        for name in base.__dict__.get("__annotations__", {}):
            if not name.startswith("_"):
                out[name] = "attribute"
        for name, value in vars(base).items():
            if not name.startswith("_") and inspect.isfunction(value):
                out[name] = value
    return out


def _cases() -> list[Any]:
    cases = []
    for port, specs in ADAPTERS.items():
        for spec in specs:
            cls_name = spec.split(":")[1]
            for name in members(port):
                marks = []
                if (cls_name, name) in PENDING:
                    marks.append(pytest.mark.xfail(strict=True, reason=PENDING[(cls_name, name)]))
                cases.append(pytest.param(port, spec, name, marks=marks, id=f"{port.__name__}-{cls_name}-{name}"))
    return cases


def compatible(port_fn: Any, impl: Any) -> list[str]:
    """What makes ``impl`` unfit to stand for ``port_fn`` (empty if nothing)."""
    problems = []
    if inspect.iscoroutinefunction(port_fn) != inspect.iscoroutinefunction(impl):
        want = "a coroutine" if inspect.iscoroutinefunction(port_fn) else "a plain method"
        problems.append(f"must be {want}")
    want_params = list(inspect.signature(port_fn).parameters.values())
    have = inspect.signature(impl).parameters
    have_list = list(have.values())
    for i, p in enumerate(want_params):
        q = have.get(p.name)
        if q is None:
            if not any(h.kind is h.VAR_KEYWORD for h in have_list):
                problems.append(f"has no parameter {p.name!r}")
            continue
        if p.kind is p.POSITIONAL_OR_KEYWORD:
            if q.kind is not q.POSITIONAL_OR_KEYWORD or have_list.index(q) != i:
                problems.append(f"{p.name!r} must be positional-or-keyword, in position {i}")
        elif p.kind is p.KEYWORD_ONLY and q.kind not in (q.KEYWORD_ONLY, q.POSITIONAL_OR_KEYWORD):
            problems.append(f"{p.name!r} must be accepted by keyword")
        if p.default is not p.empty and q.default is q.empty:
            problems.append(f"{p.name!r} must have a default (the port gives it one)")
    wanted = {p.name for p in want_params}
    for q in have_list:
        if q.name not in wanted and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD) and q.default is q.empty:
            problems.append(f"extra parameter {q.name!r} needs a default (callers of the port never pass it)")
    return problems


@pytest.mark.parametrize(("port", "spec", "name"), _cases())
def test_adapter_implements_port_member(port: type, spec: str, name: str) -> None:
    cls = _load(spec)
    want = members(port)[name]
    assert hasattr(cls, name), f"{cls.__name__} lacks {port.__name__}.{name}"
    if want == "attribute":
        return
    impl = inspect.getattr_static(cls, name)
    assert callable(impl), f"{cls.__name__}.{name} is not a method"
    problems = compatible(want, getattr(cls, name))
    assert not problems, f"{cls.__name__}.{name} vs {port.__name__}.{name}: " + "; ".join(problems)


def test_every_adapter_module_is_listed() -> None:
    """A new adapter module must be added to ADAPTERS (or be a helper, listed here)."""
    import pkgutil

    import homefeed.adapters

    helpers = {
        "sqlite_db", "pg_db", "pg_schema", "pg_leader", "outage", "dead_letter_rows", "outbox_base",
        # the Redis connection helpers and the Lua scripts, and the modules the JetStream
        # adapter class is assembled from (one job each: see jetstream.py)
        "redis_cache", "redis_lua",
        "jetstream_names", "jetstream_connection", "jetstream_publish",
        "jetstream_dead_letters", "jetstream_consume", "jetstream_admin",
        # the mixins the record store classes inherit (one job each: see sqlite_store.py
        # and pg_store.py)
        "sqlite_accounts", "pg_accounts", "pg_admin", "sqlite_conversations", "pg_conversations",
        # the outside world's clients (issue 12): the webhook POST and the SMTP send, used by
        # the dispatcher and the mail loop directly (one implementation each, no port)
        "http_delivery", "smtp_mail",
    }
    listed = {spec.split(":")[0].rsplit(".", 1)[1] for specs in ADAPTERS.values() for spec in specs}
    modules = {m.name for m in pkgutil.iter_modules(homefeed.adapters.__path__)}
    unlisted = modules - listed - helpers
    assert not unlisted, f"adapter modules missing from ADAPTERS: {sorted(unlisted)}"


def test_backend_names_are_what_the_backends_are_called() -> None:
    """``Homefeed.backends()`` reads these: metrics labels and ``/readyz`` depend on them."""
    expect = {
        "homefeed.adapters.sqlite_store:SqliteRecordStore": "sqlite",
        "homefeed.adapters.pg_store:PgRecordStore": "postgresql",
        "homefeed.adapters.outbox_stream:OutboxEventStream": "outbox",
        "homefeed.adapters.pg_outbox:PgOutboxEventStream": "outbox",
        "homefeed.adapters.fts5_index:Fts5SearchIndex": "fts5",
        "homefeed.adapters.pg_search:PgSearchIndex": "postgresql",
        "homefeed.adapters.memory_cache:MemoryTimelineCache": "memory",
        "homefeed.adapters.memory_cache:MemoryPostCache": "memory",
        "homefeed.adapters.memory_ratelimit:MemoryRateLimiter": "memory",
        "homefeed.adapters.redis_timeline_cache:RedisTimelineCache": "redis",
        "homefeed.adapters.redis_post_cache:RedisPostCache": "redis",
        "homefeed.adapters.redis_ratelimit:RedisRateLimiter": "redis",
        "homefeed.adapters.jetstream:JetStreamEventStream": "jetstream",
        "homefeed.adapters.local_live:LocalLiveBus": "local",
        "homefeed.adapters.redis_live:RedisLiveBus": "redis",
    }
    for spec, name in expect.items():
        assert _load(spec).backend == name, spec


def test_every_backend_name_is_listed_for_its_part() -> None:
    """``ports.BACKEND_NAMES`` (what the OpenAPI document lists for ``/readyz``) knows the
    name of every adapter of the parts ``Homefeed.backends()`` names."""
    parts = {ports.RecordStore: "store", ports.TimelineCache: "cache", ports.EventStream: "stream",
             ports.SearchIndex: "search"}
    for port, part in parts.items():
        for spec in ADAPTERS[port]:
            assert _load(spec).backend in ports.BACKEND_NAMES[part], spec


def test_the_checker_catches_a_misfit() -> None:
    """The signature comparison itself: a renamed parameter, a missing default, a sync
    method for a coroutine, and an extra required parameter are each caught."""

    async def port_fn(self: Any, consumer: str, events: Any, delay: float | None = None) -> None: ...
    async def good(self: Any, consumer: str, events: Any, delay: float | None = None, *, extra: int = 1) -> None: ...
    async def renamed(self: Any, name: str, events: Any, delay: float | None = None) -> None: ...
    async def no_default(self: Any, consumer: str, events: Any, delay: float | None) -> None: ...
    def sync(self: Any, consumer: str, events: Any, delay: float | None = None) -> None: ...
    async def extra_required(self: Any, consumer: str, events: Any, delay: float | None = None, *, x: int) -> None: ...

    assert compatible(port_fn, good) == []
    assert compatible(port_fn, renamed)
    assert compatible(port_fn, no_default)
    assert compatible(port_fn, sync)
    assert compatible(port_fn, extra_required)


def test_homefeed_names_its_backends_from_the_adapters(tmp_path: Any) -> None:
    """The one answer to "which backends are in use" (metrics labels, ``/readyz``)."""
    from homefeed.bootstrap import build
    from homefeed.config import Settings

    hf = build(Settings(data_dir=tmp_path))
    assert hf.backends() == {"store": "sqlite", "cache": "memory", "stream": "outbox", "search": "fts5"}
    assert hf.backend_profile() == "sqlite+memory+outbox"
