"""OAuth scopes as Mastodon defines them (docs.joinmastodon.org/api/oauth-scopes).

A token carries a set of scopes; a route requires one scope, and Mastodon's controllers
accept either the broad scope or the granular one (``doorkeeper_authorize! :read,
:'read:statuses'``). Here that is one rule: a granted scope covers itself and every scope
under it (``read`` covers ``read:statuses``, ``admin:read`` covers ``admin:read:reports``),
and the deprecated ``follow`` covers its six relationship scopes. A granular scope never
covers its parent or its siblings: ``write:statuses`` can post but not follow.

Unknown scopes are refused (Doorkeeper answers ``invalid_scope``) so a typo never silently
grants less than the app expects. ``crypto`` was removed in Mastodon 4.3.0 and is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from homefeed.domain.mastodon.errors import MastodonInputError

_READ = ["accounts", "blocks", "bookmarks", "collections", "favourites", "filters", "follows", "lists", "mutes", "notifications", "search", "statuses"]
_WRITE = ["accounts", "blocks", "bookmarks", "collections", "conversations", "favourites", "filters", "follows", "lists", "media", "mutes", "notifications", "reports", "statuses"]
_ADMIN = ["accounts", "canonical_email_blocks", "domain_allows", "domain_blocks", "email_domain_blocks", "ip_blocks", "reports"]

#: The legacy ``follow`` scope (deprecated in 3.5.0) and what it grants.
FOLLOW_GRANTS: frozenset[str] = frozenset(
    {"read:blocks", "read:follows", "read:mutes", "write:blocks", "write:follows", "write:mutes"}
)

#: Every scope, broad ones first: the order tokens and metadata list them in.
ALL_SCOPES: tuple[str, ...] = (
    ("read", "write", "follow", "push", "profile", "admin:read", "admin:write")
    + tuple(f"read:{s}" for s in _READ)
    + tuple(f"write:{s}" for s in _WRITE)
    + tuple(f"admin:read:{s}" for s in _ADMIN)
    + tuple(f"admin:write:{s}" for s in _ADMIN)
)
_KNOWN = frozenset(ALL_SCOPES)
_ORDER = {s: i for i, s in enumerate(ALL_SCOPES)}

#: What Mastodon grants when an app or a token request names no scope.
DEFAULT_SCOPES: frozenset[str] = frozenset({"read"})

_SPLIT = re.compile(r"[\s+]+")


def parse_scopes(value: str | None, default: frozenset[str] = DEFAULT_SCOPES) -> frozenset[str]:
    """The scopes in a ``scope``/``scopes`` parameter.

    Separated by spaces (the spec) or ``+`` (a form value encoded twice, as some clients
    do); empty or missing means ``default``. Raises ``MastodonInputError`` (400, Doorkeeper's
    ``invalid_scope`` case) naming the first unknown scope.
    """
    if value is None:
        return default
    if not isinstance(value, str):
        raise MastodonInputError("scope must be a string of space-separated scopes", 400)
    names = [s for s in _SPLIT.split(value) if s]
    if not names:
        return default
    for name in names:
        if name not in _KNOWN:
            raise MastodonInputError(
                f"The requested scope is invalid, unknown, or malformed: {name[:100]!r}", 400
            )
    return frozenset(names)


def format_scopes(scopes: Iterable[str]) -> str:
    """Space-separated, broad scopes first: the Token entity's ``scope`` (Mastodon.py splits
    it on single spaces and checks every scope it asked for is there)."""
    return " ".join(sorted(set(scopes), key=lambda s: (_ORDER.get(s, len(_ORDER)), s)))


def _parents(scope: str) -> Iterable[str]:
    """The scope itself and every broader scope that grants it."""
    yield scope
    parts = scope.split(":")
    for i in range(len(parts) - 1, 0, -1):
        yield ":".join(parts[:i])
    if scope in FOLLOW_GRANTS:
        yield "follow"


def covers(granted: Iterable[str], required: str) -> bool:
    """Whether a token holding ``granted`` may do what needs ``required``."""
    if isinstance(granted, str):
        raise TypeError("granted must be a collection of scopes, not a string (use parse_scopes)")
    g = granted if isinstance(granted, (set, frozenset)) else frozenset(granted)
    return any(p in g for p in _parents(required))


def covers_any(granted: Iterable[str], alternatives: Iterable[str]) -> bool:
    """Whether any of ``alternatives`` is covered (e.g. ``verify_credentials`` accepts
    ``profile`` or ``read:accounts``)."""
    g = granted if isinstance(granted, (str, set, frozenset)) else frozenset(granted)
    return any(covers(g, a) for a in alternatives)


def requested_within(requested: Iterable[str], app_scopes: Iterable[str]) -> bool:
    """Whether a token request stays within what its app registered.

    Mastodon (Doorkeeper) compares names exactly; this compares by coverage, which accepts
    strictly more requests (``read:statuses`` from an app registered with ``read``) and never
    grants a token more than its app has.
    """
    app = frozenset(app_scopes)
    return all(covers(app, r) for r in requested)


def expand(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope a set of scopes grants, broad ones spelled out (for display and audits)."""
    g = frozenset(scopes)
    return frozenset(s for s in ALL_SCOPES if covers(g, s))
