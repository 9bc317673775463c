"""Batch jobs: recompute derived data from the system of record, while the service serves.

Each job leaves its store equal to what ``homefeed.service_layer.audit`` expects, without a
moment where readers see it empty, and loses nothing that the consumers apply meanwhile:

- ``rebuild_search``: upsert every post (its terms recomputed), then remove the entries of
  posts that no longer exist. Search keeps answering from the old entries until each is
  replaced. A post deleted while the walk runs may be upserted after the indexer removed
  it: the second pass, which runs after the first, removes it again (checked against the
  record store at that moment, so a post created meanwhile is never removed).
- ``rebuild_counters``: each batch of users is recounted in one transaction that no write
  touching their counters can interleave with (``fix_counters``); ``rebuild_post_counters``
  the same for the posts' replies, boosts and favourites (``fix_post_counters``).
- ``rebuild_notifications``: each batch of users' notifications is made equal to the
  function of the records (``RecordStore.rebuild_notifications``); dismissed and cleared
  ones stay away.
- ``rebuild_search`` indexes every post but boosts (no words of their own).
- ``rebuild_timelines``: every cached home timeline and author list is dropped and rebuilt
  with the protocol of ``FeedManager.rebuild_home``: ``begin`` (from then on fan-out lands
  in it), read the record store, ``install``. A push between the drop and the ``begin`` is
  lost, but its post was committed before the ``begin``, so the record store read has it.
  Ids installed whose post was deleted meanwhile (a delete's fan-out that ran between the
  ``begin`` and the ``install``) are removed right after. The cached celebrity set is
  reconciled with the follower counts first (promotions, and demotions with their merge).
  A rebuilt list counts as read for the inactivity clock. Then the post cache entries of
  every id in the rebuilt lists are checked against the record store: a post that differs
  is put again, or dropped (leaving the adapter's tombstone) if the cache keeps the first
  version or the post no longer exists; reads then hydrate it from the record store.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Sequence

from homefeed.domain.feed_rules import is_indexed
from homefeed.domain.model import Post
from homefeed.service_layer.feed import AUTHOR, HOME, post_fields
from homefeed.service_layer.services import Homefeed

BATCH = 2_000
USER_BATCH = 500

Progress = Callable[[int], Any]


async def rebuild_search(hf: Homefeed, progress: Progress | None = None) -> int:
    """Recompute the search index from every post in the record store, in place (see the
    module docstring). Returns how many posts were indexed; ``progress(n)`` after each
    batch of posts."""
    index = hf.search_index
    after, indexed = 0, 0
    while True:
        posts = await hf.store.posts_after(after, BATCH)
        if not posts:
            break
        words = [p for p in posts if is_indexed(p)]
        await index.index(words)
        boosts = [p.id for p in posts if not is_indexed(p)]
        if boosts:  # never indexed: an entry one has (an older version indexed it) goes
            await index.remove(boosts)
        indexed += len(words)
        after = posts[-1].id
        if progress:
            progress(len(posts))
    await remove_stale_entries(hf)
    return indexed


async def remove_stale_entries(hf: Homefeed) -> int:
    """Remove the index entries of posts that do not exist (checked against the record
    store just before removing). Returns how many were removed."""
    index = hf.search_index
    after, removed = 0, 0
    while True:
        entries = await index.entries(after, BATCH)
        if not entries:
            return removed
        ids = [i for i, _ in entries]
        live = {p.id for p in await hf.store.posts_by_ids(ids)}
        stale = [i for i in ids if i not in live]
        if stale:
            await index.remove(stale)
            removed += len(stale)
        after = ids[-1]
        await asyncio.sleep(0)


async def rebuild_counters(hf: Homefeed, progress: Progress | None = None) -> int:
    """Recount every user's followers, following and posts from the records. Returns how
    many users' counters changed. Reconcile the celebrity set afterwards
    (``rebuild_timelines`` does). The posts' counters: ``rebuild_post_counters``."""
    return await _per_user_batch(hf, hf.store.fix_counters, progress)


async def rebuild_post_counters(hf: Homefeed, progress: Progress | None = None) -> int:
    """Recount every post's replies, boosts and favourites from the records, a batch of
    posts per transaction (``fix_post_counters``). Returns how many posts changed."""
    store = hf.store
    after, changed = 0, 0
    while True:
        posts = await store.posts_after(after, BATCH)
        if not posts:
            return changed
        changed += await store.fix_post_counters([p.id for p in posts])
        after = posts[-1].id
        if progress:
            progress(len(posts))
        await asyncio.sleep(0)


