"""Mastodon paging: ``limit``, ``max_id``/``since_id``/``min_id``, and the ``Link`` header.

Mastodon pages lists by id: ``max_id`` (older than), ``since_id`` (newer than, newest first)
and ``min_id`` (newer than, immediately after, oldest first). The answer's ``Link`` header
names the next (older) and previous (newer) page, and clients follow it rather than
computing ids:

* toot matches ``re.match('<([^>]+)>; rel="next"', link)``: ``rel="next"`` must come
  **first** or toot stops after one page;
* Mastodon.py splits the header and takes ``max_id``/``min_id`` from each URL with
  ``[?&]max_id=([^&]+)``, so the id must be a plain query parameter.

Mastodon (Api::V1::Timelines::HomeController, 4.3) sends no ``Link`` at all for an empty
page and both links otherwise, keeping ``limit`` (and ``local``) in them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from homefeed.domain.mastodon.errors import MastodonInputError

DEFAULT_LIMIT = 20
#: Mastodon caps ``limit`` at twice the endpoint's default.
MAX_LIMIT = 2 * DEFAULT_LIMIT
#: Ids are 63-bit; a bound beyond that means "no bound" (for max_id) or "nothing" (for
#: since_id/min_id), so it is clamped rather than refused, and never reaches SQL as a
#: number that overflows BIGINT.
MAX_ID = (1 << 63) - 1
_ID_RE = re.compile(r"[0-9]{1,40}")
_RUBY_INT_RE = re.compile(r"\s*([+-]?[0-9]+)")
PAGE_PARAMS = ("max_id", "since_id", "min_id")


def parse_limit(value: str | int | None, default: int = DEFAULT_LIMIT, maximum: int | None = None) -> int:
    """``limit`` the way Mastodon reads it: ``[params[:limit].to_i.abs, max].min``.

    Ruby's ``to_i`` reads leading digits and gives 0 for anything else, so ``"abc"`` is 0
    (an empty page, not an error), ``"-5"`` is 5 and ``"500"`` is clamped to 40. Missing or
    empty is the default. Mastodon.py sends an int; toot sends a string.
    """
    cap = maximum if maximum is not None else 2 * default
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        n = int(value)
    elif isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _RUBY_INT_RE.match(value)
        n = int(m.group(1)) if m else 0
    else:
        raise MastodonInputError("limit must be a number")
    return min(abs(n), cap)


def parse_id(name: str, value: str | int | None) -> int | None:
    """A paging id: decimal digits (a string, or an int from a JSON body) to an int.

    Missing or empty is ``None`` (no bound). Anything else is a 422 naming the parameter:
    our ids are numbers, and guessing at ``"abc"`` would page from nowhere.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MastodonInputError(f"{name} must be a status id (decimal digits)")
    if isinstance(value, int):
        if value < 0:
            raise MastodonInputError(f"{name} must be a status id (decimal digits)")
        return min(value, MAX_ID)
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise MastodonInputError(f"{name} must be a status id (decimal digits)")
    return min(int(value), MAX_ID)


@dataclass(frozen=True, slots=True)
class Page:
    """The paging parameters of one request, parsed."""

    limit: int = DEFAULT_LIMIT
    max_id: int | None = None
    since_id: int | None = None
    min_id: int | None = None

    @property
    def oldest_first(self) -> bool:
        """``min_id`` asks for the page right after it, read oldest first and then answered
        newest first (Mastodon's semantics); ``since_id`` alone asks for the newest ones."""
        return self.min_id is not None


def parse_page(
    params: Mapping[str, object], default: int = DEFAULT_LIMIT, maximum: int | None = None
) -> Page:
    """All paging parameters of a request (query or body mapping) at once."""
    limit = params.get("limit")
    if limit is not None and not isinstance(limit, (str, int)):
        raise MastodonInputError("limit must be a number")
    ids = {}
    for name in PAGE_PARAMS:
        v = params.get(name)
        if v is not None and not isinstance(v, (str, int)):
            raise MastodonInputError(f"{name} must be a status id (decimal digits)")
        ids[name] = parse_id(name, v)
    return Page(limit=parse_limit(limit, default, maximum), **ids)


def _url(base_url: str, keep: Sequence[tuple[str, str]], name: str, value: int) -> str:
    query = [(k, v) for k, v in keep if k not in PAGE_PARAMS]
    query.append((name, str(value)))
    return f"{base_url}?{urlencode(query, quote_via=quote, safe='[]')}"


def link_header(
    base_url: str,
    page_ids: Sequence[int],
    keep: Iterable[tuple[str, str]] | Mapping[str, str] = (),
    *,
    include_next: bool = True,
) -> str | None:
    """The ``Link`` header for a page whose items have ``page_ids`` (newest first).

    ``base_url`` is the absolute URL of the endpoint (scheme, host and port as the client
    used them, no query). ``keep`` are the query parameters to carry over (``limit``,
    ``local``, ...); paging ids in it are dropped and replaced. Returns ``None`` for an
    empty page (Mastodon sends no header then), else exactly
    ``<URL?max_id=ID>; rel="next", <URL?min_id=ID>; rel="prev"`` (next first, for toot).
    ``include_next=False`` leaves out ``next`` when the caller knows there is nothing older.
    """
    if not page_ids:
        return None
    pairs = list(keep.items()) if isinstance(keep, Mapping) else list(keep)
    parts = []
    if include_next:
        parts.append(f'<{_url(base_url, pairs, "max_id", page_ids[-1])}>; rel="next"')
    parts.append(f'<{_url(base_url, pairs, "min_id", page_ids[0])}>; rel="prev"')
    return ", ".join(parts)
