"""Every error a client can be answered with, as an exception carrying its ``code`` (stable,
for programs) and HTTP ``status``; the message is for people. The HTTP layer turns any
``HomefeedError`` into ``{"error": {"code", "message"}}`` with that status, so raising one
anywhere is how a request is refused (and a refused request changes nothing).

The codes, in one place (the classes not defined here subclass these and live next to the
code that raises them):

=========================== ====== ==========================================================
code                        status class
=========================== ====== ==========================================================
``invalid_json``            400    :class:`BadJson` (also: body not UTF-8)
``bad_request``             400    Starlette's own 400s (``entrypoints/http.py``)
``invalid_idempotency_key`` 400    ``service_layer.idempotency.InvalidIdempotencyKey``
``unauthorized``            401    :class:`Unauthorized`
``forbidden``               403    :class:`Forbidden`
``not_found``               404    :class:`NotFound` (and unmatched routes)
``method_not_allowed``      405    Starlette's own 405s
``conflict``                409    :class:`Conflict`
``payload_too_large``       413    :class:`PayloadTooLarge`
``unsupported_media_type``  415    Starlette's own 415s
``invalid_input``           422    :class:`InvalidInput`
``idempotency_key_reused``  422    ``service_layer.idempotency.IdempotencyKeyReused``
``rate_limited``            429    ``entrypoints.ratelimit`` (answered by the middleware)
``internal``                500    an unexpected exception: a bug, never bad input
``unavailable``             503    :class:`Unavailable`; ``service_layer.feed.CacheUnavailable``
                                   and ``adapters.pg_db.LeadershipLost`` subclass it
=========================== ====== ==========================================================
"""

from __future__ import annotations


class HomefeedError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadJson(HomefeedError):
    """The request body is not JSON (or not UTF-8, which JSON requires: RFC 8259 8.1)."""

    code = "invalid_json"
    status = 400


class Unauthorized(HomefeedError):
    code = "unauthorized"
    status = 401


class Forbidden(HomefeedError):
    code = "forbidden"
    status = 403


class NotFound(HomefeedError):
    code = "not_found"
    status = 404


class Conflict(HomefeedError):
    code = "conflict"
    status = 409


class PayloadTooLarge(HomefeedError):
    """The request body is larger than ``Settings.max_body_bytes``."""

    code = "payload_too_large"
    status = 413


class InvalidInput(HomefeedError):
    code = "invalid_input"
    status = 422


class Unavailable(HomefeedError):
    code = "unavailable"
    status = 503
