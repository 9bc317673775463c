"""Entities against what the clients' parsers need (see docs/mastodon-clients.md).

toot parses entities into dataclasses (toot/entities.py ``from_dict``): a missing key
becomes None, but a present value must convert: datetimes with dateutil, dates with
``date.fromisoformat`` (``last_status_at[:10]``), lists element by element, nested
entities from dicts. The non-Optional fields it declares are listed here with the JSON
type each must have, so a later change to the builders that would break toot fails here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from dateutil import parser as dateutil_parser

from homefeed.domain.mastodon import entities as e

URLS = e.Urls("http://127.0.0.1:8080")
T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ACC = e.AccountView(id=1, username="alice", display_name="Alice", created_at=T0, last_status_at=T0)
INFO = e.InstanceInfo(homefeed_version="0.2.0", max_characters=500, registrations_open=True)

# toot/entities.py (8753cd6): non-Optional fields and the JSON type they need.
TOOT_ACCOUNT = {"id": str, "username": str, "acct": str, "url": str, "display_name": str, "note": str,
                "avatar": str, "avatar_static": str, "header": str, "header_static": str,
                "locked": bool, "fields": list, "emojis": list, "bot": bool, "group": bool,
                "created_at": "datetime", "statuses_count": int, "followers_count": int,
                "following_count": int}
TOOT_STATUS = {"id": str, "uri": str, "created_at": "datetime", "account": dict, "content": str,
               "visibility": str, "sensitive": bool, "spoiler_text": str, "media_attachments": list,
               "mentions": list, "tags": list, "emojis": list, "reblogs_count": int,
               "favourites_count": int, "replies_count": int}
TOOT_INSTANCE = {"uri": str, "title": str, "short_description": str, "description": str, "email": str,
                 "version": str, "urls": dict, "stats": dict, "languages": list, "registrations": bool,
                 "approval_required": bool, "invites_enabled": bool, "configuration": dict, "rules": list}
TOOT_RELATIONSHIP = {"id": str, "following": bool, "showing_reblogs": bool, "notifying": bool,
                     "followed_by": bool, "blocking": bool, "blocked_by": bool, "muting": bool,
                     "muting_notifications": bool, "requested": bool, "domain_blocking": bool,
                     "endorsed": bool, "note": str}
TOOT_TAG = {"name": str, "url": str, "history": list}


def _check(entity: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, kind in fields.items():
        assert name in entity, name
        value = entity[name]
        if kind == "datetime":
            assert dateutil_parser.parse(value).tzinfo is not None, name
        else:
            assert type(value) is kind, (name, value)


def test_toot_account_and_status() -> None:
    acc = e.account_entity(ACC, URLS)
    _check(acc, TOOT_ACCOUNT)
    assert date.fromisoformat(acc["last_status_at"][:10]) == date(2026, 3, 4)
    status = e.status_entity(e.StatusView(id=9, account=ACC, text="#a @alice", created_at=T0), URLS,
                             {"alice": ACC})
    _check(status, TOOT_STATUS)
    _check(status["account"], TOOT_ACCOUNT)
    for mention in status["mentions"]:
        _check(mention, {"id": str, "username": str, "url": str, "acct": str})
    for tag in status["tags"]:
        _check(tag, {"name": str, "url": str})


def test_toot_instance_relationship_tag() -> None:
    v1 = e.instance_v1(INFO, URLS)
    _check(v1, TOOT_INSTANCE)
    _check(v1["urls"], {"streaming_api": str})
    _check(v1["stats"], {"user_count": int, "status_count": int, "domain_count": int})
    _check(v1["configuration"]["statuses"], {"max_characters": int, "max_media_attachments": int,
                                             "characters_reserved_per_url": int})
    # toot names the instance by uri, or the host of uri when it is a URL (Pleroma).
    assert "://" not in v1["uri"]
    _check(e.relationship_entity(e.RelationshipView(id=2)), TOOT_RELATIONSHIP)
    _check(e.tag_entity("a", URLS, [e.TagHistoryDay(1, 2, 3)]), TOOT_TAG)


def test_mastodonpy_token_scope_check() -> None:
    """Mastodon.py's log_in: requested scopes must be within the answer's scope split on ' '
    after expanding the broad ones (mastodon/defaults.py _SCOPE_SETS, abridged)."""
    requested = ["read", "write", "follow", "push"]
    received = e.token_entity("t", " ".join(requested), 0)["scope"].split(" ")
    assert set(requested) <= set(received)
