"""``HomePages``: what drops a kept first page, and its bound (the equality of kept and
fresh pages under writes is ``tests/integration/test_home_pages.py``)."""

from __future__ import annotations

import asyncio

from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache
from homefeed.service_layer import home_pages as hp
from homefeed.service_layer.home_pages import HomePage, HomePages, InvalidatingPostCache, InvalidatingTimelineCache


def kept(pages: HomePages, reader: int, authors: tuple[int, ...] = ()) -> HomePage:
    page = HomePage([], None)
    assert pages.put(reader, 20, page, pages.generation, authors)
    return page


def test_each_change_drops_the_pages_that_depend_on_it() -> None:
    async def main() -> None:
        pages = HomePages()
        cache = InvalidatingTimelineCache(MemoryTimelineCache(), pages)
        posts = InvalidatingPostCache(MemoryPostCache(100), pages)
        kept(pages, 1, (1, 9))  # reader 1 merges their own list and celebrity 9's
        kept(pages, 2, (2,))
        kept(pages, 3, (3,))
        await cache.push("home", [2, 5], 100)  # a push given to reader 2 (taken or not)
        assert pages.get(2, 20) is None and pages.get(1, 20) is not None
        await cache.push("author", [9], 101)  # the celebrity reader 1 pulls posted
        assert pages.get(1, 20) is None and pages.get(3, 20) is not None
        await cache.forget_following(3)  # reader 3 followed or unfollowed someone
        assert pages.get(3, 20) is None
        kept(pages, 4)
        await cache.slice("home", 4, None, 20)  # reads change nothing
        await cache.set_following(4, [1, 2])
        assert pages.get(4, 20) is not None
        await posts.delete([100])  # a delete: every page
        assert pages.get(4, 20) is None

    asyncio.run(main())


def test_a_page_computed_across_a_change_is_not_kept() -> None:
    pages = HomePages()
    before = pages.generation
    pages.readers_changed([7])  # e.g. a push landed while the page was being computed
    assert not pages.put(1, 20, HomePage([], None), before, ())
    assert pages.get(1, 20) is None


def test_past_the_bound_the_older_half_is_dropped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(hp, "MAX_READERS", 10)
    pages = HomePages()
    for r in range(10):
        kept(pages, r)
    kept(pages, 10)
    assert [r for r in range(11) if pages.get(r, 20) is not None] == [5, 6, 7, 8, 9, 10]


def test_a_cache_call_the_wrapper_does_not_know_fails_loudly() -> None:
    cache = InvalidatingTimelineCache(MemoryTimelineCache(cap=7), HomePages())
    assert cache.cap == 7 and cache._lists is cache.inner._lists  # type: ignore[attr-defined]
    try:
        cache.push_many  # type: ignore[attr-defined]  # e.g. a batch push added to the adapter
    except AttributeError as exc:
        assert "push_many" in str(exc)
    else:
        raise AssertionError("an unknown cache call went past the kept pages")
