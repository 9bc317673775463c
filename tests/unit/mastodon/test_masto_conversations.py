"""domain/mastodon/conversations.py: the spliced Status (cached head + tail) is the same
Status Mastodon gives, whatever the counters and flags; Notification and Marker entities
validate against the schemas written from Mastodon's docs."""

from __future__ import annotations

import json

import orjson
from hypothesis import given
from hypothesis import strategies as st

from homefeed.domain.ids import id_time
from homefeed.domain.mastodon import entities as e
from homefeed.domain.mastodon.conversations import (
    marker_entity,
    notification_bytes,
    notification_types,
    status_tail,
)
from homefeed.domain.model import Marker, PostStats

from tests.unit.mastodon.test_masto_entities import ALICE, BOB, URLS, check

ID = 123 << 22


def _head(view: e.StatusView) -> bytes:
    base = e.status_base(view, URLS, {})
    account = orjson.dumps(base.pop("account"))
    for spliced in ("replies_count", "reblogs_count", "favourites_count", "reblog"):
        del base[spliced]
    return b'{"account":' + account + b"," + orjson.dumps(base)[1:-1]


counts = st.integers(min_value=0, max_value=10**9)


@given(counts, counts, counts, st.booleans(), st.booleans(), st.booleans())
def test_spliced_status_equals_the_entity(replies: int, reblogs: int, favs: int, fav: bool, reb: bool,
                                          viewer: bool) -> None:
    view = e.StatusView(id=ID, account=ALICE, text="hi @bob", created_at=id_time(ID), in_reply_to_id=ID - 1,
                        in_reply_to_account_id=8)
    stats = PostStats(replies, reblogs, favs, fav, reb)
    spliced = json.loads(_head(view) + status_tail(stats, None, viewer))
    want = e.status_entity(
        e.StatusView(id=ID, account=ALICE, text="hi @bob", created_at=id_time(ID), in_reply_to_id=ID - 1,
                     in_reply_to_account_id=8, replies_count=replies, reblogs_count=reblogs,
                     favourites_count=favs),
        URLS, {}, e.ViewerState(favourited=fav, reblogged=reb) if viewer else None)
    assert spliced == json.loads(orjson.dumps(want))
    check("status", spliced)


def test_a_boost_wraps_the_original_and_unknown_stats_are_zero() -> None:
    original = _head(e.StatusView(id=ID, account=ALICE, text="orig", created_at=id_time(ID)))
    inner = original + status_tail(PostStats(0, 1, 0, False, True), None, True)
    wrapper = _head(e.StatusView(id=ID + 1, account=BOB, text="", created_at=id_time(ID + 1)))
    out = json.loads(wrapper + status_tail(None, inner, True))
    check("status", out)
    assert out["reblog"]["id"] == str(ID) and out["reblog"]["reblogged"] is True
    assert out["reblogs_count"] == 0 and out["reblogged"] is False and out["reblog"]["reblogs_count"] == 1


def test_notification_and_marker_entities() -> None:
    account = orjson.dumps(e.account_entity(BOB, URLS))
    status = _head(e.StatusView(id=ID, account=ALICE, text="x", created_at=id_time(ID))) + status_tail(None, None, True)
    n = json.loads(notification_bytes(ID + 5, "favourite", account, status))
    check("notification", n)
    assert n["id"] == str(ID + 5) and n["group_key"] == f"ungrouped-{ID + 5}"
    assert n["created_at"] == e.iso_datetime(id_time(ID + 5)) and n["status"]["id"] == str(ID)
    follow = json.loads(notification_bytes(ID + 6, "follow", account, None))
    check("notification", follow)
    assert "status" not in follow
    bad = dict(follow, type="mention")
    try:
        check("notification", bad)
    except AssertionError:
        pass
    else:
        raise AssertionError("a mention without its status passed the schema")
    m = marker_entity(Marker("home", "42", 3, 1_700_000_000.25))
    check("marker", m)
    check("markers", {"home": m})
    assert m == {"last_read_id": "42", "version": 3, "updated_at": "2023-11-14T22:13:20.250Z"}


def test_notification_types_as_mastodon_reads_them() -> None:
    assert notification_types([], []) == (None, [])
    assert notification_types(["mention", "poll"], ["favourite", "nope"]) == (["mention"], ["favourite"])
    assert notification_types(["poll"], []) == ([], [])
