"""Text rules: handles, post texts, and the words that search matches."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from homefeed.domain.errors import InvalidInput
from homefeed.domain.text import (
    MAX_QUERY_CHARS,
    WORD_RE,
    index_terms,
    query_terms,
    validate_display_name,
    validate_handle,
    validate_post_text,
    words,
)

MAX = 500

# --------------------------------------------------------------------------------------------
# handles and display names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h", ["a", "Z", "_", "0", "alice", "Bob_42", "a" * 30, "___", "9lives"])
def test_valid_handles(h):
    assert validate_handle(h) == h


@pytest.mark.parametrize(
    "h",
    [
        "",
        "a" * 31,
        "with space",
        "dash-ed",
        "dot.ted",
        "at@",
        "#tag",
        "émile",
        "ａｂｃ",  # fullwidth
        "аlice",  # Cyrillic а
        "١٢",
        "bob\n",
        "\nbob",
        "bob\x00",
        None,
        42,
        b"bob",
        ["bob"],
    ],
)
def test_invalid_handles(h):
    with pytest.raises(InvalidInput):
        validate_handle(h)


def test_display_name_defaults_to_handle_and_is_checked():
    assert validate_display_name(None, "bob") == "bob"
    assert validate_display_name("Bob 🚀 שלום", "bob") == "Bob 🚀 שלום"
    assert validate_display_name("x" * 100, "bob") == "x" * 100
    for bad in ("x" * 101, "bell\x07", "nul\x00", "c1\x85", 7, ["x"]):
        with pytest.raises(InvalidInput):
            validate_display_name(bad, "bob")


# --------------------------------------------------------------------------------------------
# post text
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x",
        " x ",
        "hello world",
        "tab\tnewline\ncarriage\r\nreturn",
        "👩🏽‍💻 🇫🇷 👨‍👩‍👧‍👦",  # ZWJ sequences, skin tones, flags
        "שלום עולם",  # RTL
        "مرحبا بالعالم \u200f",  # RTL with a right-to-left mark
        "e\u0301 a\u0308 \u0928\u093f",  # combining marks
        "Z\u0351\u0352\u0353\u0354 zalgo",
        "\u200b zero width space then text",
        "\ufeffBOM inside is fine",
        "\U0010fffd private use plane 16",
        "x" * MAX,
        "é" * MAX,  # code points, not bytes
        "👍" * MAX,
    ],
)
def test_post_text_round_trips_unchanged(text):
    assert validate_post_text(text, MAX) == text


@pytest.mark.parametrize("text", ["", " ", "   ", "\t", "\n\r\n", "\u3000", "\u00a0\u2003", " \t\n "])
def test_post_text_needs_a_non_space_character(text):
    with pytest.raises(InvalidInput, match="visible character"):
        validate_post_text(text, MAX)


def test_post_text_max_length_is_in_code_points():
    validate_post_text("a" * 10, 10)
    validate_post_text("😀" * 10, 10)  # 40 bytes in UTF-8, 20 in UTF-16: still 10
    validate_post_text("e\u0301" * 5, 10)  # 5 graphemes, 10 code points
    for text in ("a" * 11, "😀" * 11, "e\u0301" * 6):
        with pytest.raises(InvalidInput, match="at most 10"):
            validate_post_text(text, 10)


# Format characters (Cf): each is invisible, and a post needs something that shows.
FORMAT_CHARS = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\u2066", "\u2069",
                "\u202a", "\u202e", "\ufeff", "\u00ad", "\U000e0001", "\U000e007f", "\u061c"]


@pytest.mark.parametrize("text", [
    "\u200b",  # the zero-width space of the issue
    "\u200b" * 10,
    "\ufeff",
    "\u200d\u200c",
    " \u200b\n\u2060\t",  # whitespace and format characters mixed
    "\u202e\u3000\u202c",
    "\U000e0001\U000e0041\U000e007f",  # tag characters
    "".join(FORMAT_CHARS),
])
def test_post_text_of_only_whitespace_and_format_characters_is_invisible(text):
    assert all(unicodedata.category(ch) == "Cf" or ch.isspace() for ch in text)
    with pytest.raises(InvalidInput, match="visible character"):
        validate_post_text(text, MAX)


@pytest.mark.parametrize("cf", FORMAT_CHARS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_format_character_next_to_a_visible_one_is_kept(cf):
    for text in (f"{cf}x", f"x{cf}", f" {cf}.{cf} "):
        assert validate_post_text(text, MAX) is text


@given(st.text(st.one_of(st.sampled_from(FORMAT_CHARS), st.characters(categories=("Zs", "Zl", "Zp", "Cf")),
                         st.sampled_from(list(" \t\n\r"))), max_size=30),
       st.one_of(st.none(), st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zs", "Zl", "Zp"))),
       st.integers(0, 30))
def test_property_a_post_is_accepted_exactly_when_a_character_is_visible(invisible, visible, at):
    """Against the oracle: invisible runs are refused, and one visible character anywhere
    in them makes the text a post."""
    text = invisible if visible is None else invisible[:at] + visible + invisible[at:]
    if visible_oracle(text):
        assert validate_post_text(text, MAX) is text
    else:
        with pytest.raises(InvalidInput):
            validate_post_text(text, MAX)


_REFUSED_CC = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + [chr(0x7F)] + [
    chr(c) for c in range(0x80, 0xA0)
]


@pytest.mark.parametrize("cc", _REFUSED_CC, ids=lambda c: f"U+{ord(c):04X}")
def test_post_text_refuses_control_characters_except_tab_newline_cr(cc):
    with pytest.raises(InvalidInput):
        validate_post_text(f"before{cc}after", MAX)


def test_post_text_refuses_lone_surrogates_and_non_strings():
    for bad in ("a\ud800b", "\udfff x"):
        with pytest.raises(InvalidInput):
            validate_post_text(bad, MAX)
    for bad in (None, 1, b"bytes", ["x"], {"text": "x"}):
        with pytest.raises(InvalidInput):
            validate_post_text(bad, MAX)


_ALLOWED = st.characters(
    exclude_categories=("Cs",),
    exclude_characters="".join(_REFUSED_CC),
)


def visible_oracle(text: str) -> bool:
    """The rule, as simply as it can be said: some character is neither whitespace nor a
    format character (Unicode category Cf)."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


