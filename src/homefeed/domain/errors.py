"""Domain errors. Each carries the HTTP-independent ``code``; the HTTP layer maps it to a status."""

from __future__ import annotations


class HomefeedError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(HomefeedError):
    code = "invalid_input"
    status = 422


class NotFound(HomefeedError):
    code = "not_found"
    status = 404


class Conflict(HomefeedError):
    code = "conflict"
    status = 409


class Forbidden(HomefeedError):
    code = "forbidden"
    status = 403


class Unauthorized(HomefeedError):
    code = "unauthorized"
    status = 401


class Unavailable(HomefeedError):
    code = "unavailable"
    status = 503
