"""The OpenAPI document: valid OpenAPI 3.1, and exactly the app's routes, each with the
answers every route of its kind can give (so a new route, or a new kind of answer, without
documentation fails here). What the server really answers is checked against it by
``tests/e2e/test_schemathesis.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Route

from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.entrypoints.http import create_app
from homefeed.domain.errors import InvalidInput
from homefeed.domain.text import MAX_QUERY_CHARS, validate_display_name, validate_handle
from homefeed.entrypoints import openapi as openapi_module
from homefeed.entrypoints.mastodon.openapi_client import MASTODON_ERROR
from homefeed.entrypoints.openapi import openapi_document
from homefeed.logging_setup import clean_request_id
from homefeed.service_layer.idempotency import InvalidIdempotencyKey, check_key
from homefeed.service_layer.services import DEFAULT_LIMIT, check_limit

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory) -> dict[str, set[str]]:
    """``{path template: methods}`` of the app ``homefeed serve`` runs (HEAD is implied by GET)."""
    hf = build(Settings(data_dir=tmp_path_factory.mktemp("openapi")))
    app = create_app(hf, manage_lifecycle=False)
    routes: dict[str, set[str]] = {}
    for route in app.routes:
        assert isinstance(route, Route), f"not a plain route: {route!r}"
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)  # {id:digits} is documented as {id}
        routes.setdefault(path, set()).update(m.lower() for m in route.methods or () if m != "HEAD")
    return routes


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document(Settings(max_post_length=280))


def operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(doc).validate()


def test_an_invalid_document_would_be_caught(doc):
    broken = {**doc, "paths": {**doc["paths"], "/healthz": {"get": {"responses": {"200": {}}}}}}
    with pytest.raises(Exception):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_schema_is_a_valid_json_schema(doc):
    for name, schema in doc["components"]["schemas"].items():
        jsonschema_rs.meta.validate({"$schema": "https://json-schema.org/draft/2020-12/schema", **schema})


def test_paths_and_methods_are_exactly_the_app_routes(doc, app_routes):
    documented = {path: {m for m in item if m in METHODS} for path, item in doc["paths"].items()}
    assert documented == app_routes


def test_operation_ids_are_unique_and_links_point_at_them(doc):
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    for _, _, op in operations(doc):
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids


def test_path_parameters_match_the_templates(doc):
    for path, _, op in operations(doc):
        declared = {resolve(doc, p)["name"] for p in op.get("parameters", []) if resolve(doc, p)["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), path


def test_every_answer_has_a_request_id_and_every_error_the_error_shape(doc):
    for path, method, op in operations(doc):
        assert "500" in op["responses"], f"{method} {path}: a bug's 500 is not documented"
        for status, response in op["responses"].items():
            response = resolve(doc, response)
            assert "X-Request-Id" in response.get("headers", {}), f"{method} {path} {status}"
            if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                if path.startswith("/oauth/authorize") and "text/html" in response["content"]:
                    continue  # a page for a person
                schema = response["content"]["application/json"]["schema"]
                if path.startswith(("/api/", "/oauth/")):  # Mastodon's error shape
                    from homefeed.entrypoints.mastodon.openapi_oauth import MASTODON_ERROR

                    assert schema == MASTODON_ERROR, f"{method} {path} {status}"
                else:
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_v1_routes_may_be_rate_limited_and_unavailable_with_retry_after(doc):
    for path, method, op in operations(doc):
        if path.startswith(("/oauth/", "/api/")):
            continue  # log-ins and sign-ups are slowed (429); the rest is not /v1's limit
        if not path.startswith("/v1/"):
            assert "429" not in op["responses"], f"{method} {path}: operations routes are never limited"
            continue
        for status in ("429", "503"):
            assert status in op["responses"], f"{method} {path} lacks {status}"
            assert "Retry-After" in op["responses"][status]["headers"], f"{method} {path} {status}"


def test_every_v1_post_takes_an_idempotency_key(doc):
    for path, method, op in operations(doc):
        if method != "post" or not path.startswith("/v1/"):
            continue
        names = {resolve(doc, p)["name"] for p in op["parameters"]}
        assert "Idempotency-Key" in names, path
        assert {"400", "422"} <= set(op["responses"]), path
        ok = next(s for s in op["responses"] if s.startswith("2"))
        assert "Idempotent-Replayed" in op["responses"][ok]["headers"], path


def test_secured_operations_document_401(doc):
    for path, method, op in operations(doc):
        if op.get("security"):
            assert "401" in op["responses"], f"{method} {path}"


def test_the_post_length_limit_is_the_configured_one(doc):
    body = doc["paths"]["/v1/posts"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["text"]["maxLength"] == 280
    assert openapi_document(Settings(max_post_length=500))["paths"]["/v1/posts"]["post"]["requestBody"][
        "content"]["application/json"]["schema"]["properties"]["text"]["maxLength"] == 500


# --------------------------------------------------------------------------------------------
# one fact, one place: the document states the limits validation enforces, from its constants
# --------------------------------------------------------------------------------------------


def test_no_limit_is_restated_as_a_number_in_the_document_source():
    """Every limit comes from the constant validation uses: the module holds no number
    literal other than small structural ones (0, 1, a status code, the cache size)."""
    source = Path(openapi_module.__file__).read_text(encoding="utf-8")
    numbers = {node.value for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and type(node.value) in (int, float)}
    statuses = set(range(200, 600))
    assert numbers - statuses <= {0, 1, 8, 600}, sorted(numbers - statuses)


def _accepts(check, value) -> bool:
    try:
        check(value)
    except (InvalidInput, InvalidIdempotencyKey):
        return False
    return True


@given(st.one_of(st.text(max_size=40), st.text(st.sampled_from("aZ9_-é "), max_size=35)))
def test_the_documented_handle_is_the_validated_one(doc, handle):
    schema = doc["components"]["schemas"]["UserRef"]["properties"]["handle"]
    documented = bool(re.fullmatch(schema["pattern"], handle)) and schema["minLength"] <= len(handle) <= schema["maxLength"]
    assert documented == _accepts(validate_handle, handle)


def test_the_documented_display_name_length_is_the_validated_one(doc):
    most = doc["components"]["schemas"]["UserRef"]["properties"]["display_name"]["maxLength"]
    assert _accepts(lambda n: validate_display_name(n, "h"), "x" * most)
    assert not _accepts(lambda n: validate_display_name(n, "h"), "x" * (most + 1))


def test_the_documented_limit_range_is_the_validated_one(doc):
    schema = next(p for p in doc["paths"]["/v1/timelines/home"]["get"]["parameters"]
                  if p.get("name") == "limit")["schema"]
    low, high = schema["minimum"], schema["maximum"]
    assert [_accepts(check_limit, n) for n in (low - 1, low, high, high + 1)] == [False, True, True, False]
    assert schema["default"] == DEFAULT_LIMIT == check_limit(None)
    for page in ("PostPage", "UserPage"):
        items = doc["components"]["schemas"][page]["properties"]
        assert next(v for k, v in items.items() if k != "next")["maxItems"] == high


@given(st.text(st.characters(max_codepoint=0x7F), max_size=260) | st.text(max_size=5)
       | st.integers(250, 260).map(lambda n: "k" * n))
def test_the_documented_idempotency_key_is_the_validated_one(doc, key):
    schema = doc["components"]["parameters"]["Idempotency-Key"]["schema"]
    documented = bool(re.fullmatch(schema["pattern"], key)) and schema["minLength"] <= len(key) <= schema["maxLength"]
    assert documented == _accepts(lambda k: check_key([k]), key)


@given(st.text(st.characters(max_codepoint=0x7F), max_size=130) | st.integers(126, 130).map(lambda n: "r" * n))
def test_the_documented_request_id_is_the_one_kept(doc, rid):
    pattern = doc["components"]["headers"]["X-Request-Id"]["schema"]["pattern"]
    assert bool(re.fullmatch(pattern, rid)) == (clean_request_id(rid) == rid)


def test_the_documented_query_bound_is_the_enforced_one(doc):
    q = next(p for p in doc["paths"]["/v1/search/posts"]["get"]["parameters"] if p.get("name") == "q")
    assert f"more than {MAX_QUERY_CHARS} characters" in q["description"]
