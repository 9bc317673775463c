"""Rules **trim** and **floor** (``timeline_cap=5``): every cached list keeps its newest
``timeline_cap`` ids, and what is cut off raises the list's floor. A page that reaches below
the floor continues from the record store: paging walks the whole history, with no gap and
no post twice, whatever the page size."""

import pytest
from feedworld import World

LIMITS = (1, 2, 3, 4, 5, 6, 7, 100)


def _walk_all_limits(world, reader, want):
    for limit in LIMITS:
        assert world.home(reader, limit) == want, f"limit {limit}"


def test_trim_keeps_the_newest_cap_ids_and_raises_the_floor(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    posts = [world.post(ana) for _ in range(8)]
    world.deliver()

    cached = world.cached_home(bob)
    cap = world.settings.timeline_cap
    assert cached.ids == posts[::-1][:cap]
    assert posts[-cap - 1] <= cached.floor < posts[-cap]  # the newest id cut off is below it


def test_floor_pages_continue_from_the_record_store(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    posts = [world.post(ana) for _ in range(13)]
    world.deliver()
    _walk_all_limits(world, bob, posts[::-1])


def test_floor_page_starting_below_the_floor(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    posts = [world.post(ana) for _ in range(12)]
    world.deliver()
    newest_first = posts[::-1]
    for start in (3, 5, 6, 9):  # before = the id at that position: the page is what follows it
        page, nxt = world.page(bob, 3, before=newest_first[start])
        assert page == newest_first[start + 1: start + 4]


def test_floor_with_pushed_pulled_and_own_lists_each_trimmed(world):
    """Three sources, each with its own floor: the home list (pushed), a celebrity's author
    list (pulled) and the reader's own list. The merged pages lose and repeat nothing."""
    star, f2, f3, ana, bob = world.users("star", "f2", "f3", "ana", "bob")
    for f in (bob, f2, f3):
        world.follow(f, star)
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    authors = [star, ana, bob, star, star, ana, bob, bob, star, ana, ana, star, bob, ana, star,
               star, star, ana, ana, ana, bob]
    for a in authors:
        world.post(a)
    world.deliver()
    want = world.recomputed_home(bob)
    assert len(want) == len(authors)
    _walk_all_limits(world, bob, want)


def test_trim_after_merge_on_follow(world):
    ana, eve, bob = world.users("ana", "eve", "bob")
    world.follow(bob, eve)
    world.deliver()
    world.home(bob)
    for i in range(14):
        world.post(ana if i % 3 else eve)
    world.deliver()
    world.follow(bob, ana)
    world.deliver()
    assert len(world.cached_home(bob).ids) == world.settings.timeline_cap
    _walk_all_limits(world, bob, world.recomputed_home(bob))


def test_trim_after_demotion_merge(world):
    star, f1, f2, f3 = world.users("star", "f1", "f2", "f3")
    for f in (f1, f2, f3):
        world.follow(f, star)
    world.deliver()
    world.home(f1)
    posts = [world.post(star) for _ in range(9)]
    world.deliver()
    world.unfollow(f3, star)
    world.deliver()
    assert len(world.cached_home(f1).ids) == world.settings.timeline_cap
    _walk_all_limits(world, f1, posts[::-1])


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_floor_with_tiny_caps(records, cap):
    world = World(records, timeline_cap=cap)
    try:
        star, f2, f3, ana, bob = world.users("star", "f2", "f3", "ana", "bob")
        for f in (bob, f2, f3):
            world.follow(f, star)
        world.follow(bob, ana)
        world.deliver()
        world.home(bob)
        for i in range(10):
            world.post((star, ana, bob)[i % 3])
        world.deliver()
        want = world.recomputed_home(bob)
        assert len(want) == 10
        _walk_all_limits(world, bob, want)
    finally:
        world.close()
