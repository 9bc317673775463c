"""``Idempotency-Key`` on POST: a retried request with the same key gets the first answer
and writes nothing new.

Why the record store keeps the keys, in the write's own transaction: a key remembered after
the write could be lost by a crash between the two (the retry then posts twice, or a retried
registration answers 409 and the token is lost); a key remembered before the write could
outlive a write that failed. So the answer is rendered from what the write creates (ids are
made before the transaction) and stored with it; a write whose key is already stored rolls
back (``IdempotencyKeyTaken``), and the stored answer is returned instead.

Only successful answers are remembered: a 4xx changes nothing and is not stored, so a retry
runs again (draft-ietf-httpapi-idempotency-key-header allows this).

A key is scoped to its caller (the user id; "anon" for registration, which has no caller),
and bound to the request it was first used with by a fingerprint: the same key with another
method, path or body is refused (422) rather than answered with another request's answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

from homefeed.domain.errors import (Conflict, HomefeedError, IdempotencyKeyReused, IdempotencyKeyTaken,
                                    InvalidIdempotencyKey, Unavailable)
from homefeed.ports import IdempotencyRecord, RecordStore

log = logging.getLogger("homefeed.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: The scope of keys sent without a caller (registration).
ANONYMOUS = "anon"
#: At most this long between two purges of expired keys.
PURGE_EVERY_SECONDS = 600.0
# Lookup, write, and on a taken key (an expired one not purged yet) purge and again.
_ATTEMPTS = 3


def check_key(values: list[str]) -> str | None:
    """The ``Idempotency-Key`` among a request's header ``values`` (None: not sent): one
    value of 1 to 255 printable ASCII characters, no spaces."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidIdempotencyKey(f"send one {HEADER} header, not {len(values)}")
    key = values[0]
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all("\x21" <= ch <= "\x7e" for ch in key):
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters without spaces"
        )
    return key


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    """What makes two requests "the same request": method, path and the body's bytes."""
    h = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogatepass")):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    h.update(body)
    return h.digest()


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request that sent a key: where its answer is stored and what it must match."""

    scope_key: str
    fingerprint: bytes
    #: The status a success answers with.
    status: int

    @classmethod
    def of(cls, scope: str, key: str, method: str, path: str, body: bytes, status: int) -> "IdempotentRequest":
        return cls(f"{scope}:{key}", fingerprint(method, path, body), status)

    def record(self, answer: Callable[[Any], dict[str, Any]]) -> IdempotencyRecord:
        """The record a write stores: ``answer`` makes the answer's JSON body from what the
        write creates (see ``IdempotencyRecord.render``)."""
        return IdempotencyRecord(
            self.scope_key, self.fingerprint, self.status, lambda created: encode(answer(created))
        )


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    #: True: the stored answer to an earlier request with the key.
    replayed: bool


def encode(answer: dict[str, Any]) -> bytes:
    """The bytes of an answer, the same for the first request and every replay."""
    return orjson.dumps(answer)


Write = Callable[[IdempotentRequest], Awaitable[dict[str, Any]]]


class IdempotentWrites:
    """Runs a keyed write at most once per key and retention period, and purges old keys."""

    def __init__(self, store: RecordStore, retention_seconds: float) -> None:
        self.store = store
        self.retention_seconds = retention_seconds

    async def run(self, request: IdempotentRequest, write: Write) -> Reply:
        """The stored answer to ``request``'s key, else ``write(request)``'s (which must pass
        ``request.record(...)`` to the record store). Raises IdempotencyKeyReused if the key
        was first used with another request; whatever ``write`` raises (nothing stored),
        unless a duplicate under the key answered meanwhile: then its answer."""
        for _ in range(_ATTEMPTS):
            stored = await self.stored(request)
            if stored is not None:
                return stored
            try:
                answer = await write(request)
            except IdempotencyKeyTaken:
                # A duplicate committed first (the lookup now finds its answer), or an expired
                # key not purged yet is in the way (purged here).
                await self.store.purge_idempotency_keys(self.retention_seconds)
                continue
            except Conflict:
                # A duplicate that committed first may be what this write conflicts with (a
                # registration whose handle the duplicate just took): then answer as it did.
                stored = await self.stored(request)
                if stored is not None:
                    return stored
                raise
            return Reply(request.status, encode(answer), replayed=False)
        raise Unavailable(f"the {HEADER} could not be stored; retry the request")

    async def stored(self, request: IdempotentRequest) -> Reply | None:
        row = await self.store.idempotent_reply(request.scope_key, self.retention_seconds)
        if row is None:
            return None
        first_fingerprint, status, body = row
        if first_fingerprint != request.fingerprint:
            raise IdempotencyKeyReused(
                f"this {HEADER} was used with another request (method, path or body);"
                " use a new key for a new request"
            )
        return Reply(status, body, replayed=True)

    @property
    def purge_interval(self) -> float:
        """Often enough that a key is gone soon after it expires, at most every 10 minutes."""
        return max(1.0, min(PURGE_EVERY_SECONDS, self.retention_seconds / 2))

    async def purge_forever(self) -> None:
        """Delete expired keys now and every ``purge_interval`` until cancelled. A failed
        purge is logged and tried again next time (lookups ignore expired keys anyway)."""
        while True:
            try:
                purged = await self.store.purge_idempotency_keys(self.retention_seconds)
                if purged:
                    log.info("purged %d expired idempotency keys", purged)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be down for a while: not fatal here
                log.warning("purging expired idempotency keys failed: %s", exc)
            await asyncio.sleep(self.purge_interval)
