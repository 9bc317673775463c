"""Every error a client can be answered with, as an exception carrying its ``code`` (stable,
for programs) and HTTP ``status``; the message is for people. The HTTP layer turns any
``HomefeedError`` into ``{"error": {"code", "message"}}`` with that status, so raising one
anywhere is how a request is refused (and a refused request changes nothing).

Every error class of homefeed is here: the ones answered to a client (each with its code)
and, at the end, the ones an operator meets (configuration and commands: a one-line
message and exit status 2, never an HTTP answer).

=========================== ====== ==========================================================
code                        status class
=========================== ====== ==========================================================
``invalid_json``            400    :class:`BadJson` (also: body not UTF-8)
``bad_request``             400    Starlette's own 400s (``entrypoints/http.py``)
``invalid_idempotency_key`` 400    :class:`InvalidIdempotencyKey`
``unauthorized``            401    :class:`Unauthorized`
``forbidden``               403    :class:`Forbidden`
``not_found``               404    :class:`NotFound` (and unmatched routes)
``method_not_allowed``      405    Starlette's own 405s
``conflict``                409    :class:`Conflict`
``idempotency_key_in_use``  409    :class:`IdempotencyKeyTaken` (a Conflict; the service
                                   layer answers the stored reply instead)
``payload_too_large``       413    :class:`PayloadTooLarge`
``unsupported_media_type``  415    Starlette's own 415s
``invalid_input``           422    :class:`InvalidInput`
``idempotency_key_reused``  422    :class:`IdempotencyKeyReused`
``rate_limited``            429    ``entrypoints.ratelimit`` (answered by the middleware)
``internal``                500    an unexpected exception: a bug, never bad input
``unavailable``             503    :class:`Unavailable`; :class:`CacheUnavailable` and
                                   :class:`LeadershipLost` subclass it
=========================== ====== ==========================================================

For operators (not answered over HTTP; the CLI prints one line and exits with status 2):

=========================== ================================================================
class                       raised when
=========================== ================================================================
:class:`ProfileError`       a configuration that cannot work (``bootstrap.plan``, URLs)
:class:`WrongDeployment`    a ProfileError: the NATS stream belongs to another deployment
:class:`OpsError`           an operator command cannot do what was asked (``entrypoints/ops``)
=========================== ================================================================
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


class IdempotencyKeyTaken(Conflict):
    """The write's ``scope_key`` is already stored (a duplicate request committed first, or
    an expired key not purged yet): the write was rolled back and changed nothing. Raised
    by the record stores (``RecordStore.idempotent_reply``)."""

    code = "idempotency_key_in_use"


class InvalidIdempotencyKey(HomefeedError):
    """The ``Idempotency-Key`` header is malformed (``service_layer.idempotency``)."""

    code = "invalid_idempotency_key"
    status = 400


class IdempotencyKeyReused(HomefeedError):
    """The key was used before with another request (``service_layer.idempotency``)."""

    code = "idempotency_key_reused"
    status = 422


class CacheUnavailable(Unavailable):
    """The timeline cache did not answer: the read goes to the record store instead
    (``service_layer.feed``)."""


class LeadershipLost(Unavailable):
    """The connection holding a leader lock was lost: another process may now lead
    (``adapters.pg_db``)."""


# -- for operators: configuration and commands ---------------------------------------------


class ProfileError(ValueError):
    """A configuration that cannot work; the message says what to set instead."""


class WrongDeployment(ProfileError):
    """The stream this process was pointed at belongs to another deployment. A
    configuration error, not an outage: retrying cannot help, so it is not ``Unavailable``."""


class OpsError(Exception):
    """A command cannot do what was asked; the message says why (exit status 2)."""
