"""The Mastodon client API end to end, over HTTP against a real ``homefeed serve``: every
route's happy path and errors, entities checked against tests/mastodon_schemas, the home
timeline paged with ``Link`` headers against the oracle (``/v1`` home walked to the end:
past the cache's cap, celebrities pulled), unlisted rules, the public timeline from its
cache, form and JSON bodies, CORS, the error shape, and tokens acting only for their user.
The scale-out profile (two APIs, two workers, PostgreSQL/Redis/NATS) runs the timelines."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import httpx
import jsonschema_rs
import pytest

from .conftest import CELEBRITY_THRESHOLD, MAX_POST_LENGTH, TIMELINE_CAP, Api, unique_handle, unique_word

SCHEMAS = pathlib.Path(__file__).resolve().parents[1] / "mastodon_schemas"
_ALL = {p.stem: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
_REGISTRY = jsonschema_rs.Registry([(s["$id"], s) for s in _ALL.values()])
_V = {n: jsonschema_rs.Draft202012Validator(s, registry=_REGISTRY) for n, s in _ALL.items()}
LINK_RE = re.compile(r'^<([^>]+)>; rel="next", <([^>]+)>; rel="prev"$')


def check(schema: str, value: Any) -> Any:
    errors = [f"{e.instance_path}: {e.message}" for e in _V[schema].iter_errors(value)]
    assert errors == [], (schema, errors)
    return value


class M:
    """A thin Mastodon client over httpx (what Mastodon.py and toot send)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=20.0)

    def close(self) -> None:
        self.http.close()

    def user(self) -> tuple[str, str, str]:
        handle = unique_handle("m")
        r = self.http.post("/v1/users", json={"handle": handle})
        assert r.status_code == 201, r.text
        return r.json()["id"], handle, r.json()["token"]

    def req(self, method: str, url: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = self.http.request(method, url, headers=headers, **kw)
        assert r.status_code < 500, f"{method} {url}: {r.status_code} {r.text[:500]}"
        return r

    def ok(self, method: str, url: str, token: str | None = None, **kw: Any) -> Any:
        r = self.req(method, url, token, **kw)
        assert r.status_code == 200, f"{method} {url}: {r.status_code} {r.text[:500]}"
        return r.json()

    def post(self, token: str, text: str, visibility: str = "public", json_body: bool = False) -> dict:
        body = {"status": text, "visibility": visibility}
        if json_body:
            return self.ok("POST", "/api/v1/statuses", token, json=body)
        return self.ok("POST", "/api/v1/statuses", token, data=body)

    def follow(self, token: str, account_id: str) -> dict:
        return self.ok("POST", f"/api/v1/accounts/{account_id}/follow", token)

    def walk(self, url: str, token: str | None = None, limit: int = 7, max_pages: int = 200,
             partial: bool = False) -> list[dict]:
        """Follow ``rel="next"`` as toot does (the first entry of ``Link``)."""
        out: list[dict] = []
        r = self.req("GET", url, token, params={"limit": limit})
        for _ in range(max_pages):
            assert r.status_code == 200, r.text
            items = r.json()
            out.extend(items)
            link = r.headers.get("link")
            if not items:
                assert link is None
                return out
            m = LINK_RE.match(link or "")
            assert m, link
            assert m.group(1).endswith(f"max_id={items[-1]['id']}")
            assert m.group(2).endswith(f"min_id={items[0]['id']}")
            r = self.req("GET", m.group(1), token)
        if partial:  # the first pages of a long list (the public timeline of a shared server)
            return out
        pytest.fail("too many pages")


def error(r: httpx.Response, status: int, text: str | None = None) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = check("error", r.json())
    assert set(body) <= {"error", "error_description"}
    if text is not None:
        assert body["error"] == text, body
    return body["error"]


def ids(items: list[dict]) -> list[str]:
    return [x["id"] for x in items]


@pytest.fixture(scope="module")
def m(server) -> M:
    c = M(server.base_url)
    yield c
    c.close()


# -- discovery ----------------------------------------------------------------------------


def test_instance_v1_v2_with_and_without_slash_and_nodeinfo(m, server):
    host = server.base_url.split("://", 1)[1]
    for path in ("/api/v1/instance", "/api/v1/instance/"):
        v1 = check("instance_v1", m.ok("GET", path))
        assert v1["uri"] == host and v1["urls"]["streaming_api"] == f"ws://{host}"
        assert v1["configuration"]["statuses"]["max_characters"] == MAX_POST_LENGTH
    for path in ("/api/v2/instance", "/api/v2/instance/"):
        v2 = check("instance_v2", m.ok("GET", path))
        assert v2["configuration"]["urls"]["streaming"] == f"ws://{host}"
        assert v2["api_versions"]["mastodon"] >= 2 and v2["registrations"]["enabled"] is True
        assert v2["version"].split(" ")[0] >= "4.0.0"
    links = m.ok("GET", "/.well-known/nodeinfo")["links"]
    assert links[0]["href"].endswith("/nodeinfo/2.0")
    assert m.ok("GET", "/nodeinfo/2.0")["software"]["name"] == "homefeed"


def test_startup_stubs_answer_empty_in_shape(m):
    _, _, t = m.user()
    assert m.ok("GET", "/api/v1/custom_emojis") == []
    # trends are real (the trends job): a list of Tag entities, without a token
    trends = m.ok("GET", "/api/v1/trends/tags")
    assert isinstance(trends, list) and all(check("tag", t) for t in trends)
    for path in ("/api/v1/announcements", "/api/v2/filters", "/api/v1/lists", "/api/v1/follow_requests",
                 "/api/v1/blocks", "/api/v1/mutes"):
        assert m.ok("GET", path, t) == []
        error(m.req("GET", path), 401, "The access token is invalid")
    assert m.ok("GET", "/api/v1/markers", t) == {}
    assert m.ok("GET", "/api/v1/preferences", t)["posting:default:visibility"] == "public"


# -- statuses -----------------------------------------------------------------------------


def test_post_form_and_json_get_delete(m):
    uid, handle, t = m.user()
    word = unique_word()
    a = check("status", m.post(t, f"form {word} #Tag{word} <b>", json_body=False))
    b = check("status", m.post(t, f"json {word}\n\nsecond", "unlisted", json_body=True))
    assert a["account"]["id"] == uid and a["account"]["acct"] == handle
    assert "&lt;b&gt;" in a["content"] and f"/tags/tag{word}" in a["content"]
    assert a["tags"] == [{"name": f"tag{word}", "url": a["tags"][0]["url"]}]
    assert b["visibility"] == "unlisted" and b["content"].count("<p>") == 2
    got = check("status", m.ok("GET", f"/api/v1/statuses/{a['id']}"))
    assert "favourited" not in got  # anonymous: no viewer flags
    assert m.ok("GET", f"/api/v1/statuses/{a['id']}", t)["favourited"] is False
    # stored text unchanged: /v1 shows exactly what was sent
    assert m.ok("GET", f"/v1/posts/{b['id']}")["text"] == f"json {word}\n\nsecond"
    gone = check("status", m.ok("DELETE", f"/api/v1/statuses/{a['id']}", t))
    assert gone["text"] == f"form {word} #Tag{word} <b>"
    error(m.req("GET", f"/api/v1/statuses/{a['id']}"), 404, "Record not found")
    error(m.req("DELETE", f"/api/v1/statuses/{a['id']}", t), 404, "Record not found")


def test_post_errors_and_unknown_params(m):
    _, _, t = m.user()
    for vis in ("private", "direct"):
        msg = error(m.req("POST", "/api/v1/statuses", t, data={"status": "x", "visibility": vis}), 422)
        assert "not supported" in msg and vis in msg
    error(m.req("POST", "/api/v1/statuses", t, data={"status": "x" * (MAX_POST_LENGTH + 1)}), 422)
    error(m.req("POST", "/api/v1/statuses", t, data={"visibility": "public"}), 422)
    error(m.req("POST", "/api/v1/statuses", data={"status": "x"}), 401, "The access token is invalid")
    error(m.req("POST", "/api/v1/statuses", "nope", data={"status": "x"}), 401, "The access token is invalid")
    r = m.ok("POST", "/api/v1/statuses", t, data={"status": "ok", "lang": "en", "sensitive": "0",
                                                      "media_ids[]": []})
    assert r["content"] == "<p>ok</p>"
    # access_token in the body, as Mastodon allows
    assert m.ok("POST", "/api/v1/statuses", data={"status": "tok", "access_token": t})["content"] == "<p>tok</p>"


def test_idempotency_key_posts_once(m):
    uid, _, t = m.user()
    h = {"Idempotency-Key": unique_word("key")}
    first = m.req("POST", "/api/v1/statuses", t, json={"status": "once"}, headers=h)
    again = m.req("POST", "/api/v1/statuses", t, json={"status": "once"}, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.headers.get("idempotent-replayed") == "true"
    check("status", again.json())
    assert len(m.ok("GET", f"/api/v1/accounts/{uid}/statuses")) == 1


def test_deleting_another_users_status_is_404_and_changes_nothing(m):
    _, _, t1 = m.user()
    _, _, t2 = m.user()
    s = m.post(t1, "mine")
    error(m.req("DELETE", f"/api/v1/statuses/{s['id']}", t2), 404, "Record not found")
    assert m.ok("GET", f"/api/v1/statuses/{s['id']}")["id"] == s["id"]


# -- accounts -----------------------------------------------------------------------------


def test_accounts_lookup_get_statuses_follows_relationships(m, drain):
    a_id, a, ta = m.user()
    b_id, b, tb = m.user()
    acc = check("account", m.ok("GET", f"/api/v1/accounts/lookup?acct={a}"))
    assert acc["id"] == a_id and acc["username"] == a and acc["note"] == ""
    assert m.ok("GET", f"/api/v1/accounts/lookup?acct=@{a}")["id"] == a_id
    error(m.req("GET", "/api/v1/accounts/lookup?acct=nobody_here_x"), 404, "Record not found")
    error(m.req("GET", "/api/v1/accounts/999"), 404, "Record not found")
    error(m.req("GET", "/api/v1/accounts/abc"), 404)
    rel = check("relationship", m.follow(tb, a_id))
    assert rel["following"] is True and rel["id"] == a_id
    rels = m.ok("GET", f"/api/v1/accounts/relationships?id[]={a_id}&id[]={b_id}", tb)
    assert [check("relationship", r)["following"] for r in rels] == [True, False]
    assert m.ok("GET", f"/api/v1/accounts/relationships?id[]={b_id}", ta)[0]["followed_by"] is True
    error(m.req("GET", f"/api/v1/accounts/relationships?id[]={a_id}"), 401)
    assert ids(m.ok("GET", f"/api/v1/accounts/{a_id}/followers")) == [b_id]
    assert ids(m.ok("GET", f"/api/v1/accounts/{b_id}/following")) == [a_id]
    assert check("account", m.ok("GET", f"/api/v1/accounts/{a_id}"))["id"] == a_id
    posted = [m.post(ta, f"p{i}", "unlisted" if i % 2 else "public")["id"] for i in range(5)]
    assert ids(m.walk(f"/api/v1/accounts/{a_id}/statuses", limit=2)) == posted[::-1]
    assert m.ok("GET", f"/api/v1/accounts/{a_id}/statuses?only_media=1") == []
    assert ids(m.ok("GET", f"/api/v1/accounts/{a_id}/statuses?exclude_replies=true")) == posted[::-1]
    assert check("relationship", m.ok("POST", f"/api/v1/accounts/{a_id}/unfollow", tb))["following"] is False
    error(m.req("POST", f"/api/v1/accounts/{b_id}/follow", tb), 422)  # yourself
    error(m.req("POST", "/api/v1/accounts/12345/follow", tb), 404)


def test_a_token_never_acts_for_another_user(m, drain):
    a_id, _, ta = m.user()
    b_id, _, tb = m.user()
    c_id, _, tc = m.user()
    m.follow(tb, c_id)
    s = m.post(ta, "a's post")
    assert m.post(tb, "b's post")["account"]["id"] == b_id
    error(m.req("DELETE", f"/api/v1/statuses/{s['id']}", tb), 404)
    drain()
    assert [x["account"]["id"] for x in m.ok("GET", "/api/v1/timelines/home", tb)] == [b_id]
    assert m.ok("GET", f"/api/v1/accounts/relationships?id[]={c_id}", ta)[0]["following"] is False


# -- timelines ----------------------------------------------------------------------------


def oracle_home(api: Api, token: str) -> list[str]:
    return api.home_ids(token)


def test_home_paged_with_link_equals_the_oracle_past_the_cap_with_celebrities(m, api, drain):
    reader_id, _, tr = m.user()
    celeb_id, celeb, tc = m.user()
    fans = [m.user() for _ in range(CELEBRITY_THRESHOLD)]
    for _, _, tf in fans:
        m.follow(tf, celeb_id)
    m.follow(tr, celeb_id)
    friends = [m.user() for _ in range(2)]
    for fid, _, _ in friends:
        m.follow(tr, fid)
    posted = []
    for i in range(3 * TIMELINE_CAP):
        posted.append(m.post(tc, f"celeb {i}")["id"])
        posted.append(m.post(friends[i % 2][2], f"friend {i}", "unlisted" if i % 3 == 0 else "public")["id"])
    posted.append(m.post(tr, "mine")["id"])
    drain()
    expected = oracle_home(api, tr)
    assert set(posted) <= set(expected)
    for limit in (1, 4, 7, 40):
        got = m.walk("/api/v1/timelines/home", tr, limit=limit)
        assert ids(got) == expected, limit
    for s in got[:3]:
        check("status", s)
    # min_id: the page just newer than it; since_id: the newest ones newer than it
    pivot = expected[10]
    newer = m.ok("GET", f"/api/v1/timelines/home?min_id={pivot}&limit=3", tr)
    assert ids(newer) == expected[7:10]
    since = m.ok("GET", f"/api/v1/timelines/home?since_id={pivot}&limit=3", tr)
    assert ids(since) == expected[:3]
    assert ids(m.ok("GET", f"/api/v1/timelines/home?max_id={pivot}&limit=2", tr)) == expected[11:13]
    # the prev link of the first page walks nothing newer
    r = m.req("GET", "/api/v1/timelines/home?limit=5", tr)
    prev = LINK_RE.match(r.headers["link"]).group(2)
    assert m.ok("GET", prev, tr) == []
    assert ids(m.ok("GET", "/api/v1/timelines/home?limit=500", tr)) == expected[:40]  # clamped to 40
    error(m.req("GET", "/api/v1/timelines/home"), 401, "The access token is invalid")
    error(m.req("GET", "/api/v1/timelines/home?max_id=abc", tr), 422)


def test_unlisted_reaches_followers_and_profile_not_public_or_tag(m, drain):
    a_id, _, ta = m.user()
    _, _, tb = m.user()
    m.follow(tb, a_id)
    tag = unique_word("tg")
    pub = m.post(ta, f"public #{tag}")
    unl = m.post(ta, f"unlisted #{tag}", "unlisted")
    drain()
    assert ids(m.ok("GET", "/api/v1/timelines/home", tb))[:2] == [unl["id"], pub["id"]]
    assert ids(m.ok("GET", f"/api/v1/accounts/{a_id}/statuses"))[:2] == [unl["id"], pub["id"]]
    public = ids(m.walk("/api/v1/timelines/public", limit=40, max_pages=3, partial=True))
    assert pub["id"] in public and unl["id"] not in public
    assert ids(m.ok("GET", f"/api/v1/timelines/tag/{tag}")) == [pub["id"]]
    assert ids(m.ok("GET", f"/api/v1/timelines/tag/{tag.upper()}?local=true")) == [pub["id"]]
    assert ids(m.ok("GET", "/api/v1/timelines/public?local=1&limit=1")) == [pub["id"]]
    assert m.ok("GET", "/api/v1/timelines/public?remote=true") == []
    assert m.ok("GET", "/api/v1/timelines/public?only_media=1") == []


def test_public_timeline_pages_past_the_cap_and_drops_deleted(m, drain):
    _, _, t = m.user()
    mine = [m.post(t, f"pub {i}")["id"] for i in range(2 * TIMELINE_CAP + 1)]
    drain()
    top = ids(m.ok("GET", "/api/v1/timelines/public?limit=40"))
    assert top[: len(mine)] == mine[::-1]
    walked = ids(m.walk("/api/v1/timelines/public", limit=3, max_pages=10, partial=True))
    assert walked[: len(mine)] == mine[::-1] and len(walked) == len(set(walked))
    m.ok("DELETE", f"/api/v1/statuses/{mine[-1]}", t)
    drain()
    assert mine[-1] not in ids(m.ok("GET", "/api/v1/timelines/public?limit=40"))


# -- search -------------------------------------------------------------------------------


def test_search_v2(m, drain):
    uid, handle, t = m.user()
    word = unique_word()
    s1 = m.post(t, f"alpha {word}")
    s2 = m.post(t, f"beta {word} #{word}")
    drain()
    got = check("search", m.ok("GET", f"/api/v2/search?q={word}&type=statuses", t))
    assert ids(got["statuses"]) == [s2["id"], s1["id"]] and got["accounts"] == []
    assert ids(m.ok("GET", f"/api/v2/search?q={word}&type=statuses&limit=1&offset=1")["statuses"]) == [s1["id"]]
    acc = check("search", m.ok("GET", f"/api/v2/search?q=@{handle}&resolve=true&type=accounts"))
    assert ids(acc["accounts"]) == [uid]
    tags = m.ok("GET", f"/api/v2/search?q=%23{word}&type=hashtags")["hashtags"]
    assert [check("tag", x)["name"] for x in tags] == [word]
    assert m.ok("GET", f"/api/v2/search?q=alpha+{word}&exclude_unreviewed=true")["statuses"][0]["id"] == s1["id"]
    error(m.req("GET", f"/api/v2/search?q={word}&type=bogus"), 422)


# -- CORS and errors ----------------------------------------------------------------------


def test_cors_preflight_and_headers(m):
    r = m.req("OPTIONS", "/api/v1/statuses", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"]
    r = m.req("GET", "/api/v1/timelines/public", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "*" and "Link" in r.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in m.req("GET", "/v1/users/x", headers={"Origin": "https://a"}).headers


def test_mastodon_error_shapes_and_v1_keeps_its_own(m):
    error(m.req("GET", "/api/v1/nothing_here"), 404, "Record not found")
    error(m.req("GET", "/api/v1/statuses/1"), 404, "Record not found")
    error(m.req("GET", "/api/v1/timelines/home", "bad-token"), 401, "The access token is invalid")
    r = m.req("GET", "/v1/timelines/home", "bad-token")
    assert r.status_code == 401 and set(r.json()["error"]) == {"code", "message"}
