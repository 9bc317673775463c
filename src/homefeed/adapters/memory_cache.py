"""Timeline cache and post cache in process memory (embedded profile).

Id lists are ``array('q')`` kept ascending: 8 bytes an entry, appends of new posts are O(1)
and ``bisect`` finds a page. Home timelines are kept in least-recently-read order and
bounded in number; a timeline not read for ``inactive_days`` counts as absent, which is how
fan-out skips inactive users (it pushes only into timelines that exist) and how their next
read rebuilds from the record store.

Nothing here suspends, so in the embedded profile each call is atomic with respect to every
other coroutine on the loop: a rebuild's "query the store, then install" cannot interleave
with a fan-out.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections import OrderedDict
from typing import Any, ClassVar, Iterable, Sequence

from homefeed.domain.model import Post
from homefeed.ports import HomeView, IdSlice

KINDS = ("home", "author", "public")  # "public": one list, key 0 (the public timeline)


class _IdList:
    __slots__ = ("ids", "floor", "used", "building")

    def __init__(self, floor: int, now: float) -> None:
        self.ids = array("q")
        self.floor = floor
        self.used = now
        self.building = False


class MemoryTimelineCache:
    backend: ClassVar[str] = "memory"

    def __init__(
        self,
        cap: int = 800,
        inactive_seconds: float = 14 * 86400,
        max_lists: int = 100_000,
        clock=time.monotonic,
    ) -> None:
        self.cap = cap
        self.inactive_seconds = inactive_seconds
        self.max_lists = max_lists
        self._clock = clock
        self._lists: dict[str, OrderedDict[int, _IdList]] = {k: OrderedDict() for k in KINDS}
        self._following: OrderedDict[int, frozenset[int]] = OrderedDict()
        # One counter for all users: bounded memory; a concurrent forget of any user only
        # makes a load skip caching once.
        self._following_version = 0
        self._celebrities: frozenset[int] | None = None  # replaced, never mutated: cheap reads
        self.evictions = 0

    # -- id lists -------------------------------------------------------------------------
    def _get(self, kind: str, key: int, touch: bool) -> _IdList | None:
        lists = self._lists[kind]
        lst = lists.get(key)
        if lst is None:
            return None
        if kind == "home":
            now = self._clock()
            if now - lst.used > self.inactive_seconds:
                del lists[key]  # inactive: skipped by fan-out from now on, rebuilt on read
                return None
            if touch:
                lst.used = now
        if touch:
            lists.move_to_end(key)
        return lst

    async def slice(self, kind: str, key: int, before: int | None, limit: int) -> IdSlice | None:
        lst = self._get(kind, key, touch=True)
        if lst is None or lst.building:
            return None
        ids = lst.ids
        end = len(ids) if before is None else bisect_left(ids, before)
        start = max(0, end - limit)
        out = ids[start:end].tolist()
        out.reverse()
        return IdSlice(out, lst.floor)

    def _create(self, kind: str, key: int) -> _IdList:
        lists = self._lists[kind]
        lst = self._get(kind, key, touch=True)
        if lst is None:
            lst = _IdList(0, self._clock())
            lists[key] = lst
            if len(lists) > self.max_lists:
                lists.popitem(last=False)
                self.evictions += 1
        return lst

    async def begin(self, kind: str, key: int) -> None:
        self._create(kind, key).building = True

    async def install(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        lst = self._create(kind, key)
        lst.building = False
        self._union(lst, ids, floor)

    async def merge(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        lst = self._get(kind, key, touch=False)
        if lst is not None:
            self._union(lst, ids, floor)

    async def push(self, kind: str, keys: Sequence[int], id_: int) -> int:
        lists = self._lists[kind]
        taken = 0
        if kind == "home":
            now = self._clock()
            horizon = self.inactive_seconds
        todo: Iterable[int] = keys
        if len(keys) > 2 * len(lists):
            # A big author, few of whose followers have a timeline (1M followers, 10k
            # active): the set intersection runs in C, the loop below only over the hits.
            todo = lists.keys() & keys
        for key in todo:
            lst = lists.get(key)
            if lst is None:
                continue
            if kind == "home" and now - lst.used > horizon:
                del lists[key]
                continue
            ids = lst.ids
            if not ids or id_ > ids[-1]:
                ids.append(id_)
            else:
                i = bisect_left(ids, id_)
                if i < len(ids) and ids[i] == id_:
                    continue
                if id_ <= lst.floor and i == 0 and len(ids) >= self.cap:
                    continue  # older than everything kept in a full list: trimmed at once
                ids.insert(i, id_)
            if len(ids) > self.cap:
                self._trim(lst)
            taken += 1
        return taken

    async def remove(self, kind: str, keys: Sequence[int], ids: Sequence[int]) -> None:
        lists = self._lists[kind]
        for key in keys:
            lst = lists.get(key)
            if lst is None:
                continue
            arr = lst.ids
            for id_ in ids:
                i = bisect_left(arr, id_)
                if i < len(arr) and arr[i] == id_:
                    del arr[i]

    async def exists(self, kind: str, keys: Sequence[int]) -> list[int]:
        return [k for k in keys if self._get(kind, k, touch=False) is not None]

    async def drop(self, kind: str, key: int) -> None:
        self._lists[kind].pop(key, None)

    async def home_keys(self, limit: int) -> list[int] | None:
        """Every home list held, those past their inactivity deadline too (a push skips and
        drops them): nothing here suspends, so no list can appear between this answer and
        the fan-out's next step unless a rebuild runs in between, and a rebuild reads the
        record store after the post's commit."""
        lists = self._lists["home"]
        return None if len(lists) > limit else list(lists)

    def _union(self, lst: _IdList, ids: Sequence[int], floor: int) -> None:
        if floor > lst.floor:
            lst.floor = floor
        if not ids:
            return
        arr = lst.ids
        if len(ids) > 32:
            merged = sorted(set(arr).union(ids))
            lst.ids = array("q", merged)
        else:
            for id_ in ids:
                i = bisect_left(arr, id_)
                if i == len(arr) or arr[i] != id_:
                    arr.insert(i, id_)
        if len(lst.ids) > self.cap:
            self._trim(lst)

    def _trim(self, lst: _IdList) -> None:
        """Keep the newest ``cap`` ids; what is cut off raises the floor (deep pages beyond
        it are read from the record store)."""
        cut = len(lst.ids) - self.cap
        if cut <= 0:
            return
        lst.floor = max(lst.floor, lst.ids[cut - 1])
        del lst.ids[:cut]

    # -- administration (audit, rebuild) --------------------------------------------------
    def _alive(self, kind: str, key: int) -> _IdList | None:
        """The list if it exists and is not past its inactivity deadline; touches nothing."""
        lst = self._lists[kind].get(key)
        if lst is None or (kind == "home" and self._clock() - lst.used > self.inactive_seconds):
            return None
        return lst

    async def peek(
        self, kind: str, key: int, before: int | None = None, limit: int | None = None
    ) -> IdSlice | None:
        lst = self._alive(kind, key)
        if lst is None or lst.building:
            return None
        ids = lst.ids
        end = len(ids) if before is None else bisect_left(ids, before)
        start = 0 if limit is None else max(0, end - limit)
        out = ids[start:end].tolist()
        out.reverse()
        return IdSlice(out, lst.floor)

    async def keys(self, kind: str) -> list[int]:
        return [k for k in list(self._lists[kind]) if self._alive(kind, k) is not None]

    async def home_view(self, user_id: int, before: int | None, limit: int, kept: Any = None) -> HomeView:
        return HomeView(await self.slice("home", user_id, before, limit),
                        await self.slice("author", user_id, before, limit),
                        await self.following(user_id), self._celebrities)

    # -- graph facts ----------------------------------------------------------------------
    async def following(self, user_id: int) -> frozenset[int] | None:
        got = self._following.get(user_id)
        if got is not None:
            self._following.move_to_end(user_id)
        return got

    async def following_version(self, user_id: int) -> int:
        return self._following_version

    async def set_following(self, user_id: int, ids: Sequence[int], version: int | None = None) -> None:
        if version is not None and version != self._following_version:
            return
        self._following[user_id] = frozenset(ids)
        self._following.move_to_end(user_id)
        if len(self._following) > self.max_lists:
            self._following.popitem(last=False)

    async def forget_following(self, user_id: int) -> None:
        self._following.pop(user_id, None)
        self._following_version += 1

    async def celebrities(self) -> frozenset[int] | None:
        return self._celebrities

    async def set_celebrities(self, ids: Sequence[int]) -> None:
        self._celebrities = frozenset(ids)

    async def mark_celebrity(self, user_id: int, is_celebrity: bool) -> bool:
        celebs = self._celebrities
        if celebs is None or (user_id in celebs) == is_celebrity:
            return False
        self._celebrities = celebs | {user_id} if is_celebrity else celebs - {user_id}
        return True

    async def stats(self) -> dict[str, int]:
        return {
            "home_timelines": len(self._lists["home"]),
            "home_entries": sum(len(l.ids) for l in self._lists["home"].values()),
            "author_lists": len(self._lists["author"]),
            "following_sets": len(self._following),
            "evictions": self.evictions,
        }

    async def close(self) -> None:
        """Nothing to release: the lists live in this process's memory."""


