"""The OpenAPI 3.1 document served at ``/openapi.json``, written by hand so that it says
exactly what the API promises (limits included) and costs nothing on the request path."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from homefeed import __version__
from homefeed.config import Settings

ID = {"type": "string", "pattern": "^[0-9]{1,19}$", "description": "64-bit time-ordered id, as a string"}
HANDLE = {"type": "string", "pattern": "^[A-Za-z0-9_]{1,30}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "invalid JSON",
        401: "missing or invalid bearer token",
        403: "not allowed",
        404: "not found",
        409: "conflict",
        413: "body too large",
        422: "invalid input",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


LIST_PARAMS = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
    {"name": "before", "in": "query", "required": False, "schema": ID,
     "description": "exclusive cursor: the `next` of the previous page"},
]
HANDLE_PARAM = {"name": "handle", "in": "path", "required": True, "schema": {"type": "string"}}
POST_ID_PARAM = {"name": "post_id", "in": "path", "required": True, "schema": {"type": "string"}}
BEARER = [{"bearer": []}]


@lru_cache(maxsize=8)
def _document(max_post_length: int) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "homefeed",
            "version": __version__,
            "description": "Home timelines with hybrid fan-out, user timelines and search.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
                "UserRef": {
                    "type": "object",
                    "required": ["id", "handle", "display_name"],
                    "properties": {"id": ID, "handle": HANDLE, "display_name": {"type": "string"}},
                },
                "Registered": {
                    "type": "object",
                    "required": ["id", "handle", "display_name", "token"],
                    "properties": {"id": ID, "handle": HANDLE, "display_name": {"type": "string"},
                                   "token": {"type": "string"}},
                },
                "Profile": {
                    "type": "object",
                    "required": ["id", "handle", "display_name", "followers_count",
                                 "following_count", "posts_count"],
                    "properties": {
                        "id": ID, "handle": HANDLE, "display_name": {"type": "string"},
                        "followers_count": {"type": "integer", "minimum": 0},
                        "following_count": {"type": "integer", "minimum": 0},
                        "posts_count": {"type": "integer", "minimum": 0},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
                "Post": {
                    "type": "object",
                    "required": ["id", "author", "text", "created_at"],
                    "properties": {
                        "id": ID,
                        "author": {"type": "object", "required": ["id", "handle"],
                                   "properties": {"id": ID, "handle": HANDLE}},
                        "text": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                    },
                },
                "PostPage": {
                    "type": "object",
                    "required": ["posts", "next"],
                    "properties": {"posts": {"type": "array", "items": _ref("Post")},
                                   "next": {"oneOf": [ID, {"type": "null"}]}},
                },
                "UserPage": {
                    "type": "object",
                    "required": ["users", "next"],
                    "properties": {"users": {"type": "array", "items": _ref("UserRef")},
                                   "next": {"oneOf": [ID, {"type": "null"}]}},
                },
                "Following": {
                    "type": "object", "required": ["following"],
                    "properties": {"following": {"type": "boolean"}},
                },
            },
        },
        "paths": {
            "/healthz": {"get": {"summary": "liveness, and how far behind each consumer is",
                                 "responses": {"200": {"description": "alive"}}}},
            "/v1/users": {"post": {
                "summary": "register",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["handle"],
                    "properties": {"handle": HANDLE,
                                   "display_name": {"type": "string", "maxLength": 100}}}}}},
                "responses": {"201": _json(_ref("Registered"), "registered; keep the token"),
                              **_errors(400, 409, 413, 422)},
            }},
            "/v1/users/{handle}": {"get": {
                "summary": "profile with counts", "parameters": [HANDLE_PARAM],
                "responses": {"200": _json(_ref("Profile"), "the profile"), **_errors(404)},
            }},
            "/v1/users/{handle}/follow": {
                "post": {"summary": "follow (idempotent)", "security": BEARER,
                         "parameters": [HANDLE_PARAM],
                         "responses": {"200": _json(_ref("Following"), "following"),
                                       **_errors(401, 404, 422)}},
                "delete": {"summary": "unfollow (idempotent)", "security": BEARER,
                           "parameters": [HANDLE_PARAM],
                           "responses": {"200": _json(_ref("Following"), "not following"),
                                         **_errors(401, 404, 422)}},
            },
            "/v1/users/{handle}/followers": {"get": {
                "summary": "followers, newest follow first", "parameters": [HANDLE_PARAM, *LIST_PARAMS],
                "responses": {"200": _json(_ref("UserPage"), "a page"), **_errors(404, 422)},
            }},
            "/v1/users/{handle}/following": {"get": {
                "summary": "followed accounts, newest follow first",
                "parameters": [HANDLE_PARAM, *LIST_PARAMS],
                "responses": {"200": _json(_ref("UserPage"), "a page"), **_errors(404, 422)},
            }},
            "/v1/users/{handle}/posts": {"get": {
                "summary": "one user's posts, newest first", "parameters": [HANDLE_PARAM, *LIST_PARAMS],
                "responses": {"200": _json(_ref("PostPage"), "a page"), **_errors(404, 422)},
            }},
            "/v1/posts": {"post": {
                "summary": "post", "security": BEARER,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["text"],
                    "properties": {"text": {"type": "string", "minLength": 1,
                                            "maxLength": max_post_length}}}}}},
                "responses": {"201": _json(_ref("Post"), "the post, durable"),
                              **_errors(400, 401, 413, 422)},
            }},
            "/v1/posts/{post_id}": {
                "get": {"summary": "one post", "parameters": [POST_ID_PARAM],
                        "responses": {"200": _json(_ref("Post"), "the post"), **_errors(404)}},
                "delete": {"summary": "delete your own post", "security": BEARER,
                           "parameters": [POST_ID_PARAM],
                           "responses": {"204": {"description": "deleted"},
                                         **_errors(401, 403, 404)}},
            },
            "/v1/timelines/home": {"get": {
                "summary": "the caller's home timeline, newest first", "security": BEARER,
                "parameters": LIST_PARAMS,
                "responses": {"200": _json(_ref("PostPage"), "a page"), **_errors(401, 422)},
            }},
            "/v1/search/posts": {"get": {
                "summary": "posts containing every word of q, newest first",
                "parameters": [{"name": "q", "in": "query", "required": True,
                                "schema": {"type": "string"}}, *LIST_PARAMS],
                "responses": {"200": _json(_ref("PostPage"), "a page"), **_errors(422)},
            }},
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    return _document(settings.max_post_length)