@given(st.text(_ALLOWED, max_size=60))
def test_property_allowed_text_is_returned_unchanged_or_refused_only_for_space(text):
    if visible_oracle(text):
        assert validate_post_text(text, MAX) is text
    else:
        with pytest.raises(InvalidInput):
            validate_post_text(text, MAX)


@given(st.text(_ALLOWED, min_size=1, max_size=20), st.sampled_from(_REFUSED_CC), st.integers(0, 20))
def test_property_any_refused_control_character_is_refused(text, cc, at):
    with pytest.raises(InvalidInput):
        validate_post_text(text[:at] + cc + text[at:] + "x", MAX)


# --------------------------------------------------------------------------------------------
# words, index terms, query terms
# --------------------------------------------------------------------------------------------


def test_words_are_tagged_and_folded():
    assert words("Hello #Rust and @Bob_1!") == [
        ("", "hello"),
        ("#", "rust"),
        ("", "and"),
        ("@", "bob_1"),
    ]


def test_plain_word_matches_hashtag_but_hashtag_only_hashtags():
    assert index_terms("#rust") == ["rust", "#rust"]
    assert index_terms("@bob") == ["bob", "@bob"]
    assert index_terms("rust") == ["rust"]
    assert query_terms("rust") == ["rust"]
    assert query_terms("#rust") == ["#rust"]
    assert set(query_terms("rust")) <= set(index_terms("#rust"))
    assert not set(query_terms("#rust")) <= set(index_terms("rust"))
    assert not set(query_terms("@rust")) <= set(index_terms("#rust"))


def test_case_folding():
    assert query_terms("RUST Rust rust") == ["rust"]
    assert query_terms("STRASSE") == query_terms("straße") == ["strasse"]
    assert query_terms("ΣΊΣΥΦΟΣ") == query_terms("σίσυφος") == query_terms("σίσυφοσ")
    assert index_terms("#RuSt") == ["rust", "#rust"]


def test_only_case_is_ignored_not_accents_nor_normalisation():
    assert query_terms("échelle") == ["échelle"]
    assert query_terms("échelle") != query_terms("echelle")
    assert "echelle" not in index_terms("échelle")
    assert query_terms("ÉCHELLE") == ["échelle"]
    nfd = unicodedata.normalize("NFD", "échelle")
    assert query_terms(nfd) == [nfd]  # decomposed stays decomposed: a different word
    assert query_terms(nfd) != query_terms("échelle")


def test_zero_width_joiners_separate_words():
    assert words("می\u200cخواهم") == [("", "می"), ("", "خواهم")]
    assert words("a\u200db") == [("", "a"), ("", "b")]


@pytest.mark.parametrize(
    "word",
    [
        "e\u0301chelle",  # e + combining acute
        "zoe\u0308",
        "हिन्दी",  # Devanagari virama and vowel signs
        "مَرْحَبًا",  # Arabic harakat
        "שָׁלוֹם",  # Hebrew points
        "ภาษาไทย",  # Thai vowel marks
        "a\u20d7",  # combining arrow above
    ],
)
def test_combining_marks_stay_in_their_word(word):
    assert words(word) == [("", word.casefold())]
    assert query_terms(word) == [word.casefold()]
    assert words(f"({word}) x") == [("", word.casefold()), ("", "x")]


def test_a_mark_cannot_start_a_word():
    assert words("\u0301abc") == [("", "abc")]


def test_digits_underscore_and_other_scripts_are_word_characters():
    assert query_terms("abc_123 ١٢ 中文 Ωμέγα") == ["abc_123", "١٢", "中文", "ωμέγα"]


def test_operator_syntax_only_separates_words():
    assert query_terms('"a" AND b* NEAR( ) -x') == ["a", "and", "b", "near", "x"]
    assert query_terms("col:on ^start {x y} a+b a|b a.b") == [
        "col",
        "on",
        "start",
        "x",
        "y",
        "a",
        "b",
    ]
    assert query_terms("rus*") == ["rus"]
    assert query_terms("NOT OR") == ["not", "or"]