async def rebuild_notifications(hf: Homefeed, progress: Progress | None = None) -> int:
    """Make every user's notifications equal the function of the records
    (docs/conversations.md): what the records say exists is inserted, what is gone is
    deleted, dismissals and clears kept. Safe while the notifier runs: both write what the
    records say. Returns how many notifications were inserted or deleted."""
    return await _per_user_batch(hf, hf.store.rebuild_notifications, progress)


async def _per_user_batch(hf: Homefeed, fix: Callable[[list[int]], Awaitable[int]],
                          progress: Progress | None) -> int:
    """Walk every user, ``USER_BATCH`` at a time, calling ``fix`` (one transaction per
    batch); the sum of what it returns."""
    after, changed = 0, 0
    while True:
        ids = await hf.store.user_ids_after(after, USER_BATCH)
        if not ids:
            return changed
        changed += await fix(ids)
        after = ids[-1]
        if progress:
            progress(len(ids))
        await asyncio.sleep(0)


async def cached_lists(hf: Homefeed, kinds: Sequence[str] = (AUTHOR, HOME)) -> list[tuple[str, int]]:
    """Every (kind, key) list the timeline cache holds now."""
    cache = hf.cache
    out: list[tuple[str, int]] = []
    for kind in kinds:
        out.extend((kind, key) for key in await cache.keys(kind))
    return out


async def rebuild_list(hf: Homefeed, kind: str, key: int) -> list[int]:
    """Drop one cached list and rebuild it from the record store (see the module
    docstring). Returns the ids it was installed with."""
    cache, store, cap = hf.cache, hf.store, hf.feed.cap
    await cache.drop(kind, key)
    await cache.begin(kind, key)  # from now on pushes land in it
    if kind == HOME:
        ids = await store.home_post_ids(key, None, cap)
    else:
        ids = await store.author_post_ids(key, None, cap)
    floor = ids[-1] - 1 if len(ids) >= cap else 0
    await cache.install(kind, key, ids, floor)
    if ids:  # a delete that committed after the read and fanned out before the install
        live = {p.id for p in await store.posts_by_ids(ids)}
        gone = [i for i in ids if i not in live]
        if gone:
            await cache.remove(kind, [key], gone)
    if kind == HOME:
        await cache.forget_following(key)  # reloaded from the record store on the next read
    return ids


async def repair_post_cache(hf: Homefeed, ids: Sequence[int]) -> int:
    """Make the cached posts among ``ids`` equal the record store's. Returns how many
    entries were put again or dropped."""
    posts = hf.feed.posts
    peek = posts.peek_many  # a check must not count as a hit or a miss
    fixed = 0
    ids = sorted(set(ids))
    for i in range(0, len(ids), BATCH):
        cached = await peek(ids[i : i + BATCH])
        if not cached:
            continue
        truth = {p.id: p for p in await hf.store.posts_by_ids(sorted(cached))}
        wrong = [pid for pid, p in cached.items() if not _same(p, truth.get(pid))]
        if not wrong:
            continue
        await posts.put_many([truth[pid] for pid in wrong if pid in truth])
        again = await peek(wrong)  # a cache that keeps the first version (Redis: SET NX)
        still = [pid for pid in wrong if pid in again and not _same(again[pid], truth.get(pid))]
        if still:
            await posts.delete(still)
        fixed += len(wrong)
    return fixed


def _same(a: Post, b: Post | None) -> bool:
    return b is not None and post_fields(a) == post_fields(b)


async def rebuild_timelines(
    hf: Homefeed,
    progress: Progress | None = None,
    *,
    total: Callable[[int], Any] | None = None,
    keys: Sequence[tuple[str, int]] | None = None,
) -> dict[str, int]:
    """Rebuild every cached home timeline and author list (or just ``keys``) from the
    record store, after reconciling the celebrity set with the follower counts. Lists
    that are not cached stay absent: they are rebuilt on their next read, as always."""
    await hf.feed.reconcile_celebrities()
    todo = list(keys) if keys is not None else await cached_lists(hf)
    if total:
        total(len(todo))
    done = {HOME: 0, AUTHOR: 0}
    seen: set[int] = set()
    for kind, key in todo:
        seen.update(await rebuild_list(hf, kind, key))
        done[kind] += 1
        if progress:
            progress(1)
        await asyncio.sleep(0)  # in the serving process: let requests run between lists
    fixed = await repair_post_cache(hf, sorted(seen))
    return {"home_timelines": done[HOME], "author_lists": done[AUTHOR], "cached_posts_fixed": fixed}
