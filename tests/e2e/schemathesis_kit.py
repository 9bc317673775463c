"""What the schemathesis modules share: the checks, the examples per operation, the small
world a server is loaded with, the strategies aimed at it, and the shards the document's
operations are run in.

Why shards: one test that runs every operation of ``/openapi.json`` in turn was the longest
test of the suite (166 s on a quiet machine, about a third of what one pytest-xdist process
does in ``make test``), and ``--dist loadfile`` keeps a module in one process. Each shard is
its own module (``tests/e2e/test_schemathesis_<shard>.py``) with its own server and world,
so the shards run in different processes. Every operation runs in exactly one shard, in the
document's order, with the same strategies, examples and settings as before; each shard
asserts for its operations what the single test asserted for all of them, and
``tests/e2e/test_schemathesis.py`` checks that the shards cover the whole document.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Api, ServerFactory, bearer, unique_handle

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
ADMIN_TOKEN = "schemathesis-admin-token-not-given-to-the-generator"
MIN_REQUESTS = 1000
FACTOR = float(os.environ.get("HOMEFEED_SCHEMATHESIS_FACTOR", "1"))
RANDOM = os.environ.get("HOMEFEED_SCHEMATHESIS_RANDOM") == "1"
# Examples per operation: more where the inputs are rich (bodies, several parameters).
EXAMPLES = {"default": 80, "POST /v1/posts": 200, "POST /v1/users": 150, "GET /v1/search/posts": 200,
            "POST /admin/{op}": 40, "GET /healthz": 30, "GET /readyz": 30, "GET /metrics": 30,
            "GET /metrics.json": 30, "GET /dashboard": 30, "GET /openapi.json": 30}


@dataclass
class World:
    """What exists on the server, for requests that reach past the 404s."""

    handles: list[str]
    tokens: list[str]
    post_ids: list[str]
    words: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    #: user 0's notifications (follows and mentions), newest first
    notification_ids: list[str] = field(default_factory=list)
    #: the web client's current version and one of its files (the server runs this code)
    web_asset: dict[str, str] = field(default_factory=dict)


def _make_world(api: Api) -> World:
    users = [api.register(unique_handle("st")) for _ in range(4)]
    handles = [u["handle"] for u in users]
    tokens = [u["token"] for u in users]
    for follower in tokens[1:]:
        api.follow(follower, handles[0])
    api.follow(tokens[0], handles[1])
    words = ["lanterne", "Ωμέγα", "#fuzz", "@" + handles[0]]
    post_ids = [api.new_post(tokens[i % 4], f"post {i} {words[i % 4]} zebra")["id"] for i in range(24)]
    api.drain()
    notes = api.get("/api/v1/notifications", headers=bearer(tokens[0])).json()
    assert len(notes) >= 2, notes
    from homefeed.entrypoints import web

    asset = {"version": web.version(), "name": sorted(web.assets())[0]}
    assert api.get(f"/web/{asset['version']}/{asset['name']}").status_code == 200
    return World(handles, tokens, post_ids, words, [u["id"] for u in users], [n["id"] for n in notes], asset)


def _strategy(operation: Any, world: World) -> st.SearchStrategy:
    """Generated cases, a mix: anything the document allows, the same with a real bearer
    token, aimed at real handles / post ids / cursors, and invalid requests (negative)."""
    path_names = {p.name for p in operation.path_parameters}
    query_names = {p.name for p in operation.query}
    secured = bool(operation.definition.raw.get("security"))
    admin = operation.path.startswith("/admin/")

    def build(mode: GenerationMode, user: int | None, real: bool, owner: int | None = None) -> st.SearchStrategy:
        kwargs: dict[str, Any] = {"generation_mode": mode}
        if admin:
            kwargs["headers"] = bearer("not-the-admin-token")
        elif user is not None and secured:
            kwargs["headers"] = bearer(world.tokens[user])
        if real:
            if "handle" in path_names:
                kwargs["path_parameters"] = {"handle": world.handles[0]}
            if "post_id" in path_names:  # the user's own post (DELETE: 204), or another's (403)
                kwargs["path_parameters"] = {"post_id": world.post_ids[owner if owner is not None else user or 0]}
            if "id" in path_names:  # Mastodon routes: a status (own or another's) or an account
                if operation.path.startswith("/api/v1/statuses/"):  # not the ones /v1 deletes
                    by = owner if owner is not None else user or 0
                    kwargs["path_parameters"] = {"id": world.post_ids[4 + by]}
                elif operation.path.startswith("/api/v1/notifications/"):  # user 0's newest
                    # two (mentions by posts nobody deletes): one to read, one to dismiss
                    dismiss = operation.path.endswith("/dismiss")
                    kwargs["path_parameters"] = {"id": world.notification_ids[0 if dismiss else 1]}
                else:
                    kwargs["path_parameters"] = {"id": world.user_ids[owner if owner is not None else 0]}
            if {"version", "name"} <= path_names:
                kwargs["path_parameters"] = dict(world.web_asset)
            if "acct" in query_names:
                kwargs["query"] = {"acct": world.handles[0]}
            if "before" in query_names:
                kwargs["query"] = {"before": world.post_ids[len(world.post_ids) // 2]}
            if "q" in query_names:
                kwargs["query"] = {**kwargs.get("query", {}), "q": world.words[2]}
        return operation.as_strategy(**kwargs)

    variants = [
        build(GenerationMode.POSITIVE, None, real=False),
        build(GenerationMode.POSITIVE, 1, real=False),
        build(GenerationMode.POSITIVE, 1, real=True),
        build(GenerationMode.POSITIVE, 0, real=True),
        build(GenerationMode.POSITIVE, 3, real=True, owner=2),
        build(GenerationMode.NEGATIVE, 2, real=False),
        build(GenerationMode.NEGATIVE, None, real=False),
    ]
    return st.one_of(variants)


def _label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def _run_operation(operation: Any, world: World, base_url: str, session: requests.Session,
                   statuses: Counter) -> None:
    label = _label(operation)

    examples = int(EXAMPLES.get(label, EXAMPLES["default"]) * FACTOR)

    @settings(max_examples=examples, derandomize=not RANDOM, database=None,
              deadline=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation, world))
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, timeout=20)
        statuses[(label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    check()


# -- the shards ------------------------------------------------------------------------------

#: The shards, in the order ``shard_of`` tries them; the last takes every operation the
#: others do not, so a new route is always run somewhere. Sized by measurement (seconds per
#: operation, benchmarks/results/issue14_p16ci.md) to take about the same time each. A
#: family of routes whose requests change what the next ones find (notifications read,
#: dismissed, cleared; posts deleted) stays in one shard, in the document's order.
SHARDS = ("native", "mastodon_statuses", "mastodon_accounts", "pages")
_NATIVE_PREFIXES = ("/v1/", "/admin/", "/web/", "/dashboard")
_NATIVE_PATHS = {"/healthz", "/readyz", "/metrics", "/metrics.json", "/openapi.json", "/docs"}
_MASTODON_STATUSES = ("/api/v1/statuses", "/api/v1/timelines/", "/api/v2/search", "/api/v1/favourites",
                      "/api/v1/notifications", "/api/v1/streaming")


def shard_of(path: str) -> str:
    """The shard that runs the operations of ``path``: the native API and the operations
    routes; Mastodon's statuses, timelines and notifications; the rest of Mastodon's API
    (accounts, apps, markers, instance...); everything else (OAuth, the web pages, mail)."""
    if path.startswith(_NATIVE_PREFIXES) or path in _NATIVE_PATHS:
        return "native"
    if path.startswith(_MASTODON_STATUSES):
        return "mastodon_statuses"
    if path.startswith("/api/"):
        return "mastodon_accounts"
    return "pages"


def documented_labels(document: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}


def run_shard(shard: str, server_factory: ServerFactory, capsys: pytest.CaptureFixture) -> None:
    """Every operation of ``shard`` keeps the promises of the served document: what
    ``test_every_operation_keeps_the_promises_of_the_openapi_document`` asserted for the
    whole document, asserted for this shard's part of it, against its own server."""
    assert shard in SHARDS
    server = server_factory.start(f"schemathesis-{shard}", admin_token=ADMIN_TOKEN)
    api = Api(server)
    try:
        world = _make_world(api)
        # from the served document (from_url would leave out GET /openapi.json itself)
        schema = schemathesis.openapi.from_dict(api.get("/openapi.json").json())
        schema.validate()
        statuses: Counter = Counter()
        every_operation = [result.ok() for result in schema.get_all_operations()]
        assert {_label(o) for o in every_operation} == documented_labels(schema.raw_schema)
        operations = [o for o in every_operation if shard_of(o.path) == shard]
        assert operations, f"shard {shard} has no operation"
        # An event stream never ends (a heartbeat keeps it alive): a generated request would
        # wait for ever. tests/e2e/test_streaming.py drives them; the WebSocket too.
        streams = {_label(o) for o in operations if _label(o).startswith("GET /api/v1/streaming")
                   and _label(o) != "GET /api/v1/streaming/health"}
        with requests.Session() as session:
            for operation in operations:
                if _label(operation) not in streams:
                    _run_operation(operation, world, server.base_url, session, statuses)
        assert api.get("/healthz").status_code == 200  # still serving after all of it
    finally:
        api.close()

    total = sum(statuses.values())
    by_operation: dict[str, dict[int, int]] = {}
    for (label, status), n in sorted(statuses.items()):
        by_operation.setdefault(label, {})[status] = n
    with capsys.disabled():
        print(f"\nschemathesis ({shard}): {total} requests")
        for label, counts in by_operation.items():
            print(f"  {label:40} {dict(sorted(counts.items()))}")
    # the shards' minimums add up to at least MIN_REQUESTS for the whole document
    minimum = math.ceil(MIN_REQUESTS * len(operations) / len(every_operation))
    assert total >= minimum, f"only {total} requests were generated: {by_operation}"
    assert set(by_operation) == {_label(o) for o in operations} - streams, "an operation was never called"
    # generation reached the handlers, not only the refusals
    reached = {label for label, counts in by_operation.items() if any(200 <= s < 300 for s in counts)}
    # OAuth needs what a generator cannot make: a registered app's client_id and secret, a
    # code, a log-in session cookie with its CSRF token (tests/e2e/test_oauth.py drives them)
    needs_oauth_credentials = {
        "GET /oauth/authorize", "GET /oauth/authorize/", "POST /oauth/authorize", "POST /oauth/authorize/",
        "POST /oauth/token", "POST /oauth/token/", "POST /oauth/revoke", "POST /oauth/revoke/",
        "POST /api/v1/accounts"}
    # a one-click unsubscribe needs a token that only a sent mail carries (this server sends
    # none: no SMTP); tests/integration/test_mailer.py POSTs real ones
    needs_a_mail = {"POST /email/unsubscribe/{token}"}
    unreached = set(by_operation) - reached - {"POST /admin/{op}"} - needs_oauth_credentials - needs_a_mail
    assert not unreached, f"never answered 2xx: {sorted(unreached)}: {by_operation}"