def test_emoji_and_punctuation_are_not_words():
    assert words("🚀🔥 !!! ... — «»") == []
    assert query_terms("🚀rust🔥") == ["rust"]


@pytest.mark.parametrize(
    "q", ["", " ", "\t\n", '"*" ( ) -', "#", "@", "#@", "##", "🚀", "...", "\u0301", "—", '""']
)
def test_query_without_a_word_is_invalid(q):
    with pytest.raises(InvalidInput):
        query_terms(q)


def test_terms_are_deduplicated_in_first_seen_order():
    assert query_terms("b a B A #a a") == ["b", "a", "#a"]
    assert index_terms("b #a a @a A") == ["b", "a", "#a", "@a"]


def test_tags_need_a_word_right_after():
    assert words("# rust") == [("", "rust")]
    assert words("##rust") == [("#", "rust")]
    assert words("a#b") == [("", "a"), ("#", "b")]
    assert words("me@example.com") == [("", "me"), ("@", "example"), ("", "com")]


_WORD = st.text("abcxyz_019éß", min_size=1, max_size=6)
_SEP = st.text(" \t\n\"'*()-^:+.,;!?{}[]|~<>/\\=&%$", min_size=1, max_size=4)


@given(st.lists(_WORD, min_size=1, max_size=6), st.lists(_SEP, min_size=7, max_size=7))
def test_property_non_word_characters_only_separate_words(ws, seps):
    q = seps[0] + "".join(w + s for w, s in zip(ws, seps[1:]))
    expected: list[str] = []
    for w in ws:
        if w.casefold() not in expected:
            expected.append(w.casefold())
    assert query_terms(q) == expected


@given(st.text(max_size=40))
@example("#Rust @bob plain")
@example('"a" AND b* NEAR( ) -x')
def test_property_a_text_matches_a_query_equal_to_itself(text):
    # a post is found by searching for its own text, whatever it is
    try:
        terms = query_terms(text)
    except InvalidInput:
        assert index_terms(text) == []
        return
    assert set(terms) <= set(index_terms(text))


@given(st.text(max_size=40))
def test_property_terms_are_single_words(text):
    for term in index_terms(text):
        body = term[1:] if term[:1] in "#@" else term
        assert body
        assert words(term) == [(term[:1] if term[:1] in "#@" else "", body)]
        assert not any(ch.isspace() for ch in term)
        assert "#" not in body and "@" not in body


# Text that stresses word boundaries: tags, marks (in and outside the word-mark blocks),
# joiners, emoji sequences, other scripts, and anything at all (lone surrogates included).
_TRICKY = st.one_of(
    st.sampled_from(["#", "@", "_", " ", "\u0301", "\u05b4", "\u1ab0", "\u20d7", "\u0903", "\u200c",
                     "\u200d", "\ufe0f", "\u2028", "ß", "İ", "ǅ", "ﬃ", "ŉ", "σ", "ς", "Σ", "١", "²",
                     "中", "👩", "🏽", "e", "Z", "9", "\ud800", "\x00", "-", "'", '"', "*"]),
    st.characters(exclude_categories=()),
)


@given(st.text(_TRICKY, max_size=30))
@example("e\u0301cole #Café @bob_1")
@example("a\u200db #x\u0301y")
def test_property_each_word_as_typed_finds_its_text(text):
    # searching any one word of a post, typed as in the post, finds the post
    terms = set(index_terms(text))
    for m in WORD_RE.finditer(text):
        assert set(query_terms(m.group(0))) <= terms, (m.group(0), terms)


@given(st.text(_TRICKY, max_size=30))
def test_property_index_terms_read_back_as_themselves(text):
    # the FTS5 index stores a post's terms joined by spaces: read as a query they are the
    # same terms, so the index and the query side agree on what a term is
    terms = index_terms(text)
    if terms:
        assert query_terms(" ".join(terms)) == terms


@given(st.text(_TRICKY, max_size=30))
def test_property_query_terms_are_words_or_invalid_input(text):
    try:
        terms = query_terms(text)
    except InvalidInput:
        assert words(text) == []
        return
    assert terms and len(terms) == len(set(terms))
    assert all(isinstance(t, str) and t for t in terms)
    assert all(t.casefold() == t for t in terms)


def test_a_query_keeps_every_term_once_in_first_seen_order():
    q = " ".join(f"w{i} W{i}" for i in range(100))
    assert query_terms(q) == [f"w{i}" for i in range(100)]


def test_a_query_is_bounded_in_characters():
    # a URL of 10,000 distinct words once held the event loop for seconds: refused up front
    with pytest.raises(InvalidInput, match="characters"):
        query_terms(" ".join(f"w{i}" for i in range(10_000)))
    with pytest.raises(InvalidInput, match="characters"):
        query_terms("a " * (MAX_QUERY_CHARS // 2) + "b")
    assert query_terms("a" * MAX_QUERY_CHARS) == ["a" * MAX_QUERY_CHARS]
