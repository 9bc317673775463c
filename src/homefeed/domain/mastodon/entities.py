"""Mastodon entities (docs.joinmastodon.org/entities) as JSON-ready dicts.

The inputs are small frozen dataclasses defined here (``AccountView``, ``StatusView``, ...):
what the service layer knows, in homefeed's terms. The builders add everything a Mastodon
app expects: string ids, ``created_at`` as ISO 8601 with milliseconds and ``Z``, absolute
URLs, HTML ``content``, empty lists for features homefeed does not have (media, emojis,
polls), so a client's parser never meets a missing required field. Schemas written from the
entity documentation (tests/mastodon_schemas) check every builder.

Version choice: homefeed reports ``4.3.0`` (API version 2). Fields the documentation added
later (``quotes_count``, ``quote_approval``, ``feature_approval``, ...) are emitted too, with
values that tell clients the truth (nobody can quote or feature here), because the current
docs mark them required and clients ignore what they do not know.

All URLs come from ``Urls``: the base URL is the one the client used (scheme, host, port),
so links work behind any address without configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from homefeed.domain.mastodon.content import extract_hashtags, render_content
from homefeed.domain.mastodon.scopes import format_scopes

#: The Mastodon version homefeed speaks, and its API version (4.3.0 introduced api_versions
#: with mastodon = 2). At least 4.0.0 so that clients use the v2 instance endpoint.
MASTODON_VERSION = "4.3.0"
MASTODON_API_VERSION = 2
SOURCE_URL = "https://github.com/homefeed/homefeed"
VISIBILITIES = ("public", "unlisted", "private", "direct")

Json = dict[str, Any]


def iso_datetime(value: datetime) -> str:
    """``2024-01-02T03:04:05.678Z``: Mastodon's datetime format (UTC, milliseconds, ``Z``).
    A naive datetime is taken as UTC, which is what homefeed stores."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_date(value: date | datetime) -> str:
    """``2024-01-02``: the Date format of ``last_status_at`` (UTC day)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        value = value.date()
    return value.isoformat()


def version_string(homefeed_version: str) -> str:
    """``4.3.0 (compatible; homefeed 0.2.0)``: Mastodon.py keeps what precedes the first
    space (then a ``+`` split), so the first token must be a plain Mastodon version."""
    return f"{MASTODON_VERSION} (compatible; homefeed {homefeed_version})"


@dataclass(frozen=True, slots=True)
class Urls:
    """Every URL an entity carries, from the base URL the client used (no trailing slash).

    Mastodon's shapes: ``/@user`` for a profile page, ``/users/user`` for its ``uri``,
    ``/@user/ID`` and ``/users/user/statuses/ID`` for a status, ``/tags/name`` for a tag.
    """

    base: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", self.base.rstrip("/"))

    @property
    def host(self) -> str:
        """``host[:port]``: the instance's domain as Mastodon apps see it."""
        return self.base.split("://", 1)[-1].split("/", 1)[0]

    @property
    def streaming(self) -> str:
        """``ws://`` for an ``http://`` base, ``wss://`` for ``https://`` (same host and port)."""
        scheme, _, rest = self.base.partition("://")
        return ("wss://" if scheme == "https" else "ws://") + rest.split("/", 1)[0]

    def account_url(self, username: str) -> str:
        return f"{self.base}/@{quote(username)}"

    def account_uri(self, username: str) -> str:
        return f"{self.base}/users/{quote(username)}"

    def status_url(self, username: str, status_id: int) -> str:
        return f"{self.base}/@{quote(username)}/{status_id}"

    def status_uri(self, username: str, status_id: int) -> str:
        return f"{self.base}/users/{quote(username)}/statuses/{status_id}"

    def tag_url(self, name: str) -> str:
        """The tag page of a (lowercased) tag name, percent-encoded (tags may be non-ASCII)."""
        return f"{self.base}/tags/{quote(name.lower(), safe='')}"

    def avatar_missing(self) -> str:
        """Mastodon's placeholder path for accounts without an avatar."""
        return f"{self.base}/avatars/original/missing.png"

    def header_missing(self) -> str:
        return f"{self.base}/headers/original/missing.png"

    def api(self, path: str) -> str:
        return f"{self.base}{path}"


