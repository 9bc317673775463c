"""Bad input, end to end: every rejected request gets the documented 4xx JSON error, never a
500, and changes nothing (counts, lists, timelines and search are checked after each one).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import (
    MAX_BODY_BYTES,
    MAX_ID,
    MAX_POST_LENGTH,
    Api,
    assert_error,
    unique_handle,
    unique_word,
)


# --------------------------------------------------------------------------------------------
# shared state: one user with posts and follows, whose state no rejected request may change
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(api: Api) -> dict[str, Any]:
    me, friend, fan = api.register(), api.register(), api.register()
    api.follow(me["token"], friend["handle"])
    api.follow(fan["token"], me["handle"])
    my_posts = [api.new_post(me["token"], f"mine {i}") for i in range(3)]
    friend_post = api.new_post(friend["token"], "friend's")
    api.drain()
    return {"me": me, "friend": friend, "fan": fan, "my_posts": my_posts, "friend_post": friend_post}


def state(api: Api, world: dict[str, Any]) -> dict[str, Any]:
    """Everything a rejected write could have touched (after the stream is drained)."""
    api.drain()
    users = (world["me"], world["friend"], world["fan"])
    snap = api.snapshot(*(u["handle"] for u in users))
    snap["homes"] = {u["handle"]: api.home_ids(u["token"], limit=100) for u in users}
    return snap


@pytest.fixture
def unchanged(api: Api, world):
    """Use as: ``with`` nothing; the test body runs between two snapshots that must match."""
    before = state(api, world)
    yield
    after = state(api, world)
    assert after == before, "a rejected request changed the stored state"


def assert_not_searchable(api: Api, word: str) -> None:
    api.drain()
    assert api.search_ids(word) == [], f"a rejected post with {word!r} was indexed"


# ============================================================================================
# malformed JSON: 400
# ============================================================================================

INVALID_JSON = {
    "empty": b"",
    "truncated": b'{"text": "abc"',
    "trailing-comma": b'{"text": "abc",}',
    "single-quotes": b"{'text': 'abc'}",
    "bare-word": b"text",
    "unquoted-key": b'{text: "abc"}',
    "two-documents": b'{"text": "a"} {"text": "b"}',
    "trailing-garbage": b'{"text": "abc"} xyz',
    "invalid-utf8": b'{"text": "abc \xff\xfe"}',
    "latin1-bytes": b'{"text": "caf\xe9"}',
    "nul-byte": b'{"text": "a"}\x00',
    "unterminated-string": b'{"text": "abc}',
    "bad-escape": b'{"text": "\\q"}',
    "comment": b'{"text": "abc" /* c */}',
}


@pytest.mark.parametrize("body", list(INVALID_JSON.values()), ids=list(INVALID_JSON))
def test_create_post_with_invalid_json_is_400(api: Api, world, unchanged, body):
    r = api.post("/v1/posts", content=body, token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, 400)


@pytest.mark.parametrize("body", list(INVALID_JSON.values()), ids=list(INVALID_JSON))
def test_register_with_invalid_json_is_400(api: Api, body):
    handle = unique_handle("bad")
    raw = body.replace(b'"text"', b'"handle"').replace(b"'text'", b"'handle'").replace(b"abc", handle.encode())
    r = api.post("/v1/users", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    assert_error(api.get(f"/v1/users/{handle}"), 404)


# Bodies that are not UTF-8, and the offset of their first bad byte.
NOT_UTF8 = {
    "invalid-bytes": (b'{"text": "abc \xff\xfe"}', 14),
    "latin1": (b'{"text": "caf\xe9"}', 13),
    "truncated-sequence": (b'{"text": "\xc3', 10),
    "overlong-slash": (b'{"text": "a\xc0\xaf"}', 11),
    "encoded-surrogate": (b'{"text": "\xed\xa0\x80"}', 10),
    "first-byte": (b'\x80{"text": "x"}', 0),
    "after-valid-utf8": ('{"text": "é😀'.encode() + b'\xf8"}', 16),
}


@pytest.mark.parametrize("body,offset", list(NOT_UTF8.values()), ids=list(NOT_UTF8))
def test_a_body_that_is_not_utf8_is_400_naming_the_first_bad_byte(api: Api, world, unchanged, body, offset):
    """A client author learns where their encoding went wrong (not orjson's "str is not
    valid UTF-8: surrogates not allowed")."""
    for path, token in (("/v1/posts", world["me"]["token"]), ("/v1/users", None)):
        r = api.post(path, content=body, token=token, headers={"Content-Type": "application/json"})
        err = assert_error(r, 400)
        assert err["code"] == "invalid_json", err
        assert f"body is not valid UTF-8 at byte {offset}" in err["message"], err
        assert "surrogates" not in err["message"], err


@pytest.mark.parametrize("body", [
    b"[" * 5000 + b"]" * 5000,
    b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"text": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}",
    b'{"text": NaN}',
    b'{"text": Infinity}',
    b'{"text": 1e999}',
    b'{"text": 123456789012345678901234567890}',
], ids=["deep-array", "deep-text", "deep-object", "nan", "infinity", "huge-float", "huge-int"])
def test_pathological_json_is_400_or_422(api: Api, world, unchanged, body):
    r = api.post("/v1/posts", content=body, token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, {400, 422})


