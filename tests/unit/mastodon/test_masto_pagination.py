"""pagination.py: limit and ids as Mastodon reads them; the Link header as clients parse it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homefeed.domain.mastodon.errors import MastodonInputError
from homefeed.domain.mastodon.pagination import (
    MAX_ID,
    Page,
    link_header,
    parse_id,
    parse_limit,
    parse_page,
)

BASE = "http://127.0.0.1:8080/api/v1/timelines/home"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 20), ("", 20), ("5", 5), (5, 5), ("40", 40), ("41", 40), ("500", 40),
     ("-5", 5), ("abc", 0), ("12abc", 12), (" 7", 7), ("0", 0)],
)
def test_limit_like_mastodon(raw: str | int | None, expected: int) -> None:
    assert parse_limit(raw) == expected


def test_limit_other_default_and_cap() -> None:
    assert parse_limit(None, default=40) == 40 and parse_limit("100", default=40) == 80
    assert parse_limit("100", maximum=30) == 30


def test_ids() -> None:
    assert parse_id("max_id", None) is None and parse_id("max_id", "") is None
    assert parse_id("max_id", "00123") == 123
    assert parse_id("max_id", 123) == 123
    assert parse_id("max_id", "9" * 30) == MAX_ID
    for bad in ["abc", "-1", "1.5", " 1", "1e3", "٣", True, -1]:
        with pytest.raises(MastodonInputError, match="max_id"):
            parse_id("max_id", bad)  # type: ignore[arg-type]


def test_parse_page() -> None:
    page = parse_page({"limit": "10", "max_id": "99", "min_id": "5", "lang": "en"})
    assert page == Page(limit=10, max_id=99, since_id=None, min_id=5) and page.oldest_first
    with pytest.raises(MastodonInputError):
        parse_page({"since_id": ["1"]})


def test_link_header_exact_form() -> None:
    assert link_header(BASE, [30, 20, 10]) == (
        f'<{BASE}?max_id=10>; rel="next", <{BASE}?min_id=30>; rel="prev"'
    )


def test_link_header_keeps_other_params_and_replaces_paging() -> None:
    got = link_header(BASE, [3, 2], [("limit", "2"), ("max_id", "9"), ("since_id", "1"), ("local", "true")])
    assert got == (
        f'<{BASE}?limit=2&local=true&max_id=2>; rel="next", '
        f'<{BASE}?limit=2&local=true&min_id=3>; rel="prev"'
    )


def test_link_header_empty_page_and_no_next() -> None:
    assert link_header(BASE, []) is None
    assert link_header(BASE, [5], include_next=False) == f'<{BASE}?min_id=5>; rel="prev"'


def test_param_values_are_encoded() -> None:
    got = link_header(BASE, [1], {"q": "a b&c"})
    assert got is not None and "q=a%20b%26c&max_id=1" in got


# toot (toot/api.py _get_next_path): re.match at the start of the header.
TOOT_NEXT = re.compile('<([^>]+)>; rel="next"')
# Mastodon.py (mastodon/internals.py): the id is taken from each URL with these.
MASTODONPY_MAX = re.compile(r"[?&]max_id=([^&]+)")
MASTODONPY_MIN = re.compile(r"[?&]min_id=([^&]+)")


@given(st.lists(st.integers(1, MAX_ID), min_size=1, max_size=40, unique=True),
       st.dictionaries(st.sampled_from(["limit", "local", "only_media"]), st.text(max_size=5)))
def test_clients_find_the_ids(ids: list[int], keep: dict[str, str]) -> None:
    ids.sort(reverse=True)
    header = link_header(BASE, ids, keep)
    assert header is not None
    m = TOOT_NEXT.match(header)
    assert m is not None
    assert MASTODONPY_MAX.search(m.group(1)).group(1) == str(ids[-1])  # type: ignore[union-attr]
    prev = re.search('<([^>]+)>; rel="prev"', header).group(1)  # type: ignore[union-attr]
    assert MASTODONPY_MIN.search(prev).group(1) == str(ids[0])  # type: ignore[union-attr]
    try:
        from requests.utils import parse_header_links
    except ImportError:  # pragma: no cover - requests comes with the test extras
        return
    links = {link["rel"]: link["url"] for link in parse_header_links(header.rstrip(">").replace(">,<", ",<"))}
    assert set(links) == {"next", "prev"} and links["next"] == m.group(1)
