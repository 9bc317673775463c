"""Conversations through the Mastodon client API (issue 11), over HTTP against a real
homefeed in both profiles (``mastodon_kit.target``: one ``homefeed serve``; two API and two
worker processes over PostgreSQL, Redis and NATS): replies and threads
(``context``), favourites, boosts, mentions, notifications and markers, every answer checked
against tests/mastodon_schemas, the shapes clients rely on checked exactly (``favourite``
answers the viewer's flag and the new count; ``reblog`` the wrapper, ``unreblog`` the
original; a reblog notification's status is the original), and bad input refused with a 4xx
that changes nothing. Mastodon.py drives the same routes in ``test_mastodon_clients.py``."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import unique_word
from .mastodon_kit import target  # noqa: F401  (the server fixture, per profile)
from .test_mastodon_client_api import LINK_RE, M, check, error, ids


@pytest.fixture(scope="module")
def m(target) -> M:
    c = M(target.url(0))
    yield c
    c.close()


@pytest.fixture(scope="module")
def other(target) -> M:
    """The other API process in scale-out (the same one embedded): reads there must see
    writes made through the first."""
    c = M(target.url(1))
    yield c
    c.close()


@pytest.fixture
def drain(target):
    return target.drain


class Person:
    def __init__(self, m: M) -> None:
        self.m = m
        self.id, self.handle, self.token = m.user()

    def ok(self, method: str, url: str, **kw: Any) -> Any:
        return self.m.ok(method, url, self.token, **kw)

    def req(self, method: str, url: str, **kw: Any):
        return self.m.req(method, url, self.token, **kw)

    def post(self, text: str, reply_to: str | None = None, **extra: str) -> dict:
        body = {"status": text, **extra}
        if reply_to is not None:
            body["in_reply_to_id"] = reply_to
        return check("status", self.ok("POST", "/api/v1/statuses", data=body))

    def status(self, sid: str) -> dict:
        return check("status", self.ok("GET", f"/api/v1/statuses/{sid}"))

    def notifications(self, **params: Any) -> list[dict]:
        got = self.ok("GET", "/api/v1/notifications", params=params)
        for n in got:
            check("notification", n)
        return got


def people(m: M, n: int) -> list[Person]:
    return [Person(m) for _ in range(n)]


# -- replies and threads --------------------------------------------------------------------


def test_replies_make_a_thread_in_depth_first_order(m):
    a, b, c = people(m, 3)
    root = a.post("root")
    r1 = b.post(f"@{a.handle} first", root["id"])
    r2 = c.post("second", root["id"])
    r11 = a.post("under first", r1["id"])
    r111 = b.post("deeper", r11["id"])
    assert r1["in_reply_to_id"] == root["id"] and r1["in_reply_to_account_id"] == a.id
    assert r11["in_reply_to_account_id"] == b.id
    assert root["in_reply_to_id"] is None and root["in_reply_to_account_id"] is None
    # the mention is an account and a link
    assert [x["id"] for x in r1["mentions"]] == [a.id]
    assert f'class="u-url mention"' in r1["content"] and f"/@{a.handle}" in r1["content"]

    ctx = check("context", c.ok("GET", f"/api/v1/statuses/{root['id']}/context"))
    assert ctx["ancestors"] == []
    assert ids(ctx["descendants"]) == [r1["id"], r11["id"], r111["id"], r2["id"]]
    deep = check("context", m.ok("GET", f"/api/v1/statuses/{r111['id']}/context"))  # anonymous
    assert ids(deep["ancestors"]) == [root["id"], r1["id"], r11["id"]] and deep["descendants"] == []
    assert a.status(root["id"])["replies_count"] == 2
    assert a.status(r1["id"])["replies_count"] == 1


def test_deleting_a_post_keeps_its_replies_pointing_at_it(m):
    a, b = people(m, 2)
    root = a.post("root")
    mid = a.post("middle", root["id"])
    leaf = b.post("leaf", mid["id"])
    a.ok("DELETE", f"/api/v1/statuses/{mid['id']}")
    got = b.status(leaf["id"])
    assert got["in_reply_to_id"] == mid["id"] and got["in_reply_to_account_id"] == a.id
    ctx = check("context", b.ok("GET", f"/api/v1/statuses/{leaf['id']}/context"))
    assert ctx["ancestors"] == []  # nothing beyond the gone post
    assert ids(check("context", b.ok("GET", f"/api/v1/statuses/{root['id']}/context"))["descendants"]) == []
    assert a.status(root["id"])["replies_count"] == 0
    error(b.req("GET", f"/api/v1/statuses/{mid['id']}/context"), 404, "Record not found")


def test_a_reply_to_nothing_is_404_and_writes_nothing(m):
    a = Person(m)
    for bad in ("1", "999999999999", "abc", "-1"):
        r = a.req("POST", "/api/v1/statuses", data={"status": "lost", "in_reply_to_id": bad})
        error(r, 404, "Record not found")
    r = a.req("POST", "/api/v1/statuses", json={"status": "lost", "in_reply_to_id": 5})
    error(r, 404)
    assert m.ok("GET", f"/api/v1/accounts/{a.id}/statuses") == []
    # empty means "not a reply", as Rails reads it
    assert a.post("fine", in_reply_to_id="")["in_reply_to_id"] is None


def test_idempotency_key_with_in_reply_to_id_replies_once(m):
    a, b = people(m, 2)
    root = a.post("root")
    h = {"Idempotency-Key": unique_word("key")}
    body = {"status": "once", "in_reply_to_id": root["id"]}
    first = b.req("POST", "/api/v1/statuses", json=body, headers=h)
    again = b.req("POST", "/api/v1/statuses", json=body, headers=h)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    assert first.json()["in_reply_to_id"] == root["id"]
    assert a.status(root["id"])["replies_count"] == 1


# -- favourites -----------------------------------------------------------------------------


def test_favourite_answers_the_flag_and_the_count_idempotently(m, other, drain):
    a, b, c = people(m, 3)
    s = a.post("like me")
    for _ in range(2):
        got = check("status", b.ok("POST", f"/api/v1/statuses/{s['id']}/favourite"))
        assert got["id"] == s["id"] and got["favourited"] is True and got["favourites_count"] == 1
    got = check("status", c.ok("POST", f"/api/v1/statuses/{s['id']}/favourite"))
    assert got["favourited"] is True and got["favourites_count"] == 2
    mine = a.status(s["id"])
    assert mine["favourited"] is False and mine["favourites_count"] == 2
    there = other.ok("GET", f"/api/v1/statuses/{s['id']}", b.token)  # the other API process
    assert there["favourited"] is True and there["favourites_count"] == 2
    assert "favourited" not in m.ok("GET", f"/api/v1/statuses/{s['id']}")  # anonymous
    who = m.ok("GET", f"/api/v1/statuses/{s['id']}/favourited_by")
    assert [x["id"] for x in who] == [c.id, b.id]  # newest first
    for x in who:
        check("account", x)
    for _ in range(2):
        got = check("status", b.ok("POST", f"/api/v1/statuses/{s['id']}/unfavourite"))
        assert got["favourited"] is False and got["favourites_count"] == 1
    assert [x["id"] for x in m.ok("GET", f"/api/v1/statuses/{s['id']}/favourited_by")] == [c.id]
    error(b.req("POST", "/api/v1/statuses/1/favourite"), 404, "Record not found")
    error(m.req("POST", f"/api/v1/statuses/{s['id']}/favourite"), 401)
    assert a.status(s["id"])["favourites_count"] == 1


def test_favourites_list_pages_by_favourite_with_link(m):
    a, b = people(m, 2)
    posts = [a.post(f"p{i}") for i in range(5)]
    order = [posts[i]["id"] for i in (3, 0, 4, 1, 2)]  # favourited in this order
    for sid in order:
        b.ok("POST", f"/api/v1/statuses/{sid}/favourite")
    walked: list[dict] = []
    r = b.req("GET", "/api/v1/favourites", params={"limit": 2})
    first_prev = LINK_RE.match(r.headers["link"]).group(2)
    while r.json():
        page = [check("status", s) for s in r.json()]
        walked.extend(page)
        nxt, _ = LINK_RE.match(r.headers["link"]).groups()
        # the cursors are favourite ids, not status ids
        assert f"max_id={page[-1]['id']}" not in nxt
        r = b.req("GET", nxt)
    assert "link" not in r.headers  # an empty page has none
    assert ids(walked) == list(reversed(order))  # newest favourite first
    assert all(s["favourited"] is True for s in walked)
    newer = b.req("GET", first_prev)
    assert newer.status_code == 200 and newer.json() == []
    older_than_first = b.req("GET", LINK_RE.match(
        b.req("GET", "/api/v1/favourites", params={"limit": 1}).headers["link"]).group(1))
    assert ids(older_than_first.json())[:1] == [order[-2]]
    since = b.req("GET", "/api/v1/favourites", params={"limit": 2, "min_id": "1"})
    assert ids(since.json()) == [order[1], order[0]]  # the oldest two, answered newest first
    assert m.ok("GET", "/api/v1/favourites", a.token) == []
    error(m.req("GET", "/api/v1/favourites"), 401)


# -- boosts ---------------------------------------------------------------------------------


def test_reblog_answers_the_wrapper_and_unreblog_the_original(m, other, drain):
    a, b, c = people(m, 3)
    m.follow(c.token, b.id)
    m.follow(a.token, b.id)
    s = a.post("boost me")
    w = check("status", b.ok("POST", f"/api/v1/statuses/{s['id']}/reblog"))
    assert w["id"] != s["id"] and w["account"]["id"] == b.id and w["content"] == ""
    assert w["reblog"]["id"] == s["id"] and w["reblog"]["account"]["id"] == a.id
    assert w["reblog"]["reblogged"] is True and w["reblog"]["reblogs_count"] == 1
    # again, and through the wrapper: the same boost
    assert b.ok("POST", f"/api/v1/statuses/{s['id']}/reblog")["id"] == w["id"]
    assert b.ok("POST", f"/api/v1/statuses/{w['id']}/reblog")["id"] == w["id"]
    assert a.status(s["id"])["reblogs_count"] == 1 and a.status(s["id"])["reblogged"] is False
    assert [x["id"] for x in m.ok("GET", f"/api/v1/statuses/{s['id']}/reblogged_by")] == [b.id]
    assert ids(m.ok("GET", f"/api/v1/accounts/{b.id}/statuses")) == [w["id"]]
    drain()
    assert ids(c.ok("GET", "/api/v1/timelines/home"))[:1] == [w["id"]]
    assert w["id"] not in ids(a.ok("GET", "/api/v1/timelines/home"))  # the original's author
    got = check("status", b.ok("GET", f"/api/v1/statuses/{w['id']}"))
    assert got["reblog"]["id"] == s["id"]

    o = check("status", b.ok("POST", f"/api/v1/statuses/{s['id']}/unreblog"))
    assert o["id"] == s["id"] and o["reblogged"] is False and o["reblogs_count"] == 0 and o["reblog"] is None
    assert b.ok("POST", f"/api/v1/statuses/{s['id']}/unreblog")["id"] == s["id"]  # idempotent
    assert m.ok("GET", f"/api/v1/accounts/{b.id}/statuses") == []
    error(m.req("GET", f"/api/v1/statuses/{w['id']}"), 404)
    drain()
    assert w["id"] not in ids(c.ok("GET", "/api/v1/timelines/home"))
    assert w["id"] not in ids(other.ok("GET", "/api/v1/timelines/home", c.token))


def test_reblog_refuses_what_homefeed_has_not(m):
    a, b = people(m, 2)
    s = a.post("x")
    for vis in ("private", "direct", "nope"):
        error(b.req("POST", f"/api/v1/statuses/{s['id']}/reblog", data={"visibility": vis}), 422)
    error(b.req("POST", "/api/v1/statuses/1/reblog"), 404, "Record not found")
    assert a.status(s["id"])["reblogs_count"] == 0
    w = b.ok("POST", f"/api/v1/statuses/{s['id']}/reblog", data={"visibility": "unlisted"})
    assert w["visibility"] == "unlisted"


def test_deleting_the_original_takes_its_boosts(m, drain):
    a, b = people(m, 2)
    s = a.post("short-lived")
    w = b.ok("POST", f"/api/v1/statuses/{s['id']}/reblog")
    a.ok("DELETE", f"/api/v1/statuses/{s['id']}")
    drain()
    assert m.ok("GET", f"/api/v1/accounts/{b.id}/statuses") == []
    error(m.req("GET", f"/api/v1/statuses/{w['id']}"), 404)


# -- notifications --------------------------------------------------------------------------


def _kinds(items: list[dict]) -> list[tuple[str, str]]:
    return [(n["type"], n["account"]["id"]) for n in items]


def test_notifications_of_each_kind_with_filters_paging_dismiss_and_clear(m, drain):
    a, b, c = people(m, 3)
    s = a.post("mine")
    a.ok("POST", f"/api/v1/statuses/{s['id']}/favourite")  # one's own: never notified
    m.follow(b.token, a.id)
    mention = c.post(f"hi @{a.handle}")
    b.ok("POST", f"/api/v1/statuses/{s['id']}/favourite")
    boost = b.ok("POST", f"/api/v1/statuses/{s['id']}/reblog")
    drain()
    got = a.notifications()
    assert _kinds(got) == [("reblog", b.id), ("favourite", b.id), ("mention", c.id), ("follow", b.id)]
    assert got[0]["status"]["id"] == s["id"] and got[0]["id"] == boost["id"]  # the ORIGINAL
    assert got[1]["status"]["id"] == s["id"] and got[1]["status"]["favourited"] is True
    assert got[2]["status"]["id"] == mention["id"] and "status" not in got[3]
    assert all(n["group_key"] == f"ungrouped-{n['id']}" for n in got)
    assert b.notifications() == [] and c.notifications() == []

    assert _kinds(a.notifications(**{"types[]": ["mention", "follow"]})) == [("mention", c.id), ("follow", b.id)]
    assert [n["type"] for n in a.notifications(**{"exclude_types[]": ["favourite", "reblog"]})] == ["mention", "follow"]
    assert [n["type"] for n in a.notifications(account_id=c.id)] == ["mention"]
    assert a.notifications(**{"types[]": ["poll"]}) == []
    assert ids(m.walk("/api/v1/notifications", a.token, limit=3)) == ids(got)
    r = a.req("GET", "/api/v1/notifications", params={"limit": 2, "types[]": "mention"})
    assert "types%5B%5D=mention" in r.headers["link"] or "types[]=mention" in r.headers["link"]
    assert ids(a.notifications(min_id=got[2]["id"])) == ids(got[:2])
    assert ids(a.notifications(since_id=got[3]["id"], limit=1)) == ids(got[:1])
    assert ids(a.notifications(max_id=got[1]["id"])) == ids(got[2:])

    one = check("notification", a.ok("GET", f"/api/v1/notifications/{got[2]['id']}"))
    assert one["type"] == "mention"
    error(b.req("GET", f"/api/v1/notifications/{got[2]['id']}"), 404)  # not b's
    error(b.req("POST", f"/api/v1/notifications/{got[2]['id']}/dismiss"), 404)
    assert a.ok("POST", f"/api/v1/notifications/{got[2]['id']}/dismiss") == {}
    error(a.req("GET", f"/api/v1/notifications/{got[2]['id']}"), 404)
    assert [n["type"] for n in a.notifications()] == ["reblog", "favourite", "follow"]

    # undoing the cause removes the notification
    b.ok("POST", f"/api/v1/statuses/{s['id']}/unfavourite")
    b.ok("POST", f"/api/v1/statuses/{s['id']}/unreblog")
    drain()
    assert [n["type"] for n in a.notifications()] == ["follow"]

    assert a.ok("POST", "/api/v1/notifications/clear") == {}
    assert a.notifications() == []
    b.ok("POST", f"/api/v1/statuses/{s['id']}/favourite")
    drain()
    assert _kinds(a.notifications()) == [("favourite", b.id)]
    error(m.req("GET", "/api/v1/notifications"), 401)
    error(a.req("GET", "/api/v1/notifications", params={"account_id": "abc"}), 422)
    error(a.req("GET", "/api/v1/notifications", params={"max_id": "abc"}), 422)


def test_unread_count_follows_the_notifications_marker(m, drain):
    a, b = people(m, 2)
    posts = [a.post(f"n{i}") for i in range(3)]
    for s in posts:
        b.ok("POST", f"/api/v1/statuses/{s['id']}/favourite")
    drain()
    assert a.ok("GET", "/api/v1/notifications/unread_count") == {"count": 3}
    assert a.ok("GET", "/api/v1/notifications/unread_count", params={"limit": 2}) == {"count": 2}
    newest = a.notifications()[1]["id"]
    a.ok("POST", "/api/v1/markers", data={"notifications[last_read_id]": newest})
    assert a.ok("GET", "/api/v1/notifications/unread_count") == {"count": 1}
    assert a.ok("GET", "/api/v1/notifications/unread_count", params={"types[]": "follow"}) == {"count": 0}


# -- markers --------------------------------------------------------------------------------


def test_markers_save_and_read_form_and_json(m):
    a = Person(m)
    assert a.ok("GET", "/api/v1/markers") == {}
    assert a.ok("GET", "/api/v1/markers", params={"timeline[]": ["home", "notifications"]}) == {}
    saved = check("markers", a.ok("POST", "/api/v1/markers", data={"home[last_read_id]": "123"}))
    assert saved["home"]["last_read_id"] == "123" and saved["home"]["version"] == 0  # as Mastodon's
    again = a.ok("POST", "/api/v1/markers", json={"home": {"last_read_id": "456"},
                                                 "notifications": {"last_read_id": "7"}})
    assert again["home"]["version"] == 1 and again["notifications"]["version"] == 0
    same = a.ok("POST", "/api/v1/markers", data={"home[last_read_id]": "456"})
    assert same["home"] == again["home"]  # saved where it is: neither version nor time moves
    got = check("markers", a.ok("GET", "/api/v1/markers", params={"timeline[]": ["home", "notifications"]}))
    assert got["home"]["last_read_id"] == "456" and got["notifications"]["last_read_id"] == "7"
    assert set(a.ok("GET", "/api/v1/markers", params={"timeline[]": "home"})) == {"home"}
    error(a.req("POST", "/api/v1/markers", data={"home[last_read_id]": "x"}), 422)
    assert a.ok("GET", "/api/v1/markers", params={"timeline[]": "home"})["home"]["last_read_id"] == "456"
    error(m.req("GET", "/api/v1/markers"), 401)


# -- /v1 ------------------------------------------------------------------------------------


def test_v1_posts_accept_in_reply_to_id(m):
    a, b = people(m, 2)
    root = a.post("root")
    r = m.http.post("/v1/posts", json={"text": "v1 reply", "in_reply_to_id": root["id"]},
                    headers={"Authorization": f"Bearer {b.token}"})
    assert r.status_code == 201, r.text
    reply = r.json()
    assert reply["in_reply_to_id"] == root["id"]
    assert m.ok("GET", f"/v1/posts/{reply['id']}")["in_reply_to_id"] == root["id"]
    assert "in_reply_to_id" not in m.ok("GET", f"/v1/posts/{root['id']}")  # a plain post's shape
    assert b.status(reply["id"])["in_reply_to_account_id"] == a.id
    for bad, status in (("1", 404), ("abc", 422), (5, 422)):
        r = m.http.post("/v1/posts", json={"text": "x", "in_reply_to_id": bad},
                        headers={"Authorization": f"Bearer {b.token}"})
        assert r.status_code == status, r.text
        assert re.search("post", r.json()["error"]["message"] if isinstance(r.json()["error"], dict)
                         else r.json()["error"])
