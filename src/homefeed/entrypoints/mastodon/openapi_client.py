"""The Mastodon client API's part of the OpenAPI document (``entrypoints/openapi.py`` merges
``mastodon_paths``). Entities are documented by name (docs.joinmastodon.org/entities; the
schemas in tests/mastodon_schemas check them); errors are Mastodon's ``{"error": "..."}``."""

from __future__ import annotations

from typing import Any

from homefeed.domain.mastodon.pagination import DEFAULT_LIMIT, MAX_LIMIT

#: Mastodon's error shape (its Error entity).
MASTODON_ERROR: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_HEADERS = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
_REQUEST_ID = {"$ref": "#/components/parameters/X-Request-Id"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_OPTIONAL: list[dict[str, list[str]]] = [{"bearer": []}, {}]  # a token optional
_TEXT = {400: "bad request", 401: "The access token is invalid",
         403: "This action is outside the authorized scopes", 404: "Record not found",
         413: "body too large", 422: "Validation failed", 429: "Too many requests",
         500: "a bug", 503: "a backend is unavailable"}


def _ok(entity: str, array: bool = False, link: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "description": f"Mastodon {entity} entity"}
    if array:
        schema = {"type": "array", "items": schema}
    headers: dict[str, Any] = dict(_HEADERS)
    if link:
        headers["Link"] = {"description": '<URL?max_id=ID>; rel="next", <URL?min_id=ID>; rel="prev"',
                           "schema": {"type": "string"}}
    return {"200": {"description": entity, "headers": headers,
                    "content": {"application/json": {"schema": schema}}}}


def _op(op_id: str, summary: str, ok: dict[str, Any], errors: tuple[int, ...], *,
        params: list[dict[str, Any]] | None = None, auth: list | None = None,
        body: bool | dict[str, Any] = False) -> dict[str, Any]:
    responses = dict(ok)
    for status in (*errors, 503, 500):
        responses[str(status)] = {"description": _TEXT[status], "headers": dict(_HEADERS),
                                  "content": {"application/json": {"schema": MASTODON_ERROR}}}
    out: dict[str, Any] = {"operationId": op_id, "summary": summary,
                           "parameters": [*(params or []), _REQUEST_ID], "responses": responses}
    if auth is not None:
        out["security"] = auth
    if body:
        props = body if isinstance(body, dict) else {"type": "object", "additionalProperties": True}
        out["requestBody"] = {"required": False, "content": {
            "application/json": {"schema": props},
            "application/x-www-form-urlencoded": {"schema": props}}}
    return out


def _q(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_PAGE = [_q("limit", {"type": "integer", "default": DEFAULT_LIMIT, "maximum": MAX_LIMIT}),
         _q("max_id"), _q("since_id"), _q("min_id")]
_ID = [_path("id")]


def mastodon_paths(max_post_length: int) -> dict[str, Any]:
    stubs = {
        "/api/v1/custom_emojis": ("customEmojis", "CustomEmoji", True, None),
        "/api/v1/trends/tags": ("trendingTags", "Tag", True, None),
        "/api/v1/announcements": ("announcements", "Announcement", True, _BEARER),
        "/api/v1/preferences": ("preferences", "Preferences", False, _BEARER),
        "/api/v2/filters": ("filtersV2", "Filter", True, _BEARER),
        "/api/v1/lists": ("lists", "List", True, _BEARER),
        "/api/v1/follow_requests": ("followRequests", "Account", True, _BEARER),
        "/api/v1/blocks": ("blocks", "Account", True, _BEARER),
        "/api/v1/mutes": ("mutes", "Account", True, _BEARER),
    }
    paths: dict[str, Any] = {
        path: {"get": _op(op, f"empty until the feature exists: {entity}", _ok(entity, array),
                          (401, 403) if auth else (), auth=auth)}
        for path, (op, entity, array, auth) in stubs.items()
    }
    for suffix, slash in (("", ""), ("Slash", "/")):
        paths[f"/api/v1/instance{slash}"] = {"get": _op(f"instanceV1{suffix}", "the instance (v1)", _ok("Instance"), ())}
        paths[f"/api/v2/instance{slash}"] = {"get": _op(f"instanceV2{suffix}", "the instance (v2)", _ok("Instance"), ())}
    paths["/.well-known/nodeinfo"] = {"get": _op("nodeinfoLinks", "where NodeInfo is", _ok("NodeInfo links"), ())}
    paths["/nodeinfo/2.0"] = {"get": _op("nodeinfo", "NodeInfo 2.0 (software homefeed)", _ok("NodeInfo"), ())}
    paths["/api/v1/accounts/lookup"] = {"get": _op("lookupAccount", "an account by acct", _ok("Account"), (404, 422),
                                                   params=[_q("acct")])}
    paths["/api/v1/accounts/relationships"] = {"get": _op(
        "relationships", "the caller's relationships", _ok("Relationship", True), (401, 403),
        params=[_q("id[]", {"type": "array", "items": {"type": "string"}})], auth=_BEARER)}
    paths["/api/v1/accounts/{id}"] = {"get": _op("getAccount", "one account", _ok("Account"), (404,), params=_ID)}
    paths["/api/v1/accounts/{id}/statuses"] = {"get": _op(
        "accountStatuses", "an account's statuses", _ok("Status", True, True), (401, 403, 404, 422),
        params=[*_ID, *_PAGE, _q("exclude_replies"), _q("only_media"), _q("pinned")], auth=_OPTIONAL)}
    for name in ("followers", "following"):
        paths[f"/api/v1/accounts/{{id}}/{name}"] = {"get": _op(
            f"account_{name}", f"an account's {name}", _ok("Account", True, True), (404, 422),
            params=[*_ID, _q("limit", {"type": "integer"}), _q("max_id")])}
    for name in ("follow", "unfollow"):
        paths[f"/api/v1/accounts/{{id}}/{name}"] = {"post": _op(
            f"account_{name}", name, _ok("Relationship"), (400, 401, 403, 404, 413, 422),
            params=_ID, auth=_BEARER, body=True)}
    paths["/api/v1/statuses"] = {"post": _op(
        "createStatus", "post a status (public or unlisted); Idempotency-Key honoured",
        _ok("Status"), (400, 401, 403, 413, 422),
        params=[{"$ref": "#/components/parameters/Idempotency-Key"}], auth=_BEARER, body={
            "type": "object", "required": ["status"], "additionalProperties": True,
            "properties": {
                "status": {"type": "string", "minLength": 1, "maxLength": max_post_length,
                           "description": f"1-{max_post_length} code points with a visible character;"
                                          " control characters refused (422)"},
                "visibility": {"enum": ["public", "unlisted", "private", "direct"],
                               "description": "public (default) or unlisted; private and direct: 422"},
                "in_reply_to_id": {"type": "string", "description": "a reply to this status"
                                   " (404 when it names no status)"}}})}
    paths["/api/v1/statuses"]["post"]["responses"]["404"] = {
        "description": "in_reply_to_id names no status", "headers": dict(_HEADERS),
        "content": {"application/json": {"schema": MASTODON_ERROR}}}
    paths["/api/v1/statuses/{id}"] = {
        "get": _op("getStatus", "one status", _ok("Status"), (401, 403, 404), params=_ID, auth=_OPTIONAL),
        "delete": _op("deleteStatus", "delete your status; answers it with its text", _ok("Status"),
                      (401, 403, 404), params=_ID, auth=_BEARER),
    }
    paths.update(_conversation_paths())
    paths["/api/v1/timelines/home"] = {"get": _op(
        "mastodonHome", "the home timeline", _ok("Status", True, True), (401, 403, 422), params=_PAGE, auth=_BEARER)}
    paths["/api/v1/timelines/public"] = {"get": _op(
        "publicTimeline", "public statuses of everyone", _ok("Status", True, True), (401, 403, 422),
        params=[*_PAGE, _q("local"), _q("remote"), _q("only_media")], auth=_OPTIONAL)}
    paths["/api/v1/timelines/tag/{hashtag}"] = {"get": _op(
        "tagTimeline", "public statuses with a hashtag", _ok("Status", True, True), (401, 403, 422),
        params=[_path("hashtag"), *_PAGE], auth=_OPTIONAL)}
    paths["/api/v2/search"] = {"get": _op(
        "searchV2", "accounts, statuses and hashtags", _ok("Search"), (401, 403, 422),
        params=[_q("q"), _q("type", {"enum": ["accounts", "statuses", "hashtags"]}), _q("resolve"),
                _q("limit", {"type": "integer"}), _q("offset", {"type": "integer"})], auth=_OPTIONAL)}
    # Discovery routes outside /api answer errors in homefeed's own shape.
    for path, item in paths.items():
        if not path.startswith("/api/"):
            for op in item.values():
                for status, response in op["responses"].items():
                    if int(status) >= 400:
                        response["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/Error"}
    return paths


_NOTIFICATION_FILTERS = [
    _q("types[]", {"type": "array", "items": {"type": "string"}}),
    _q("exclude_types[]", {"type": "array", "items": {"type": "string"}}),
    _q("account_id"),
]


def _conversation_paths() -> dict[str, Any]:
    """Threads, favourites, boosts, notifications and markers (issue 11)."""
    paths: dict[str, Any] = {}
    paths["/api/v1/statuses/{id}/context"] = {"get": _op(
        "statusContext", "the thread: ancestors oldest first, descendants depth first",
        _ok("Context"), (401, 403, 404), params=_ID, auth=_OPTIONAL)}
    for name, summary in (("favourite", "favourite a status (idempotent); the status with the new count"),
                          ("unfavourite", "undo a favourite (idempotent); the status with the new count")):
        paths[f"/api/v1/statuses/{{id}}/{name}"] = {"post": _op(
            name, summary, _ok("Status"), (400, 401, 403, 404, 413, 422),
            params=_ID, auth=_BEARER, body=True)}
    paths["/api/v1/statuses/{id}/reblog"] = {"post": _op(
        "reblog", "boost a status: the boost's wrapper status (reblog = the original)", _ok("Status"),
        (400, 401, 403, 404, 413, 422), params=_ID, auth=_BEARER, body={
            "type": "object", "additionalProperties": True,
            "properties": {"visibility": {"enum": ["public", "unlisted", "private", "direct"],
                                          "description": "public (default) or unlisted; others: 422"}}})}
    paths["/api/v1/statuses/{id}/unreblog"] = {"post": _op(
        "unreblog", "undo a boost: the original status", _ok("Status"),
        (400, 401, 403, 404, 413, 422), params=_ID, auth=_BEARER, body=True)}
    for name in ("favourited_by", "reblogged_by"):
        paths[f"/api/v1/statuses/{{id}}/{name}"] = {"get": _op(
            name, f"accounts that {name.split('_')[0]} the status", _ok("Account", True, True),
            (401, 403, 404, 422), params=[*_ID, _q("limit", {"type": "integer"}), _q("max_id")],
            auth=_OPTIONAL)}
    paths["/api/v1/favourites"] = {"get": _op(
        "favourites", "the caller's favourited statuses (Link: favourite ids)", _ok("Status", True, True),
        (401, 403, 422), params=_PAGE, auth=_BEARER)}
    paths["/api/v1/notifications"] = {"get": _op(
        "notifications", "the caller's notifications", _ok("Notification", True, True), (401, 403, 422),
        params=[_q("limit", {"type": "integer", "default": 40, "maximum": 80}), _q("max_id"),
                _q("since_id"), _q("min_id"), *_NOTIFICATION_FILTERS], auth=_BEARER)}
    paths["/api/v1/notifications/unread_count"] = {"get": _op(
        "notificationsUnreadCount", "notifications newer than the notifications marker (capped)",
        _ok("count"), (401, 403, 422),
        params=[_q("limit", {"type": "integer", "default": 100, "maximum": 1000}), *_NOTIFICATION_FILTERS],
        auth=_BEARER)}
    paths["/api/v1/notifications/{id}"] = {"get": _op(
        "notification", "one notification", _ok("Notification"), (401, 403, 404), params=_ID, auth=_BEARER)}
    paths["/api/v1/notifications/{id}/dismiss"] = {"post": _op(
        "dismissNotification", "dismiss one notification ({})", _ok("empty object"),
        (400, 401, 403, 404, 413, 422), params=_ID, auth=_BEARER, body=True)}
    paths["/api/v1/notifications/clear"] = {"post": _op(
        "clearNotifications", "dismiss every notification ({})", _ok("empty object"),
        (400, 401, 403, 413, 422), auth=_BEARER, body=True)}
    marker = {"type": "object", "properties": {"last_read_id": {"type": "string"}}}
    paths["/api/v1/markers"] = {
        "get": _op("markers", "saved read positions (timeline[]=home, notifications)", _ok("Marker"),
                   (401, 403), params=[_q("timeline[]", {"type": "array", "items": {"enum": ["home", "notifications"]}})],
                   auth=_BEARER),
        "post": _op("saveMarkers", "save read positions", _ok("Marker"), (400, 401, 403, 413, 422),
                    auth=_BEARER, body={"type": "object", "additionalProperties": True,
                                        "properties": {"home": marker, "notifications": marker}}),
    }
    return paths