# -- accounts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountView:
    """A homefeed user as the Mastodon API shows it. ``note`` is the plain text the user
    wrote (rendered to HTML here); ``last_status_at`` is None for an account without posts."""

    id: int
    username: str
    display_name: str
    created_at: datetime
    note: str = ""
    followers_count: int = 0
    following_count: int = 0
    statuses_count: int = 0
    last_status_at: date | datetime | None = None
    locked: bool = False
    bot: bool = False
    avatar: str | None = None
    header: str | None = None


@dataclass(frozen=True, slots=True)
class AccountSource:
    """What ``verify_credentials`` adds (CredentialAccount.source): the raw profile and the
    posting defaults."""

    note: str = ""
    privacy: str = "public"
    sensitive: bool = False
    language: str = ""
    follow_requests_count: int = 0


def account_entity(
    account: AccountView, urls: Urls, source: AccountSource | None = None
) -> Json:
    """The Account entity; with ``source``, the CredentialAccount of ``verify_credentials``
    and ``update_credentials`` (``source`` and ``role``).

    ``acct`` of a local account is its username (no domain), which toot relies on to match
    search results with what the user typed.
    """
    avatar = account.avatar or urls.avatar_missing()
    header = account.header or urls.header_missing()
    out: Json = {
        "id": str(account.id),
        "username": account.username,
        "acct": account.username,
        "display_name": account.display_name,
        "locked": account.locked,
        "bot": account.bot,
        "discoverable": True,
        "indexable": True,
        "group": False,
        "created_at": iso_datetime(account.created_at),
        "note": render_content(account.note, {}, urls.tag_url) if account.note else "",
        "url": urls.account_url(account.username),
        "uri": urls.account_uri(account.username),
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": account.followers_count,
        "following_count": account.following_count,
        "statuses_count": account.statuses_count,
        "last_status_at": iso_date(account.last_status_at) if account.last_status_at else None,
        "hide_collections": False,
        "noindex": False,
        "avatar_description": "",
        "header_description": "",
        "show_media": True,
        "show_media_replies": True,
        "show_featured": True,
        "feature_approval": {"automatic": [], "manual": [], "current_user": "denied"},
        "emojis": [],
        "roles": [],
        "fields": [],
    }
    if source is not None:
        out["source"] = {
            "privacy": source.privacy,
            "sensitive": source.sensitive,
            "language": source.language,
            "note": source.note,
            "fields": [],
            "follow_requests_count": source.follow_requests_count,
            "hide_collections": False,
            "discoverable": True,
            "indexable": True,
            "attribution_domains": [],
        }
        out["role"] = {
            "id": "-99",
            "name": "",
            "permissions": "0",
            "color": "",
            "highlighted": False,
        }
    return out


# -- statuses -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusView:
    """A homefeed post as the Mastodon API shows it. ``text`` is the stored text, exactly
    as the author sent it; ``content`` is derived from it."""

    id: int
    account: AccountView
    text: str
    created_at: datetime
    visibility: str = "public"
    language: str | None = None
    in_reply_to_id: int | None = None
    in_reply_to_account_id: int | None = None
    replies_count: int = 0
    reblogs_count: int = 0
    favourites_count: int = 0
    sensitive: bool = False
    spoiler_text: str = ""
    edited_at: datetime | None = None
    application_name: str | None = None
    application_website: str | None = None


@dataclass(frozen=True, slots=True)
class ViewerState:
    """The requesting user's relation to a status; present only for an authenticated
    request (Mastodon leaves the fields out otherwise)."""

    favourited: bool = False
    reblogged: bool = False
    muted: bool = False
    bookmarked: bool = False
    pinned: bool = False


