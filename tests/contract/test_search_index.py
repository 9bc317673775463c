"""SearchIndex contract (``homefeed.ports.SearchIndex``) with the word rules of
``homefeed.domain.text``: a post matches a query when it has every query term (as words:
``rust`` finds ``#rust``, ``#rust`` only the hashtag, case ignored and nothing else);
results are newest first, below ``before``; indexing is an upsert; no query syntax exists.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.domain.errors import InvalidInput
from homefeed.domain.model import Post
from homefeed.domain.text import index_terms, query_terms

from .conftest import run


def posts_of(*texts: str, start: int = 1000) -> list[Post]:
    return [Post(start + i, 7, "author", t) for i, t in enumerate(texts)]


async def q(index, text: str, before: int | None = None, limit: int = 100) -> list[int]:
    return await index.search(query_terms(text), before, limit)


def test_every_term_must_match_newest_first(search_index):
    async def main():
        async with search_index() as ix:
            p = posts_of("rust is fast", "python is slow", "rust and python", "Go")
            await ix.index(p)
            assert await q(ix, "rust") == [p[2].id, p[0].id]
            assert await q(ix, "python rust") == [p[2].id]
            assert await q(ix, "rust python") == [p[2].id]
            assert await q(ix, "is") == [p[1].id, p[0].id]
            assert await q(ix, "rust slow") == []
            assert await q(ix, "go") == [p[3].id]
            assert await q(ix, "nothing") == []

    run(main())


def test_before_and_limit_page_newest_first(search_index):
    async def main():
        async with search_index() as ix:
            p = posts_of(*[f"common word{i}" for i in range(25)])
            await ix.index(p)
            ids = [x.id for x in reversed(p)]
            assert await q(ix, "common", limit=5) == ids[:5]
            assert await q(ix, "common", before=ids[4], limit=5) == ids[5:10]
            assert await q(ix, "common", before=ids[-1]) == []
            assert await q(ix, "common", before=ids[0] + 1) == ids
            walked, before = [], None
            while True:
                page = await q(ix, "common", before=before, limit=7)
                walked.extend(page)
                if len(page) < 7:
                    break
                before = page[-1]
            assert walked == ids

    run(main())


def test_index_is_an_upsert(search_index):
    async def main():
        async with search_index() as ix:
            p = Post(42, 1, "a", "first version")
            await ix.index([p])
            await ix.index([p])
            assert await q(ix, "first") == [42]
            await ix.index([Post(42, 1, "a", "second edition")])
            assert await q(ix, "first") == []
            assert await q(ix, "second") == [42]

    run(main())


def test_one_batch_may_hold_a_post_twice(search_index, request):
    # "indexing a post twice leaves one entry", also within one call (an at-least-once
    # stream can hand the indexer a batch holding the same post_created event twice);
    # the later version wins.

    async def main():
        async with search_index() as ix:
            await ix.index([Post(42, 1, "a", "old words"), Post(42, 1, "a", "new words")])
            assert await q(ix, "words") == [42]
            assert await q(ix, "new") == [42]
            assert await q(ix, "old") == []

    run(main())


def test_remove_and_clear(search_index):
    async def main():
        async with search_index() as ix:
            p = posts_of("alpha one", "alpha two", "alpha three")
            await ix.index(p)
            await ix.remove([p[1].id])
            assert await q(ix, "alpha") == [p[2].id, p[0].id]
            assert await q(ix, "two") == []
            await ix.remove([p[1].id, 999_999])  # removing twice / unknown ids: harmless
            await ix.remove([])
            await ix.index([])
            assert await q(ix, "alpha") == [p[2].id, p[0].id]
            await ix.clear()
            assert await q(ix, "alpha") == []
            await ix.index([p[0]])  # usable after clear
            assert await q(ix, "one") == [p[0].id]

    run(main())


def test_index_survives_reopen(search_index):
    async def main():
        async with search_index() as ix:
            await ix.index(posts_of("durable words"))
        async with search_index() as ix:
            assert await q(ix, "durable") == [1000]

    run(main())


def test_plain_word_finds_hashtag_but_hashtag_finds_only_hashtag(search_index):
    async def main():
        async with search_index() as ix:
            plain, tag, mention = posts_of("I like rust", "learning #rust today", "hi @rust")
            await ix.index([plain, tag, mention])
            assert await q(ix, "rust") == [mention.id, tag.id, plain.id]
            assert await q(ix, "#rust") == [tag.id]
            assert await q(ix, "@rust") == [mention.id]
            assert await q(ix, "#RUST") == [tag.id]
            assert await q(ix, "#rust today") == [tag.id]

    run(main())


def test_case_is_ignored_and_nothing_else(search_index):
    async def main():
        async with search_index() as ix:
            p = posts_of(
                "RUST Straße",  # 0
                "échelle",  # 1: precomposed é
                "echelle",  # 2
                "e\u0301chelle",  # 3: e + combining acute
                "ÉCHELLE",  # 4
            )
            await ix.index(p)
            assert await q(ix, "rust") == [p[0].id]
            assert await q(ix, "Rust") == [p[0].id]
            assert await q(ix, "STRASSE") == [p[0].id]  # full case folding
            assert await q(ix, "échelle") == [p[4].id, p[1].id]
            assert await q(ix, "echelle") == [p[2].id]
            assert await q(ix, "e\u0301chelle") == [p[3].id]

    run(main())


def test_combining_marks_stay_in_their_word(search_index):
    async def main():
        async with search_index() as ix:
            p = posts_of("हिन्दी भाषा", "مَرْحَبًا يا صديقي", "שָׁלוֹם עולם", "zoe\u0308 and zoe")
            await ix.index(p)
            assert await q(ix, "हिन्दी") == [p[0].id]
            assert await q(ix, "ह") == []
            assert await q(ix, "مَرْحَبًا") == [p[1].id]
            assert await q(ix, "مرحبا") == []  # marks are part of the word, not ignored
            assert await q(ix, "שָׁלוֹם") == [p[2].id]
            assert await q(ix, "עולם") == [p[2].id]
            assert await q(ix, "zoe\u0308") == [p[3].id]
            assert await q(ix, "zoe") == [p[3].id]

    run(main())


def test_joiners_separate_words_on_both_sides(search_index):
    # The text rules treat ZWNJ / ZWJ (U+200C / U+200D, category Cf) as separators, as the
    # FTS5 and PostgreSQL tokenizers do: Persian "می‌خواهم" is the words "می" and "خواهم",
    # so a post and a query agree whichever way the word was written.
    async def main():
        async with search_index() as ix:
            joined, apart, other = posts_of("می\u200cخواهم", "می خواهم", "خواهم")
            await ix.index([joined, apart, other])
            assert sorted(await q(ix, "می\u200cخواهم")) == sorted([joined.id, apart.id])
            assert sorted(await q(ix, "می")) == sorted([joined.id, apart.id])

    run(main())


def test_operator_syntax_only_separates_words(search_index):
    async def main():
        async with search_index() as ix:
            p = posts_of(
                "a and b near x",  # 0: has every word of the query below
                "a b x",  # 1: lacks "and" and "near"
                "rust",  # 2
                "NOT this OR that",  # 3
                'say "hi" (there) -now* ^caret col:on',  # 4
            )
            await ix.index(p)
            assert await q(ix, '"a" AND b* NEAR( ) -x') == [p[0].id]
            assert await q(ix, "rus*") == []  # no prefix queries
            assert await q(ix, "rust*") == [p[2].id]
            assert await q(ix, "-rust") == [p[2].id]  # no negation either
            assert await q(ix, "NOT") == [p[3].id]
            assert await q(ix, "this OR nothing") == []  # OR is a word, not an operator
            assert await q(ix, 'hi") (there') == [p[4].id]
            assert await q(ix, "col:on ^caret now") == [p[4].id]
            assert await q(ix, "col") == [p[4].id]
            assert await q(ix, "NEAR(a b)") == [p[0].id]

    run(main())


@pytest.mark.parametrize(
    "term", ['"', '""', "*", "(", ")", "-", "^", ":", "AND", "OR", "NOT", "NEAR", "a OR b", "'", "{x}"]
)
def test_raw_operator_terms_are_harmless(search_index, term):
    async def main():
        async with search_index() as ix:
            await ix.index(posts_of("plain text"))
            got = await ix.search([term], None, 10)
            assert isinstance(got, list)
            assert await q(ix, "plain") == [1000]

    run(main())


# --------------------------------------------------------------------------------------------
# property: the index answers exactly what the word rules say
# --------------------------------------------------------------------------------------------

_ALPHABET = list("abcAB_19 #@\"*-():^'.,!?") + ["é", "É", "e\u0301", "ß", "SS", "α", "Ω", "中", "١", "\t", "\n"]
_TEXT = st.lists(st.sampled_from(_ALPHABET), min_size=1, max_size=10).map("".join)
_ids = itertools.count(10_000)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(texts=st.lists(_TEXT, min_size=1, max_size=6), query=_TEXT)
def test_results_are_exactly_the_posts_with_every_term(search_index, texts, query):
    try:
        terms = query_terms(query)
    except InvalidInput:
        return

    async def main():
        async with search_index() as ix:
            await ix.clear()
            posts = [Post(next(_ids), 1, "a", t) for t in texts]
            await ix.index(posts)
            want = sorted(
                (p.id for p in posts if set(terms) <= set(index_terms(p.text))), reverse=True
            )
            assert await ix.search(terms, None, 100) == want

    run(main())


def test_count_says_how_many_posts_are_indexed(search_index):
    """``count`` (for metrics) is exact on FTS5 and an estimate on PostgreSQL: an estimate
    may lag (or be None before the first ANALYZE), never be negative."""

    async def main():
        async with search_index() as index:
            await index.index(posts_of("alpha one", "beta two", "gamma three"))
            n = await index.count()
            if index.backend == "fts5":
                assert n == 3
            assert n is None or n >= 0

    run(main())
