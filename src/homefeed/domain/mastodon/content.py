"""Status ``content``: the HTML Mastodon apps render, made from the stored plain text.

homefeed stores exactly what the user typed; apps expect Mastodon's HTML. This module makes
that HTML the way Mastodon's ``TextFormatter`` does for local posts (app/lib/text_formatter.rb
and the regexes of Tag and Account, as of 4.3), so apps that style or parse Mastodon's markup
(invisible URL prefixes, ``mention hashtag`` links, ``h-card`` mentions) show our posts the
same way:

* the text is HTML-escaped (``&<>"'``, as ERB's ``h``), every character of it kept;
* paragraphs are split on blank lines and wrapped in ``<p>``; single newlines are ``<br />``
  (Rails' ``simple_format``, then the newlines deleted, as Mastodon does);
* ``http``/``https`` URLs become links whose scheme (and ``www.``) is in an invisible span,
  whose first 30 characters are shown, and whose rest is invisible, with ``ellipsis`` when cut;
* ``#hashtags`` link to the tag page; ``@mentions`` of accounts that exist link to the account,
  and a mention of an account that does not exist stays plain text.

Deliberate differences (documented so nobody "fixes" them back by accident):
* URL detection is a simple rule (scheme, a host of word characters, then anything up to
  whitespace, ``<``, ``>`` or ``"``; trailing punctuation and unbalanced closing brackets
  left out) rather than twitter-text's full grammar, so ``example.com`` without a scheme is
  not linked (Mastodon does not link it either, as it extracts URLs with a protocol only).
* "not after a word character" uses Unicode word characters (Ruby's ``\\w`` in
  ``HASHTAG_RE`` is ASCII only), so ``é#tag`` is not a hashtag here.
* Paragraphs that are empty or only whitespace are dropped instead of rendered ``<p></p>``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass


def _mark_ranges() -> str:
    """Character-class ranges of every combining mark (Unicode M*) in the BMP.

    Ruby's ``[[:word:]]`` and ``[[:alpha:]]`` include combining marks, Python's ``\\w`` does
    not, so ``#café`` written with U+0301 would be cut after ``e`` without them. Built once at
    import from ``unicodedata`` (about 10 ms) rather than from a hand-kept table.
    """
    out: list[str] = []
    start = prev = -2
    for cp in range(0x300, 0x10000):
        if unicodedata.category(chr(cp)).startswith("M"):
            if cp != prev + 1:
                if start >= 0:
                    out.append(_range(start, prev))
                start = cp
            prev = cp
    if start >= 0:
        out.append(_range(start, prev))
    return "".join(out)


def _range(a: int, b: int) -> str:
    return f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}"


_MARKS = _mark_ranges()
_W = rf"[\w{_MARKS}]"  # Ruby [[:word:]]
_ALPHA = rf"(?:[^\W\d_]|[{_MARKS}])"  # Ruby [[:alpha:]]
_SEP = "_\u00b7\u30fb\u200c"  # Tag::HASHTAG_SEPARATORS
_WS = rf"[\w{_MARKS}{_SEP}]"  # word or separator

# Tag::HASHTAG_NAME_PAT: either a name containing a letter or a separator somewhere in its
# middle, or a name that contains a letter; never only digits.
_HASHTAG_FIRST = rf"{_W}{_WS}*(?:{_ALPHA}|[{_SEP}]){_WS}*{_W}"
_HASHTAG_LAST = rf"{_W}*{_ALPHA}{_W}*"
HASHTAG_RE = re.compile(rf"(?<![/)\w{_MARKS}])#({_HASHTAG_FIRST}|{_HASHTAG_LAST})")

# Account::MENTION_RE (4.3): a username of [a-z0-9_] with inner dots and dashes, then an
# optional @domain; not after "=", "/" or a word character (so not inside URLs or emails).
# Spelled [A-Za-z] rather than re.IGNORECASE: with that flag Python's [a-z] also matches
# "ſ", "ı", "İ" and the Kelvin sign, which Ruby's does not.
MENTION_RE = re.compile(
    rf"(?<![=/\w{_MARKS}])@([A-Za-z0-9_]+(?:[A-Za-z0-9_.-]+[A-Za-z0-9_]+)?)(?:@([\w.-]+\w+))?"
)

# A URL with a protocol. The host must start with a word character; the rest runs to
# whitespace or a character HTML would need escaped anyway; trailing punctuation is trimmed.
URL_RE = re.compile(r"(?<![\w@$#/])https?://\w[^\s<>\"\x00-\x1f\x7f]*", re.IGNORECASE)
_URL_PREFIX_RE = re.compile(r"https?://(?:www\.)?", re.IGNORECASE)
_TRAILING = ".,:;!?'*"
_PAIRS = {")": "(", "]": "[", "}": "{"}
DISPLAY_URL_CHARS = 30


@dataclass(frozen=True, slots=True)
class _Entity:
    start: int
    end: int
    kind: str  # "url" | "hashtag" | "mention"
    value: str  # the URL, the tag name, or the username
    domain: str | None = None


def escape(text: str) -> str:
    """HTML-escape like ERB::Util.h: ``& < > " '`` (``'`` as ``&#39;``, as Mastodon emits)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _trim_url(url: str) -> str:
    """Drop trailing punctuation and closing brackets that have no opener inside the URL,
    so ``(see https://a.example/x).`` links ``https://a.example/x``."""
    while url:
        last = url[-1]
        if last in _TRAILING or last in _PAIRS and url.count(_PAIRS[last]) < url.count(last):
            url = url[:-1]
        else:
            break
    return url