# ============================================================================================
# missing or wrong-typed fields: 422
# ============================================================================================

BAD_POST_BODIES = {
    "array": [],
    "array-of-object": [{"text": "x"}],
    "string": "text",
    "number": 42,
    "null": None,
    "true": True,
    "empty-object": {},
    "misspelled": {"txt": "hello"},
    "text-null": {"text": None},
    "text-int": {"text": 1},
    "text-float": {"text": 1.5},
    "text-bool": {"text": True},
    "text-list": {"text": ["hello"]},
    "text-object": {"text": {"text": "hello"}},
}


@pytest.mark.parametrize("body", list(BAD_POST_BODIES.values()), ids=list(BAD_POST_BODIES))
def test_create_post_with_missing_or_wrong_typed_text_is_422(api: Api, world, unchanged, body):
    r = api.post("/v1/posts", content=json.dumps(body), token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, 422)


BAD_USER_BODIES = {
    "array": [],
    "string": "someone",
    "number": 7,
    "null": None,
    "empty-object": {},
    "misspelled": {"handel": "{h}"},
    "handle-null": {"handle": None},
    "handle-int": {"handle": 12345},
    "handle-bool": {"handle": True},
    "handle-list": {"handle": ["{h}"]},
    "handle-object": {"handle": {"handle": "{h}"}},
    "display-name-int": {"handle": "{h}", "display_name": 5},
    "display-name-list": {"handle": "{h}", "display_name": ["x"]},
    "display-name-object": {"handle": "{h}", "display_name": {"x": 1}},
    "display-name-bool": {"handle": "{h}", "display_name": False},
}


@pytest.mark.parametrize("body", list(BAD_USER_BODIES.values()), ids=list(BAD_USER_BODIES))
def test_register_with_missing_or_wrong_typed_fields_is_422(api: Api, body):
    handle = unique_handle("wt")
    raw = json.dumps(body).replace("{h}", handle)
    r = api.post("/v1/users", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 422)
    assert_error(api.get(f"/v1/users/{handle}"), 404)


INVALID_HANDLES = {
    "empty": "",
    "31-chars": "a" * 31,
    "space": "has space",
    "leading-space": " lead",
    "trailing-newline": "trail\n",
    "tab": "a\tb",
    "dash": "dash-y",
    "dot": "dot.ted",
    "at": "@handle",
    "hash": "#handle",
    "slash": "a/b",
    "percent": "%41",
    "accented": "émile",
    "dotless-i": "ıi",
    "kelvin-sign": "\u212aelvin",
    "ligature": "\ufb01x",
    "fullwidth": "ａｂｃ",
    "arabic-digits": "١٢٣",
    "cyrillic": "аdmin",
    "emoji": "cool😎",
    "nul": "a\x00b",
    "zero-width": "ab\u200bc",
}


@pytest.mark.parametrize("handle", list(INVALID_HANDLES.values()), ids=list(INVALID_HANDLES))
def test_register_with_an_invalid_handle_is_422(api: Api, handle):
    r = api.post("/v1/users", json={"handle": handle})
    assert_error(r, 422)
    if handle and all(c.isascii() and (c.isalnum() or c == "_") for c in handle):
        assert_error(api.get(f"/v1/users/{handle}"), 404)  # the 31-character one


# ============================================================================================
# bad post text: 422 and nothing written
# ============================================================================================

