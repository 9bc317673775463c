"""Fuzzing what users type, against a real server: post texts and search queries.

Post text: any Unicode string (lone surrogates escaped in the JSON, NUL and other controls,
RTL marks, combining characters, emoji ZWJ sequences, strings around max_post_length,
whitespace only) is either refused with a 4xx error JSON and nothing written, or accepted and
read back exactly, by GET /v1/posts/{id} and in the author's posts; and an accepted post is
found by searching each of its words. Which of the two is decided by a model of the rules
(below), written independently of ``homefeed.domain.text``.

Search query: any string, percent-encoded as any bytes, or operator-like input, answers 200
or 422 with the error JSON, never 5xx; 200 exactly when the query has a word, and then every
post found holds every word of the query (oracle: ``homefeed.domain.text``'s word rules).

A dedicated server (its own data dir) so the words and counts seen are only these tests'.
Hypothesis is derandomized with a fixed example count (``HOMEFEED_FUZZ_EXAMPLES``, default
250) so CI runs the same examples every time; set ``HOMEFEED_FUZZ_RANDOM=1`` to explore.
"""

from __future__ import annotations

import json
import os
import socket
import unicodedata
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from homefeed.domain.errors import InvalidInput
from homefeed.domain.text import WORD_RE, index_terms, query_terms
from tests.e2e.conftest import MAX_POST_LENGTH, Api, ServerFactory, assert_error, unique_handle

EXAMPLES = int(os.environ.get("HOMEFEED_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("HOMEFEED_FUZZ_RANDOM") != "1",
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)
MAX = MAX_POST_LENGTH
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory):
    factory = ServerFactory(tmp_path_factory)
    api = Api(factory.start("fuzz-text"))
    yield api
    api.close()
    factory.close()  # also: the server logged no error


@pytest.fixture(scope="module")
def author(fuzz_api: Api) -> dict[str, Any]:
    return fuzz_api.register(unique_handle("fz"))


# --------------------------------------------------------------------------------------------
# the model of what a post text may be
# --------------------------------------------------------------------------------------------


def model_accepts(text: str) -> bool:
    """1..MAX code points with one visible character (neither whitespace nor a format
    character, Unicode category Cf: U+200B alone is an invisible post); no control character
    but tab, newline and carriage return; no lone surrogate."""
    if len(text) > MAX or all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text):
        return False
    for ch in text:
        cp = ord(ch)
        if 0xD800 <= cp <= 0xDFFF:
            return False
        if (cp < 0x20 and ch not in "\t\n\r") or 0x7F <= cp <= 0x9F:
            return False
    return True


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


# Pieces that break naive text handling, mixed with arbitrary text.
PIECES = [
    "\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f", "\t", "\n", "\r\n", " ", "\u00a0", "\u3000",
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069",
    "\u2028", "\u2029", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\U0010ffff", "\U000e0001",
    "e\u0301", "\u0301", "a\u0308\u0323", "Z\u0351\u0352\u0353", "\u0928\u093f", "שָׁלוֹם", "مرحبا",
    "👩🏽\u200d💻", "👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "🏳️\u200d🌈", "1\ufe0f\u20e3",
    "\ud800", "\udfff", "\udbff\udc00",  # a lone high, a lone low, a valid pair as two escapes
    "#tag", "@who", "word", "Straße", "İstanbul", "ǅ", "ﬃ", "Ωμέγα", "中文", "١٢٣", "_",
    '"', "\\", "*", "NEAR", "OR", "-", ":", "(", ")",
]
ANY_CHAR = st.characters(exclude_categories=())  # surrogates included
LONG_CHARS = st.sampled_from(["a", "é", "\u0301", "😀", "\U00010348", " ", "\u200d", "中"])

ALLOWED_CHAR = st.characters(exclude_categories=("Cs", "Cc"))  # what the rules accept, mostly

post_texts = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(ALLOWED_CHAR, min_size=1, max_size=60),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(ANY_CHAR, max_size=5)), max_size=12).map("".join),
    st.text(st.sampled_from(" \t\n\r\u00a0\u2003\u3000\u200b\u2028\x0b\x0c\x1c\x85"), max_size=8),
    # invisible: whitespace and format characters only (and so refused), or one visible among them
    st.tuples(st.text(st.sampled_from(" \n\u3000\u200b\u200d\u2060\ufeff\u202e\u00ad\U000e0001"), max_size=8),
              st.sampled_from(["", "", "x", "é", "😀"])).map(lambda t: t[0][:3] + t[1] + t[0][3:]),
    # around the length limit, in code points, of one- to four-byte characters
    st.tuples(LONG_CHARS, st.integers(MAX - 2, MAX + 2), st.sampled_from(["", "x", " "])).map(
        lambda t: "x" + t[0] * (t[1] - 1 - len(t[2])) + t[2]),
)


