"""First home pages kept in process memory, dropped by whatever could change them (issue 14).

A warm home read costs ~45 µs of CPU in process (the rules' entry loop, the list slices, the
hydration, ``orjson``), for the same 20 posts read after read: most readers read the first
page again and again between two posts of their followees. So this process keeps each
reader's computed first page (the posts, the next cursor and, once asked, the ``/v1`` body
as bytes) and serves the next read from it, until something that could change the page
happens. What a first home page depends on, and which cache call tells it changed:

- the reader's home list: ``push``/``remove``/``merge``/``install``/``begin``/``drop`` of
  kind ``home`` on the reader (every key a push is *given* counts, taken or not: an inactive
  list skipped by a push is still a page that no longer shows the newest posts);
- the author lists the read merges: the reader's own (read-your-writes) and those of the
  celebrities the reader follows (``_deps``: recorded when the page is kept);
- the reader's following set (the author rule is evaluated at read time):
  ``forget_following``, which every follow and unfollow calls after its commit;
- the celebrity set (which lists are merged): ``mark_celebrity``, ``set_celebrities``: all
  pages dropped (rare);
- a deleted post (gone from the page, or a boost's original gone, or a boost un-hidden):
  ``PostCache.delete``: all pages dropped (deletes are rare next to reads).

The pages are told by wrapping the timeline and post caches (``InvalidatingTimelineCache``,
``InvalidatingPostCache``), so that every caller (fan-out, rebuilds, repairs, the audit's
fixes) is covered without knowing about pages. Only with the in-process cache (the embedded
profile: one process, whose consumers make every cache change here); with Redis, other
processes change the lists and a page here would not hear of it, so there is none.

A read that started before a change may finish after it (a read awaits the record store on a
miss): ``generation`` is bumped by every change, and a page is kept only if it did not move
while the page was computed.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, ClassVar, Generic, Iterable, Iterator, Sequence, TypeVar

from homefeed.domain.model import Post
from homefeed.ports import HomeView, IdSlice, PostCache, TimelineCache

HOME = "home"
AUTHOR = "author"
#: Readers whose first pages are kept. A page is ~5 KiB as ``/v1`` bytes and ~30 KiB more
#: once rendered as 20 Mastodon Statuses: ~175 MiB at most. Past it, the older half (by
#: when they were kept) is dropped.
MAX_READERS = 5_000


class HomePage:
    """One kept first page: the posts, the next cursor, and renderings of it made on demand
    (``body``: the ``/v1`` answer; ``views``: e.g. the Mastodon answer, each keyed and
    checked by its own maker)."""

    __slots__ = ("posts", "next_id", "body", "views")

    def __init__(self, posts: list[Post], next_id: int | None) -> None:
        self.posts = posts
        self.next_id = next_id
        self.body: bytes | None = None
        self.views: dict[Any, Any] = {}


K = TypeVar("K")


class _KeptPages(Generic[K]):
    """reader -> limit -> what is kept, for at most ``MAX_READERS`` readers (the oldest half
    forgotten when full), with hit and miss counts: what both kinds of kept pages share."""

    def __init__(self) -> None:
        self._pages: dict[int, dict[int, K]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, reader: int, limit: int) -> K | None:
        pages = self._pages.get(reader)
        if pages is None:
            return None
        return pages.get(limit)

    def _keep(self, reader: int, limit: int, kept: K) -> None:
        pages = self._pages
        if reader not in pages and len(pages) >= MAX_READERS:
            for r in list(islice(pages, len(pages) // 2)):
                del pages[r]
        pages.setdefault(reader, {})[limit] = kept

    def stats(self) -> dict[str, int]:
        return {"readers": len(self._pages), "hits": self.hits, "misses": self.misses}


class HomePages(_KeptPages[HomePage]):
    def __init__(self) -> None:
        super().__init__()
        #: author -> readers whose kept page merges that author's list (self, celebrities)
        #: (a forgotten reader's entries stay: dropping a page twice is harmless)
        self._deps: dict[int, set[int]] = {}
        #: bumped by every change that may drop a page
        self.generation = 0

    def put(self, reader: int, limit: int, page: HomePage, generation: int, authors: Sequence[int]) -> bool:
        """Keep ``page`` unless anything changed since ``generation`` was read (before the
        page was computed). ``authors``: the author lists it merged."""
        if generation != self.generation:
            return False
        self._keep(reader, limit, page)
        for a in authors:
            self._deps.setdefault(a, set()).add(reader)
        return True

    # -- what changes pages ---------------------------------------------------------------
    def readers_changed(self, readers: Sequence[int]) -> None:
        self.generation += 1
        pages = self._pages
        if not pages:
            return
        if len(readers) > 8:
            for r in pages.keys() & set(readers):
                del pages[r]
        else:
            for r in readers:
                pages.pop(r, None)

    def authors_changed(self, authors: Sequence[int]) -> None:
        self.generation += 1
        for a in authors:
            readers = self._deps.pop(a, None)
            if readers:
                for r in readers:
                    self._pages.pop(r, None)

    def clear(self) -> None:
        self.generation += 1
        self._pages.clear()
        self._deps.clear()

    def all_views(self) -> Iterator[tuple[int, Any]]:
        """(reader, rendering) of every rendering kept."""
        for r, pages in self._pages.items():
            for page in pages.values():
                for view in page.views.values():
                    yield r, view

    def views_of(self, readers: Iterable[int]) -> Iterator[Any]:
        """The renderings kept with these readers' pages."""
        pages = self._pages
        for r in readers:
            for page in pages.get(r, {}).values():
                yield from page.views.values()

    def views_changed(self, readers: Iterable[int] | None) -> None:
        """Drop the renderings (``views``) kept with these readers' pages (None: everyone's),
        not the pages: what changed is shown by a rendering only (an Account, a counter)."""
        pages = self._pages
        for r in pages if readers is None else readers:
            for page in pages.get(r, {}).values():
                page.views.clear()