def _urls(text: str) -> list[_Entity]:
    out = []
    for m in URL_RE.finditer(text):
        url = _trim_url(m.group(0))
        if len(url) > len(m.group(0).split("://", 1)[0]) + 3:
            out.append(_Entity(m.start(), m.start() + len(url), "url", url))
    return out


def _is_local(domain: str | None, local_domain: str | None) -> bool:
    return domain is None or (local_domain is not None and domain.lower() == local_domain.lower())


def _entities(text: str, local_domain: str | None = None) -> list[_Entity]:
    """URLs, hashtags and mentions in text order, none overlapping (URLs win, as in
    Mastodon's Extractor, so a ``#fragment`` or ``?a=@b`` inside a URL stays in the URL)."""
    found = _urls(text)
    found += [_Entity(m.start(), m.end(), "hashtag", m.group(1)) for m in HASHTAG_RE.finditer(text)]
    found += [
        _Entity(m.start(), m.end(), "mention", m.group(1), m.group(2))
        for m in MENTION_RE.finditer(text)
    ]
    found.sort(key=lambda e: (e.start, 0 if e.kind == "url" else 1))
    out: list[_Entity] = []
    end = -1
    for e in found:
        if e.start >= end:
            out.append(e)
            end = e.end
    return out


def extract_hashtags(text: str) -> list[str]:
    """Hashtag names in the order they first appear, without ``#``, one per name ignoring
    case (the first spelling wins; a tag's identity is its lowercased name)."""
    seen: set[str] = set()
    out: list[str] = []
    for e in _entities(text):
        if e.kind == "hashtag" and (key := e.value.lower()) not in seen:
            seen.add(key)
            out.append(e.value)
    return out


def extract_mentions(text: str, local_domain: str | None = None) -> list[str]:
    """Lowercased usernames mentioned as ``@user`` (or ``@user@local_domain``), first-seen
    order, each once. ``@user@other.host`` is skipped: homefeed has no remote accounts."""
    seen: set[str] = set()
    out: list[str] = []
    for e in _entities(text, local_domain):
        if e.kind == "mention" and _is_local(e.domain, local_domain):
            key = e.value.lower()
            if key not in seen:
                seen.add(key)
                out.append(key)
    return out


def link_url(url: str) -> str:
    """Mastodon's shortened link: scheme (and ``www.``) invisible, 30 characters shown, the
    rest invisible, and ``ellipsis`` on the visible span when something was cut."""
    prefix = _URL_PREFIX_RE.match(url)
    p = prefix.group(0) if prefix else ""
    rest = url[len(p) :]
    display, suffix = rest[:DISPLAY_URL_CHARS], rest[DISPLAY_URL_CHARS:]
    cls = "ellipsis" if len(rest) > DISPLAY_URL_CHARS else ""
    return (
        f'<a href="{escape(url)}" target="_blank" rel="nofollow noopener noreferrer" '
        f'translate="no"><span class="invisible">{escape(p)}</span>'
        f'<span class="{cls}">{escape(display)}</span>'
        f'<span class="invisible">{escape(suffix)}</span></a>'
    )


def link_hashtag(name: str, url: str) -> str:
    """Mastodon's hashtag link (the ``#`` outside the inner span, as apps expect)."""
    return f'<a href="{escape(url)}" class="mention hashtag" rel="tag">#<span>{escape(name)}</span></a>'


def link_mention(username: str, url: str) -> str:
    """Mastodon's mention link, in an ``h-card`` that translation tools must not touch."""
    return (
        f'<span class="h-card" translate="no"><a href="{escape(url)}" class="u-url mention">'
        f"@<span>{escape(username)}</span></a></span>"
    )


def _inline(
    text: str,
    mentions: Mapping[str, str],
    tag_url: Callable[[str], str],
    local_domain: str | None,
) -> str:
    """Escaped text with URLs, hashtags and known mentions linked (no paragraphs yet)."""
    parts: list[str] = []
    pos = 0
    for e in _entities(text, local_domain):
        parts.append(escape(text[pos : e.start]))
        raw = text[e.start : e.end]
        if e.kind == "url":
            parts.append(link_url(e.value))
        elif e.kind == "hashtag":
            parts.append(link_hashtag(e.value, tag_url(e.value.lower())))
        else:
            url = mentions.get(e.value.lower()) if _is_local(e.domain, local_domain) else None
            # A local account typed with our domain shows as @username, as in Mastodon.
            parts.append(escape(raw) if url is None else link_mention(e.value, url))
        pos = e.end
    parts.append(escape(text[pos:]))
    return "".join(parts)


_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")


def render_content(
    text: str,
    mentions: Mapping[str, str],
    tag_url: Callable[[str], str],
    local_domain: str | None = None,
) -> str:
    """Mastodon-style HTML for a stored post text.

    ``mentions`` maps each *existing* mentioned account's lowercased username to its profile
    URL; a mention not in it stays text. ``tag_url`` gives a lowercased tag name's URL.
    Entities are found on the whole text before paragraphs are split, so a URL or tag never
    spans a ``<p>`` (none can contain a newline anyway).
    """
    if not text or text.isspace():
        return ""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    html = _inline(normalized, mentions, tag_url, local_domain)
    paragraphs = []
    for para in _PARAGRAPH_SPLIT.split(html):
        para = para.strip("\n")
        if para and not para.isspace():
            paragraphs.append("<p>" + para.replace("\n", "<br />") + "</p>")
    return "".join(paragraphs)
