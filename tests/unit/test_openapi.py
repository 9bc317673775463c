"""The OpenAPI document: valid OpenAPI 3.1, and exactly the app's routes, each with the
answers every route of its kind can give (so a new route, or a new kind of answer, without
documentation fails here). What the server really answers is checked against it by
``tests/e2e/test_schemathesis.py``."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from starlette.routing import Route

from homefeed.bootstrap import build
from homefeed.config import Settings
from homefeed.entrypoints.http import create_app
from homefeed.entrypoints.openapi import openapi_document

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory) -> dict[str, set[str]]:
    """``{path template: methods}`` of the app ``homefeed serve`` runs (HEAD is implied by GET)."""
    hf = build(Settings(data_dir=tmp_path_factory.mktemp("openapi")))
    app = create_app(hf, manage_lifecycle=False)
    routes: dict[str, set[str]] = {}
    for route in app.routes:
        assert isinstance(route, Route), f"not a plain route: {route!r}"
        routes.setdefault(route.path, set()).update(m.lower() for m in route.methods or () if m != "HEAD")
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
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_v1_routes_may_be_rate_limited_and_unavailable_with_retry_after(doc):
    for path, method, op in operations(doc):
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
