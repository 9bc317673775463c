"""Every place the audit knows an adapter rather than a port, and nothing else.

The audit only reads, and some of the reads it needs (a post cache read that is not a
"read", a JetStream consumer's acknowledged floor, the newest committed outbox row) are not
on the ports yet. Each function here finds one on the adapter (``getattr``/``hasattr``) and
is meant to become a port call once ports.py declares it.
"""

from __future__ import annotations

from typing import Any, Sequence

from homefeed.domain.model import Post


async def peek_posts(posts: Any, ids: Sequence[int]) -> dict[int, Post]:
    """PROBE: cached posts without counting as a read (``peek_many``: no TTL refresh, no
    recency); a cache without it is read with ``get_many``."""
    peek = getattr(posts, "peek_many", None)
    got: dict[int, Post] = await (peek(ids) if peek is not None else posts.get_many(ids))
    return got


def bus_consumer_stats(stream: Any) -> Any | None:
    """PROBE: the stream if it is a bus that reports its consumers' acknowledged floors
    (``consumer_stats`` and ``stream_state``: JetStream), else None (an outbox stream, read
    by ``position``)."""
    if hasattr(stream, "consumer_stats") and hasattr(stream, "stream_state"):
        return stream
    return None


async def outbox_mark(stream: Any) -> Any:
    """PROBE: the position every consumer must reach: the newest committed row
    (``tail_position``, PostgreSQL: the stable prefix's end, ``head``, is held back by
    transactions running anywhere in the cluster), else ``head()``."""
    tail_position = getattr(stream, "tail_position", None)
    return await (tail_position() if tail_position is not None else stream.head())