#: What a scale-out page is kept with: (fingerprint, [(celebrity, slice)], page).
ViewKept = tuple[Any, list[tuple[int, IdSlice]], HomePage]


class ViewPages(_KeptPages[ViewKept]):
    """First home pages kept by the scale-out profile's API processes (a shared Redis cache,
    changed by other processes: nothing here hears of a change). So a kept page is not
    dropped by changes but checked at each read: it is served only while the fingerprint of
    the ``home_view`` call every read starts with (``HomeView.fingerprint``: the reader's
    home and own slices, the following and celebrity versions, the post deletes' version)
    and the followed celebrities' slices are what the page was computed from
    (``FeedManager.first_home_page``). A hit saves the post cache round trip, the posts'
    decoding, the home rules and the rendering (``HomePage.body``); the ``home_view`` round
    trip stays. Bounded like ``HomePages``."""

    def put(self, reader: int, limit: int, kept: ViewKept) -> None:
        self._keep(reader, limit, kept)

    def clear(self) -> None:
        self._pages.clear()


#: Public attributes of the wrapped caches read through the wrappers: settings and counters.
_PASSED_ON = frozenset({"cap", "inactive_seconds", "max_lists", "evictions", "max_posts", "max_tombstones",
                        "hits", "misses"})


def _passed_on(wrapper: Any, name: str) -> Any:
    if name.startswith("_") or name in _PASSED_ON:
        return getattr(wrapper.inner, name)
    raise AttributeError(
        f"{type(wrapper).__name__} does not pass {name!r} on: a cache call it does not know "
        "could change a kept home page unseen (wrap it in service_layer/home_pages.py)")


