"""Rules for what users type: handles, post texts, and the words that search matches.

Search treats text as *words*: a run of letters, digits and ``_`` (combining marks stay with
the letter they modify), optionally led by ``#`` (a hashtag) or ``@`` (a mention). Matching
ignores case and nothing else. A post is indexed under each plain word and, for a tagged
word, also under the tagged form, so ``rust`` finds ``#rust`` but ``#rust`` finds only the
hashtag. Everything that is not a word only separates words: no query syntax exists.
"""

from __future__ import annotations

import re
import unicodedata

from homefeed.domain.errors import InvalidInput

#: The characters of a handle (a regular-expression class body) and its length bounds. The
#: OpenAPI document (``entrypoints/openapi.py``) is generated from these, so the documented
#: rule and the enforced one are one fact.
HANDLE_CHARS = "A-Za-z0-9_"
MAX_HANDLE_LENGTH = 30
HANDLE_RE = re.compile(rf"[{HANDLE_CHARS}]{{1,{MAX_HANDLE_LENGTH}}}")
#: A display name is at most this many code points.
MAX_DISPLAY_NAME_LENGTH = 100

# \w is letters, digits (any Unicode number) and "_"; combining marks (Unicode M*) are
# appended so that "é" written as e + U+0301 stays one word. The mark ranges are the blocks
# that hold combining characters; a mark outside them simply separates words on both the
# indexing and the query side, so results stay consistent. Zero-width (non-)joiners are not
# marks: they separate words, as they do for the FTS5 tokenizer.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
    "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed"
    "\u0900-\u0903\u093a-\u094f\u0951-\u0957\u0962\u0963\u0981-\u0983\u09bc-\u09d7"
    "\u0a01-\u0a03\u0a3c-\u0a51\u0a81-\u0a83\u0abc-\u0acd\u0b01-\u0b03\u0b3c-\u0b57"
    "\u0bbe-\u0bcd\u0c00-\u0c04\u0c3e-\u0c56\u0c81-\u0c83\u0cbc-\u0cd6\u0d00-\u0d03"
    "\u0d3b-\u0d4d\u0e31\u0e34-\u0e3a\u0e47-\u0e4e\u0eb1\u0eb4-\u0ebc\u0ec8-\u0ecd"
    "\u0f18\u0f19\u0f35\u0f37\u0f39\u0f3e\u0f3f\u0f71-\u0f84\u1ab0-\u1aff\u1dc0-\u1dff"
    "\u20d0-\u20ff\u302a-\u302f\u3099\u309a\ufe00-\ufe0f\ufe20-\ufe2f"
)
WORD_RE = re.compile(rf"([#@]?)((?:\w)(?:\w|[{_MARKS}])*)")

# Cc other than \t \n \r are refused in post text.
_ALLOWED_CC = {"\t", "\n", "\r"}


def validate_handle(handle: object) -> str:
    if not isinstance(handle, str) or not HANDLE_RE.fullmatch(handle):
        raise InvalidInput(f"handle must be 1-{MAX_HANDLE_LENGTH} characters of A-Z, a-z, 0-9 and _")
    return handle


def validate_display_name(name: object, handle: str) -> str:
    if name is None:
        return handle
    if not isinstance(name, str):
        raise InvalidInput("display_name must be a string")
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise InvalidInput(f"display_name must be at most {MAX_DISPLAY_NAME_LENGTH} characters")
    _refuse_controls(name, "display_name")
    return name


def is_visible(ch: str) -> bool:
    """A character that shows: not whitespace and not a format character (Unicode category
    Cf: zero-width space U+200B, joiners, direction marks, the BOM, tag characters...).
    A post made only of these would be an invisible post."""
    return not ch.isspace() and unicodedata.category(ch) != "Cf"


def validate_post_text(text: object, max_length: int) -> str:
    """``text`` unchanged if it is a post: 1..``max_length`` code points holding at least one
    visible character (see :func:`is_visible`), no control character but tab, newline and
    carriage return, no lone surrogate. Raises InvalidInput naming the broken rule."""
    if not isinstance(text, str):
        raise InvalidInput("text must be a string")
    # any() stops at the first visible character: one or two calls for an ordinary post.
    if not any(map(is_visible, text)):
        raise InvalidInput("text must contain a visible character (not only spaces or"
                           " format characters such as U+200B)")
    if len(text) > max_length:
        raise InvalidInput(f"text must be at most {max_length} characters (got {len(text)})")
    _refuse_controls(text, "text")
    _refuse_surrogates(text, "text")
    return text


def _refuse_controls(s: str, field: str) -> None:
    for ch in s:
        if ch < "\x20" or "\x7f" <= ch <= "\x9f":
            if ch not in _ALLOWED_CC and unicodedata.category(ch) == "Cc":
                raise InvalidInput(f"{field} must not contain control character U+{ord(ch):04X}")


def _refuse_surrogates(s: str, field: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode (no lone surrogates)") from None


def fold(word: str) -> str:
    """Case folding: the only normalisation search applies."""
    return word.casefold()


def words(text: str) -> list[tuple[str, str]]:
    """The words of a text as ``(tag, folded_word)`` pairs, tag being '', '#' or '@'."""
    return [(m.group(1), fold(m.group(2))) for m in WORD_RE.finditer(text)]


def index_terms(text: str) -> list[str]:
    """Terms a post is indexed under: every word, plus the tagged form of tagged words."""
    out: list[str] = []
    seen: set[str] = set()
    for tag, w in words(text):
        for term in ((w, tag + w) if tag else (w,)):
            if term not in seen:
                seen.add(term)
                out.append(term)
    return out


#: A query is what a person typed or pasted (a whole post, say): bounded, so that no single
#: request can hold the event loop or the index for long (a URL of 10,000 distinct words cost
#: 0.3 s to tokenize). 1,000 characters hold at most 500 words.
MAX_QUERY_CHARS = 1000


def query_terms(q: str) -> list[str]:
    """Terms a query requires (all of them), first-seen order. Raises InvalidInput when
    there is no word, or more than ``MAX_QUERY_CHARS`` characters. Deduplicated through a
    dict (a list scan was quadratic)."""
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"q must be at most {MAX_QUERY_CHARS} characters")
    terms = list(dict.fromkeys(tag + w for tag, w in words(q)))
    if not terms:
        raise InvalidInput("q must contain at least one word (letters, digits or _)")
    return terms
