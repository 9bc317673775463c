"""The served API keeps the promises of its own ``/openapi.json`` (schemathesis, v4 API).

A dedicated server (its own data dir, so the shared session server's state is untouched)
is loaded with a small world: users, follows and posts. Then, for every operation of the
document, schemathesis generates requests from the document itself (valid ones, and invalid
ones that must be refused with a documented 4xx), half of them aimed at what exists (real
handles, post ids and cursors, a real bearer token) so that generation reaches the handlers
and not only the 401s and 404s. Every answer is checked: no 5xx, a documented status code,
content type, body schema and headers (``X-Request-Id``, ``Retry-After``...).

The admin route gets a wrong token: generated admin bodies would otherwise start a rebuild
or an audit (minutes of work). Its documented 401 is then what is checked.

Deterministic: hypothesis is derandomized (a fixed seed per operation) and has no example
database. The requests are counted, so the test cannot pass having sent nothing. To explore
further: ``HOMEFEED_SCHEMATHESIS_FACTOR=10 HOMEFEED_SCHEMATHESIS_RANDOM=1``.
"""

from __future__ import annotations

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
    return World(handles, tokens, post_ids, words, [u["id"] for u in users], [n["id"] for n in notes])


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


@pytest.mark.slow
def test_every_operation_keeps_the_promises_of_the_openapi_document(server_factory: ServerFactory,
                                                                   capsys: pytest.CaptureFixture):
    server = server_factory.start("schemathesis", admin_token=ADMIN_TOKEN)
    api = Api(server)
    try:
        world = _make_world(api)
        # from the served document (from_url would leave out GET /openapi.json itself)
        schema = schemathesis.openapi.from_dict(api.get("/openapi.json").json())
        schema.validate()
        statuses: Counter = Counter()
        operations = [result.ok() for result in schema.get_all_operations()]
        documented = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items()
                      for method in item}
        assert {_label(o) for o in operations} == documented
        with requests.Session() as session:
            for operation in operations:
                _run_operation(operation, world, server.base_url, session, statuses)
        assert api.get("/healthz").status_code == 200  # still serving after all of it
    finally:
        api.close()

    total = sum(statuses.values())
    by_operation: dict[str, dict[int, int]] = {}
    for (label, status), n in sorted(statuses.items()):
        by_operation.setdefault(label, {})[status] = n
    with capsys.disabled():
        print(f"\nschemathesis: {total} requests")
        for label, counts in by_operation.items():
            print(f"  {label:40} {dict(sorted(counts.items()))}")
    assert total >= MIN_REQUESTS, f"only {total} requests were generated: {by_operation}"
    assert set(by_operation) == {_label(o) for o in operations}, "an operation was never called"
    # generation reached the handlers, not only the refusals
    reached = {label for label, counts in by_operation.items() if any(200 <= s < 300 for s in counts)}
    # OAuth needs what a generator cannot make: a registered app's client_id and secret, a
    # code, a log-in session cookie with its CSRF token (tests/e2e/test_oauth.py drives them)
    needs_oauth_credentials = {
        "GET /oauth/authorize", "GET /oauth/authorize/", "POST /oauth/authorize", "POST /oauth/authorize/",
        "POST /oauth/token", "POST /oauth/token/", "POST /oauth/revoke", "POST /oauth/revoke/",
        "POST /api/v1/accounts"}
    unreached = set(by_operation) - reached - {"POST /admin/{op}"} - needs_oauth_credentials
    assert not unreached, f"never answered 2xx: {sorted(unreached)}: {by_operation}"



def test_rate_limited_answers_keep_the_promises_of_the_openapi_document(server_factory: ServerFactory,
                                                                       capsys: pytest.CaptureFixture):
    """With a limit of one request a day per address, every /v1 operation answers 429 (with
    Retry-After and the RateLimit headers, as documented) and the operations routes are
    never limited."""
    server = server_factory.start("schemathesis-429", admin_token=ADMIN_TOKEN, rate_limit_per_address="1/day")
    schema = schemathesis.openapi.from_dict(requests.get(server.base_url + "/openapi.json", timeout=20).json())
    statuses: Counter = Counter()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = _label(operation)

            @settings(max_examples=4, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                response = case.call(base_url=server.base_url, session=session, timeout=20)
                statuses[(label, response.status_code)] += 1
                case.validate_response(response, checks=CHECKS)

            check()
    with capsys.disabled():
        print(f"\nschemathesis, rate limited: {dict(sorted(statuses.items()))}")
    labels = {label for label, _ in statuses}
    limited = {label for label, status in statuses if status == 429}
    assert limited == {label for label in labels if " /v1/" in label}, statuses