class InvalidatingTimelineCache:
    """A ``TimelineCache`` that tells ``pages`` about every change of a list or graph fact
    before passing it on (see the module's docstring). Private attributes (``_lists`` in
    tests) and a few settings are the wrapped cache's; any other public name not written
    here fails loudly (``_passed_on``): a cache call this class does not know could change
    a list without dropping the pages that show it."""

    backend: ClassVar[str] = "memory"

    def __init__(self, inner: TimelineCache, pages: HomePages) -> None:
        self.inner = inner
        self.pages = pages

    def __getattr__(self, name: str) -> Any:
        return _passed_on(self, name)

    def _changed(self, kind: str, keys: Sequence[int]) -> None:
        if kind == HOME:
            self.pages.readers_changed(keys)
        elif kind == AUTHOR:
            self.pages.authors_changed(keys)

    async def slice(self, kind: str, key: int, before: int | None, limit: int) -> IdSlice | None:
        return await self.inner.slice(kind, key, before, limit)

    async def begin(self, kind: str, key: int) -> None:
        self._changed(kind, (key,))
        await self.inner.begin(kind, key)

    async def install(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        self._changed(kind, (key,))
        await self.inner.install(kind, key, ids, floor)

    async def push(self, kind: str, keys: Sequence[int], id_: int) -> int:
        self._changed(kind, keys)
        return await self.inner.push(kind, keys, id_)

    async def merge(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        self._changed(kind, (key,))
        await self.inner.merge(kind, key, ids, floor)

    async def remove(self, kind: str, keys: Sequence[int], ids: Sequence[int]) -> None:
        self._changed(kind, keys)
        await self.inner.remove(kind, keys, ids)

    async def exists(self, kind: str, keys: Sequence[int]) -> list[int]:
        return await self.inner.exists(kind, keys)

    async def home_keys(self, limit: int) -> list[int] | None:
        return await self.inner.home_keys(limit)  # changes no list

    async def home_view(self, user_id: int, before: int | None, limit: int, kept: Any = None) -> HomeView:
        return await self.inner.home_view(user_id, before, limit, kept)

    async def drop(self, kind: str, key: int) -> None:
        self._changed(kind, (key,))
        await self.inner.drop(kind, key)

    async def following(self, user_id: int) -> frozenset[int] | None:
        return await self.inner.following(user_id)

    async def following_version(self, user_id: int) -> int:
        return await self.inner.following_version(user_id)

    async def set_following(self, user_id: int, ids: Sequence[int], version: int | None = None) -> None:
        await self.inner.set_following(user_id, ids, version)

    async def forget_following(self, user_id: int) -> None:
        self.pages.readers_changed((user_id,))
        await self.inner.forget_following(user_id)

    async def celebrities(self) -> frozenset[int] | None:
        return await self.inner.celebrities()

    async def set_celebrities(self, ids: Sequence[int]) -> None:
        self.pages.clear()
        await self.inner.set_celebrities(ids)

    async def mark_celebrity(self, user_id: int, is_celebrity: bool) -> bool:
        self.pages.clear()
        return await self.inner.mark_celebrity(user_id, is_celebrity)

    async def peek(self, kind: str, key: int, before: int | None = None,
                   limit: int | None = None) -> IdSlice | None:
        return await self.inner.peek(kind, key, before, limit)

    async def keys(self, kind: str) -> list[int]:
        return await self.inner.keys(kind)

    async def stats(self) -> dict[str, int]:
        return await self.inner.stats()

    async def close(self) -> None:
        await self.inner.close()


class InvalidatingPostCache:
    """A ``PostCache`` whose ``delete`` drops every kept page first (see the module)."""

    backend: ClassVar[str] = "memory"

    def __init__(self, inner: PostCache, pages: HomePages) -> None:
        self.inner = inner
        self.pages = pages

    def __getattr__(self, name: str) -> Any:
        return _passed_on(self, name)

    async def get_many(self, ids: Sequence[int]) -> dict[int, Post]:
        return await self.inner.get_many(ids)

    async def put_many(self, posts: Sequence[Post]) -> None:
        await self.inner.put_many(posts)

    async def delete(self, ids: Sequence[int]) -> None:
        self.pages.clear()
        await self.inner.delete(ids)

    async def peek_many(self, ids: Sequence[int]) -> dict[int, Post]:
        return await self.inner.peek_many(ids)

    async def stats(self) -> dict[str, int]:
        return await self.inner.stats()

    async def close(self) -> None:
        await self.inner.close()


async def first_page(hf: Any, reader: int, limit: int) -> HomePage:
    """The reader's first home page of ``limit`` posts: the kept one, else computed by the
    home rules (``FeedManager.read_home``) and kept. ``hf`` is the ``Homefeed`` (its
    ``home_pages`` None: nothing kept, computed every time; unless its ``view_pages``, the
    scale-out profile's, are there: ``FeedManager.first_home_page``)."""
    pages: HomePages | None = hf.home_pages
    if pages is None and hf.view_pages is not None:
        return await hf.feed.first_home_page(reader, limit, hf.view_pages)
    if pages is not None:
        got = pages.get(reader, limit)
        if got is not None:
            pages.hits += 1
            return got
        pages.misses += 1
        generation = pages.generation
    posts, next_id = await hf.feed.read_home(reader, None, limit)
    page = HomePage(posts, next_id)
    if pages is not None and generation == pages.generation:
        feed = hf.feed
        # The author lists the read merged (``FeedManager._pulled_authors``): both facts are
        # in process memory (a miss would bump the generation and the page is not kept).
        following = await feed.following_of(reader)
        authors = feed._pulled_authors(reader, following, await feed.celebrities())
        pages.put(reader, limit, page, generation, authors)
    return page