def status_entity(
    status: StatusView,
    urls: Urls,
    mentioned: Mapping[str, AccountView] | None = None,
    viewer: ViewerState | None = None,
    *,
    with_text: bool = False,
    content: str | None = None,
    account: Json | None = None,
) -> Json:
    """The Status entity.

    ``mentioned`` maps lowercased usernames to the accounts that exist among those the
    text mentions (the caller looks them up, e.g. with ``content.extract_mentions``);
    others stay plain text and are not listed in ``mentions``. ``with_text`` adds ``text``
    (the stored source: Mastodon returns it from DELETE so apps can "delete and redraft").
    ``content`` and ``account`` accept precomputed values. For timelines, prefer caching
    ``status_base`` per post and calling ``with_viewer`` per reader: rendering costs about
    0.25 ms a status, the viewer step a few microseconds.
    """
    base = status_base(status, urls, mentioned, content=content, account=account)
    out = with_viewer(base, viewer)
    if with_text:
        out["text"] = status.text
    return out


def status_base(
    status: StatusView,
    urls: Urls,
    mentioned: Mapping[str, AccountView] | None = None,
    *,
    content: str | None = None,
    account: Json | None = None,
) -> Json:
    """Everything of a Status that is the same for every reader (no viewer flags, no
    ``text``): the part a cache can keep per post. Treat the result as read-only."""
    mentioned = mentioned or {}
    author = status.account
    html = (
        content
        if content is not None
        else render_content(
            status.text,
            {k: urls.account_url(a.username) for k, a in mentioned.items()},
            urls.tag_url,
        )
    )
    application: Json | None = None
    if status.application_name is not None:
        application = {"name": status.application_name, "website": status.application_website}
    return {
        "id": str(status.id),
        "uri": urls.status_uri(author.username, status.id),
        "url": urls.status_url(author.username, status.id),
        "created_at": iso_datetime(status.created_at),
        "account": account if account is not None else account_entity(author, urls),
        "content": html,
        "visibility": status.visibility,
        "sensitive": status.sensitive,
        "spoiler_text": status.spoiler_text,
        "media_attachments": [],
        "application": application,
        "mentions": [
            {
                "id": str(a.id),
                "username": a.username,
                "url": urls.account_url(a.username),
                "acct": a.username,
            }
            for a in mentioned.values()
        ],
        "tags": [
            {"name": name.lower(), "url": urls.tag_url(name)}
            for name in extract_hashtags(status.text)
        ],
        "emojis": [],
        "reblogs_count": status.reblogs_count,
        "favourites_count": status.favourites_count,
        "replies_count": status.replies_count,
        "quotes_count": 0,
        "in_reply_to_id": None if status.in_reply_to_id is None else str(status.in_reply_to_id),
        "in_reply_to_account_id": (
            None if status.in_reply_to_account_id is None else str(status.in_reply_to_account_id)
        ),
        "reblog": None,
        "poll": None,
        "card": None,
        "language": status.language,
        "edited_at": iso_datetime(status.edited_at) if status.edited_at else None,
        "quote": None,
        "quote_approval": {"automatic": [], "manual": [], "current_user": "denied"},
        "tagged_collections": [],
    }


def with_viewer(base: Json, viewer: ViewerState | None) -> Json:
    """A new Status dict: ``base`` plus the reader's flags (left out without a reader, as
    Mastodon does for anonymous requests). ``base`` is not modified (it may be cached)."""
    out = dict(base)
    if viewer is not None:
        out["favourited"] = viewer.favourited
        out["reblogged"] = viewer.reblogged
        out["muted"] = viewer.muted
        out["bookmarked"] = viewer.bookmarked
        out["pinned"] = viewer.pinned
        out["filtered"] = []
    return out


def context_entity(ancestors: Sequence[Json], descendants: Sequence[Json]) -> Json:
    """The Context entity: a status's thread, both lists of Status entities."""
    return {"ancestors": list(ancestors), "descendants": list(descendants)}


# -- relationships, tags, search ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelationshipView:
    """What homefeed knows between the requesting user and another account."""

    id: int
    following: bool = False
    followed_by: bool = False


def relationship_entity(rel: RelationshipView) -> Json:
    """The Relationship entity. homefeed has follows only: everything else is false; a
    follow shows reblogs (boosts fan out to followers) and does not notify."""
    return {
        "id": str(rel.id),
        "following": rel.following,
        "showing_reblogs": rel.following,
        "notifying": False,
        "languages": None,
        "followed_by": rel.followed_by,
        "blocking": False,
        "blocked_by": False,
        "muting": False,
        "muting_notifications": False,
        "muting_expires_at": None,
        "requested": False,
        "requested_by": False,
        "domain_blocking": False,
        "endorsed": False,
        "note": "",
    }


