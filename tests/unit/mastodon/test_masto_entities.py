"""entities.py: every builder validates against the schema written from Mastodon's docs."""

from __future__ import annotations

import json
import pathlib
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.domain.mastodon import entities as e
from homefeed.domain.mastodon.scopes import ALL_SCOPES, parse_scopes

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "mastodon_schemas"
_ALL = {p.stem: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
_REGISTRY = jsonschema_rs.Registry([(s["$id"], s) for s in _ALL.values()])
_VALIDATORS = {
    name: jsonschema_rs.Draft202012Validator(s, registry=_REGISTRY) for name, s in _ALL.items()
}
DIGITS = re.compile(r"^[0-9]+$")
ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

URLS = e.Urls("http://127.0.0.1:8080/")
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ALICE = e.AccountView(id=7, username="alice", display_name="Alice", created_at=T0,
                      note="I like #rust\nand https://example.com", followers_count=3,
                      following_count=2, statuses_count=1, last_status_at=T0)
BOB = e.AccountView(id=8, username="bob", display_name="bob", created_at=T0)
INFO = e.InstanceInfo(homefeed_version="0.2.0", max_characters=500, registrations_open=True,
                      contact_email="admin@example.com", user_count=2, status_count=1)


def check(schema: str, value: Any) -> None:
    errors = [f"{err.instance_path}: {err.message}" for err in _VALIDATORS[schema].iter_errors(value)]
    assert errors == [], errors


def test_schemas_are_valid_2020_12() -> None:
    assert set(_ALL) >= {"account", "credential_account", "status", "application",
                         "credential_application", "token", "relationship", "tag", "instance_v1",
                         "instance_v2", "search", "context", "error"}
    for schema in _ALL.values():
        jsonschema_rs.meta.validate(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schemas_catch_a_missing_required_field() -> None:
    account = e.account_entity(ALICE, URLS)
    del account["acct"]
    assert not _VALIDATORS["account"].is_valid(account)


def test_account() -> None:
    a = e.account_entity(ALICE, URLS)
    check("account", a)
    assert a["id"] == "7" and a["acct"] == "alice" and a["url"] == "http://127.0.0.1:8080/@alice"
    assert a["created_at"] == "2026-01-02T03:04:05.678Z"
    assert a["last_status_at"] == "2026-01-02"
    assert a["note"].startswith("<p>I like <a href=\"http://127.0.0.1:8080/tags/rust\"")
    assert a["avatar"].startswith("http://127.0.0.1:8080/")
    assert e.account_entity(BOB, URLS)["note"] == ""
    assert e.account_entity(BOB, URLS)["last_status_at"] is None


def test_credential_account() -> None:
    a = e.account_entity(ALICE, URLS, e.AccountSource(note=ALICE.note))
    check("credential_account", a)
    assert a["source"]["note"] == ALICE.note and a["source"]["privacy"] == "public"


def test_status_with_mentions_tags_viewer_and_text() -> None:
    s = e.StatusView(id=123456789, account=ALICE, text="hi @Bob @ghost #Rust #rust",
                     created_at=T0, visibility="unlisted", language="en",
                     application_name="toot", application_website=None)
    out = e.status_entity(s, URLS, {"bob": BOB}, e.ViewerState(favourited=True), with_text=True)
    check("status", out)
    assert out["id"] == "123456789" and out["account"]["id"] == "7"
    assert out["url"] == "http://127.0.0.1:8080/@alice/123456789"
    assert out["uri"] == "http://127.0.0.1:8080/users/alice/statuses/123456789"
    assert out["mentions"] == [{"id": "8", "username": "bob", "url": "http://127.0.0.1:8080/@bob", "acct": "bob"}]
    assert out["tags"] == [{"name": "rust", "url": "http://127.0.0.1:8080/tags/rust"}]
    assert "@ghost" in out["content"] and 'class="u-url mention">@<span>Bob</span>' in out["content"]
    assert out["text"] == s.text and out["favourited"] is True and out["reblogged"] is False
    assert out["application"] == {"name": "toot", "website": None}
    assert out["reblog"] is None and out["media_attachments"] == [] and out["emojis"] == []


def test_status_without_viewer_has_no_viewer_flags_and_no_text() -> None:
    out = e.status_entity(e.StatusView(id=1, account=BOB, text="x", created_at=T0), URLS)
    check("status", out)
    for key in ("favourited", "reblogged", "muted", "bookmarked", "pinned", "filtered", "text"):
        assert key not in out
    assert out["application"] is None


def test_status_precomputed_parts_are_used() -> None:
    acc = e.account_entity(BOB, URLS)
    out = e.status_entity(e.StatusView(id=1, account=BOB, text="x", created_at=T0), URLS,
                          content="<p>cached</p>", account=acc)
    assert out["content"] == "<p>cached</p>" and out["account"] is acc


def test_tag_search_context_relationship_error() -> None:
    tag = e.tag_entity("Rust", URLS, [e.TagHistoryDay(day=1767225600, uses=3, accounts=2)],
                       following=False)
    check("tag", tag)
    assert tag["history"][0] == {"day": "1767225600", "uses": "3", "accounts": "2"}
    status = e.status_entity(e.StatusView(id=1, account=BOB, text="x", created_at=T0), URLS)
    check("search", e.search_entity([e.account_entity(BOB, URLS)], [status], [tag]))
    check("search", e.search_entity())
    check("context", e.context_entity([status], []))
    rel = e.relationship_entity(e.RelationshipView(id=8, following=True))
    check("relationship", rel)
    assert rel["id"] == "8" and rel["following"] and not rel["followed_by"]
    check("error", e.error_entity("Record not found"))
    check("error", e.error_entity("invalid_grant", "The provided authorization grant is invalid"))


def test_application_and_token() -> None:
    app = e.AppView(id=1, name="Mastodon.py", scopes=parse_scopes("read write follow push"),
                    redirect_uris=("urn:ietf:wg:oauth:2.0:oob",), client_id="cid",
                    client_secret="secret")
    out = e.application_entity(app, credentials=True)
    check("credential_application", out)
    assert out["scopes"] == ["read", "write", "follow", "push"]
    assert out["client_id"] == "cid" and out["client_secret"] == "secret"
    public = e.application_entity(app)
    check("application", public)
    assert "client_secret" not in public
    with pytest.raises(ValueError):
        e.application_entity(e.AppView(1, "x", frozenset(), (), "cid"), credentials=True)
    token = e.token_entity("tok", "read  write follow push", 1767225600)
    check("token", token)
    assert token["scope"] == "read write follow push" and token["token_type"] == "Bearer"
    check("token", e.token_entity("tok", {"write:statuses", "read"}, 1, refresh_token="r", expires_in=60))


def _mastodonpy_version(version: str) -> tuple[int, int, int]:
    """Mastodon.py's reading (internals.__normalize_version_string + parse_version_string)."""
    v = version.split(" ")[0].split("+")[0]
    major, minor, patch = (re.match(r"\d+", x).group(0) for x in v.split(".")[:3])  # type: ignore[union-attr]
    return int(major), int(minor), int(patch)


def test_instances() -> None:
    v1 = e.instance_v1(INFO, URLS)
    check("instance_v1", v1)
    assert v1["uri"] == "127.0.0.1:8080"
    assert v1["urls"]["streaming_api"] == "ws://127.0.0.1:8080"
    assert v1["version"] == "4.3.0 (compatible; homefeed 0.2.0)"
    assert _mastodonpy_version(v1["version"]) >= (4, 0, 0)
    v2 = e.instance_v2(INFO, URLS)
    check("instance_v2", v2)
    assert v2["configuration"]["urls"]["streaming"] == "ws://127.0.0.1:8080"
    assert v2["configuration"]["statuses"]["max_characters"] == 500
    assert v2["api_versions"] == {"mastodon": 2}
    assert v2["registrations"]["enabled"] is True
    tls = e.instance_v2(INFO, e.Urls("https://feed.example"))
    assert tls["configuration"]["urls"]["streaming"] == "wss://feed.example"
    with_contact = e.InstanceInfo(homefeed_version="0.2.0", max_characters=1000,
                                  registrations_open=False, contact_account=ALICE)
    check("instance_v1", e.instance_v1(with_contact, URLS))
    check("instance_v2", e.instance_v2(with_contact, URLS))


def test_nodeinfo_and_oauth_metadata() -> None:
    links = e.nodeinfo_links(URLS)
    assert links["links"][0]["href"] == "http://127.0.0.1:8080/nodeinfo/2.0"
    ni = e.nodeinfo_2_0(INFO)
    assert ni["version"] == "2.0" and ni["software"] == {"name": "homefeed", "version": "0.2.0"}
    assert ni["openRegistrations"] is True and ni["usage"]["users"]["total"] == 2
    meta = e.oauth_server_metadata(URLS, ALL_SCOPES, password_grant=True)
    assert "password" in meta["grant_types_supported"]
    assert meta["token_endpoint"] == "http://127.0.0.1:8080/oauth/token"
    assert all(v.startswith("http://127.0.0.1:8080/") for k, v in meta.items() if k.endswith("_endpoint"))
    assert "password" not in e.oauth_server_metadata(URLS, ALL_SCOPES, False)["grant_types_supported"]
    assert set(e.preferences_entity()) >= {"posting:default:visibility", "reading:expand:spoilers"}


def test_datetime_formats() -> None:
    assert e.iso_datetime(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
    plus2 = timezone(timedelta(hours=2))
    assert e.iso_datetime(datetime(2026, 1, 2, 1, 0, 0, 999999, tzinfo=plus2)) == "2026-01-01T23:00:00.999Z"
    assert e.iso_date(date(2026, 1, 2)) == "2026-01-02"
    assert e.iso_date(datetime(2026, 1, 2, 1, 0, tzinfo=plus2)) == "2026-01-01"


_handles = st.from_regex(r"[A-Za-z0-9_]{1,30}", fullmatch=True)
_times = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, (1 << 63) - 1), _handles, st.text(max_size=100), _times, st.text(min_size=1, max_size=300),
       st.sampled_from(["public", "unlisted"]), st.booleans())
def test_any_status_validates(id_: int, handle: str, display: str, when: datetime, text: str,
                              visibility: str, with_viewer: bool) -> None:
    acc = e.AccountView(id=id_, username=handle, display_name=display, created_at=when, note=text)
    st_ = e.StatusView(id=id_, account=acc, text=text, created_at=when, visibility=visibility)
    out = e.status_entity(st_, URLS, {handle.lower(): acc}, e.ViewerState() if with_viewer else None)
    check("status", out)
    assert DIGITS.match(out["id"]) and DIGITS.match(out["account"]["id"])
    assert ISO_MS_Z.match(out["created_at"]) and ISO_MS_Z.match(out["account"]["created_at"])


def test_status_base_is_cacheable_and_with_viewer_does_not_touch_it() -> None:
    s = e.StatusView(id=5, account=ALICE, text="#a b", created_at=T0)
    base = e.status_base(s, URLS)
    snapshot = json.dumps(base, sort_keys=True)
    out = e.with_viewer(base, e.ViewerState(bookmarked=True))
    check("status", out)
    check("status", e.with_viewer(base, None))
    assert out["bookmarked"] is True and json.dumps(base, sort_keys=True) == snapshot
    assert e.status_entity(s, URLS, viewer=e.ViewerState(bookmarked=True)) == out


def test_error_wordings() -> None:
    status, body = e.oauth_error("invalid_grant")
    assert status == 400 and body["error"] == "invalid_grant"
    check("error", body)
    assert e.oauth_error("invalid_client")[0] == 401
    for message in e.API_ERRORS.values():
        check("error", e.error_entity(message))
