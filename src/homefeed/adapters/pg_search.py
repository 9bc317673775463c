"""SearchIndex on PostgreSQL full-text search (scale-out profile).

Same word semantics as the FTS5 index, because the words are ours, not PostgreSQL's:

- Indexing: ``homefeed.domain.text.index_terms`` (words case-folded, plus the tagged form
  ``#x`` / ``@x`` of tagged words) becomes the ``tsvector`` through ``array_to_tsvector``,
  which stores each array element as a lexeme verbatim. PostgreSQL's text-search parser
  and dictionaries are never used (they would drop ``#`` and ``@``, stem, and remove stop
  words).
- Querying: the caller's ``query_terms`` become a ``tsquery`` of quoted lexemes joined by
  ``&`` (every term), cast directly with ``::tsquery`` (no ``to_tsquery`` normalisation).
  Terms are words only, and quoting escapes anything else, so no tsquery operator can come
  from a user.
- ``post_search(id, terms)`` with a GIN index on ``terms``; results are ``id < before``,
  newest first. The query is planned for its actual terms each time (not a generic
  prepared plan), so a rare term uses the GIN index and a very common one may walk the
  primary key backwards instead: both are right, and each is the fast one for its case.
  Migration 2 raises the column's statistics target so that the planner knows many
  lexemes. The known weak spot of GIN (it cannot return ids in order, as FTS5 doclists do):
  a term that is common overall but absent from recent posts (last year's hashtag) makes
  the backward walk read far more rows than estimated.

A lexeme is at most 2047 bytes in PostgreSQL: a longer word (only possible with a
``max_post_length`` above 500) is left out of the index, and a query for one finds nothing.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

from homefeed.adapters.pg_db import PgDatabase
from homefeed.domain.model import Post
from homefeed.domain.text import index_terms

_MAX = (1 << 63) - 1
MAX_LEXEME_BYTES = 2046

# Terms never contain a space (they are runs of word characters), so each post's terms
# travel as one space-separated string: two arrays for the whole batch, one statement.
_UPSERT = """
INSERT INTO post_search (id, terms)
SELECT id, array_to_tsvector(string_to_array(t, ' '))
FROM unnest(%s::bigint[], %s::text[]) AS x (id, t)
ON CONFLICT (id) DO UPDATE SET terms = excluded.terms
"""

SEARCH_SQL = (
    "SELECT id FROM post_search WHERE terms @@ %s::tsquery AND id < %s ORDER BY id DESC LIMIT %s"
)


def _fits(term: str) -> bool:
    return len(term) * 4 <= MAX_LEXEME_BYTES or len(term.encode("utf-8")) <= MAX_LEXEME_BYTES


def tsquery_text(terms: Sequence[str]) -> str:
    """``'a' & '#b'``: quoted lexemes, quotes and backslashes doubled, joined by AND."""
    return " & ".join(
        "'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms
    )


class PgSearchIndex:
    backend: ClassVar[str] = "postgresql"

    def __init__(self, db: PgDatabase) -> None:
        self.db = db

    async def count(self) -> int | None:
        """The planner's estimate (``reltuples``): counting exactly is a full scan. Before
        the first ANALYZE the estimate is -1, and the table is counted."""
        row = await self.db.fetchone("SELECT reltuples::bigint FROM pg_class WHERE oid = 'post_search'::regclass")
        if row and row[0] >= 0:
            return int(row[0])
        row = await self.db.fetchone("SELECT count(*) FROM post_search")
        return int(row[0]) if row else None

    async def index(self, posts: Sequence[Post]) -> None:
        """Upsert ``posts`` in one statement (one round trip, one transaction)."""
        if not posts:
            return
        latest: dict[int, Post] = {p.id: p for p in posts}  # a post twice: one row
        ids = list(latest)
        texts = [" ".join(t for t in index_terms(p.text) if _fits(t)) for p in latest.values()]
        await self.db.write(_UPSERT, (ids, texts), outbox=False)

    async def remove(self, post_ids: Sequence[int]) -> None:
        if not post_ids:
            return
        await self.db.write(
            "DELETE FROM post_search WHERE id = ANY(%s::bigint[])", (list(post_ids),), outbox=False
        )

    async def clear(self) -> None:
        await self.db.write("TRUNCATE post_search", outbox=False)

    async def search(self, terms: Sequence[str], before: int | None, limit: int) -> list[int]:
        if not terms or limit <= 0:
            return []
        if not all(_fits(t) for t in terms):
            return []  # such a term is never indexed
        rows = await self.db.fetch(
            SEARCH_SQL,
            (tsquery_text(terms), before if before is not None else _MAX, limit),
            prepare=False,  # a custom plan: the planner sees how selective the terms are
        )
        return [r[0] for r in rows]

    # -- administration (audit, rebuild) ----------------------------------------------------
    async def entries(
        self, after: int, limit: int, upto: int | None = None
    ) -> list[tuple[int, frozenset[str]]]:
        rows = await self.db.fetch(
            "SELECT id, tsvector_to_array(terms) FROM post_search WHERE id > %s AND id <= %s"
            " ORDER BY id LIMIT %s",
            (after, upto if upto is not None else _MAX, limit),
        )
        return [(r[0], frozenset(r[1])) for r in rows]

    def terms_of(self, post: Post) -> frozenset[str]:
        return frozenset(t for t in index_terms(post.text) if _fits(t))
