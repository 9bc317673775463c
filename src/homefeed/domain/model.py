"""Records of the system of record, and the events that every write appends to the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homefeed.domain.ids import id_time_iso


@dataclass(frozen=True, slots=True)
class User:
    id: int
    handle: str
    display_name: str
    followers_count: int = 0
    following_count: int = 0
    posts_count: int = 0
    #: The profile's bio as the user wrote it (plain text; the Mastodon API renders it).
    #: ``created_at`` is the id's time (ids are time-ordered), as for posts. The email and
    #: the password hash are never on this record: only the log-in reads them.
    note: str = ""

    def public(self) -> dict[str, Any]:
        return {"id": str(self.id), "handle": self.handle, "display_name": self.display_name}

    def profile(self) -> dict[str, Any]:
        return {
            **self.public(),
            "followers_count": self.followers_count,
            "following_count": self.following_count,
            "posts_count": self.posts_count,
            "created_at": id_time_iso(self.id),
        }


@dataclass(frozen=True, slots=True)
class Post:
    id: int
    author_id: int
    author_handle: str
    text: str
    #: Who may see the post where (Mastodon's words): "public" posts also reach the public
    #: and tag timelines; "unlisted" ones reach followers' homes and the author's profile only.
    visibility: str = "public"
    #: A reply: the post replied to and its author (the home rule needs the author, and the
    #: post replied to may be deleted later; the reply keeps both ids). None: not a reply.
    in_reply_to_id: int | None = None
    in_reply_to_account_id: int | None = None
    #: A boost (Mastodon's "reblog"): the original post's id. A boost is a post of the
    #: booster's, with empty text, that fans out by the booster's followers. None: not a boost.
    reblog_of_id: int | None = None
    # The JSON-ready form, built once per cached post: hydration is the hot path of every
    # timeline read, and formatting ids and timestamps dominated it. Treat it as read-only.
    _public: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def created_at(self) -> str:
        return id_time_iso(self.id)

    def public(self) -> dict[str, Any]:
        d = self._public
        if d is None:
            d = {
                "id": str(self.id),
                "author": {"id": str(self.author_id), "handle": self.author_handle},
                "text": self.text,
                "created_at": self.created_at,
            }
            # Only when set, so that the /v1 shape of a plain post is unchanged.
            if self.in_reply_to_id is not None:
                d["in_reply_to_id"] = str(self.in_reply_to_id)
            if self.reblog_of_id is not None:
                d["reblog_of_id"] = str(self.reblog_of_id)
            object.__setattr__(self, "_public", d)
        return d


#: The visibilities a post may have (Mastodon's ``private`` and ``direct`` are not offered).
VISIBILITIES = ("public", "unlisted")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts for, from its bearer token: the user (None for an app's own
    ``client_credentials`` token), the OAuth app that holds the token (None for a token
    issued by ``POST /v1/users``) and the scopes it was granted. A ``/v1`` registration
    token carries every scope (it is the user's own key); an OAuth token carries what the
    user consented to. Entrypoints check a route's scope with
    ``service_layer.services.require_scope``."""

    user_id: int | None
    app_id: int | None
    scopes: frozenset[str]


# Event types written to the outbox in the same transaction as the record they describe.
USER_REGISTERED = "user_registered"
FOLLOWED = "followed"
UNFOLLOWED = "unfollowed"
POST_CREATED = "post_created"
POST_DELETED = "post_deleted"
FAVOURITED = "favourited"
UNFAVOURITED = "unfavourited"

#: Notification types (Mastodon's names), the order the API lists them in.
NOTIFICATION_TYPES = ("mention", "follow", "favourite", "reblog")


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification of ``user_id`` (the recipient). Derived from a *cause* in the records
    and keyed by it: ``id`` is the cause's time-ordered id (the follow's, the favourite's, the
    boost's, the mentioning post's), so a redelivered event or a rebuild writes the same row.
    ``post_id`` is the status the notification is about: the mentioning post, the favourited
    post, the boosted ORIGINAL (as Mastodon shows a reblog notification); None for a follow."""

    id: int
    user_id: int
    type: str
    from_user_id: int
    post_id: int | None = None


@dataclass(frozen=True, slots=True)
class PostStats:
    """A status's counters and what the viewer did to it (Mastodon's ``favourited`` and
    ``reblogged``): the only parts of a Status that change after it is written."""

    replies_count: int = 0
    reblogs_count: int = 0
    favourites_count: int = 0
    favourited: bool = False
    reblogged: bool = False


@dataclass(frozen=True, slots=True)
class Marker:
    """A reader's saved position in a timeline (``home`` or ``notifications``)."""

    timeline: str
    last_read_id: str
    version: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class Event:
    """One outbox row. ``seq`` is the commit order in the system of record."""

    seq: int
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    #: How many times this event has been delivered (1 = first time), where the stream knows.
    deliveries: int = field(default=1, compare=False)
    #: The stream adapter's handle for acknowledging this event (e.g. a JetStream message).
    ack_handle: Any = field(default=None, compare=False, repr=False)
