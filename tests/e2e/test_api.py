"""End-to-end tests of the homefeed HTTP API, grouped by API row (see the spec table).

The server is shared by the whole session, so every test makes its own users and words.
Bad inputs live in ``test_bad_input.py``.
"""

from __future__ import annotations

import os as _os
import random
import threading
import unicodedata
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from .conftest import (
    CELEBRITY_THRESHOLD,
    MAX_ID,
    MAX_POST_LENGTH,
    TIMELINE_CAP,
    Api,
    assert_error,
    assert_id,
    is_json_media,
    parse_time,
    sorted_desc,
    unique_handle,
    unique_word,
)


def ids_of(items):
    return [x["id"] for x in items]


# ============================================================================================
# GET /healthz, GET /openapi.json
# ============================================================================================


class TestHealthAndOpenAPI:
    def test_healthz_reports_ok_and_consumer_lag(self, api: Api):
        r = api.get("/healthz")
        assert r.status_code == 200
        assert is_json_media(r)
        body = r.json()
        assert body["status"] == "ok"
        assert set(body["consumers"]) >= {"fanout", "indexer"}
        for name, c in body["consumers"].items():
            assert isinstance(c["behind"], int) and not isinstance(c["behind"], bool), (name, c)
            assert c["behind"] >= 0, (name, c)

    def test_healthz_lag_returns_to_zero_after_writes(self, api: Api):
        u = api.register()
        for i in range(5):
            api.new_post(u["token"], f"lag {i}")
        api.drain()
        assert all(c["behind"] == 0 for c in api.health()["consumers"].values())

    def test_openapi_document_covers_every_route(self, api: Api):
        r = api.get("/openapi.json")
        assert r.status_code == 200
        assert is_json_media(r)
        doc = r.json()
        assert isinstance(doc.get("openapi"), str) and doc["openapi"].startswith("3"), doc.get("openapi")
        assert isinstance(doc.get("paths"), dict)

        def norm(path: str) -> str:
            # "/v1/posts/{post_id}" and "/v1/posts/{id}" are the same route
            return "/".join("{}" if seg.startswith("{") and seg.endswith("}") else seg
                            for seg in path.split("/"))

        paths = {norm(p): {m.lower() for m in ops} for p, ops in doc["paths"].items()}
        expected = {
            "/v1/users": {"post"},
            "/v1/users/{}": {"get"},
            "/v1/users/{}/follow": {"post", "delete"},
            "/v1/users/{}/followers": {"get"},
            "/v1/users/{}/following": {"get"},
            "/v1/users/{}/posts": {"get"},
            "/v1/posts": {"post"},
            "/v1/posts/{}": {"get", "delete"},
            "/v1/timelines/home": {"get"},
            "/v1/search/posts": {"get"},
            "/healthz": {"get"},
        }
        missing = {p: sorted(ms - paths.get(p, set())) for p, ms in expected.items()
                   if not ms <= paths.get(p, set())}
        assert not missing, f"routes missing from /openapi.json: {missing}"

    def test_unknown_route_is_a_json_404(self, api: Api):
        assert_error(api.get("/v1/no/such/route"), 404)


# ============================================================================================
# GET / and GET /docs: pages for people
# ============================================================================================