BLANK_TEXTS = {
    "empty": "",
    "space": " ",
    "spaces": "     ",
    "newline": "\n",
    "crlf": "\r\n",
    "tab": "\t",
    "mixed-whitespace": " \t\r\n \n",
    "nbsp": "\u00a0",
    "ideographic-space": "\u3000",
    "em-space": "\u2003 \u2003",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
    # invisible: format characters (Unicode Cf), alone or with whitespace
    "zero-width-space": "\u200b",
    "zero-width-spaces": "\u200b\u200b\u200b",
    "bom": "\ufeff",
    "joiners-and-spaces": " \u200d \u200c\n\u2060",
    "direction-marks": "\u200e\u202e\u2066\u2069",
    "tag-characters": "\U000e0001\U000e0041",
}


@pytest.mark.parametrize("text", list(BLANK_TEXTS.values()), ids=list(BLANK_TEXTS))
def test_blank_text_is_422(api: Api, world, unchanged, text):
    assert_error(api.post("/v1/posts", json={"text": text}, token=world["me"]["token"]), 422)


@pytest.mark.parametrize("make", [
    lambda w: w + " " + "x" * (MAX_POST_LENGTH - len(w)),           # exactly max + 1
    lambda w: w + " " + "🚀" * (MAX_POST_LENGTH - len(w)),          # astral: counts code points
    lambda w: w + " " + "e\u0301" * MAX_POST_LENGTH,                # combining marks count
    lambda w: w + " " + "y" * 20_000,                               # far over, under 64 KiB
], ids=["max-plus-one", "emoji", "combining", "much-longer"])
def test_too_long_text_is_422(api: Api, world, unchanged, make):
    w = unique_word()
    text = make(w)
    assert len(text) > MAX_POST_LENGTH
    assert_error(api.post("/v1/posts", json={"text": text}, token=world["me"]["token"]), 422)
    assert_not_searchable(api, w)


CONTROL_CHARS = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f",
                 "\x7f", "\x80", "\x85", "\x9b", "\x9f"]


@pytest.mark.parametrize("where", ["middle", "start", "end"])
@pytest.mark.parametrize("ch", CONTROL_CHARS, ids=[f"U+{ord(c):04X}" for c in CONTROL_CHARS])
def test_control_characters_are_422(api: Api, world, unchanged, ch, where):
    w = unique_word()
    text = {"middle": f"{w} a{ch}b", "start": f"{ch}{w}", "end": f"{w}{ch}"}[where]
    assert_error(api.post("/v1/posts", json={"text": text}, token=world["me"]["token"]), 422)
    assert_not_searchable(api, w)


def test_allowed_whitespace_controls_are_accepted(api: Api):
    u = api.register()
    text = "tab\there\nnewline\r\ncrlf\rcr"
    assert api.new_post(u["token"], text)["text"] == text


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\udc00\\ud800"], ids=["high", "low", "reversed-pair"])
def test_lone_surrogates_are_refused(api: Api, world, unchanged, escape):
    w = unique_word()
    body = ('{"text": "%s %s"}' % (w, escape)).encode()
    r = api.post("/v1/posts", content=body, token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, {400, 422})
    assert_not_searchable(api, w)


# ============================================================================================
# bodies over 64 KiB: 413
# ============================================================================================


def _body_of_size(size: int, key: str = "text") -> bytes:
    prefix, suffix = b'{"%s": "' % key.encode(), b'"}'
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


def test_post_body_over_64_kib_is_413(api: Api, world, unchanged):
    w = unique_word()
    body = json.dumps({"text": w + " " + "z" * (MAX_BODY_BYTES + 10)}).encode()
    r = api.post("/v1/posts", content=body, token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, 413)
    assert_not_searchable(api, w)


def test_post_body_of_one_mebibyte_is_413(api: Api, world, unchanged):
    r = api.post("/v1/posts", content=_body_of_size(1 << 20), token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, 413)


def test_chunked_body_over_64_kib_is_413(api: Api, world, unchanged):
    """No Content-Length: the limit must hold while the body streams in."""
    body = _body_of_size(MAX_BODY_BYTES * 2)

    def chunks():
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    r = api.post("/v1/posts", content=chunks(), token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413)


