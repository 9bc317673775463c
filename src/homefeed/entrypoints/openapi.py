"""The OpenAPI 3.1 document served at ``/openapi.json`` (and rendered for people at
``/docs``), written by hand so that it says exactly what the API promises and costs nothing
on the request path. Every limit in it (handle pattern, lengths, the ``limit`` range, the
idempotency key, the query length, the request id) is generated from the constant that
validation enforces, imported from where it is defined: one fact, one place.

Every route of ``entrypoints/routes/`` is here with every answer it can give: a test
(``tests/unit/test_openapi.py``) fails when a route has no operation, and schemathesis
(``tests/e2e/test_schemathesis.py``) checks real answers against the document. Errors are
one shape, ``{"error": {"code", "message"}}``; each error response says which codes it
carries. Every answer has an ``X-Request-Id`` header (the ``Observe`` middleware).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Sequence

from homefeed import __version__
from homefeed.config import Settings
from homefeed.domain.ids import MAX_ID
from homefeed.domain.text import HANDLE_RE, MAX_DISPLAY_NAME_LENGTH, MAX_HANDLE_LENGTH, MAX_QUERY_CHARS
from homefeed.entrypoints.admin import ADMIN_OPS, MAX_SETTLE_TIMEOUT
from homefeed.entrypoints.dashboard import ASSETS as DASHBOARD_ASSETS
from homefeed.logging_setup import MAX_REQUEST_ID_LENGTH, REQUEST_ID_CHARS
from homefeed.ports import BACKEND_NAMES
from homefeed.entrypoints.mastodon.openapi_client import mastodon_paths
from homefeed.service_layer.audit import PARTS as AUDIT_PARTS
from homefeed.domain.webhooks import EVENT_TYPES as WEBHOOK_EVENTS
from homefeed.service_layer.consumers import CONSUMERS
from homefeed.service_layer.idempotency import HEADER as IDEMPOTENCY_HEADER
from homefeed.service_layer.idempotency import MAX_KEY_LENGTH, REPLAYED_HEADER
from homefeed.service_layer.services import DEFAULT_LIMIT, MAX_LIMIT

#: Ids are decimal strings of at most as many digits as the largest id (``parse_id``).
ID = {"type": "string", "pattern": f"^[0-9]{{1,{len(str(MAX_ID))}}}$",
      "description": "64-bit time-ordered id, as a string"}
HANDLE = {"type": "string", "pattern": f"^{HANDLE_RE.pattern}$", "minLength": 1, "maxLength": MAX_HANDLE_LENGTH}
DISPLAY_NAME = {"type": "string", "maxLength": MAX_DISPLAY_NAME_LENGTH}
TIMESTAMP = {"type": "string", "format": "date-time", "description": "UTC, millisecond precision"}
CURSOR = {"oneOf": [ID, {"type": "null"}], "description": "the `before` of the next page; null on the last"}

#: What ``homefeed.logging_setup.clean_request_id`` keeps of a client's id, and what it makes.


def _runs(chars: frozenset[int]) -> list[tuple[str, str]]:
    """A set of ASCII bytes as (first, last) runs: consecutive letters or digits make one
    run (``A``-``Z``), every other character is its own, so the rule reads as written."""
    codes = sorted(chars)
    runs: list[tuple[str, str]] = []
    i = 0
    while i < len(codes):
        j = i
        while (j + 1 < len(codes) and codes[j + 1] == codes[j] + 1
               and chr(codes[j]).isalnum() and chr(codes[j + 1]).isalnum()):
            j += 1
        runs.append((chr(codes[i]), chr(codes[j])))
        i = j + 1
    return runs


def _char_class(chars: frozenset[int]) -> str:
    """A regular-expression class body for a set of ASCII bytes (``0-9A-Za-z...``)."""
    return "".join(re.escape(a) if a == b else f"{re.escape(a)}-{re.escape(b)}" for a, b in _runs(chars))


_REQUEST_ID_CLASS = _char_class(REQUEST_ID_CHARS)
#: The same characters for people: ``+ - . / 0-9 : = @ A-Z _ a-z``.
_REQUEST_ID_WORDS = " ".join(a if a == b else f"{a}-{b}" for a, b in _runs(REQUEST_ID_CHARS))
REQUEST_ID = {"type": "string", "pattern": f"^[{_REQUEST_ID_CLASS}]{{1,{MAX_REQUEST_ID_LENGTH}}}$"}
#: The ``Idempotency-Key`` request header: printable ASCII without spaces (``check_key``).
IDEMPOTENCY_KEY = {"type": "string", "pattern": f"^[\\x21-\\x7E]{{1,{MAX_KEY_LENGTH}}}$",
                   "minLength": 1, "maxLength": MAX_KEY_LENGTH}

#: Admin operations of ``entrypoints.ops.admin``.

# Error answers: status -> (description, the codes it carries).
_ERRORS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("malformed request: the body is not JSON (or not UTF-8), or the Idempotency-Key header"
          f" is not 1-{MAX_KEY_LENGTH} printable ASCII characters", ("invalid_json", "invalid_idempotency_key", "bad_request")),
    401: ("missing or invalid bearer token", ("unauthorized",)),
    403: ("not allowed: not your own", ("forbidden",)),
    404: ("no such resource", ("not_found",)),
    409: ("conflict: the handle is taken", ("conflict",)),
    413: ("request body larger than max_body_bytes", ("payload_too_large",)),
    422: ("invalid input (nothing was changed), or an Idempotency-Key reused with a different"
          " request", ("invalid_input", "idempotency_key_reused")),
    429: ("rate limited: retry after Retry-After seconds", ("rate_limited",)),
    500: ("a bug: never an answer to bad input", ("internal",)),
    503: ("a backend is unavailable: retry after Retry-After seconds", ("unavailable",)),
}
#: Answers that carry a Retry-After header.
_RETRY_AFTER = {429, 503}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _headers(*, replayable: bool = False, retry_after: bool = False,
             rate_limited: bool = False) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
    if retry_after:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if rate_limited:
        headers["RateLimit-Policy"] = {"$ref": "#/components/headers/RateLimit-Policy"}
        headers["RateLimit"] = {"$ref": "#/components/headers/RateLimit"}
    if replayable:
        headers[REPLAYED_HEADER] = {"$ref": f"#/components/headers/{REPLAYED_HEADER}"}
    return headers


def _json(schema: dict[str, Any], description: str, *, replayable: bool = False,
          retry_after: bool = False, rate_limited: bool = False) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _headers(replayable=replayable, retry_after=retry_after, rate_limited=rate_limited),
        "content": {"application/json": {"schema": schema}},
    }


def _html(description: str) -> dict[str, Any]:
    """A 200 answering an HTML page."""
    return {"200": {"description": description, "headers": _headers(),
                    "content": {"text/html": {"schema": {"type": "string"}}}}}


def _links(parameter: str, expression: str, *operation_ids: str) -> dict[str, Any]:
    """OpenAPI links: where the value just made (a handle, a post id) can be used next."""
    return {op: {"operationId": op, "parameters": {parameter: expression}} for op in operation_ids}


def _errors(*statuses: int) -> dict[str, Any]:
    """Error answers; every route also gets 500 (a bug) through ``_responses``."""
    out: dict[str, Any] = {}
    for status in statuses:
        text, codes = _ERRORS[status]
        out[str(status)] = _json(_ref("Error"), f"{text} (error codes: {', '.join(codes)})",
                                 retry_after=status in _RETRY_AFTER, rate_limited=status == 429)
    return out


def _responses(ok: dict[str, Any], *statuses: int) -> dict[str, Any]:
    return {**ok, **_errors(*statuses, 500)}


# Every /v1 route may be rate limited (429) and needs the backends (503).
_V1 = (429, 503)

LIMIT_PARAM = {"name": "limit", "in": "query", "required": False,
               "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}}
BEFORE_PARAM = {"name": "before", "in": "query", "required": False, "schema": ID,
                "description": "exclusive cursor: the `next` of the previous page"}
LIST_PARAMS = [LIMIT_PARAM, BEFORE_PARAM]
HANDLE_PARAM = {"name": "handle", "in": "path", "required": True, "schema": HANDLE,
                "description": "a user's handle (case-insensitive); anything else answers 404"}
POST_ID_PARAM = {"name": "post_id", "in": "path", "required": True, "schema": ID,
                 "description": "a post id; anything else answers 404"}
REQUEST_ID_PARAM = {"$ref": "#/components/parameters/X-Request-Id"}
IDEMPOTENCY_PARAM = {"$ref": f"#/components/parameters/{IDEMPOTENCY_HEADER}"}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(operation_id: str, summary: str, responses: dict[str, Any], *,
        parameters: Sequence[dict[str, Any]] = (), **extra: Any) -> dict[str, Any]:
    """One operation; every one takes an optional X-Request-Id header."""
    return {"operationId": operation_id, "summary": summary,
            "parameters": [*parameters, REQUEST_ID_PARAM], "responses": responses, **extra}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _schemas(max_post_length: int) -> dict[str, Any]:
    user_ref: dict[str, Any] = {
        "type": "object",
        "required": ["id", "handle", "display_name"],
        "properties": {"id": ID, "handle": HANDLE, "display_name": DISPLAY_NAME},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string", "minLength": 1},
                                   "message": {"type": "string", "minLength": 1}},
                }
            },
        },
        "UserRef": user_ref,
        "Registered": {
            "type": "object",
            "required": ["id", "handle", "display_name", "token"],
            "properties": {**user_ref["properties"],
                           "token": {"type": "string", "minLength": 1,
                                     "description": "the bearer token; shown once, keep it"}},
        },
        "Profile": {
            "type": "object",
            "required": ["id", "handle", "display_name", "followers_count",
                         "following_count", "posts_count", "created_at"],
            "properties": {
                **user_ref["properties"],
                "followers_count": {"type": "integer", "minimum": 0},
                "following_count": {"type": "integer", "minimum": 0},
                "posts_count": {"type": "integer", "minimum": 0},
                "created_at": TIMESTAMP,
            },
        },
        "Post": {
            "type": "object",
            "required": ["id", "author", "text", "created_at"],
            "properties": {
                "id": ID,
                "author": {"type": "object", "required": ["id", "handle"],
                           "properties": {"id": ID, "handle": HANDLE}},
                "text": {"type": "string", "maxLength": max_post_length,
                         "description": "as written; empty for a boost"},
                "created_at": TIMESTAMP,
                "in_reply_to_id": {**ID, "description": "present on a reply: the post replied to"
                                                        " (it may be gone since)"},
                "reblog_of_id": {**ID, "description": "present on a boost: the boosted post"},
            },
        },
        "PostPage": {
            "type": "object",
            "required": ["posts", "next"],
            "properties": {"posts": {"type": "array", "maxItems": MAX_LIMIT, "items": _ref("Post")},
                           "next": CURSOR},
        },
        "UserPage": {
            "type": "object",
            "required": ["users", "next"],
            "properties": {"users": {"type": "array", "maxItems": MAX_LIMIT, "items": _ref("UserRef")},
                           "next": CURSOR},
        },
        "Following": {
            "type": "object", "required": ["following"],
            "properties": {"following": {"type": "boolean"}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "consumers"],
            "properties": {
                "status": {"const": "ok"},
                "consumers": {
                    "type": "object",
                    "description": "events committed and not yet applied, per consumer (and 'relay':"
                                   " not yet relayed to the bus, when there is one)",
                    "additionalProperties": {
                        "type": "object", "required": ["behind"],
                        "properties": {"behind": {"type": "integer", "minimum": 0}},
                    },
                },
                "lag_error": {"type": "string",
                              "description": "present when the lag could not be read (a backend is down)"},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "failing", "backends"],
            "properties": {
                "status": {"enum": ["ready", "not_ready"]},
                "failing": {"type": "array", "items": {"enum": list(BACKEND_NAMES)}},
                "backends": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["backend", "ok", "ms"],
                        "properties": {
                            "backend": {"enum": sorted({k for kinds in BACKEND_NAMES.values() for k in kinds})},
                            "ok": {"type": "boolean"},
                            "ms": {"type": "number", "minimum": 0},
                            "error": {"type": "string"},
                        },
                    },
                },
            },
        },
        "MetricsSnapshot": {
            "type": "object",
            "description": "what the dashboard and `homefeed status` show (entrypoints/metrics/,"
                           " `snapshot`): request rates and latency percentiles over the last 1 and"
                           " 5 minutes, consumer lag, cache hit ratios, backend sizes",
            "required": ["schema", "time", "pid", "role", "profile", "uptime_s", "in_flight",
                         "windows", "consumers", "errors"],
            "properties": {
                "schema": {"const": 1},
                "time": {"type": "number"},
                "pid": {"type": "integer"},
                "role": {"type": "string"},
                "profile": {"type": "string"},
                "uptime_s": {"type": "number", "minimum": 0},
                "in_flight": {"type": "integer", "minimum": 0},
                "windows": {"type": "object"},
                "consumers": {"type": "object"},
                "errors": {"type": "object"},
            },
        },
        "AdminRequest": {
            "type": "object",
            "description": "the fields each operation reads: audit {parts?, sample?, settle_timeout?,"
                           " seed?}; rebuild-timelines {}; job {id}; replay {consumer, from};"
                           " reconcile-celebrities {}; webhooks-add {url, events}; webhooks-list {};"
                           " webhooks-remove {id}; webhooks-rotate-secret {id}",
            "properties": {
                "parts": {"type": "array", "items": {"enum": list(AUDIT_PARTS)}},
                "sample": {"type": "integer", "minimum": 1},
                "settle_timeout": {"type": "number", "minimum": 0, "maximum": MAX_SETTLE_TIMEOUT},
                "seed": {"type": "integer"},
                "id": {"type": "string", "description": "job: the `job` of a rebuild-timelines answer;"
                                                        " webhooks-remove, webhooks-rotate-secret: the"
                                                        " subscription's id"},
                "url": {"type": "string", "description": "webhooks-add: the target (http or https)"},
                "events": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"enum": list(WEBHOOK_EVENTS)}}],
                           "description": "webhooks-add: event types, a list or comma-separated"},
                "consumer": {"enum": list(CONSUMERS)},
                "from": {"type": "integer", "minimum": 0, "description": "replay: the first event id"},
            },
        },
        "AdminResult": {
            "type": "object",
            "description": "audit: the report {differences, checked, notes, behind, exit_code};"
                           " rebuild-timelines and job: {job, what, total, done, finished, result,"
                           " error, seconds}; replay: {consumer, ...}; reconcile-celebrities: {};"
                           " webhooks-add, webhooks-rotate-secret: {id, url, events, secret};"
                           " webhooks-list: {subscriptions}; webhooks-remove: {id, removed}",
        },
    }


def _components(max_post_length: int) -> dict[str, Any]:
    return {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "the token POST /v1/users answered"},
            "admin": {"type": "http", "scheme": "bearer",
                      "description": "$HOMEFEED_ADMIN_TOKEN, else the token in <data dir>/admin-token"},
        },
        "parameters": {
            "X-Request-Id": {
                "name": "X-Request-Id", "in": "header", "required": False, "schema": {"type": "string"},
                "description": f"kept (and echoed) if 1-{MAX_REQUEST_ID_LENGTH} characters of"
                               f" {_REQUEST_ID_WORDS}; otherwise a fresh id is made",
            },
            IDEMPOTENCY_HEADER: {
                "name": IDEMPOTENCY_HEADER, "in": "header", "required": False, "schema": IDEMPOTENCY_KEY,
                "description": "the same key with the same request answers the first response again"
                               " (with Idempotent-Replayed: true) and changes nothing; with a different"
                               " request: 422 idempotency_key_reused; a malformed key: 400"
                               " invalid_idempotency_key",
            },
        },
        "headers": {
            "X-Request-Id": {"required": True, "schema": REQUEST_ID,
                             "description": "the request's id, as its log lines and events carry it"},
            "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 0},
                            "description": "seconds to wait before retrying"},
            REPLAYED_HEADER: {"required": False, "schema": {"enum": ["true"]},
                                    "description": "present on a replayed answer (only successful"
                                                   " answers are remembered: a 4xx runs again)"},
            "RateLimit-Policy": {"required": True, "schema": {"type": "string"},
                                 "description": 'the refusing limit, e.g. "per-token";q=20;w=2'
                                                " (draft-ietf-httpapi-ratelimit-headers)"},
            "RateLimit": {"required": True, "schema": {"type": "string"},
                          "description": 'e.g. "per-token";r=0;t=1'},
        },
        "schemas": _schemas(max_post_length),
    }


UNSUBSCRIBE_TOKEN = {"name": "token", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                     "description": "from the List-Unsubscribe header of a notification email"}


def _ops_paths() -> dict[str, Any]:
    """Operations: the pages for people, liveness, readiness, metrics, the dashboard, this
    document, admin."""
    text_ok = {"200": {"description": "Prometheus text exposition format", "headers": _headers(),
                       "content": {"text/plain": {"schema": {"type": "string"}}}}}
    return {
        "/about": {"get": _op(
            "index", "what this server is, with links to the web client, these docs, the dashboard"
                     " and health",
            _responses(_html("the page")))},
        "/docs": {"get": _op(
            "docs", "this document rendered for people (no script, no CDN)",
            _responses(_html("the page")))},
        "/healthz": {"get": _op(
            "health", "liveness, and how far behind each consumer is (the lag is read at most"
                      " every 250 ms and shared: it may be up to 250 ms old, but never older than"
                      " a write this process committed)",
            _responses({"200": _json(_ref("Health"), "alive (200 even while a backend is down:"
                                                      " then lag_error says why consumers is empty)")}))},
        "/readyz": {"get": _op(
            "readiness", "200 only when every backend answers within 2 s",
            _responses({"200": _json(_ref("Readiness"), "every backend answered"),
                        "503": _json(_ref("Readiness"), "some backends did not answer: see failing")}))},
        "/metrics": {"get": _op("metrics", "Prometheus metrics", _responses(text_ok))},
        "/metrics.json": {"get": _op(
            "metricsJson", "the same figures and the last five minutes, for the dashboard",
            _responses({"200": _json(_ref("MetricsSnapshot"), "a snapshot")}))},
        "/dashboard": {"get": _op(
            "dashboard", "a live page over /metrics.json", _responses(_html("the page")))},
        **{f"/{name}": {"get": _op(
            name.replace(".", "_"), f"the dashboard's {name.rsplit('.', 1)[1].upper()} (cached for a day)",
            _responses({"200": {"description": name, "headers": _headers(),
                                "content": {media.split(";")[0]: {"schema": {"type": "string"}}}},
                        "304": {"description": "not modified (If-None-Match)", "headers": _headers()}}))}
           for name, media in DASHBOARD_ASSETS.items()},
        "/openapi.json": {"get": _op(
            "openapi", "this document",
            _responses({"200": _json({"type": "object", "required": ["openapi", "paths"]},
                                     "OpenAPI 3.1")}))},
        "/email/unsubscribe/{token}": {
            "get": _op("unsubscribePage", "the page of a notification email's unsubscribe link: a"
                                          " button that POSTs (a fetch alone unsubscribes nobody)",
                       _responses(_html("the page"), 404), parameters=[UNSUBSCRIBE_TOKEN]),
            "post": _op("unsubscribe", "one-click unsubscribe (RFC 8058): no more notification emails"
                                       " to this link's person",
                        _responses(_html("done"), 404), parameters=[UNSUBSCRIBE_TOKEN]),
        },
        "/admin/{op}": {"post": _op(
            "admin", "an operation that must run inside the serving process (see `homefeed audit`,"
                     " `rebuild`, `replay`)",
            _responses({"200": _json(_ref("AdminResult"), "the operation's answer")},
                       400, 401, 404, 413, 422, 503),
            parameters=[{"name": "op", "in": "path", "required": True,
                         "schema": {"type": "string", "enum": list(ADMIN_OPS)},
                         "description": "anything else answers 404"}],
            security=[{"admin": []}],
            requestBody=_json_body(_ref("AdminRequest")))},
        **_web_paths(),
    }


def _web_paths() -> dict[str, Any]:
    """The web client (``entrypoints/web``): one HTML shell at every address it shows, and its
    files under a versioned prefix."""
    from homefeed.entrypoints import web
    from homefeed.entrypoints.web.routes import CLIENT_PATHS

    def shell(path: str) -> dict[str, Any]:
        names = re.findall(r"{(\w+)(?::\w+)?}", path)
        params = [{"name": n, "in": "path", "required": True,
                   "schema": ID if n == "status_id" else {"type": "string"},
                   "description": "read by the client; any value answers the page"} for n in names]
        op_id = "webClient" + "".join(w.title() for w in re.findall(r"[a-z]+", path.replace(":digits", "")))
        return {"get": _op(op_id, "the web client (the same page at every client address; the"
                                  " client draws the address)",
                           _responses({**_html("the web client's page"),
                                       "304": {"description": "not modified (If-None-Match)",
                                               "headers": _headers()}}, 404),
                           parameters=params)}

    web_asset = {"get": _op(
        "webClientFile", "a module or the style sheet of the web client, cached for a year (its"
                         " name changes with any file's content)",
        _responses({"200": {"description": "the file", "headers": _headers(),
                            "content": {"text/javascript": {"schema": {"type": "string"}},
                                        "text/css": {"schema": {"type": "string"}}}},
                    "304": {"description": "not modified (If-None-Match)", "headers": _headers()}}, 404),
        parameters=[
            {"name": "version", "in": "path", "required": True,
             "schema": {"type": "string", "enum": [web.version()]},
             "description": "the digest of this release's files (any other: 404)"},
            {"name": "name", "in": "path", "required": True,
             "schema": {"type": "string", "enum": sorted(web.assets())},
             "description": "a file of the web client (any other: 404)"},
        ])}
    return {**{re.sub(r":\w+}", "}", p): shell(p) for p in CLIENT_PATHS}, "/web/{version}/{name}": web_asset}


def _user_paths() -> dict[str, Any]:
    register_body = {
        "type": "object", "required": ["handle"],
        "properties": {"handle": HANDLE,
                       "display_name": {**DISPLAY_NAME,
                                        "description": "default: the handle; no control characters"}},
    }
    return {
        "/v1/users": {"post": _op(
            "register", "register; the answer holds the bearer token",
            _responses({"201": {**_json(_ref("Registered"), "registered; keep the token", replayable=True),
                                "links": _links("handle", "$response.body#/handle", "getUser", "follow",
                                                "followers", "following", "userPosts")}},
                       400, 409, 413, 422, *_V1),
            parameters=[IDEMPOTENCY_PARAM],
            requestBody=_json_body(register_body))},
        "/v1/users/{handle}": {"get": _op(
            "getUser", "profile with counts",
            _responses({"200": _json(_ref("Profile"), "the profile")}, 404, *_V1),
            parameters=[HANDLE_PARAM])},
        "/v1/users/{handle}/follow": {
            "post": _op("follow", "follow (idempotent)",
                        _responses({"200": _json(_ref("Following"), "following", replayable=True)},
                                   400, 401, 404, 413, 422, *_V1),
                        parameters=[HANDLE_PARAM, IDEMPOTENCY_PARAM], security=BEARER),
            "delete": _op("unfollow", "unfollow (idempotent)",
                          _responses({"200": _json(_ref("Following"), "not following")},
                                     401, 404, 422, *_V1),
                          parameters=[HANDLE_PARAM], security=BEARER),
        },
        "/v1/users/{handle}/followers": {"get": _op(
            "followers", "followers, newest follow first",
            _responses({"200": _json(_ref("UserPage"), "a page")}, 404, 422, *_V1),
            parameters=[HANDLE_PARAM, *LIST_PARAMS])},
        "/v1/users/{handle}/following": {"get": _op(
            "following", "followed accounts, newest follow first",
            _responses({"200": _json(_ref("UserPage"), "a page")}, 404, 422, *_V1),
            parameters=[HANDLE_PARAM, *LIST_PARAMS])},
        "/v1/users/{handle}/posts": {"get": _op(
            "userPosts", "one user's posts, newest first",
            _responses({"200": _json(_ref("PostPage"), "a page")}, 404, 422, *_V1),
            parameters=[HANDLE_PARAM, *LIST_PARAMS])},
    }


def _post_paths(max_post_length: int) -> dict[str, Any]:
    post_body = {
        "type": "object", "required": ["text"],
        "properties": {"text": {
            "type": "string", "minLength": 1, "maxLength": max_post_length, "pattern": "\\S",
            "description": f"1-{max_post_length} code points with a visible character (whitespace"
                           " and format characters such as U+200B alone are refused); control"
                           " characters other than tab, newline and carriage return, and lone"
                           " surrogates, are refused (422)"},
            "in_reply_to_id": {**ID, "description": "a reply to this post (404 when there is no such post)"}},
    }
    return {
        "/v1/posts": {"post": _op(
            "createPost", "post",
            _responses({"201": {**_json(_ref("Post"), "the post, durable", replayable=True),
                                "links": _links("post_id", "$response.body#/id", "getPost", "deletePost")}},
                       400, 401, 404, 413, 422, *_V1),
            parameters=[IDEMPOTENCY_PARAM], security=BEARER, requestBody=_json_body(post_body))},
        "/v1/posts/{post_id}": {
            "get": _op("getPost", "one post",
                       _responses({"200": _json(_ref("Post"), "the post")}, 404, *_V1),
                       parameters=[POST_ID_PARAM]),
            "delete": _op("deletePost", "delete your own post",
                          _responses({"204": {"description": "deleted", "headers": _headers()}},
                                     401, 403, 404, *_V1),
                          parameters=[POST_ID_PARAM], security=BEARER),
        },
        "/v1/timelines/home": {"get": _op(
            "homeTimeline", "the caller's home timeline, newest first",
            _responses({"200": _json(_ref("PostPage"), "a page")}, 401, 422, *_V1),
            parameters=LIST_PARAMS, security=BEARER)},
        "/v1/search/posts": {"get": _op(
            "searchPosts", "posts containing every word of q, newest first",
            _responses({"200": _json(_ref("PostPage"), "a page")}, 422, *_V1),
            parameters=[{"name": "q", "in": "query", "required": True, "schema": {"type": "string"},
                         "description": "words (letters, digits, _; led by # or @ for tags);"
                                        " everything else only separates words: no query syntax."
                                        f" No word at all, or more than {MAX_QUERY_CHARS} characters: 422"},
                        *LIST_PARAMS])},
    }


from homefeed.entrypoints.mastodon.openapi_oauth import oauth_paths  # noqa: E402


@lru_cache(maxsize=8)
def _document(max_post_length: int) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "homefeed",
            "version": __version__,
            "description": "Home timelines with hybrid fan-out, user timelines and search."
                           " Every error is {\"error\": {\"code\", \"message\"}} and changes nothing.",
        },
        "components": _components(max_post_length),
        "paths": {**_ops_paths(), **_user_paths(), **_post_paths(max_post_length), **oauth_paths(),
                  **mastodon_paths(max_post_length)},
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    return _document(settings.max_post_length)
