"""Batch jobs: recompute derived data from the system of record."""

from __future__ import annotations

from typing import Callable

from homefeed.service_layer.services import Homefeed

BATCH = 2_000


async def rebuild_search(hf: Homefeed, progress: Callable[[int], None] | None = None) -> int:
    """Recompute the search index from every post in the record store. Returns posts indexed.

    The indexer's offset is moved to the outbox head first: events committed after that
    point are applied by the indexer as usual (idempotently), so nothing is missed."""
    stream = hf.stream
    head = await stream.head() if hasattr(stream, "head") else None
    if head is not None and hasattr(stream, "seek"):
        await stream.seek("indexer", head)
    await hf.search_index.clear()
    after, total = 0, 0
    while True:
        posts = await hf.store.posts_after(after, BATCH)
        if not posts:
            return total
        await hf.search_index.index(posts)
        total += len(posts)
        after = posts[-1].id
        if progress:
            progress(len(posts))