@dataclass(frozen=True, slots=True)
class TagHistoryDay:
    """One day of a tag's use: ``day`` is the UNIX time of that UTC day's start."""

    day: int
    uses: int
    accounts: int


def tag_entity(
    name: str,
    urls: Urls,
    history: Iterable[TagHistoryDay] = (),
    following: bool | None = None,
    tag_id: int | None = None,
) -> Json:
    """The Tag entity (search results, trends). History values are strings, as Mastodon
    sends them. ``following`` only for an authenticated request. ``id`` (public since
    4.3.1) is "not guaranteed to be a number": without a stored id, the lowercased name,
    which is unique and stable, serves."""
    out: Json = {
        "id": str(tag_id) if tag_id is not None else name.lower(),
        "name": name.lower(),
        "url": urls.tag_url(name),
        "history": [
            {"day": str(h.day), "uses": str(h.uses), "accounts": str(h.accounts)} for h in history
        ],
    }
    if following is not None:
        out["following"] = following
        out["featuring"] = False
    return out


def search_entity(
    accounts: Sequence[Json] = (), statuses: Sequence[Json] = (), hashtags: Sequence[Json] = ()
) -> Json:
    """The Search entity of ``/api/v2/search``: all three lists, always present."""
    return {"accounts": list(accounts), "statuses": list(statuses), "hashtags": list(hashtags)}


def error_entity(error: str, description: str | None = None) -> Json:
    """The Error entity: ``error`` always; ``error_description`` for OAuth errors, where
    ``error`` is the machine code (``invalid_grant``) and the description the sentence."""
    out: Json = {"error": error}
    if description is not None:
        out["error_description"] = description
    return out


#: Mastodon's own wording for the common API errors (Api::BaseController and Doorkeeper's
#: render options), so clients that show ``error`` show what Mastodon users are used to.
API_ERRORS: dict[int, str] = {
    401: "The access token is invalid",
    403: "This action is outside the authorized scopes",
    404: "Record not found",
    429: "Too many requests",
    503: "Service Unavailable",
}

#: OAuth 2 error codes (RFC 6749 §5.2) with Doorkeeper's descriptions and statuses: the
#: token endpoint answers ``{"error": code, "error_description": text}``. A used or unknown
#: code and a missing or wrong PKCE verifier are all ``invalid_grant``.
OAUTH_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (
        400,
        ("The request is missing a required parameter, includes an unsupported parameter "
        "value, or is otherwise malformed."),
    ),
    "invalid_client": (
        401,
        ("Client authentication failed due to unknown client, no client authentication "
        "included, or unsupported authentication method."),
    ),
    "invalid_grant": (
        400,
        ("The provided authorization grant is invalid, expired, revoked, does not match the "
        "redirection URI used in the authorization request, or was issued to another client."),
    ),
    "unauthorized_client": (400, "The client is not authorized to perform this request using this method."),
    "unsupported_grant_type": (400, "The authorization grant type is not supported by the authorization server."),
    "invalid_scope": (400, "The requested scope is invalid, unknown, or malformed."),
    "access_denied": (403, "The resource owner or authorization server denied the request."),
}


def oauth_error(code: str) -> tuple[int, Json]:
    """``(status, body)`` for an OAuth error code from ``OAUTH_ERRORS``."""
    status, description = OAUTH_ERRORS[code]
    return status, error_entity(code, description)


# -- OAuth -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppView:
    """A registered OAuth application. ``client_secret`` is only known when it was just
    created (secrets are stored hashed)."""

    id: int
    name: str
    scopes: frozenset[str]
    redirect_uris: tuple[str, ...]
    client_id: str
    website: str | None = None
    client_secret: str | None = None