class MemoryPostCache:
    """Bounded post cache. Eviction drops the entry inserted longest ago: ids are
    time-ordered and timelines are read newest first, so insertion order approximates
    recency of use without LRU bookkeeping on every hit.

    ``delete`` leaves a tombstone (bounded, oldest forgotten first) so that a reader who
    fetched a post from the store just before it was deleted cannot put it back."""

    backend: ClassVar[str] = "memory"

    def __init__(self, max_posts: int = 200_000, max_tombstones: int = 100_000) -> None:
        self.max_posts = max_posts
        self.max_tombstones = max_tombstones
        self._posts: dict[int, Post] = {}
        self._tombstones: dict[int, None] = {}
        self.hits = 0
        self.misses = 0

    async def close(self) -> None:
        """Nothing to release: the posts live in this process's memory."""

    async def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "posts": len(self._posts)}

    async def get_many(self, ids: Sequence[int]) -> dict[int, Post]:
        posts = self._posts
        out = {i: posts[i] for i in ids if i in posts}
        self.hits += len(out)
        self.misses += len(ids) - len(out)
        return out

    async def put_many(self, posts: Sequence[Post]) -> None:
        store = self._posts
        dead = self._tombstones
        for p in posts:
            if p.id not in dead:
                store[p.id] = p
        excess = len(store) - self.max_posts
        if excess > 0:
            for key in list(_take(iter(store), excess)):
                del store[key]

    async def delete(self, ids: Sequence[int]) -> None:
        dead = self._tombstones
        for i in ids:
            self._posts.pop(i, None)
            dead[i] = None
        excess = len(dead) - self.max_tombstones
        if excess > 0:
            for key in list(_take(iter(dead), excess)):
                del dead[key]

    async def peek_many(self, ids: Sequence[int]) -> dict[int, Post]:
        posts = self._posts
        return {i: posts[i] for i in ids if i in posts}

    def __len__(self) -> int:
        return len(self._posts)


def _take(it, n: int):
    for _ in range(n):
        try:
            yield next(it)
        except StopIteration:
            return
