"""Every place the metrics know an adapter rather than a port, and nothing else.

The ports declare no size of a post cache or a search index and no hit counters, so these
functions look for them on the adapters (``getattr``/``type(...).__name__``). Each one is
meant to become a port call once the ports declare the capability (ports.py); until then
they are kept here, small and in one place, so that nothing else in ``metrics`` guesses.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AdapterCounters:
    """Counters some adapters keep and the ports do not declare (None where absent)."""

    post_cache: dict[str, Any] | None
    stream: dict[str, Any] | None
    relay: dict[str, Any] | None


def adapter_counters(hf: Any) -> AdapterCounters:
    """PROBE: post cache ``hits``/``misses``, the stream's ``stats`` dict, the relay's
    ``stats``. Cheap attribute reads, no I/O (called at every sample)."""
    posts = hf.feed.posts
    hits, misses = getattr(posts, "hits", None), getattr(posts, "misses", None)
    stream_stats = getattr(hf.stream, "stats", None)
    relay = getattr(hf, "relay", None)
    return AdapterCounters(
        post_cache=None if hits is None else {"hits": hits, "misses": misses},
        stream=dict(stream_stats) if isinstance(stream_stats, dict) else None,
        relay=relay.stats.as_dict() if relay is not None else None,
    )


async def post_cache_size(posts: Any) -> int | None:
    """PROBE: posts held by the post cache: an adapter's ``size()``, else the private dict of
    ``MemoryPostCache``; None if neither."""
    if hasattr(posts, "size"):
        n = await posts.size()
        return n if isinstance(n, int) else None
    held = getattr(posts, "_posts", None)
    return len(held) if isinstance(held, dict) else None


async def search_index_size(index: Any) -> int | None:
    """PROBE: posts in the search index: an adapter's ``count()``, else by the adapter's
    class name: SQLite FTS5 counts its docsize table on a read-only connection of its own in
    a thread (a big index must not stall the loop); PostgreSQL gives the planner's estimate
    (exact counting is a full scan)."""
    counter = getattr(index, "count", None)
    if counter is not None:
        return int(await counter())
    db: Any = getattr(index, "db", None)
    kind = type(index).__name__
    if kind == "Fts5SearchIndex":
        return await asyncio.to_thread(_count_sqlite, db.path, "SELECT count(*) FROM post_search_docsize")
    if kind == "PgSearchIndex":
        row = await db.fetchone("SELECT reltuples::bigint FROM pg_class WHERE oid = 'post_search'::regclass")
        if row and row[0] >= 0:
            return int(row[0])
        row = await db.fetchone("SELECT count(*) FROM post_search")
        return int(row[0]) if row else None
    return None


def _count_sqlite(path: Any, sql: str) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()
