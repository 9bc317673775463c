"""Rule **rebuild**: a timeline that is not cached (never read, dropped as inactive, lost)
is recomputed from the record store on the next read, and equals the recomputation."""

import pytest


def _busy_world(world):
    """Followers, a celebrity, deletes, more posts than the cap, nobody has read yet."""
    star, ana, eve, bob, f2, f3 = world.users("star", "ana", "eve", "bob", "f2", "f3")
    for f in (bob, f2, f3):
        world.follow(f, star)
    world.follow(bob, ana)
    world.follow(bob, eve)
    world.follow(ana, bob)
    authors = [ana, star, eve, bob, ana, ana, star, f2, eve, bob, star, ana, f3, eve]
    posts = [world.post(a) for a in authors]
    world.delete(ana, posts[4])
    world.delete(star, posts[6])
    world.deliver()
    return bob, [star, ana, eve, bob, f2, f3]


def test_rebuild_of_an_absent_timeline_equals_the_recomputation(world):
    bob, everyone = _busy_world(world)
    for u in everyone:
        assert world.cached_home(u) is None
        want = world.recomputed_home(u)
        assert world.home(u) == want
        assert world.home(u, 2) == want
        assert world.cached_home(u) is not None  # installed by the read


def test_rebuild_installs_the_newest_cap_ids_and_a_floor(world):
    bob, _ = _busy_world(world)
    want = world.recomputed_home(bob)
    assert len(want) > world.settings.timeline_cap
    world.home(bob, 1)
    cached = world.cached_home(bob)
    assert cached.ids == want[: world.settings.timeline_cap]
    assert cached.floor < cached.ids[-1]


def test_rebuild_after_the_timeline_is_dropped(world):
    bob, everyone = _busy_world(world)
    before = world.home(bob)
    world.run(world.cache.drop("home", bob))  # the cache lost it (eviction, restart)
    assert world.home(bob) == before == world.recomputed_home(bob)


def test_rebuild_after_inactivity_sees_what_happened_meanwhile(world):
    bob, (star, ana, eve, *_rest) = _busy_world(world)
    world.home(bob)
    world.days_pass(world.settings.inactive_days + 1)
    world.post(ana)
    world.post(star)
    world.unfollow(bob, eve)
    world.deliver()
    assert world.cached_home(bob) is None
    assert world.home(bob) == world.recomputed_home(bob)


@pytest.mark.parametrize("lost", ["home", "author"])
def test_rebuild_of_every_list_at_once(world, lost):
    """With every list of a kind gone (author lists too: a celebrity's pulled list is
    rebuilt the same way), each reader still gets the recomputation."""
    bob, everyone = _busy_world(world)
    for u in everyone:
        world.home(u)
    for u in everyone:
        world.run(world.cache.drop(lost, u))
    for u in everyone:
        assert world.home(u, 3) == world.recomputed_home(u)
