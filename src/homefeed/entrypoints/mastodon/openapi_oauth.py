"""The OpenAPI paths of accounts and OAuth 2 (``entrypoints/mastodon/oauth.py`` and
``accounts_auth.py``), merged into ``/openapi.json`` by ``entrypoints/openapi.py``.

Self-contained (schemas inline): errors here are Mastodon's ``{"error": text}`` (and
``error_description`` on ``/oauth/token`` and ``/oauth/revoke``), not homefeed's shape."""

from __future__ import annotations

from typing import Any

from homefeed.entrypoints.mastodon.openapi_client import MASTODON_ERROR  # one definition

_RID = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
_RID_PARAM = {"$ref": "#/components/parameters/X-Request-Id"}
_FORM = "application/x-www-form-urlencoded"
_STR = {"type": "string"}
#: An absolute URI (or ``urn:ietf:wg:oauth:2.0:oob``), without a fragment; newlines separate several.
_URI = {"type": "string", "format": "uri"}


def _answer(description: str, schema: dict[str, Any] | None = None, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "headers": dict(_RID),
            "content": {media: {"schema": schema if schema is not None else {"type": "object"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _answer("refused (Mastodon's error shape)", MASTODON_ERROR) for s in (*statuses, 500)}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {_FORM: {"schema": schema}, "application/json": {"schema": schema}}}


def _op(op_id: str, summary: str, ok: dict[str, Any], errors: tuple[int, ...], *, html: bool = False,
        **extra: Any) -> dict[str, Any]:
    """``html``: the errors are HTML pages (the authorize page, shown to a person)."""
    errs = ({str(s): _answer("refused (an HTML page saying why)", _STR, "text/html") for s in errors}
            | _errors() if html else _errors(*errors))
    return {"operationId": op_id, "summary": summary, "parameters": [_RID_PARAM, *extra.pop("parameters", [])],
            "responses": {**ok, **errs}, **extra}


TOKEN = {"type": "object", "required": ["access_token", "token_type", "scope", "created_at"],
         "properties": {"access_token": _STR, "token_type": _STR, "scope": _STR,
                        "created_at": {"type": "integer"}, "refresh_token": _STR}}
APP = {"type": "object", "required": ["id", "name", "client_id", "client_secret", "redirect_uri"],
       "properties": {"id": _STR, "name": _STR, "client_id": _STR, "client_secret": _STR,
                      "redirect_uri": _STR, "redirect_uris": {"type": "array", "items": _STR},
                      "scopes": {"type": "array", "items": _STR}}}
ACCOUNT = {"type": "object", "required": ["id", "username", "acct", "display_name", "note", "created_at"],
           "properties": {"id": _STR, "username": _STR, "acct": _STR, "display_name": _STR, "note": _STR,
                          "created_at": _STR, "source": {"type": "object"}}}
_AUTHORIZE_QUERY = [
    {"name": n, "in": "query", "required": n == "client_id", "schema": _STR}
    for n in ("client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge",
              "code_challenge_method")
]
_HTML = {"200": _answer("the log-in or consent page", _STR, "text/html")}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def oauth_paths() -> dict[str, Any]:
    authorize = {
        "get": _op("oauthAuthorize", "the log-in and consent page (HTML)", _HTML, (400, 401, 403, 429),
                   html=True, parameters=_AUTHORIZE_QUERY),
        "post": _op("oauthAuthorizeSubmit", "submit the log-in or consent form (CSRF-protected)",
                    {**_HTML, "302": {"description": "to the app's redirect URI with code and state", "headers": dict(_RID)},
                     "303": {"description": "back to the page, or to the out-of-band code page", "headers": dict(_RID)}},
                    (400, 401, 403, 429), html=True, parameters=_AUTHORIZE_QUERY,
                    requestBody={"required": True, "content": {_FORM: {"schema": {
                        "type": "object", "properties": {"csrf": _STR, "step": _STR, "username": _STR,
                                                         "password": _STR, "decision": _STR}}}}}),
    }
    token = {"post": _op(
        "oauthToken", "grants: authorization_code (PKCE), client_credentials, refresh_token, password",
        {"200": _answer("the Token", TOKEN)}, (400, 401, 429),
        requestBody=_body({"grant_type": _STR, "client_id": _STR, "client_secret": _STR, "code": _STR,
                           "code_verifier": _STR, "redirect_uri": _STR, "refresh_token": _STR,
                           "username": _STR, "password": _STR, "scope": _STR}, ["grant_type"]))}
    revoke = {"post": _op("oauthRevoke", "revoke a token (RFC 7009)", {"200": _answer("{}")}, (400, 401),
                          requestBody=_body({"client_id": _STR, "client_secret": _STR, "token": _STR}, ["token"]))}
    paths: dict[str, Any] = {
        "/api/v1/apps": {"post": _op(
            "createApp", "register an OAuth app (its client_secret is shown this once)",
            {"200": _answer("the CredentialApplication", APP)}, (400, 415, 422),
            requestBody=_body({"client_name": _STR, "redirect_uris": {"oneOf": [_URI, {"type": "array", "items": _URI}]},
                               "scopes": _STR, "website": _STR}, ["client_name", "redirect_uris"]))},
        "/oauth/authorize": authorize,
        "/oauth/authorize/": {m: {**op, "operationId": op["operationId"] + "Slash"} for m, op in authorize.items()},
        "/oauth/authorize/native": {"get": _op(
            "oauthNativeCode", "the out-of-band code page (read-only input)", _HTML, (404,), html=True,
            parameters=[{"name": "code", "in": "query", "required": True, "schema": _STR}])},
        "/oauth/token": token,
        "/oauth/token/": {"post": {**token["post"], "operationId": "oauthTokenSlash"}},
        "/oauth/revoke": revoke,
        "/oauth/revoke/": {"post": {**revoke["post"], "operationId": "oauthRevokeSlash"}},
        "/.well-known/oauth-authorization-server": {"get": _op(
            "oauthMetadata", "authorization server metadata (RFC 8414), absolute URLs",
            {"200": _answer("the metadata")}, ()) | {"responses": {
                "200": _answer("the metadata"),
                "500": _answer("a bug", {"$ref": "#/components/schemas/Error"})}}},
        "/api/v1/accounts": {"post": _op(
            "registerAccount", "sign up (needs an app token with write:accounts); answers a Token",
            {"200": _answer("the new user's Token", TOKEN)}, (400, 401, 403, 415, 422, 429), security=_BEARER,
            requestBody=_body({"username": _STR, "email": _STR, "password": _STR, "agreement": {},
                               "locale": _STR, "display_name": _STR}, ["username", "email", "password"]))},
        "/api/v1/accounts/verify_credentials": {"get": _op(
            "verifyCredentials", "the caller's CredentialAccount (read:accounts or profile)",
            {"200": _answer("the CredentialAccount", ACCOUNT)}, (401, 403), security=_BEARER)},
        "/api/v1/accounts/update_credentials": {"patch": _op(
            "updateCredentials", "change display_name and note (write:accounts)",
            {"200": _answer("the CredentialAccount", ACCOUNT)}, (400, 401, 403, 415, 422), security=_BEARER,
            requestBody={"required": False, "content": {_FORM: {"schema": {"type": "object", "properties": {
                "display_name": _STR, "note": _STR}}}, "application/json": {"schema": {"type": "object"}}}})},
    }
    return paths