class TestPagesForPeople:
    def test_about_says_what_this_is_and_links_onwards(self, api: Api):
        from homefeed import __version__

        r = api.get("/about")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert "homefeed" in r.text and __version__ in r.text
        for target in ("/", "/docs", "/openapi.json", "/dashboard", "/healthz", "/readyz"):
            assert f'href="{target}"' in r.text, target
        for target in ("/", "/docs", "/openapi.json", "/dashboard", "/healthz", "/readyz"):
            assert api.get(target).status_code == 200, target
        # the web client, at /, links here
        assert "/about" in api.get("/web/" + api.get("/").text.split("/web/")[1].split("/")[0] + "/app.js").text

    def test_docs_render_every_operation_and_schema_with_no_script_or_cdn(self, api: Api):
        doc = api.get("/openapi.json").json()
        r = api.get("/docs")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/html")
        page = r.text
        assert "<script" not in page.lower(), "no script: works behind a strict CSP"
        assert "http://" not in page and "https://" not in page, "nothing fetched from elsewhere"
        for path, item in doc["paths"].items():
            for method, op in item.items():
                assert f'id="op-{op["operationId"]}"' in page, (method, path)
                assert f"{method.upper()}</span> <span class=\"path\">{path}</span>" in page, (method, path)
                for param in op.get("parameters", []):
                    if "name" in param:
                        assert f"<code>{param['name']}</code>" in page, (path, param["name"])
        for name in doc["components"]["schemas"]:
            assert f'id="schema-{name}"' in page, name
        # the limits shown are the ones enforced
        assert "^[A-Za-z0-9_]{1,30}$" in page
        assert "1-100" in page

    def test_pages_run_under_a_csp_without_unsafe_inline_and_the_dashboard_files_are_cached(self, api: Api):
        import base64
        import hashlib
        import re

        for path in ("/", "/about", "/docs", "/dashboard"):
            r = api.get(path)
            policy = r.headers.get("content-security-policy", "")
            assert "default-src 'none'" in policy and "unsafe-inline" not in policy, (path, policy)
            assert "style=" not in r.text, f"{path}: a style attribute needs 'unsafe-inline'"
            assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), f"{path}: an inline script"
            for style in re.findall(r"<style>(.*?)</style>", r.text, flags=re.S):  # allowed by digest
                digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
                assert f"'sha256-{digest}'" in policy, path
        page = api.get("/dashboard").text
        for name, media in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            link = re.search(rf'(?:src|href)="({re.escape(name)}\?v=[0-9a-f]+)"', page)
            assert link, name
            r = api.get("/" + link.group(1))
            assert r.status_code == 200 and r.headers["content-type"].startswith(media), name
            assert "max-age=" in r.headers["cache-control"] and r.headers["etag"], name
            again = api.request("GET", "/" + name, headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304, name

    def test_wrong_method_is_a_json_4xx(self, api: Api):
        r = api.request("PUT", "/v1/posts", json={"text": "x"})
        assert_error(r, {404, 405})


# ============================================================================================
# POST /v1/users
# ============================================================================================


class TestRegister:
    def test_register_returns_201_with_id_handle_display_name_token(self, api: Api):
        handle = unique_handle("Reg")
        r = api.post("/v1/users", json={"handle": handle, "display_name": "Ada Lovelace"})
        assert r.status_code == 201, r.text
        assert is_json_media(r)
        body = r.json()
        assert set(body) >= {"id", "handle", "display_name", "token"}
        assert_id(body["id"])
        assert body["handle"] == handle  # case preserved
        assert body["display_name"] == "Ada Lovelace"
        assert isinstance(body["token"], str) and len(body["token"]) >= 16

    def test_display_name_is_optional(self, api: Api):
        r = api.post("/v1/users", json={"handle": unique_handle()})
        assert r.status_code == 201, r.text
        assert isinstance(r.json()["display_name"], str)

    def test_unicode_display_name_round_trips(self, api: Api):
        name = "Zoë 🦊 زهرة e\u0301"
        u = api.register(display_name=name)
        assert u["display_name"] == name
        assert api.profile(u["handle"])["display_name"] == name

    @pytest.mark.parametrize("handle", ["q", "Z", "_", "7", "A_b_9", "__init__", "1234567890"])
    def test_valid_handle_shapes_are_accepted(self, api: Api, handle: str):
        # the session's server starts empty and no other test uses these exact handles
        r = api.post("/v1/users", json={"handle": handle})
        assert r.status_code == 201, r.text
        assert r.json()["handle"] == handle
        assert api.profile(handle)["id"] == r.json()["id"]

    def test_thirty_character_handle_is_accepted(self, api: Api):
        h = ("T" + unique_handle("")[1:] + "x" * 30)[:30]
        assert len(h) == 30
        r = api.post("/v1/users", json={"handle": h})
        assert r.status_code == 201, r.text

    def test_each_user_gets_a_distinct_working_token(self, api: Api):
        a, b = api.register(), api.register()
        assert a["token"] != b["token"]
        assert a["id"] != b["id"]
        pa = api.new_post(a["token"], "mine")
        assert pa["author"]["handle"] == a["handle"]
        pb = api.new_post(b["token"], "mine too")
        assert pb["author"]["handle"] == b["handle"]

    def test_ids_are_time_ordered(self, api: Api):
        a = api.register()
        b = api.register()
        assert assert_id(b["id"]) > assert_id(a["id"])

    def test_taken_handle_is_409_and_changes_nothing(self, api: Api):
        u = api.register(display_name="first")
        r = api.post("/v1/users", json={"handle": u["handle"], "display_name": "second"})
        assert_error(r, 409)
        p = api.profile(u["handle"])
        assert p["id"] == u["id"] and p["display_name"] == "first"

    @pytest.mark.parametrize("variant", [str.upper, str.lower, str.swapcase],
                             ids=["upper", "lower", "swapcase"])
    def test_handles_are_unique_ignoring_case(self, api: Api, variant):
        h = "Mx_" + unique_handle("")[1:]
        u = api.register(h)
        other = variant(h)
        assert other != h
        assert_error(api.post("/v1/users", json={"handle": other}), 409)
        # still exactly one user: every spelling finds the original
        assert api.profile(other)["id"] == u["id"]

    def test_concurrent_registrations_of_one_handle_create_one_user(self, api: Api):
        h = "Race_" + unique_handle("")[1:]
        spellings = [h, h.upper(), h.lower(), h.swapcase()] * 3
        results: list[int] = []
        lock = threading.Lock()

        def go(spelling: str) -> None:
            with httpx.Client(base_url=api.base_url, timeout=20) as c:
                r = c.post("/v1/users", json={"handle": spelling})
            with lock:
                results.append(r.status_code)

        threads = [threading.Thread(target=go, args=(s,)) for s in spellings]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [201] + [409] * (len(spellings) - 1), results


# ============================================================================================
# GET /v1/users/{handle}
# ============================================================================================


class TestProfile:
    def test_new_profile_has_zero_counts(self, api: Api):
        u = api.register(display_name="Prof")
        r = api.get(f"/v1/users/{u['handle']}")
        assert r.status_code == 200
        assert is_json_media(r)
        p = r.json()
        assert p["id"] == u["id"]
        assert p["handle"] == u["handle"]
        assert p["display_name"] == "Prof"
        assert (p["followers_count"], p["following_count"], p["posts_count"]) == (0, 0, 0)

    def test_profile_never_shows_the_token(self, api: Api):
        u = api.register()
        r = api.get(f"/v1/users/{u['handle']}")
        assert "token" not in r.json()
        assert u["token"] not in r.text

    @pytest.mark.parametrize("spelling", [str.upper, str.lower, str.swapcase])
    def test_lookup_ignores_case_and_returns_the_registered_spelling(self, api: Api, spelling):
        h = "CaSe_" + unique_handle("")[1:]
        u = api.register(h)
        p = api.profile(spelling(h))
        assert p["id"] == u["id"]
        assert p["handle"] == h

    def test_counts_follow_posts_follows_and_deletes(self, api: Api):
        a, b, c = api.register(), api.register(), api.register()
        p1 = api.new_post(a["token"], "one")
        api.new_post(a["token"], "two")
        api.follow(b["token"], a["handle"])
        api.follow(c["token"], a["handle"])
        api.follow(a["token"], c["handle"])
        assert api.counts(a["handle"]) == (2, 1, 2)
        assert api.counts(b["handle"]) == (0, 1, 0)
        assert api.counts(c["handle"]) == (1, 1, 0)
        api.unfollow(b["token"], a["handle"])
        api.delete_post(a["token"], p1["id"])
        assert api.counts(a["handle"]) == (1, 1, 1)
        assert api.counts(b["handle"]) == (0, 0, 0)

    def test_unknown_user_is_404(self, api: Api):
        assert_error(api.get(f"/v1/users/{unique_handle('ghost')}"), 404)


# ============================================================================================
# POST / DELETE /v1/users/{handle}/follow
# ============================================================================================


class TestFollow:
    def test_follow_and_unfollow_answer_following_flag(self, api: Api):
        a, b = api.register(), api.register()
        r = api.post(f"/v1/users/{b['handle']}/follow", token=a["token"])
        assert r.status_code == 200 and r.json() == {"following": True}
        assert is_json_media(r)
        assert api.counts(b["handle"])[0] == 1
        assert api.counts(a["handle"])[1] == 1
        r = api.delete(f"/v1/users/{b['handle']}/follow", token=a["token"])
        assert r.status_code == 200 and r.json() == {"following": False}
        assert api.counts(b["handle"])[0] == 0
        assert api.counts(a["handle"])[1] == 0

    def test_follow_is_idempotent(self, api: Api):
        a, b = api.register(), api.register()
        for _ in range(3):
            r = api.post(f"/v1/users/{b['handle']}/follow", token=a["token"])
            assert r.status_code == 200 and r.json() == {"following": True}
        assert api.counts(b["handle"]) == (1, 0, 0)
        assert api.counts(a["handle"]) == (0, 1, 0)
        followers = api.walk(f"/v1/users/{b['handle']}/followers", key="users")
        assert [u["handle"] for u in followers] == [a["handle"]]

    def test_unfollow_is_idempotent_also_when_never_followed(self, api: Api):
        a, b = api.register(), api.register()
        for _ in range(2):
            r = api.delete(f"/v1/users/{b['handle']}/follow", token=a["token"])
            assert r.status_code == 200 and r.json() == {"following": False}
        assert api.counts(b["handle"]) == (0, 0, 0)
        api.follow(a["token"], b["handle"])
        for _ in range(2):
            r = api.delete(f"/v1/users/{b['handle']}/follow", token=a["token"])
            assert r.status_code == 200 and r.json() == {"following": False}
        assert api.counts(b["handle"]) == (0, 0, 0)
        assert api.counts(a["handle"]) == (0, 0, 0)

    def test_follow_by_any_case_of_the_handle(self, api: Api):
        a, b = api.register(), api.register("Fc_" + unique_handle("")[1:])
        api.follow(a["token"], b["handle"].upper())
        api.follow(a["token"], b["handle"].lower())  # same user: still one follow
        assert api.counts(b["handle"])[0] == 1
        api.unfollow(a["token"], b["handle"].swapcase())
        assert api.counts(b["handle"])[0] == 0

    @pytest.mark.parametrize("method", ["POST", "DELETE"])
    @pytest.mark.parametrize("spelling", [str, str.upper, str.swapcase], ids=["same", "upper", "swapcase"])
    def test_following_yourself_is_422(self, api: Api, method, spelling):
        u = api.register("Me_" + unique_handle("")[1:])
        before = api.snapshot(u["handle"])
        r = api.request(method, f"/v1/users/{spelling(u['handle'])}/follow", token=u["token"])
        if method == "POST":
            assert_error(r, 422)
        else:
            # unfollowing yourself: never a follow either way; 422 or an idempotent "false"
            assert r.status_code in (200, 422), r.text
            if r.status_code == 200:
                assert r.json() == {"following": False}
            else:
                assert_error(r, 422)
        assert api.snapshot(u["handle"]) == before

    def test_follow_acts_only_as_the_token_holder(self, api: Api):
        a, b, c = api.register(), api.register(), api.register()
        api.follow(a["token"], c["handle"])
        assert [u["handle"] for u in api.walk(f"/v1/users/{c['handle']}/followers", key="users")] == [a["handle"]]
        assert api.counts(b["handle"]) == (0, 0, 0)

    def test_concurrent_follows_count_once(self, api: Api):
        a, b = api.register(), api.register()
        codes: list[tuple[int, dict]] = []
        lock = threading.Lock()

        def go():
            with httpx.Client(base_url=api.base_url, timeout=20) as c:
                r = c.post(f"/v1/users/{b['handle']}/follow", headers={"Authorization": f"Bearer {a['token']}"})
            with lock:
                codes.append((r.status_code, r.json() if r.status_code == 200 else {}))

        ts = [threading.Thread(target=go) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert all(c == (200, {"following": True}) for c in codes), codes
        assert api.counts(b["handle"]) == (1, 0, 0)
        assert api.counts(a["handle"]) == (0, 1, 0)


# ============================================================================================
# GET /v1/users/{handle}/followers, .../following
# ============================================================================================


class TestFollowLists:
    def test_followers_newest_follow_first_with_paging(self, api: Api):
        star = api.register()
        fans = [api.register() for _ in range(5)]
        for f in fans:
            api.follow(f["token"], star["handle"])
        expected = [f["handle"] for f in reversed(fans)]
        for limit in (1, 2, 3, 5, 100):
            users = api.walk(f"/v1/users/{star['handle']}/followers", key="users", limit=limit)
            assert [u["handle"] for u in users] == expected, f"limit={limit}"
            for u, f in zip(users, reversed(fans)):
                assert u["id"] == f["id"]
                assert_id(u["id"])
                assert "token" not in u

    def test_following_newest_follow_first_with_paging(self, api: Api):
        fan = api.register()
        stars = [api.register() for _ in range(4)]
        for s in stars:
            api.follow(fan["token"], s["handle"])
        expected = [s["handle"] for s in reversed(stars)]
        for limit in (1, 3, 20):
            users = api.walk(f"/v1/users/{fan['handle']}/following", key="users", limit=limit)
            assert [u["handle"] for u in users] == expected, f"limit={limit}"

    def test_default_page_is_twenty(self, api: Api):
        star = api.register()
        for _ in range(21):
            api.follow(api.register()["token"], star["handle"])
        users, nxt = api.page(f"/v1/users/{star['handle']}/followers", key="users")
        assert len(users) == 20
        assert nxt is not None
        rest, nxt2 = api.page(f"/v1/users/{star['handle']}/followers", key="users", before=nxt)
        assert len(rest) == 1 and nxt2 is None
        assert rest[0]["id"] not in ids_of(users)

    def test_unfollow_removes_from_both_lists_and_refollow_moves_to_front(self, api: Api):
        star = api.register()
        a, b, c = api.register(), api.register(), api.register()
        for f in (a, b, c):
            api.follow(f["token"], star["handle"])
        api.unfollow(b["token"], star["handle"])
        assert [u["handle"] for u in api.walk(f"/v1/users/{star['handle']}/followers", key="users")] == [
            c["handle"], a["handle"]]
        assert api.walk(f"/v1/users/{b['handle']}/following", key="users") == []
        api.follow(a["token"], star["handle"])  # already following: nothing moves
        assert [u["handle"] for u in api.walk(f"/v1/users/{star['handle']}/followers", key="users")] == [
            c["handle"], a["handle"]]
        api.follow(b["token"], star["handle"])  # a new follow: newest first
        assert [u["handle"] for u in api.walk(f"/v1/users/{star['handle']}/followers", key="users")] == [
            b["handle"], c["handle"], a["handle"]]

    def test_empty_lists(self, api: Api):
        u = api.register()
        for rel in ("followers", "following"):
            users, nxt = api.page(f"/v1/users/{u['handle']}/{rel}", key="users")
            assert users == [] and nxt is None

    def test_lists_ignore_handle_case(self, api: Api):
        star = api.register("Lc_" + unique_handle("")[1:])
        fan = api.register()
        api.follow(fan["token"], star["handle"])
        users = api.walk(f"/v1/users/{star['handle'].upper()}/followers", key="users")
        assert [u["handle"] for u in users] == [fan["handle"]]

    @pytest.mark.parametrize("rel", ["followers", "following"])
    def test_unknown_user_is_404(self, api: Api, rel):
        assert_error(api.get(f"/v1/users/{unique_handle('nobody')}/{rel}"), 404)


# ============================================================================================
# POST /v1/posts
# ============================================================================================

ROUND_TRIP_TEXTS = {
    "ascii": "hello world",
    "emoji": "launch day 🚀🔥 👩🏽‍💻 🇫🇷 ❤️",
    "zwj-family": "👨‍👩‍👧‍👦 family",
    "rtl-arabic": "مرحبا بالعالم",
    "rtl-hebrew-mixed": "שלום world עולם 123",
    "bidi-controls": "a\u202eb\u202cc \u200f\u200e",
    "combining-nfd": "Cafe\u0301 na\u0308ive",
    "combining-stack": "Z\u0351\u0345\u0300\u0301a\u0308\u0334l\u0336g\u0337o",
    "nfc": "Café naïve",
    "cjk": "東京タワー、日本語のテキスト",
    "devanagari": "नमस्ते दुनिया",
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 🀄",
    "zero-width": "zero\u200bwidth\ufeffbom",
    "surrounding-space": "  padded  ",
    "newlines-tabs": "line1\nline2\r\nline3\ttabbed\r",
    "quotes-backslashes": 'she said "hi" \\o/ \'ok\' </script>',
    "json-looking": '{"text": "nested"} [1,2]',
    "html": "<b>bold</b> &amp; <img src=x onerror=alert(1)>",
    "sql": "'; DROP TABLE posts; --",
    "nul-looking": "\\u0000 is not a NUL",
    "private-use": "\ue000\U000f0000",
    "noncharacter": "\ufffe\uffff",
    "replacement": "\ufffd",
    "line-separators": "a\u2028b\u2029c",
}


class TestCreatePost:
    def test_create_returns_201_with_the_post(self, api: Api):
        u = api.register()
        t0 = datetime.now(timezone.utc)
        r = api.post("/v1/posts", json={"text": "first post"}, token=u["token"])
        assert r.status_code == 201, r.text
        assert is_json_media(r)
        p = r.json()
        assert set(p) >= {"id", "author", "text", "created_at"}
        assert_id(p["id"])
        assert p["author"]["id"] == u["id"]
        assert p["author"]["handle"] == u["handle"]
        assert p["text"] == "first post"
        created = parse_time(p["created_at"])
        assert abs(created - t0) < timedelta(seconds=60), (created, t0)
        assert api.counts(u["handle"])[2] == 1

    def test_post_ids_increase_with_time_across_users(self, api: Api):
        a, b = api.register(), api.register()
        posts = []
        for i in range(6):
            posts.append(api.new_post((a if i % 2 else b)["token"], f"n{i}"))
        ids = [assert_id(p["id"]) for p in posts]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        times = [parse_time(p["created_at"]) for p in posts]
        assert times == sorted(times)

    @pytest.mark.parametrize("text", list(ROUND_TRIP_TEXTS.values()), ids=list(ROUND_TRIP_TEXTS))
    def test_text_round_trips_exactly(self, api: Api, text: str):
        u = api.register()
        p = api.new_post(u["token"], text)
        assert p["text"] == text
        got = api.get(f"/v1/posts/{p['id']}").json()["text"]
        assert got == text
        assert got.encode("utf-8", "surrogatepass") == text.encode("utf-8", "surrogatepass")
        listed = api.page(f"/v1/users/{u['handle']}/posts")[0]
        assert listed[0]["text"] == text
        home = api.page("/v1/timelines/home", token=u["token"])[0]
        assert home[0]["text"] == text

    def test_nfd_is_not_normalised_to_nfc(self, api: Api):
        u = api.register()
        nfd = unicodedata.normalize("NFD", "éàü Ångström")
        assert nfd != unicodedata.normalize("NFC", nfd)
        p = api.new_post(u["token"], nfd)
        assert api.get(f"/v1/posts/{p['id']}").json()["text"] == nfd

    @pytest.mark.parametrize("text", [
        "x" * MAX_POST_LENGTH,
        "🚀" * MAX_POST_LENGTH,                       # 4 UTF-8 bytes, 2 UTF-16 units each
        "e\u0301" * (MAX_POST_LENGTH // 2),           # 500 code points, 250 graphemes
        "ア" * MAX_POST_LENGTH,
    ], ids=["ascii", "astral-emoji", "combining", "cjk"])
    def test_exactly_max_length_code_points_is_accepted(self, api: Api, text: str):
        assert len(text) == MAX_POST_LENGTH
        u = api.register()
        p = api.new_post(u["token"], text)
        assert api.get(f"/v1/posts/{p['id']}").json()["text"] == text

    @pytest.mark.parametrize("text", ["a", "\n.\n", "  x", "🙂", "\u200bx\u200b"],
                             ids=["one-char", "dot-in-newlines", "leading-space", "emoji-only",
                                  "zero-width-spaces-around-a-letter"])
    def test_minimal_texts_with_one_visible_character(self, api: Api, text: str):
        u = api.register()
        assert api.new_post(u["token"], text)["text"] == text

    def test_concurrent_posts_all_land_with_distinct_ids(self, api: Api):
        u = api.register()
        results: list[httpx.Response] = []
        lock = threading.Lock()

        def go(i):
            with httpx.Client(base_url=api.base_url, timeout=20) as c:
                r = c.post("/v1/posts", json={"text": f"c{i}"}, headers={"Authorization": f"Bearer {u['token']}"})
            with lock:
                results.append(r)

        ts = [threading.Thread(target=go, args=(i,)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert [r.status_code for r in results] == [201] * 16, [r.text for r in results if r.status_code != 201]
        ids = {r.json()["id"] for r in results}
        assert len(ids) == 16
        assert api.counts(u["handle"])[2] == 16
        assert set(api.user_post_ids(u["handle"], limit=7)) == ids
        assert set(api.home_ids(u["token"], limit=7)) == ids


# ============================================================================================
# GET /v1/posts/{id}, DELETE /v1/posts/{id}
# ============================================================================================


class TestGetAndDeletePost:
    def test_get_returns_the_created_post(self, api: Api):
        u = api.register()
        p = api.new_post(u["token"], "read me")
        r = api.get(f"/v1/posts/{p['id']}")
        assert r.status_code == 200
        assert is_json_media(r)
        assert r.json() == p

    def test_get_needs_no_token(self, api: Api):
        u = api.register()
        p = api.new_post(u["token"], "public")
        assert api.http.get(f"/v1/posts/{p['id']}").status_code == 200

    def test_unknown_id_is_404(self, api: Api):
        u = api.register()
        p = api.new_post(u["token"], "x")
        for missing in (str(int(p["id"]) + 10**9), str(MAX_ID), "1"):
            assert_error(api.get(f"/v1/posts/{missing}"), 404)

    def test_delete_own_post_is_204_then_gone(self, api: Api):
        u = api.register()
        keep = api.new_post(u["token"], "keep")
        p = api.new_post(u["token"], "delete me")
        r = api.delete(f"/v1/posts/{p['id']}", token=u["token"])
        assert r.status_code == 204, r.text
        assert r.content == b""
        assert_error(api.get(f"/v1/posts/{p['id']}"), 404)
        assert api.user_post_ids(u["handle"]) == [keep["id"]]
        assert api.counts(u["handle"])[2] == 1
        # own home timeline: the post is gone once the stream is drained
        api.drain()
        assert api.home_ids(u["token"]) == [keep["id"]]

    def test_delete_twice_is_404(self, api: Api):
        u = api.register()
        p = api.new_post(u["token"], "once")
        api.delete_post(u["token"], p["id"])
        assert_error(api.delete(f"/v1/posts/{p['id']}", token=u["token"]), 404)
        assert api.counts(u["handle"])[2] == 0

    def test_delete_someone_elses_post_is_403_and_keeps_it(self, api: Api):
        owner, other = api.register(), api.register()
        p = api.new_post(owner["token"], "mine")
        api.follow(other["token"], owner["handle"])  # a follower is no owner either
        before = api.snapshot(owner["handle"], other["handle"])
        assert_error(api.delete(f"/v1/posts/{p['id']}", token=other["token"]), 403)
        assert api.get(f"/v1/posts/{p['id']}").json() == p
        assert api.snapshot(owner["handle"], other["handle"]) == before
        api.drain()
        assert p["id"] in api.home_ids(other["token"])

    def test_delete_unknown_post_is_404(self, api: Api):
        u = api.register()
        p = api.new_post(u["token"], "x")
        assert_error(api.delete(f"/v1/posts/{int(p['id']) + 10**9}", token=u["token"]), 404)
        assert api.counts(u["handle"])[2] == 1

    def test_deleted_post_is_404_for_everyone(self, api: Api):
        a, b = api.register(), api.register()
        p = api.new_post(a["token"], "bye")
        api.delete_post(a["token"], p["id"])
        assert_error(api.get(f"/v1/posts/{p['id']}"), 404)
        assert_error(api.delete(f"/v1/posts/{p['id']}", token=b["token"]), {403, 404})


# ============================================================================================
# GET /v1/timelines/home
# ============================================================================================


class TestHomeTimeline:
    def test_new_user_has_an_empty_home(self, feed_api: Api):
        u = feed_api.register()
        posts, nxt = feed_api.page("/v1/timelines/home", token=u["token"])
        assert posts == [] and nxt is None

    def test_own_post_is_visible_immediately(self, feed_api: Api):
        """Read-your-writes: no drain between the POST and the read."""
        u = feed_api.register()
        for i in range(TIMELINE_CAP + 2):
            p = feed_api.new_post(u["token"], f"ryw {i}")
            posts, _ = feed_api.page("/v1/timelines/home", token=u["token"], limit=1)
            assert posts and posts[0]["id"] == p["id"], f"post {i} not first in own home"
            assert posts[0] == p

    def test_own_post_visible_immediately_while_following_others(self, feed_api: Api):
        u, other = feed_api.register(), feed_api.register()
        feed_api.follow(u["token"], other["handle"])
        feed_api.new_post(other["token"], "theirs")
        feed_api.drain()
        feed_api.home_ids(u["token"])  # warm
        p = feed_api.new_post(u["token"], "mine")
        posts, _ = feed_api.page("/v1/timelines/home", token=u["token"], limit=5)
        assert posts[0]["id"] == p["id"]

    def test_followers_see_a_post_after_drain_and_strangers_never(self, feed_api: Api):
        author, fan, stranger = feed_api.register(), feed_api.register(), feed_api.register()
        feed_api.follow(fan["token"], author["handle"])
        feed_api.home_ids(fan["token"])
        feed_api.home_ids(stranger["token"])
        p = feed_api.new_post(author["token"], "hello fans")
        feed_api.drain()
        home = feed_api.home(fan["token"])
        assert ids_of(home) == [p["id"]]
        assert home[0] == p
        assert feed_api.home_ids(stranger["token"]) == []

    def test_home_is_exactly_own_plus_followees_newest_first_across_pages(self, feed_api: Api):
        """A reader follows an ordinary author and a celebrity (pulled at read time); walking
        the timeline with any page size yields exactly the right posts, past the cache cap."""
        reader = feed_api.register()
        plain = feed_api.register()
        celeb = feed_api.register()
        stranger = feed_api.register()
        feed_api.follow(reader["token"], plain["handle"])
        feed_api.follow(reader["token"], celeb["handle"])
        for _ in range(CELEBRITY_THRESHOLD - 1):
            feed_api.follow(feed_api.register()["token"], celeb["handle"])
        assert feed_api.counts(celeb["handle"])[0] >= CELEBRITY_THRESHOLD
        feed_api.follow(stranger["token"], reader["handle"])  # followers of the reader don't matter
        feed_api.drain()
        feed_api.home_ids(reader["token"])  # an active reader with a cached timeline

        expected = []
        authors = [plain, celeb, reader, stranger, celeb, plain]
        for i in range(4 * TIMELINE_CAP):
            a = authors[i % len(authors)]
            p = feed_api.new_post(a["token"], f"mix {i}")
            if a is not stranger:
                expected.append(p["id"])
        feed_api.drain()
        expected = sorted_desc(expected)
        assert len(expected) > 2 * TIMELINE_CAP
        for limit in (1, 2, 3, TIMELINE_CAP, TIMELINE_CAP + 1, 20, 100):
            got = feed_api.home_ids(reader["token"], limit=limit)
            assert got == expected, f"limit={limit}"

    def test_default_limit_is_twenty(self, feed_api: Api):
        u = feed_api.register()
        made = [feed_api.new_post(u["token"], f"d{i}")["id"] for i in range(22)]
        posts, nxt = feed_api.page("/v1/timelines/home", token=u["token"])
        assert ids_of(posts) == sorted_desc(made)[:20]
        assert nxt is not None
        rest, nxt2 = feed_api.page("/v1/timelines/home", token=u["token"], before=nxt)
        assert ids_of(rest) == sorted_desc(made)[20:]
        assert nxt2 is None

    def test_before_is_an_exclusive_cursor(self, feed_api: Api):
        u = feed_api.register()
        made = sorted_desc(feed_api.new_post(u["token"], f"b{i}")["id"] for i in range(8))
        posts, _ = feed_api.page("/v1/timelines/home", token=u["token"], before=made[2], limit=100)
        assert ids_of(posts) == made[3:]
        # a cursor between two ids (no post has it) works too
        gaps = [i for i in range(1, len(made)) if int(made[i - 1]) - int(made[i]) > 1]
        if gaps:
            i = gaps[-1]
            between = str(int(made[i]) + 1)
            posts, _ = feed_api.page("/v1/timelines/home", token=u["token"], before=between, limit=100)
            assert ids_of(posts) == made[i:]
        # the largest id: from the newest
        posts, _ = feed_api.page("/v1/timelines/home", token=u["token"], before=str(MAX_ID), limit=100)
        assert ids_of(posts) == made
        # the oldest id: nothing older
        posts, nxt = feed_api.page("/v1/timelines/home", token=u["token"], before=made[-1], limit=100)
        assert posts == [] and nxt is None

    def test_follow_brings_the_followees_earlier_posts(self, feed_api: Api):
        author, reader = feed_api.register(), feed_api.register()
        older = [feed_api.new_post(author["token"], f"old {i}")["id"] for i in range(2 * TIMELINE_CAP + 1)]
        mine = feed_api.new_post(reader["token"], "reader's own")["id"]
        feed_api.home_ids(reader["token"])  # cached before the follow
        feed_api.follow(reader["token"], author["handle"])
        feed_api.drain()
        for limit in (2, 100):
            assert feed_api.home_ids(reader["token"], limit=limit) == sorted_desc(older + [mine])
        newer = feed_api.new_post(author["token"], "new")["id"]
        feed_api.drain()
        assert feed_api.home_ids(reader["token"], limit=3) == sorted_desc(older + [mine, newer])

    def test_unfollow_removes_all_of_the_followees_posts(self, feed_api: Api):
        author, reader, other = feed_api.register(), feed_api.register(), feed_api.register()
        feed_api.follow(reader["token"], author["handle"])
        feed_api.follow(reader["token"], other["handle"])
        feed_api.home_ids(reader["token"])
        a_ids = [feed_api.new_post(author["token"], f"a{i}")["id"] for i in range(2 * TIMELINE_CAP)]
        o_ids = [feed_api.new_post(other["token"], f"o{i}")["id"] for i in range(2)]
        feed_api.drain()
        assert feed_api.home_ids(reader["token"], limit=3) == sorted_desc(a_ids + o_ids)
        feed_api.unfollow(reader["token"], author["handle"])
        feed_api.drain()
        for limit in (1, 4, 100):
            assert feed_api.home_ids(reader["token"], limit=limit) == sorted_desc(o_ids), f"limit={limit}"
        # and a post made after the unfollow does not arrive either
        feed_api.new_post(author["token"], "after unfollow")
        feed_api.drain()
        assert feed_api.home_ids(reader["token"]) == sorted_desc(o_ids)

    def test_unfollow_then_refollow(self, feed_api: Api):
        author, reader = feed_api.register(), feed_api.register()
        ids = [feed_api.new_post(author["token"], f"r{i}")["id"] for i in range(TIMELINE_CAP + 2)]
        feed_api.follow(reader["token"], author["handle"])
        feed_api.unfollow(reader["token"], author["handle"])
        feed_api.follow(reader["token"], author["handle"])
        feed_api.drain()
        assert feed_api.home_ids(reader["token"], limit=2) == sorted_desc(ids)
        feed_api.unfollow(reader["token"], author["handle"])
        feed_api.drain()
        assert feed_api.home_ids(reader["token"]) == []

    def test_deleted_posts_disappear_from_every_home_and_every_page(self, feed_api: Api):
        author, fan1, fan2 = feed_api.register(), feed_api.register(), feed_api.register()
        for f in (fan1, fan2):
            feed_api.follow(f["token"], author["handle"])
            feed_api.home_ids(f["token"])
        ids = [feed_api.new_post(author["token"], f"del{i}")["id"] for i in range(3 * TIMELINE_CAP)]
        feed_api.drain()
        newest, oldest, middle = ids[-1], ids[0], ids[len(ids) // 2]
        for pid in (newest, oldest, middle):
            feed_api.delete_post(author["token"], pid)
        feed_api.drain()
        expected = sorted_desc(set(ids) - {newest, oldest, middle})
        for who in (fan1, fan2, author):
            for limit in (2, 100):
                assert feed_api.home_ids(who["token"], limit=limit) == expected, (who["handle"], limit)

    def test_celebrity_posts_are_pulled_for_followers(self, feed_api: Api):
        celeb = feed_api.register()
        fans = [feed_api.register() for _ in range(CELEBRITY_THRESHOLD + 1)]
        for f in fans:
            feed_api.follow(f["token"], celeb["handle"])
            feed_api.home_ids(f["token"])
        ids = [feed_api.new_post(celeb["token"], f"star {i}")["id"] for i in range(TIMELINE_CAP + 3)]
        feed_api.drain()
        for f in fans:
            assert feed_api.home_ids(f["token"], limit=4) == sorted_desc(ids)
        # a celebrity's deleted post disappears from the pulled part too
        feed_api.delete_post(celeb["token"], ids[-1])
        feed_api.drain()
        for f in fans:
            assert feed_api.home_ids(f["token"]) == sorted_desc(ids[:-1])

    def test_following_a_celebrity_shows_their_earlier_posts_and_unfollowing_hides_them(self, feed_api: Api):
        celeb = feed_api.register()
        for _ in range(CELEBRITY_THRESHOLD):
            feed_api.follow(feed_api.register()["token"], celeb["handle"])
        ids = [feed_api.new_post(celeb["token"], f"c{i}")["id"] for i in range(TIMELINE_CAP + 1)]
        reader = feed_api.register()
        own = feed_api.new_post(reader["token"], "own")["id"]
        feed_api.follow(reader["token"], celeb["handle"])
        feed_api.drain()
        assert feed_api.home_ids(reader["token"], limit=3) == sorted_desc(ids + [own])
        feed_api.unfollow(reader["token"], celeb["handle"])
        feed_api.drain()
        assert feed_api.home_ids(reader["token"], limit=3) == [own]

    def test_author_crossing_the_threshold_up_and_back_down(self, feed_api: Api):
        author = feed_api.register()
        reader = feed_api.register()
        extras = [feed_api.register() for _ in range(CELEBRITY_THRESHOLD)]
        feed_api.follow(reader["token"], author["handle"])
        feed_api.home_ids(reader["token"])
        expected = [feed_api.new_post(author["token"], "ordinary 1")["id"]]
        feed_api.drain()
        assert feed_api.home_ids(reader["token"]) == sorted_desc(expected)

        # up: reader + (threshold - 1) extras = threshold followers -> celebrity
        for e in extras[:CELEBRITY_THRESHOLD - 1]:
            feed_api.follow(e["token"], author["handle"])
        assert feed_api.counts(author["handle"])[0] == CELEBRITY_THRESHOLD
        feed_api.drain()
        expected += [feed_api.new_post(author["token"], f"celebrity {i}")["id"] for i in range(TIMELINE_CAP)]
        feed_api.drain()
        assert feed_api.home_ids(reader["token"], limit=2) == sorted_desc(expected)
        for e in extras[:CELEBRITY_THRESHOLD - 1]:
            assert feed_api.home_ids(e["token"], limit=3) == sorted_desc(expected)

        # further up, then down below the threshold again
        feed_api.follow(extras[-1]["token"], author["handle"])
        feed_api.drain()
        for e in extras[:2]:
            feed_api.unfollow(e["token"], author["handle"])
        assert feed_api.counts(author["handle"])[0] == CELEBRITY_THRESHOLD - 1
        feed_api.drain()
        assert feed_api.home_ids(reader["token"], limit=2) == sorted_desc(expected)
        for e in extras[:2]:
            assert feed_api.home_ids(e["token"]) == [], "unfollowed, yet still sees the author"
        expected += [feed_api.new_post(author["token"], f"ordinary again {i}")["id"] for i in range(2)]
        feed_api.drain()
        for who in (reader, extras[-1]):
            assert feed_api.home_ids(who["token"], limit=2) == sorted_desc(expected), who["handle"]
        assert feed_api.home_ids(author["token"], limit=3) == sorted_desc(expected)

        # and up once more
        for e in extras[:2]:
            feed_api.follow(e["token"], author["handle"])
        feed_api.drain()
        expected.append(feed_api.new_post(author["token"], "celebrity again")["id"])
        feed_api.drain()
        for who in [reader] + extras:
            assert feed_api.home_ids(who["token"], limit=4) == sorted_desc(expected), who["handle"]

    def test_paging_is_stable_while_new_posts_arrive(self, feed_api: Api):
        author, reader = feed_api.register(), feed_api.register()
        feed_api.follow(reader["token"], author["handle"])
        feed_api.home_ids(reader["token"])
        ids = [feed_api.new_post(author["token"], f"s{i}")["id"] for i in range(3 * TIMELINE_CAP)]
        feed_api.drain()
        seen: list[str] = []
        page, nxt = feed_api.page("/v1/timelines/home", token=reader["token"], limit=3)
        seen += ids_of(page)
        newer = feed_api.new_post(author["token"], "newer")["id"]  # arrives mid-walk
        feed_api.drain()
        while nxt:
            page, nxt = feed_api.page("/v1/timelines/home", token=reader["token"], limit=3, before=nxt)
            seen += ids_of(page)
        assert seen == sorted_desc(ids), "a post was repeated or skipped while paging"
        assert newer not in seen

    def test_home_needs_a_token(self, api: Api):
        assert_error(api.get("/v1/timelines/home"), 401)


# ============================================================================================
# GET /v1/users/{handle}/posts
# ============================================================================================


class TestUserPosts:
    def test_lists_only_that_users_posts_newest_first(self, api: Api):
        a, b = api.register(), api.register()
        api.follow(a["token"], b["handle"])  # following does not mix posts into a user's list
        a_ids, b_ids = [], []
        for i in range(7):
            a_ids.append(api.new_post(a["token"], f"a{i}")["id"])
            b_ids.append(api.new_post(b["token"], f"b{i}")["id"])
        for limit in (1, 2, 3, 7, 100):
            assert api.user_post_ids(a["handle"], limit=limit) == sorted_desc(a_ids), f"limit={limit}"
        assert api.user_post_ids(b["handle"]) == sorted_desc(b_ids)
        posts = api.walk(f"/v1/users/{a['handle']}/posts")
        assert all(p["author"] == {"id": a["id"], "handle": a["handle"]} for p in posts)

    def test_new_post_is_listed_immediately(self, api: Api):
        u = api.register()
        api.user_post_ids(u["handle"])
        p = api.new_post(u["token"], "right away")
        posts, _ = api.page(f"/v1/users/{u['handle']}/posts", limit=1)
        assert posts == [p]

    def test_default_limit_twenty_and_cursor(self, api: Api):
        u = api.register()
        made = sorted_desc(api.new_post(u["token"], f"p{i}")["id"] for i in range(23))
        posts, nxt = api.page(f"/v1/users/{u['handle']}/posts")
        assert ids_of(posts) == made[:20] and nxt is not None
        posts, nxt = api.page(f"/v1/users/{u['handle']}/posts", before=nxt)
        assert ids_of(posts) == made[20:] and nxt is None
        posts, _ = api.page(f"/v1/users/{u['handle']}/posts", before=made[5], limit=3)
        assert ids_of(posts) == made[6:9]
        posts, _ = api.page(f"/v1/users/{u['handle']}/posts", limit=100)
        assert len(posts) == 23

    def test_needs_no_token_and_ignores_handle_case(self, api: Api):
        u = api.register("Up_" + unique_handle("")[1:])
        p = api.new_post(u["token"], "x")
        r = api.http.get(f"/v1/users/{u['handle'].upper()}/posts")
        assert r.status_code == 200
        assert ids_of(r.json()["posts"]) == [p["id"]]

    def test_deleted_posts_are_not_listed(self, api: Api):
        u = api.register()
        ids = [api.new_post(u["token"], f"x{i}")["id"] for i in range(TIMELINE_CAP + 3)]
        api.delete_post(u["token"], ids[0])
        api.delete_post(u["token"], ids[-1])
        api.drain()
        assert api.user_post_ids(u["handle"], limit=2) == sorted_desc(ids[1:-1])

    def test_empty_list(self, api: Api):
        u = api.register()
        posts, nxt = api.page(f"/v1/users/{u['handle']}/posts")
        assert posts == [] and nxt is None

    def test_unknown_user_is_404(self, api: Api):
        assert_error(api.get(f"/v1/users/{unique_handle('nobody')}/posts"), 404)


# ============================================================================================
# GET /v1/search/posts
# ============================================================================================


@pytest.fixture(scope="module")
def corpus(api: Api):
    """Posts that share a unique marker word, for the search semantics tests."""
    mk = unique_word()
    u = api.register()
    texts = {
        "plain": f"{mk} apple banana",
        "tag": f"{mk} #Apple cherry",
        "mention": f"{mk} @apple",
        "other": f"{mk} durian, grape!",
        "rusty": f"{mk} rusty snake_case",
        "accent": f"{mk} échelle",
        "noaccent": f"{mk} ECHELLE",
        "emoji": f"{mk} 🎉party🎉",
        "cjk": f"{mk} 東京タワー مرحبا",
        "nfd": f"{mk} cafe\u0301",
        "digits": f"{mk} 2024",
    }
    ids = {name: api.new_post(u["token"], text)["id"] for name, text in texts.items()}
    api.drain()
    return mk, ids


def search_names(api: Api, q: str, ids: dict[str, str]) -> set[str]:
    by_id = {v: k for k, v in ids.items()}
    got = api.search_ids(q, limit=100)
    assert got == sorted_desc(got), "search results not newest first"
    unknown = [i for i in got if i not in by_id]
    assert not unknown, f"search {q!r} found posts outside the corpus: {unknown}"
    return {by_id[i] for i in got}


ALL = {"plain", "tag", "mention", "other", "rusty", "accent", "noaccent", "emoji", "cjk", "nfd", "digits"}

SEARCH_CASES = [
    # (q with {mk}, expected corpus names)
    ("{mk}", ALL),
    ("{mk} apple", {"plain", "tag", "mention"}),         # a plain word matches inside #tag and @mention
    ("{mk} APPLE", {"plain", "tag", "mention"}),         # case is ignored
    ("{mk} #apple", {"tag"}),                            # a hashtag finds only the hashtag
    ("{mk} #APPLE", {"tag"}),
    ("{mk} @apple", {"mention"}),                        # a mention finds only the mention
    ("{mk} apple banana", {"plain"}),                    # every word must match
    ("{mk} apple durian", set()),
    ("{mk} grape", {"other"}),                           # punctuation around words
    ("{mk} durian grape", {"other"}),
    ("{mk} rust", set()),                                # whole words, no prefix match
    ("{mk} rusty", {"rusty"}),
    ("{mk} snake_case", {"rusty"}),                      # _ is part of a word
    ("{mk} snake", set()),
    ("{mk} case", set()),
    ("{mk} échelle", {"accent"}),                        # no accent folding
    ("{mk} ÉCHELLE", {"accent"}),                        # non-ASCII case folding
    ("{mk} echelle", {"noaccent"}),
    ("{mk} party", {"emoji"}),                           # emoji separate words
    ("{mk} 東京タワー", {"cjk"}),
    ("{mk} مرحبا", {"cjk"}),
    ("{mk} cafe\u0301", {"nfd"}),
    ("{mk} 2024", {"digits"}),
    ("{mk} 202", set()),
    # query-language syntax only separates words
    ('"{mk}"', ALL),
    ("{mk}*", ALL),
    ("{mk}:*", ALL),
    ("({mk} apple)", {"plain", "tag", "mention"}),
    ('{mk} "apple banana"', {"plain"}),
    ("{mk} 'apple'", {"plain", "tag", "mention"}),
    ("{mk} -banana apple", {"plain"}),                   # no negation
    ("{mk} !banana apple", {"plain"}),
    ("{mk} apple | durian", set()),                      # no OR (| only separates)
    ("{mk} apple OR durian", set()),
    ("{mk} durian NOT grape", set()),
    ("{mk} durian AND apple", set()),
    ("NEAR({mk} durian apple, 2)", set()),
    ("{mk} apple & banana", {"plain"}),
    ("{mk} ap*", set()),                                 # no prefix search
    ("{mk} ^apple", {"plain", "tag", "mention"}),
    ("{mk} apple:banana", {"plain"}),
    ("text:{mk}", set()),                                # no column filters: "text" is a word
    ("{mk} {{apple}}", {"plain", "tag", "mention"}),
    ("{mk} apple\\", {"plain", "tag", "mention"}),
    ("{mk} apple;", {"plain", "tag", "mention"}),
    ("{mk} %apple%", {"plain", "tag", "mention"}),
    ("{mk} apple~", {"plain", "tag", "mention"}),
    ("{mk} +apple", {"plain", "tag", "mention"}),
    ("{mk}\tapple\n", {"plain", "tag", "mention"}),
    ("  {mk}   apple  ", {"plain", "tag", "mention"}),
    ("{mk} @ # apple", {"plain", "tag", "mention"}),
    ("{mk} apple'; DROP TABLE posts; --", set()),
    ("{mk} apple) OR (1=1", set()),
    ("{mk} 🎉", ALL),
]


class TestSearch:
    @pytest.mark.parametrize("q,expected", SEARCH_CASES, ids=[c[0] for c in SEARCH_CASES])
    def test_search_semantics(self, api: Api, corpus, q, expected):
        mk, ids = corpus
        assert search_names(api, q.replace("{mk}", mk).replace("{{", "{").replace("}}", "}"), ids) == expected

    @pytest.mark.parametrize("q", [
        "{mk} AND", "{mk} OR", "{mk} NOT", "NEAR({mk}", "{mk} NEAR(apple", "AND {mk}", "{mk} ((",
        '{mk} "', "{mk} *", "* {mk}", "{mk} -", "{mk} :", "{mk} ^", "{mk} &", "{mk} |", "{mk} !",
        "{mk} <->", "{mk} <2>", "{mk} apple:*B", "{mk} \\", "{mk} '", "{mk} +", "{mk} NEAR/3",
    ])
    def test_operator_debris_is_never_an_error(self, api: Api, corpus, q):
        mk, ids = corpus
        got = search_names(api, q.replace("{mk}", mk), ids)
        assert got <= ALL

    def test_post_becomes_searchable_after_drain(self, api: Api):
        w = unique_word()
        u = api.register()
        p = api.new_post(u["token"], f"Searching for {w.upper()}!")
        api.drain()
        r = api.get("/v1/search/posts", params={"q": w})
        assert r.status_code == 200 and is_json_media(r)
        body = r.json()
        assert body == {"posts": [p], "next": None}

    def test_search_needs_no_token(self, api: Api):
        w = unique_word()
        api.new_post(api.register()["token"], w)
        api.drain()
        assert len(api.http.get("/v1/search/posts", params={"q": w}).json()["posts"]) == 1

    def test_results_newest_first_with_paging(self, api: Api):
        w = unique_word()
        users = [api.register(), api.register()]
        made = [api.new_post(users[i % 2]["token"], f"{w} item {i}")["id"] for i in range(23)]
        api.drain()
        for limit in (1, 3, 7, 100):
            assert api.search_ids(w, limit=limit) == sorted_desc(made), f"limit={limit}"
        page, nxt = api.page("/v1/search/posts", q=w)
        assert ids_of(page) == sorted_desc(made)[:20] and nxt is not None
        page, _ = api.page("/v1/search/posts", q=w, before=sorted_desc(made)[4], limit=2)
        assert ids_of(page) == sorted_desc(made)[5:7]

    def test_deleted_post_disappears_from_search(self, api: Api):
        w = unique_word()
        u = api.register()
        keep = api.new_post(u["token"], f"{w} keep")["id"]
        gone = api.new_post(u["token"], f"{w} gone")["id"]
        api.drain()
        assert api.search_ids(w) == [gone, keep]
        api.delete_post(u["token"], gone)
        api.drain()
        assert api.search_ids(w) == [keep]
        assert api.search_ids(f"{w} gone") == []

    def test_search_finds_posts_of_everyone_not_just_followees(self, api: Api):
        w = unique_word()
        a, b = api.register(), api.register()
        ids = [api.new_post(a["token"], f"#{w}")["id"], api.new_post(b["token"], f"@{w}")["id"]]
        api.drain()
        assert api.search_ids(w) == sorted_desc(ids)
        assert api.search_ids(f"#{w}") == [ids[0]]
        assert api.search_ids(f"@{w}") == [ids[1]]

    def test_long_queries_are_handled(self, api: Api):
        w = unique_word()
        api.new_post(api.register()["token"], f"{w} " + " ".join(f"t{i}" for i in range(60)))
        api.drain()
        q = f"{w} " + " ".join(f"t{i}" for i in range(60))
        assert len(api.search_ids(q)) == 1
        q2 = q + " missing"
        assert api.search_ids(q2) == []


# ============================================================================================
# the home timeline against a model: random follows, unfollows, posts and deletes
# ============================================================================================


SEEDS = [int(s) for s in _os.environ.get("E2E_MODEL_SEEDS", "1,2").split(",")]


class TestTimelineModel:
    """A small world where authors keep crossing the celebrity threshold up and down, the
    cache cap is tiny, and every user's whole home timeline (walked with random page sizes),
    profile counts and post list are compared with a model after each drain."""

    USERS = 7
    OPS = 90
    CHECK_EVERY = 15

    @pytest.mark.parametrize("seed", SEEDS)
    def test_random_world_matches_the_model(self, feed_api: Api, seed: int):
        rng = random.Random(seed)
        users = [feed_api.register() for _ in range(self.USERS)]
        follows: set[tuple[int, int]] = set()
        posts: dict[str, int] = {}  # live post id -> author index
        log: list[str] = []

        def expected_home(u: int) -> list[str]:
            return sorted_desc(pid for pid, a in posts.items() if a == u or (u, a) in follows)

        def check() -> None:
            feed_api.drain()
            for i, u in enumerate(users):
                limit = rng.choice([1, 2, 3, 5, 8, 100])
                got = feed_api.home_ids(u["token"], limit=limit)
                want = expected_home(i)
                assert got == want, (
                    f"seed {seed}: home of user {i} (limit {limit}) differs from the model\n"
                    f"missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}, "
                    f"order ok: {sorted(got) == sorted(want)}\nops: {log}")
                followers = sum(1 for (_, b) in follows if b == i)
                following = sum(1 for (a, _) in follows if a == i)
                n_posts = sum(1 for a in posts.values() if a == i)
                assert feed_api.counts(u["handle"]) == (followers, following, n_posts), (i, log)
            for i in rng.sample(range(self.USERS), 2):
                assert feed_api.user_post_ids(users[i]["handle"], limit=rng.choice([2, 100])) == sorted_desc(
                    pid for pid, a in posts.items() if a == i)

        for step in range(self.OPS):
            op = rng.choices(["post", "follow", "unfollow", "delete", "read"], [5, 3, 2, 1.5, 1])[0]
            u = rng.randrange(self.USERS)
            if op == "post":
                p = feed_api.new_post(users[u]["token"], f"seed {seed} step {step}")
                posts[p["id"]] = u
                log.append(f"{u} posts {p['id']}")
                top, _ = feed_api.page("/v1/timelines/home", token=users[u]["token"], limit=1)
                assert ids_of(top) == [p["id"]], f"read-your-writes broken for user {u}"
            elif op in ("follow", "unfollow"):
                v = rng.choice([x for x in range(self.USERS) if x != u])
                if op == "follow":
                    feed_api.follow(users[u]["token"], users[v]["handle"])
                    follows.add((u, v))
                else:
                    feed_api.unfollow(users[u]["token"], users[v]["handle"])
                    follows.discard((u, v))
                log.append(f"{u} {op}s {v}")
            elif op == "delete":
                mine = [pid for pid, a in posts.items() if a == u]
                if mine:
                    pid = rng.choice(mine)
                    feed_api.delete_post(users[u]["token"], pid)
                    del posts[pid]
                    log.append(f"{u} deletes {pid}")
            else:
                feed_api.home_ids(users[u]["token"], limit=rng.choice([3, 100]))  # keeps it active
                log.append(f"{u} reads")
            if step % self.CHECK_EVERY == self.CHECK_EVERY - 1:
                check()
        check()


    def test_concurrent_world_converges(self, feed_api: Api):
        """Every user acts in their own thread at the same time (posts, deletes, follows,
        unfollows, reads); after the drain, every derived view agrees with what was
        acknowledged."""
        n_users, n_ops = int(_os.environ.get("E2E_WORLD_USERS", 8)), int(_os.environ.get("E2E_WORLD_OPS", 30))
        w = unique_word()
        users = [feed_api.register() for _ in range(n_users)]
        follows: list[set[int]] = [set() for _ in range(n_users)]
        live: list[set[str]] = [set() for _ in range(n_users)]
        errors: list[str] = []

        def act(u: int) -> None:
            rng = random.Random(1000 + u)
            me = users[u]
            h = {"Authorization": f"Bearer {me['token']}"}
            with httpx.Client(base_url=feed_api.base_url, timeout=30) as c:
                for step in range(n_ops):
                    op = rng.choices(["post", "follow", "unfollow", "delete", "read"], [4, 3, 2, 1, 2])[0]
                    if op == "post":
                        r = c.post("/v1/posts", json={"text": f"{w} u{u} s{step}"}, headers=h)
                        if r.status_code != 201:
                            errors.append(f"post {r.status_code} {r.text}")
                            continue
                        live[u].add(r.json()["id"])
                        # others post at the same time: look just below the new id
                        pid = r.json()["id"]
                        top = c.get("/v1/timelines/home", params={"limit": 1, "before": str(int(pid) + 1)},
                                    headers=h).json()["posts"]
                        if not top or top[0]["id"] != pid:
                            errors.append(f"user {u}: own post not first in own home right after posting")
                    elif op in ("follow", "unfollow"):
                        v = rng.choice([x for x in range(n_users) if x != u])
                        method = "POST" if op == "follow" else "DELETE"
                        r = c.request(method, f"/v1/users/{users[v]['handle']}/follow", headers=h)
                        if r.status_code != 200:
                            errors.append(f"{op} {r.status_code} {r.text}")
                            continue
                        (follows[u].add if op == "follow" else follows[u].discard)(v)
                    elif op == "delete" and live[u]:
                        pid = rng.choice(sorted(live[u]))
                        r = c.delete(f"/v1/posts/{pid}", headers=h)
                        if r.status_code != 204:
                            errors.append(f"delete {r.status_code} {r.text}")
                            continue
                        live[u].discard(pid)
                    else:
                        r = c.get("/v1/timelines/home", params={"limit": rng.choice([2, 50])}, headers=h)
                        if r.status_code != 200:
                            errors.append(f"read {r.status_code} {r.text}")

        threads = [threading.Thread(target=act, args=(u,)) for u in range(n_users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        feed_api.drain()
        all_live = set().union(*live)
        for u, me in enumerate(users):
            want = sorted_desc(set(live[u]).union(*(live[v] for v in follows[u])))
            assert feed_api.home_ids(me["token"], limit=3) == want, f"home of user {u}"
            followers = sum(1 for x in range(n_users) if u in follows[x])
            assert feed_api.counts(me["handle"]) == (followers, len(follows[u]), len(live[u]))
            assert feed_api.user_post_ids(me["handle"], limit=4) == sorted_desc(live[u])
        assert feed_api.search_ids(w, limit=100) == sorted_desc(all_live)


# ============================================================================================
# durability: acknowledged writes survive a restart and a crash, derived stores catch up
# ============================================================================================


class TestRestart:
    def test_everything_survives_restart_and_crash(self, server_factory):
        first = server_factory.start("restart-1")
        api = Api(first)
        w = unique_word()
        a, b = api.register(), api.register()
        api.follow(b["token"], a["handle"])
        ids = [api.new_post(a["token"], f"{w} durable {i}")["id"] for i in range(TIMELINE_CAP + 2)]
        api.delete_post(a["token"], ids.pop(0))
        api.drain()
        api.close()

        # clean restart
        server_factory.stop(first)
        # (restarted with a smaller maximum post length: the setting is honoured)
        second = server_factory.start("restart-2", data_dir=first.data_dir, max_post_length="40")
        api = Api(second)
        assert api.counts(a["handle"]) == (1, 0, len(ids))
        assert_error(api.post("/v1/posts", json={"text": "y" * 41}, token=a["token"]), 422)
        assert api.counts(a["handle"]) == (1, 0, len(ids))
        assert api.user_post_ids(a["handle"]) == sorted_desc(ids)
        api.drain()
        assert api.home_ids(b["token"], limit=2) == sorted_desc(ids)
        assert api.search_ids(w) == sorted_desc(ids)
        # tokens still work after a restart
        ids.append(api.new_post(a["token"], f"{w} after restart".ljust(40, "!"))["id"])
        # writes acknowledged right before a crash (no drain): durable, and their events are
        # relayed to the consumers after the restart
        c = api.register()
        api.follow(c["token"], a["handle"])
        for i in range(3):
            ids.append(api.new_post(a["token"], f"{w} before crash {i}")["id"])
        api.delete_post(a["token"], ids.pop(0))
        api.close()
        server_factory.stop(second, kill=True)

        third = server_factory.start("restart-3", data_dir=first.data_dir)
        api = Api(third)
        try:
            assert api.counts(a["handle"]) == (2, 0, len(ids))
            assert api.user_post_ids(a["handle"], limit=3) == sorted_desc(ids)
            for pid in ids:
                assert api.get(f"/v1/posts/{pid}").status_code == 200
            api.drain()
            for reader in (b, c, a):
                assert api.home_ids(reader["token"], limit=2) == sorted_desc(ids), reader["handle"]
            assert api.search_ids(w, limit=4) == sorted_desc(ids)
            assert api.search_ids(f"{w} crash") == sorted_desc(ids[-3:])
        finally:
            api.close()