def application_entity(app: AppView, *, credentials: bool = False) -> Json:
    """The Application entity; with ``credentials`` the CredentialApplication answered by
    ``POST /api/v1/apps`` (``client_id``, ``client_secret``; Mastodon.py and toot read only
    these two). ``redirect_uri`` (deprecated, newline-joined) is kept for older apps."""
    out: Json = {
        "id": str(app.id),
        "name": app.name,
        "website": app.website,
        "scopes": format_scopes(app.scopes).split(),
        "redirect_uris": list(app.redirect_uris),
        "redirect_uri": "\n".join(app.redirect_uris),
    }
    if credentials:
        if app.client_secret is None:
            raise ValueError("a CredentialApplication needs the client secret")
        out["client_id"] = app.client_id
        out["client_secret"] = app.client_secret
        out["client_secret_expires_at"] = 0
    return out


def token_entity(
    access_token: str,
    scopes: Iterable[str] | str,
    created_at: int,
    *,
    refresh_token: str | None = None,
    expires_in: int | None = None,
) -> Json:
    """The Token entity of ``/oauth/token`` and ``POST /api/v1/accounts``.

    ``scope`` must name every scope the client asked for: Mastodon.py raises when the
    answer's ``scope`` (split on single spaces, broad scopes expanded) lacks one. A string
    is echoed as given (normalised to single spaces); a collection is formatted broad-first.
    ``created_at`` is a UNIX timestamp (seconds).
    """
    scope = " ".join(scopes.split()) if isinstance(scopes, str) else format_scopes(scopes)
    out: Json = {
        "access_token": access_token,
        "token_type": "Bearer",
        "scope": scope,
        "created_at": int(created_at),
    }
    if refresh_token is not None:
        out["refresh_token"] = refresh_token
    if expires_in is not None:
        out["expires_in"] = int(expires_in)
    return out


def oauth_server_metadata(urls: Urls, scopes: Iterable[str], password_grant: bool) -> Json:
    """``/.well-known/oauth-authorization-server`` (RFC 8414), as Mastodon 4.3 serves it.

    Every URL is absolute with the client's scheme, host and port. Mastodon.py reads
    ``grant_types_supported`` before the password flow (refusing it when ``password`` is not
    listed) and uses ``token_endpoint``/``authorization_endpoint``/``revocation_endpoint``
    from here; it refuses ``http://`` URLs unless the caller passed ``allow_http=True``.
    """
    grants = ["authorization_code", "client_credentials", "refresh_token"]
    if password_grant:
        grants.append("password")
    return {
        "issuer": urls.base + "/",
        "service_documentation": "https://docs.joinmastodon.org/",
        "authorization_endpoint": urls.api("/oauth/authorize"),
        "token_endpoint": urls.api("/oauth/token"),
        "app_registration_endpoint": urls.api("/api/v1/apps"),
        "revocation_endpoint": urls.api("/oauth/revoke"),
        "scopes_supported": list(scopes),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
    }


# -- instance ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What the discovery endpoints say about this server."""

    homefeed_version: str
    max_characters: int
    registrations_open: bool
    title: str = "homefeed"
    description: str = "A homefeed timeline server"
    contact_email: str = ""
    languages: tuple[str, ...] = ("en",)
    user_count: int = 0
    status_count: int = 0
    active_month: int = 0
    active_halfyear: int = 0
    contact_account: AccountView | None = None
    source_url: str = SOURCE_URL
    vapid_public_key: str = ""


_ACCOUNT_LIMITS = {
    "max_featured_tags": 0,
    "max_pinned_statuses": 0,
}
_POLLS = {
    "max_options": 0,
    "max_characters_per_option": 0,
    "min_expiration": 0,
    "max_expiration": 0,
}
_MEDIA = {
    "supported_mime_types": [],
    "image_size_limit": 0,
    "image_matrix_limit": 0,
    "video_size_limit": 0,
    "video_frame_rate_limit": 0,
    "video_matrix_limit": 0,
}


def _statuses_config(info: InstanceInfo) -> Json:
    return {
        "max_characters": info.max_characters,
        "max_media_attachments": 0,
        "characters_reserved_per_url": 23,
    }