def test_body_of_exactly_64_kib_is_not_413(api: Api, world, unchanged):
    """64 KiB is allowed; this one is refused only because the text is too long."""
    body = _body_of_size(MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    r = api.post("/v1/posts", content=body, token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, 422)
    r = api.post("/v1/posts", content=_body_of_size(MAX_BODY_BYTES + 1), token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, 413)


def test_invalid_json_over_64_kib_is_413(api: Api, world, unchanged):
    r = api.post("/v1/posts", content=b"{" * (MAX_BODY_BYTES + 1), token=world["me"]["token"],
                 headers={"Content-Type": "application/json"})
    assert_error(r, 413)


def test_register_body_over_64_kib_is_413(api: Api):
    handle = unique_handle("big")
    body = json.dumps({"handle": handle, "display_name": "d" * (MAX_BODY_BYTES + 1)}).encode()
    r = api.post("/v1/users", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 413)
    assert_error(api.get(f"/v1/users/{handle}"), 404)


# ============================================================================================
# authentication: 401
# ============================================================================================


def _auth_variants(token: str) -> dict[str, dict[str, Any]]:
    return {
        "missing": {},
        "empty": {"Authorization": ""},
        "scheme-only": {"Authorization": "Bearer"},
        "wrong-token": {"Authorization": "Bearer not-a-real-token"},
        "token-without-scheme": {"Authorization": token},
        "basic-scheme": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
        "other-scheme": {"Authorization": f"Token {token}"},
        "token-plus-char": {"Authorization": f"Bearer {token}x"},
        "token-minus-char": {"Authorization": f"Bearer {token[:-1]}"},
        "token-case-changed": {"Authorization": f"Bearer {token.swapcase()}"}
        if token.swapcase() != token else {"Authorization": "Bearer X"},
        "two-tokens": {"Authorization": f"Bearer {token} {token}"},
        "non-ascii": {"Authorization": "Bearer t\u00f6ken".encode("latin-1")},
        "very-long": {"Authorization": "Bearer " + "a" * 4000},
    }


AUTH_VARIANTS = list(_auth_variants("T0kEnVaLuE").keys())


def _protected_calls(world: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        "create-post": ("POST", "/v1/posts", {"json": {"text": "should not exist"}}),
        "delete-post": ("DELETE", f"/v1/posts/{world['my_posts'][0]['id']}", {}),
        "follow": ("POST", f"/v1/users/{world['fan']['handle']}/follow", {}),
        "unfollow": ("DELETE", f"/v1/users/{world['friend']['handle']}/follow", {}),
        "home": ("GET", "/v1/timelines/home", {}),
    }


@pytest.mark.parametrize("variant", AUTH_VARIANTS)
@pytest.mark.parametrize("call", ["create-post", "delete-post", "follow", "unfollow", "home"])
def test_missing_or_bad_token_is_401(api: Api, world, unchanged, call, variant):
    method, url, kw = _protected_calls(world)[call]
    headers = _auth_variants(world["me"]["token"])[variant]
    r = api.request(method, url, headers=headers, **kw)
    assert_error(r, 401)


def test_rejected_unauthenticated_post_is_not_indexed(api: Api):
    w = unique_word()
    assert_error(api.post("/v1/posts", json={"text": w}), 401)
    assert_error(api.post("/v1/posts", json={"text": w}, headers={"Authorization": "Bearer nope"}), 401)
    assert_not_searchable(api, w)


# ============================================================================================
# unknown users and posts: 404
# ============================================================================================

NOT_A_NUMBER = {
    "letters": "abc",
    "negative": "-1",
    "zero": "0",
    "decimal": "1.5",
    "exponent": "1e3",
    "hex": "0x1f",
    "plus": "+12",
    "space": "%2012",
    "arabic-digits": "١٢٣",
    "fullwidth-digits": "１２３",
    "too-big-2^63": str(MAX_ID + 1),
    "too-big-2^64": str(1 << 64),
    "huge": "9" * 40,
    "mixed": "12abc",
    "null": "null",
}


@pytest.mark.parametrize("post_id", list(NOT_A_NUMBER.values()), ids=list(NOT_A_NUMBER))
def test_get_post_with_non_number_id_is_404(api: Api, post_id):
    assert_error(api.get(f"/v1/posts/{post_id}"), 404)


@pytest.mark.parametrize("post_id", list(NOT_A_NUMBER.values()), ids=list(NOT_A_NUMBER))
def test_delete_post_with_non_number_id_is_404(api: Api, world, unchanged, post_id):
    assert_error(api.delete(f"/v1/posts/{post_id}", token=world["me"]["token"]), 404)


@pytest.mark.parametrize("method,suffix", [
    ("GET", ""),
    ("GET", "/posts"),
    ("GET", "/followers"),
    ("GET", "/following"),
    ("POST", "/follow"),
    ("DELETE", "/follow"),
], ids=["profile", "posts", "followers", "following", "follow", "unfollow"])
def test_unknown_user_is_404_everywhere(api: Api, world, unchanged, method, suffix):
    handle = unique_handle("nobody")
    r = api.request(method, f"/v1/users/{handle}{suffix}", token=world["me"]["token"])
    assert_error(r, 404)


@pytest.mark.parametrize("handle", ["no-such-user", "%C3%A9mile", "a" * 31, "%20"],
                         ids=["dash", "accented", "too-long", "space"])
@pytest.mark.parametrize("suffix", ["", "/posts", "/followers", "/following"])
def test_impossible_handles_in_the_path_are_client_errors(api: Api, handle, suffix):
    assert_error(api.get(f"/v1/users/{handle}{suffix}"), {404, 422})


def test_follow_an_impossible_handle_changes_nothing(api: Api, world, unchanged):
    assert_error(api.post(f"/v1/users/{'x' * 31}/follow", token=world["me"]["token"]), {404, 422})


# ============================================================================================
# query parameters: limit, before, q
# ============================================================================================

BAD_LIMITS = ["0", "101", "-1", "1000", "abc", "1.5", "1e1", "0x10", "10000000000000000000000",
              "٣", "NaN", "true", "5abc"]
BAD_CURSORS = ["abc", "-1", "1.5", "1e5", "0x1f", "12abc", "١٢٣", "１２", str(1 << 64), "9" * 30,
               "null", "--1"]

LIST_ENDPOINTS = ["home", "user-posts", "search", "followers", "following"]


def _list_call(world: dict[str, Any], name: str) -> tuple[str, dict[str, Any], str | None]:
    h = world["me"]["handle"]
    return {
        "home": ("/v1/timelines/home", {}, world["me"]["token"]),
        "user-posts": (f"/v1/users/{h}/posts", {}, None),
        "search": ("/v1/search/posts", {"q": "mine"}, None),
        "followers": (f"/v1/users/{h}/followers", {}, None),
        "following": (f"/v1/users/{h}/following", {}, None),
    }[name]


@pytest.mark.parametrize("limit", BAD_LIMITS)
@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_out_of_range_or_malformed_limit_is_422(api: Api, world, endpoint, limit):
    url, params, token = _list_call(world, endpoint)
    assert_error(api.get(url, params={**params, "limit": limit}, token=token), 422)


@pytest.mark.parametrize("before", BAD_CURSORS)
@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_malformed_cursor_is_422(api: Api, world, endpoint, before):
    url, params, token = _list_call(world, endpoint)
    assert_error(api.get(url, params={**params, "before": before}, token=token), 422)


@pytest.mark.parametrize("endpoint", LIST_ENDPOINTS)
def test_limit_bounds_1_and_100_are_accepted(api: Api, world, endpoint):
    url, params, token = _list_call(world, endpoint)
    key = "users" if endpoint in ("followers", "following") else "posts"
    for limit in ("1", "100"):
        r = api.get(url, params={**params, "limit": limit}, token=token)
        assert r.status_code == 200, r.text
        assert len(r.json()[key]) <= int(limit)


NO_WORD_QUERIES = {
    "empty": "",
    "space": " ",
    "whitespace": "\t\n ",
    "star": "*",
    "quotes": '""',
    "parens": "()",
    "hash": "#",
    "at": "@",
    "hash-at": "#@",
    "minus": "-",
    "bangs": "!!!",
    "emoji": "🎉",
    "apostrophe": "'",
    "percent": "%",
    "caret": "^",
    "colon-star": ":*",
    "tsquery-ops": "& | ! <->",
    "fts-ops": '"*" + - ( ) :',
    "punctuation": ".,;:?!",
}


@pytest.mark.parametrize("q", list(NO_WORD_QUERIES.values()), ids=list(NO_WORD_QUERIES))
def test_query_with_no_word_is_422(api: Api, q):
    assert_error(api.get("/v1/search/posts", params={"q": q}), 422)


def test_missing_query_is_422(api: Api):
    assert_error(api.get("/v1/search/posts"), 422)


def test_server_still_healthy_after_bad_input(api: Api, world):
    """The bad requests above did not wedge the consumers or the database."""
    api.drain()
    w = unique_word()
    p = api.new_post(world["me"]["token"], f"{w} still fine")
    api.drain()
    assert api.search_ids(w) == [p["id"]]
    assert api.home_ids(world["fan"]["token"], limit=100)[0] == p["id"]
    api.delete_post(world["me"]["token"], p["id"])
    api.drain()
    assert api.search_ids(w) == []
