"""SearchIndex on SQLite FTS5 (embedded profile).

We tokenize in Python (``homefeed.domain.text``) and store the resulting terms, one
space-separated string per post, with the post id as rowid. FTS5's tokenizer is configured
to keep each of our terms whole (``#`` ``@`` ``_`` and combining marks are token characters,
no diacritic folding), and every query term is passed as a quoted FTS5 string, so no FTS5
operator syntax can reach the engine from a user.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import ClassVar, Sequence

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.domain.model import Post
from homefeed.domain.text import index_terms
from homefeed.loop_slice import LoopSlice

_MAX = (1 << 63) - 1


def match_expression(terms: Sequence[str]) -> str:
    return " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)


class Fts5SearchIndex:
    backend: ClassVar[str] = "fts5"

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def count(self) -> int | None:
        """Exact: one row per indexed post in FTS5's docsize table, counted on a read-only
        connection of its own in a thread, so that a big index does not stall the loop."""
        return await asyncio.to_thread(_count_docsize, str(self.db.path))

    async def index(self, posts: Sequence[Post]) -> None:
        if not posts:
            return
        # One row per post id, the last version winning (a redelivered batch may repeat one).
        # Tokenized in slices of the loop's time (~50 µs of CPU a post), yielding between them.
        by_id: dict[int, tuple[int, str]] = {}
        slice_ = LoopSlice()
        for p in posts:
            by_id[p.id] = (p.id, " ".join(index_terms(p.text)))
            await slice_.pause()
        rows = list(by_id.values())

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM post_search WHERE rowid = ?", [(r[0],) for r in rows])
            conn.executemany("INSERT INTO post_search(rowid, terms) VALUES (?, ?)", rows)

        await self.db.write(tx)

    async def remove(self, post_ids: Sequence[int]) -> None:
        if not post_ids:
            return

        def tx(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM post_search WHERE rowid = ?", [(i,) for i in post_ids])

        await self.db.write(tx)

    async def clear(self) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM post_search")

        await self.db.write(tx)

    async def search(self, terms: Sequence[str], before: int | None, limit: int) -> list[int]:
        rows = self.db.query(
            "SELECT rowid FROM post_search WHERE post_search MATCH ? AND rowid < ?"
            " ORDER BY rowid DESC LIMIT ?",
            (match_expression(terms), before if before is not None else _MAX, limit),
        )
        return [r[0] for r in rows]

    # -- administration (audit, rebuild) ----------------------------------------------------
    async def entries(
        self, after: int, limit: int, upto: int | None = None
    ) -> list[tuple[int, frozenset[str]]]:
        rows = self.db.query(
            "SELECT rowid, terms FROM post_search WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (after, upto if upto is not None else _MAX, limit),
        )
        return [(r[0], frozenset(r[1].split())) for r in rows]

    def terms_of(self, post: Post) -> frozenset[str]:
        return frozenset(index_terms(post.text))


def _count_docsize(path: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM post_search_docsize").fetchone()[0])
    finally:
        conn.close()