def instance_v1(info: InstanceInfo, urls: Urls) -> Json:
    """``/api/v1/instance``. ``uri`` is the bare host (toot derives the instance name from
    it); ``urls.streaming_api`` is ``ws(s)://host:port`` (Mastodon.py streams there)."""
    return {
        "uri": urls.host,
        "title": info.title,
        "short_description": info.description,
        "description": info.description,
        "email": info.contact_email,
        "version": version_string(info.homefeed_version),
        "urls": {"streaming_api": urls.streaming},
        "stats": {
            "user_count": info.user_count,
            "status_count": info.status_count,
            "domain_count": 0,
        },
        "thumbnail": None,
        "languages": list(info.languages),
        "registrations": info.registrations_open,
        "approval_required": False,
        "invites_enabled": False,
        "configuration": {
            "accounts": dict(_ACCOUNT_LIMITS),
            "statuses": _statuses_config(info),
            "media_attachments": dict(_MEDIA),
            "polls": dict(_POLLS),
        },
        "contact_account": (
            account_entity(info.contact_account, urls) if info.contact_account else None
        ),
        "rules": [],
    }


def instance_v2(info: InstanceInfo, urls: Urls) -> Json:
    """``/api/v2/instance``. ``api_versions.mastodon`` tells clients which API they speak;
    ``configuration.timelines_access`` says the public and tag timelines are open
    (Mastodon.py warns before reading a timeline the server says is closed)."""
    open_feeds = {"local": "public", "remote": "public"}
    return {
        "domain": urls.host,
        "title": info.title,
        "version": version_string(info.homefeed_version),
        "source_url": info.source_url,
        "description": info.description,
        "wrapstodon": None,
        "usage": {"users": {"active_month": info.active_month}},
        "thumbnail": {"url": urls.api("/favicon.ico")},
        "icon": [],
        "languages": list(info.languages),
        "configuration": {
            "urls": {
                "streaming": urls.streaming,
                "status": None,
                "about": urls.api("/about"),
                "privacy_policy": None,
                "terms_of_service": None,
            },
            "vapid": {"public_key": info.vapid_public_key},
            "accounts": {
                "max_featured_tags": 0,
                "max_pinned_statuses": 0,
                "max_display_name_length": 100,
                "max_note_length": 500,
                "max_profile_fields": 0,
                "profile_field_name_limit": 0,
                "profile_field_value_limit": 0,
            },
            "statuses": _statuses_config(info),
            "media_attachments": {**_MEDIA, "description_limit": 0},
            "polls": dict(_POLLS),
            "translation": {"enabled": False},
            "timelines_access": {
                "live_feeds": dict(open_feeds),
                "hashtag_feeds": dict(open_feeds),
                "trending_link_feeds": dict(open_feeds),
            },
            "limited_federation": False,
        },
        "registrations": {
            "enabled": info.registrations_open,
            "approval_required": False,
            "reason_required": False,
            "message": None,
            "min_age": None,
            "url": None,
        },
        "api_versions": {"mastodon": MASTODON_API_VERSION},
        "contact": {
            "email": info.contact_email,
            "account": account_entity(info.contact_account, urls) if info.contact_account else None,
        },
        "rules": [],
    }


def nodeinfo_links(urls: Urls) -> Json:
    """``/.well-known/nodeinfo``: where the NodeInfo 2.0 document is."""
    return {
        "links": [
            {
                "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
                "href": urls.api("/nodeinfo/2.0"),
            }
        ]
    }


def nodeinfo_2_0(info: InstanceInfo) -> Json:
    """``/nodeinfo/2.0`` with software name ``homefeed``. ``protocols`` is empty: homefeed
    does not federate, and naming ActivityPub would invite servers to deliver to it."""
    return {
        "version": "2.0",
        "software": {"name": "homefeed", "version": info.homefeed_version},
        "protocols": [],
        "services": {"inbound": [], "outbound": []},
        "openRegistrations": info.registrations_open,
        "usage": {
            "users": {
                "total": info.user_count,
                "activeMonth": info.active_month,
                "activeHalfyear": info.active_halfyear,
            },
            "localPosts": info.status_count,
        },
        "metadata": {"nodeName": info.title},
    }


def preferences_entity(visibility: str = "public", language: str | None = None) -> Json:
    """``/api/v1/preferences``: posting defaults and reading preferences."""
    return {
        "posting:default:visibility": visibility,
        "posting:default:sensitive": False,
        "posting:default:language": language,
        "posting:default:quote_policy": "nobody",
        "reading:expand:media": "default",
        "reading:expand:spoilers": False,
    }