def body_of(text: str, raw_utf8: bool) -> bytes:
    """The request body: UTF-8 as it is, or every non-ASCII character as a \\u escape
    (which is the only way to send a lone surrogate)."""
    if raw_utf8 and not has_surrogate(text):
        return json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
    return json.dumps({"text": text}).encode("ascii")


def newest_post(api: Api, handle: str) -> dict[str, Any] | None:
    posts, _ = api.page(f"/v1/users/{handle}/posts", limit=1)
    return posts[0] if posts else None


def search_finds(api: Api, term: str, post_id: str) -> bool:
    """The post is found searching ``term``: the newest hit not newer than the post is it."""
    r = api.get("/v1/search/posts", params={"q": term, "before": str(int(post_id) + 1), "limit": 1})
    assert r.status_code == 200, (term, r.status_code, r.text)
    posts = r.json()["posts"]
    return bool(posts) and posts[0]["id"] == post_id


def searched_terms(text: str) -> list[str]:
    """Each word as typed in the post (its tag included), a few of them: first, last, longest."""
    typed = [m.group(0) for m in WORD_RE.finditer(text)]
    if len(typed) <= 4:
        return typed
    return list(dict.fromkeys([typed[0], typed[1], typed[-1], max(typed, key=len)]))


@FUZZ
@given(text=post_texts, raw_utf8=st.booleans())
@example(text="\u0000", raw_utf8=False)
@example(text="x" * MAX, raw_utf8=True)
@example(text="😀" * MAX, raw_utf8=True)
@example(text="x" * (MAX + 1), raw_utf8=True)
@example(text=" \t\n\u3000", raw_utf8=True)
@example(text="\u200b", raw_utf8=True)
@example(text="\u200b\u200d \ufeff\u2060", raw_utf8=False)
@example(text="\u200bx\u200b", raw_utf8=True)
@example(text="a\ud800b", raw_utf8=False)
@example(text="\u202eevil\u202c #tag @who e\u0301cole 👨\u200d👩\u200d👧", raw_utf8=True)
@example(text="NEAR(a b) OR \"c\" * -d col:e", raw_utf8=True)
def test_a_post_text_is_refused_and_changes_nothing_or_is_stored_exactly(fuzz_api: Api, author, text, raw_utf8):
    api, handle, token = fuzz_api, author["handle"], author["token"]
    before_count = api.counts(handle)[2]
    before_newest = newest_post(api, handle)
    r = api.post("/v1/posts", content=body_of(text, raw_utf8), token=token, headers=JSON_HEADERS)
    # what the JSON says: a high and a low surrogate escaped one after the other are one
    # character (\ud800\udc00 is U+10000); only the others stay lone surrogates
    text = json.loads(json.dumps(text))

    if not model_accepts(text):
        # a lone surrogate is refused by the JSON decoder (400 invalid_json: RFC 8259 8.2 leaves
        # its meaning undefined), everything else by the text rules (422)
        err = assert_error(r, {400, 422} if has_surrogate(text) else 422)
        assert err["code"] in ("invalid_json", "invalid_input"), err
        assert api.counts(handle)[2] == before_count, "a refused post was counted"
        assert newest_post(api, handle) == before_newest, "a refused post was written"
        return

    assert r.status_code == 201, f"{text!r} refused: {r.status_code} {r.text[:300]}"
    post = r.json()
    assert post["text"] == text
    got = api.get(f"/v1/posts/{post['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["text"] == text, "GET /v1/posts/{id} changed the text"
    newest = newest_post(api, handle)
    assert newest is not None and newest["id"] == post["id"] and newest["text"] == text
    assert api.counts(handle)[2] == before_count + 1

    terms = searched_terms(text)
    if terms:
        api.drain()
        missing = [t for t in terms if not search_finds(api, t, post["id"])]
        assert not missing, f"post {text!r} not found by searching {missing} (terms {index_terms(text)})"


# --------------------------------------------------------------------------------------------
# search queries
# --------------------------------------------------------------------------------------------

OPERATORS = ['"', "'", "*", "NEAR", "NEAR(", "NEAR/2", "-", "+", "OR", "AND", "NOT", ":", "col:", "(",
             ")", "{", "}", "^", "\x00", "%", "&", "=", "?", "#", "@", "\\", " ", "lanterne", "zebra",
             "Ωμέγα", "e\u0301", "_", "near", "or", "#fuzz", "@fz", "\u200d", "😀"]
queries = st.one_of(
    st.text(ANY_CHAR, max_size=30),
    st.lists(st.sampled_from(OPERATORS), max_size=10).map(" ".join),
    st.lists(st.sampled_from(OPERATORS), max_size=10).map("".join),
)
CORPUS = [
    "lanterne zebra", "NEAR OR AND NOT zebra", "#fuzz @fz lanterne", "Ωμέγα e\u0301cole zebra",
    "near(lanterne) or \"zebra\"", "col:zebra -lanterne *", "_ __ ___", "😀 lanterne 😀",
]


@pytest.fixture(scope="module")
def corpus(fuzz_api: Api) -> None:
    """Posts holding the words the generated queries use, so many queries find something."""
    u = fuzz_api.register(unique_handle("fzq"))
    for text in CORPUS:
        fuzz_api.new_post(u["token"], text)
    fuzz_api.drain()


def check_search_answer(r: Any, seen_q: str) -> None:
    """200 with posts holding every word of ``seen_q`` when it has a word, else 422."""
    assert r.status_code < 500, f"{r.request.url} -> {r.status_code}: {r.text[:300]}"
    try:
        terms = set(query_terms(seen_q))
    except InvalidInput:
        err = assert_error(r, 422)
        assert err["code"] == "invalid_input", err
        return
    assert r.status_code == 200, f"q={seen_q!r}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert set(body) == {"posts", "next"}
    for post in body["posts"]:
        assert terms <= set(index_terms(post["text"])), f"q={seen_q!r} found {post['text']!r}"


@FUZZ
@given(q=queries)
@example(q='"')
@example(q="\x00")
@example(q="NEAR(a b)")
@example(q="zebra OR")
@example(q="-zebra")
@example(q="col:zebra")
@example(q="zebra*")
def test_any_search_query_answers_200_or_422(fuzz_api: Api, corpus, q):
    raw = q.encode("utf-8", "surrogatepass")
    url = "/v1/search/posts?q=" + quote(raw, safe="")
    r = fuzz_api.http.get(url)
    # the server decodes percent-encoded bytes as UTF-8, an invalid sequence as U+FFFD
    check_search_answer(r, raw.decode("utf-8", "replace"))


@FUZZ
@given(raw=st.binary(max_size=24))
@example(raw=b"\xff\xfe")
@example(raw=b"\xc3")
@example(raw=b"\xed\xa0\x80")  # a surrogate, UTF-8 encoded
@example(raw=b"\x00zebra")
def test_any_percent_encoded_bytes_as_query_answer_200_or_422(fuzz_api: Api, corpus, raw):
    r = fuzz_api.http.get("/v1/search/posts?q=" + quote(raw, safe=""))
    check_search_answer(r, raw.decode("utf-8", "replace"))


# Query strings as sent on the wire (ASCII visible characters): percent signs that encode
# nothing, "+" for space, several q, empty values, other parameters.
RAW_QUERY = st.lists(st.sampled_from(
    ["q=", "q=zebra", "%", "%%", "%2", "%zz", "%00", "%20", "%C3%A9", "%FF", "+", "&", "=", ";", "zebra",
     "lanterne", "NEAR", "%22", "*", "(", ")", "-", ":", "limit=", "limit=1", "limit=%31", "before=",
     "before=1", "&q", "q", "%26q%3D"]), max_size=8).map("".join)


@FUZZ
@given(query=RAW_QUERY)
@example(query="q=%")
@example(query="q=%zz")
@example(query="q=zebra&q=")
@example(query="q=+zebra+")
def test_raw_query_strings_answer_200_or_422(fuzz_api: Api, corpus, query):
    r = fuzz_api.http.get("/v1/search/posts?" + query)
    assert r.status_code in (200, 422), f"?{query} -> {r.status_code}: {r.text[:300]}"
    if r.status_code == 422:
        assert_error(r, 422)
    else:
        assert set(r.json()) == {"posts", "next"}


def _raw_get(base_url: str, target: bytes) -> tuple[int, bytes]:
    """GET with a request target sent byte for byte (no client would send these)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line = data.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), data.split(b"\r\n\r\n", 1)[-1]


@FUZZ
@given(raw=st.binary(min_size=1, max_size=12))
@example(raw=b"\xc3\xa9")
@example(raw=b"a\x00b")
@example(raw=b"a b")
def test_raw_bytes_in_the_query_string_are_refused_or_answered_never_5xx(fuzz_api: Api, corpus, raw):
    """Bytes outside the visible ASCII characters are not HTTP: the HTTP parser refuses the
    request (400) before the application; bytes inside it reach the application (200/422).
    Either way nothing breaks: the next request is served."""
    status, body = _raw_get(fuzz_api.base_url, b"/v1/search/posts?q=" + raw)
    assert status < 500, (raw, status, body[:300])
    if any(not 0x21 <= b <= 0x7E for b in raw):
        assert status in (200, 400, 422), (raw, status, body[:300])
    else:
        assert status in (200, 422), (raw, status, body[:300])
    if status == 422:
        assert json.loads(body)["error"]["code"] == "invalid_input"
