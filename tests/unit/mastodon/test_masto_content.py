"""content.py: Mastodon's status HTML from stored text, and the hashtag/mention extractors."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.domain.mastodon.content import (
    extract_hashtags,
    extract_mentions,
    link_url,
    render_content,
)

MENTIONS = {"alice": "http://h.test/@alice", "bob_2": "http://h.test/@bob_2"}


def tag_url(name: str) -> str:
    return f"http://h.test/tags/{name}"


def render(text: str) -> str:
    return render_content(text, MENTIONS, tag_url)


# -- exact markup -------------------------------------------------------------------------


def test_plain_text_is_one_paragraph_escaped() -> None:
    assert render("a < b & \"c\" 'd'") == "<p>a &lt; b &amp; &quot;c&quot; &#39;d&#39;</p>"


def test_paragraphs_and_line_breaks() -> None:
    assert render("one\ntwo\n\nthree\r\nfour\n\n\n\nfive") == (
        "<p>one<br />two</p><p>three<br />four</p><p>five</p>"
    )


def test_blank_text_renders_empty() -> None:
    assert render("") == ""
    assert render(" \n ") == ""


def test_url_markup_matches_mastodon() -> None:
    assert render("see https://example.com/path") == (
        '<p>see <a href="https://example.com/path" target="_blank" '
        'rel="nofollow noopener noreferrer" translate="no"><span class="invisible">https://</span>'
        '<span class="">example.com/path</span><span class="invisible"></span></a></p>'
    )


def test_long_url_is_cut_at_30_with_ellipsis_and_www_invisible() -> None:
    url = "https://www.example.com/" + "a" * 40
    out = link_url(url)
    assert '<span class="invisible">https://www.</span>' in out
    assert '<span class="ellipsis">example.com/' + "a" * 18 + "</span>" in out
    assert '<span class="invisible">' + "a" * 22 + "</span>" in out


def test_exactly_30_characters_is_not_cut() -> None:
    out = link_url("http://" + "x" * 30)
    assert '<span class="">' + "x" * 30 + '</span><span class="invisible"></span>' in out


def test_url_trailing_punctuation_and_brackets() -> None:
    out = render("(see https://a.example/x_(y)).")
    assert 'href="https://a.example/x_(y)"' in out
    assert out.endswith("</a>).</p>")


def test_url_ampersand_escaped_in_href() -> None:
    assert 'href="http://a.example/?x=1&amp;y=2"' in render("http://a.example/?x=1&y=2")


def test_hashtag_markup() -> None:
    assert render("#Rust") == (
        '<p><a href="http://h.test/tags/rust" class="mention hashtag" rel="tag">#<span>Rust</span></a></p>'
    )


def test_mention_markup_and_unknown_mention_stays_text() -> None:
    assert render("hi @Alice and @nobody") == (
        '<p>hi <span class="h-card" translate="no"><a href="http://h.test/@alice" '
        'class="u-url mention">@<span>Alice</span></a></span> and @nobody</p>'
    )


def test_remote_mention_is_text_unless_local_domain() -> None:
    assert "h-card" not in render("@alice@elsewhere.example")
    out = render_content("@alice@h.test", MENTIONS, tag_url, local_domain="h.test")
    assert 'class="u-url mention">@<span>alice</span></a>' in out


def test_no_script_survives() -> None:
    out = render("<script>alert(1)</script><img src=x onerror=alert(1)>")
    assert "<script" not in out and "<img" not in out
    assert "&lt;script&gt;" in out


# -- extractors ---------------------------------------------------------------------------


def test_hashtags_mastodon_rules() -> None:
    text = "#a #Tag #tag #123 x#no /#no )#no http://e.example/#frag #café #a·b #_x #日本 (#ok)"
    assert extract_hashtags(text) == ["a", "Tag", "café", "a·b", "_x", "日本", "ok"]


def test_hashtag_with_combining_mark_stays_whole() -> None:
    assert extract_hashtags("#cafe\u0301 x") == ["cafe\u0301"]


def test_mentions_rules() -> None:
    text = "@Alice @bob_2. mail a@b.example =@x /@y @carol@remote.example @dave.e @Alice"
    assert extract_mentions(text) == ["alice", "bob_2", "dave.e"]
    assert extract_mentions("@carol@h.test", local_domain="H.test") == ["carol"]


def test_mention_inside_url_is_not_a_mention() -> None:
    assert extract_mentions("https://e.example/@alice and https://e.example/?q=x-@bob") == []


# -- properties ---------------------------------------------------------------------------

_VOID = {"br"}
_ALLOWED = {"p": set(), "br": set(), "a": {"href", "class", "rel", "target", "translate"},
            "span": {"class", "translate"}}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED:
            self.errors.append(f"tag {tag}")
        for name, _ in attrs:
            if name not in _ALLOWED.get(tag, set()):
                self.errors.append(f"attr {name} on {tag}")
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.errors.append(f"self-closed {tag}")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


_PIECES = st.sampled_from(
    ["http://", "https://www.", "https://", "example.com", "/", "?", "=", "&", "#", "@", "alice",
     "Alice", "bob_2", "tag", "é", "\u0301", "·", "<", ">", "\"", "'", "<script>", "(", ")", ".",
     ",", "_", "1", " ", "\n", "\n\n", "\r\n", "\t", "x", "@h.test", "&amp;", "-"]
)
TEXTS = st.one_of(st.lists(_PIECES, max_size=30).map("".join), st.text(max_size=80))


def _no_ws(s: str) -> str:
    return re.sub(r"\s", "", s)


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_output_is_well_formed_and_keeps_the_text(text: str) -> None:
    out = render(text)
    checker = _Checker()
    checker.feed(out)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (out, checker.errors)
    # Every character of the text is in the output's text (the URL parts sit in the
    # invisible spans), modulo whitespace: newlines became <p>/<br />.
    assert _no_ws("".join(checker.text)) == _no_ws(text.replace("\r", "")), out
    assert _no_ws(html.unescape(re.sub(r"<[^>]*>", "", out))) == _no_ws(text)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_no_user_angle_bracket_survives(text: str) -> None:
    out = render(text)
    # Outside our own tags, no "<" at all: remove the tags we make and look.
    stripped = re.sub(r"</?(p|a|span)( [^<>]*)?>|<br />", "", out)
    assert "<" not in stripped and ">" not in stripped
    assert "<script" not in out.lower()


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_extractors_agree_with_rendering(text: str) -> None:
    out = render(text)
    for name in extract_hashtags(text):
        assert f'href="http://h.test/tags/{html.escape(name.lower())}"' in out
    linked = set(re.findall(r'href="http://h\.test/@([a-z0-9_]+)"', out))
    assert linked == {m for m in extract_mentions(text) if m in MENTIONS}


def test_mention_letters_are_ascii_only() -> None:
    # Python's IGNORECASE would let [a-z] match these; Ruby's does not.
    assert extract_mentions("@ſam @\u212aate @ıx") == []
