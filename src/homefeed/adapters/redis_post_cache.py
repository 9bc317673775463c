"""Post cache on Redis (scale-out profile): post id -> post, shared by every process.

``<prefix>:p:<id>``: a string, the orjson array ``[author id, handle, text, created_at]``, then
``visibility`` when not public, then ``in_reply_to_id, in_reply_to_account_id, reblog_of_id``
when any is set (entries written before a field existed decode with its default), with
TTL ``ttl_seconds`` (default a day). Reading one builds the post with its JSON-ready form
already made (``Post._public``), so a hit costs no id or date formatting. Posts are immutable,
so ``put_many`` writes with NX, and ``delete`` leaves a tombstone for ``tombstone_seconds``: a
reader that fetched the post from the database just before it was deleted cannot put it
back. (On a Cluster, ``get_many`` is a pipeline of GETs, since an MGET must stay in one slot.)
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Sequence

import orjson

from homefeed.adapters.redis_cache import FastLane, RedisCluster, connect, ms, outage_aware
from homefeed.domain.model import Post


@outage_aware
class RedisPostCache:
    """Post id -> post, one string key per post with a TTL (bounded by ``maxmemory`` with a
    ``volatile-*`` policy)."""

    backend: ClassVar[str] = "redis"
    TOMBSTONE = b"-"

    def __init__(
        self,
        url_or_client: Any,
        prefix: str = "hf",
        *,
        ttl_seconds: float = 86400,
        tombstone_seconds: float = 600,
        per_key: bool | None = None,
        fast_reads: bool = True,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("prefix must not contain braces")
        self.client, self._owned = connect(url_or_client)
        self._fmt = prefix.encode() + b":p:%d"
        #: Set to a new random value by every ``delete`` (after its tombstones), never
        #: expiring: a timeline cache on the same server that watches it
        #: (``RedisTimelineCache(deletes_key=...)``) puts it in its home views'
        #: fingerprints, so a page kept by one says "no post deleted since".
        self.deletes_key = prefix.encode() + b":p:deleted"
        self._ttl_ms = ms(ttl_seconds)
        self._tomb_ms = ms(tombstone_seconds)
        self.per_key = isinstance(self.client, RedisCluster) if per_key is None else per_key
        self.hits = 0
        self.misses = 0
        #: ``get_many``'s MGET over a bare connection (``redis_cache.FastLane``: a third of
        #: redis-py's CPU per command) when given a ``redis://`` URL of a standalone server.
        self._fast = (FastLane.for_url(url_or_client)
                      if fast_reads and isinstance(url_or_client, str) and not self.per_key else None)

    async def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        if self._owned:
            await self.client.aclose()

    @staticmethod
    def encode(p: Post) -> bytes:
        out: list = [str(p.author_id), p.author_handle, p.text, p.created_at]
        links = (p.in_reply_to_id, p.in_reply_to_account_id, p.reblog_of_id)
        if p.visibility != "public" or links != (None, None, None):
            out.append(p.visibility)
        if links != (None, None, None):
            out.extend(links)
        return orjson.dumps(out)

    @staticmethod
    def decode(id_: int, raw: bytes) -> Post | None:
        try:
            author, handle, text, created_at, *rest = orjson.loads(raw)
            visibility = rest[0] if rest else "public"
            reply_to, reply_to_account, reblog_of = rest[1:4] if len(rest) >= 4 else (None, None, None)
            public = {
                "id": str(id_),
                "author": {"id": author, "handle": handle},
                "text": text,
                "created_at": created_at,
            }
            # A reply or a boost builds its JSON form itself (Post.public adds its links).
            plain = reply_to is None and reblog_of is None
            return Post(id_, int(author), handle, text, visibility, reply_to, reply_to_account, reblog_of,
                        _public=public if plain else None)
        except (ValueError, TypeError):  # a tombstone, or a format this version doesn't know
            return None

    async def get_many(self, ids: Sequence[int]) -> dict[int, Post]:
        if not ids:
            return {}
        fmt = self._fmt
        keys = [fmt % i for i in ids]
        if self.per_key:
            pipe = self.client.pipeline(transaction=False)
            for k in keys:
                pipe.get(k)
            raws = await pipe.execute()
        elif self._fast is not None:
            raws = await self._fast.call(b"MGET", *keys)
        else:
            raws = await self.client.mget(keys)
        out: dict[int, Post] = {}
        for i, raw in zip(ids, raws):
            if raw is not None and raw != self.TOMBSTONE:
                p = self.decode(i, raw)
                if p is not None:
                    out[i] = p
        self.hits += len(out)
        self.misses += len(ids) - len(out)
        return out

    async def stats(self) -> dict[str, int]:
        """Hits and misses of ``get_many`` in this process (counting the keys would cost a
        round trip per call, so no ``posts``)."""
        return {"hits": self.hits, "misses": self.misses}

    async def peek_many(self, ids: Sequence[int]) -> dict[int, Post]:
        """``get_many`` without counting hits and misses (the audit)."""
        out = await self.get_many(ids)
        # Take back this call's share (other calls may have counted meanwhile).
        self.hits -= len(out)
        self.misses -= len(ids) - len(out)
        return out

    async def put_many(self, posts: Sequence[Post]) -> None:
        if not posts:
            return
        fmt, ttl = self._fmt, self._ttl_ms
        if len(posts) == 1:
            p = posts[0]
            await self.client.set(fmt % p.id, self.encode(p), px=ttl, nx=True)
            return
        pipe = self.client.pipeline(transaction=False)
        for p in posts:  # NX: posts never change, and a tombstone must win
            pipe.set(fmt % p.id, self.encode(p), px=ttl, nx=True)
        await pipe.execute()

    async def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        fmt, ttl = self._fmt, self._tomb_ms
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.set(fmt % i, self.TOMBSTONE, px=ttl)
        # After the tombstones (one connection: in this order): a page computed before the
        # new value is seen was computed before the tombstones, or read them.
        pipe.set(self.deletes_key, b"%d" % (random.getrandbits(60) | 1))
        await pipe.execute()
