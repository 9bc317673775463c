"""Mastodon entities of the conversation features (issue 11): Notification, Marker, and the
byte parts a Status is spliced from per request (its counters, the viewer's flags).

docs.joinmastodon.org/entities/Notification, /entities/Marker, /entities/Status. The whole
Status is ``status_base`` (entities.py); what changes after a post is written (the counters,
the reader's ``favourited``/``reblogged``, the boosted original) is added here as bytes, so
the cached viewer-independent part never has to be rendered again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from homefeed.domain.ids import id_time
from homefeed.domain.mastodon.entities import iso_datetime
from homefeed.domain.model import NOTIFICATION_TYPES, Marker, PostStats

Json = dict[str, object]

#: The timelines a marker can be saved for (Mastodon's ``Marker::TIMELINES``).
MARKER_TIMELINES = ("home", "notifications")

#: Notification types that carry a ``status`` (a follow does not).
STATUS_TYPES = frozenset({"mention", "favourite", "reblog"})

# The reader's flags, as JSON object members (with the leading comma): four constants.
_FLAGS: dict[tuple[bool, bool], bytes] = {
    (f, r): b"," + orjson.dumps({"favourited": f, "reblogged": r, "muted": False,
                                 "bookmarked": False, "pinned": False, "filtered": []})[1:-1]
    for f in (False, True) for r in (False, True)
}
_ZERO = PostStats()


def status_tail(stats: PostStats | None, reblog: bytes | None, viewer: bool) -> bytes:
    """What closes a cached Status head (``{"account":...,<base members>``): the counters,
    ``reblog`` (the original's Status bytes for a boost, else null) and, for a reader, the
    reader's flags. ``stats`` None: a status the counters do not know yet (all zero)."""
    s = stats or _ZERO
    out = b',"replies_count":%d,"reblogs_count":%d,"favourites_count":%d,"reblog":%s' % (
        s.replies_count, s.reblogs_count, s.favourites_count, reblog if reblog is not None else b"null")
    if viewer:
        out += _FLAGS[(s.favourited, s.reblogged)]
    return out + b"}"


def notification_bytes(notification_id: int, type_: str, account: bytes, status: bytes | None) -> bytes:
    """The Notification entity as bytes from the actor's Account bytes and the Status bytes
    (a reblog notification's status is the ORIGINAL, as Mastodon shows it). ``created_at`` is
    the id's time: the id is the cause's (the follow's, favourite's, boost's or post's).
    Ungrouped: ``group_key`` is ``ungrouped-{id}``, as Mastodon 4.3 says for those."""
    head = orjson.dumps({
        "id": str(notification_id),
        "type": type_,
        "group_key": f"ungrouped-{notification_id}",
        "created_at": iso_datetime(id_time(notification_id)),
    })[:-1]
    out = head + b',"account":' + account
    if status is not None:
        out += b',"status":' + status
    return out + b"}"


def marker_entity(marker: Marker) -> Json:
    """The Marker entity: ``last_read_id`` (a string), ``version`` (bumped by every save),
    ``updated_at``."""
    return {
        "last_read_id": str(marker.last_read_id),
        "version": marker.version,
        "updated_at": iso_datetime(datetime.fromtimestamp(marker.updated_at, tz=UTC)),
    }


def notification_types(types: list[str], exclude: list[str]) -> tuple[list[str] | None, list[str]]:
    """``types[]`` and ``exclude_types[]`` as Mastodon reads them: unknown names are ignored
    (so ``types[]=poll`` alone selects nothing here), no ``types[]`` means every type."""
    known = set(NOTIFICATION_TYPES)
    chosen = None if not types else [t for t in NOTIFICATION_TYPES if t in set(types)]
    return chosen, [t for t in exclude if t in known]
