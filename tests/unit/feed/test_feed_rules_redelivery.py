"""Idempotent redelivery: the fan-out consumer may get an event again (a lost
acknowledgement, a crashed worker, a batch redelivered after newer ones). Applying it again
changes nothing anyone reads, whatever the page size, and creates no absent timeline.

(The cached lists themselves may differ after a redelivery, invisibly: a redelivered post
can land in a list at or below its floor, where reads never look, and a redelivered follow
of someone since unfollowed merges then unmerges, which can trim entries under a raised
floor: later pages of that reader come from the record store. Reads are the contract.)"""

import pytest
from homefeed.domain import model


def _everything(world):
    """What every user reads, whole, with small and large pages."""
    return {(u, limit): world.home(u, limit) for u in sorted(world.names) for limit in (2, 100)}


def _assert_redelivery_changes_nothing(world, events):
    for u in world.names:
        world.home(u)  # every timeline cached (a rebuild is not what is being tested)
    before = _everything(world)
    world.redeliver(events)
    assert _everything(world) == before
    world.redeliver(events)
    world.redeliver(events[::-1])  # out of order too
    assert _everything(world) == before


def _world_with_history(world):
    star, ana, bob, f2, f3 = world.users("star", "ana", "bob", "f2", "f3")
    world.follow(bob, ana)
    for f in (bob, f2, f3):
        world.follow(f, star)
    world.deliver()
    for u in (star, ana, bob, f2, f3):
        world.home(u)
    for a in (ana, star, bob, ana, star, ana, ana, star, ana):
        world.post(a)
    world.deliver()
    return star, ana, bob, f2, f3


@pytest.mark.parametrize("kind", [model.POST_CREATED, model.POST_DELETED, model.FOLLOWED, model.UNFOLLOWED])
def test_redelivery_of_each_kind_of_event_changes_nothing(world, kind):
    star, ana, bob, f2, f3 = _world_with_history(world)
    p = world.post(ana)
    world.post(star)
    world.delete(ana, p)
    world.unfollow(bob, ana)
    world.unfollow(f3, star)  # a demotion
    world.follow(bob, f2)
    world.deliver()
    events = [e for e in world.delivered if e.type == kind]
    assert events
    for e in events:
        _assert_redelivery_changes_nothing(world, [e])


def test_redelivery_of_the_last_batch_changes_nothing(world):
    star, ana, bob, f2, f3 = _world_with_history(world)
    mark = len(world.delivered)
    world.post(ana)
    world.unfollow(f3, star)
    world.follow(f2, ana)
    world.post(star)
    world.deliver()
    _assert_redelivery_changes_nothing(world, world.delivered[mark:])


def test_redelivery_of_the_whole_history_changes_nothing(world):
    star, ana, bob, f2, f3 = _world_with_history(world)
    world.delete(star, world.post(star))
    world.unfollow(bob, ana)
    world.deliver()
    _assert_redelivery_changes_nothing(world, world.delivered)


def test_redelivered_follow_after_a_newer_unfollow_changes_nothing(world):
    ana, bob = world.users("ana", "bob")
    world.home(bob)
    p = world.post(ana)
    world.follow(bob, ana)
    world.deliver()
    follow = world.delivered[-1]
    assert follow.type == model.FOLLOWED
    world.unfollow(bob, ana)
    world.deliver()
    assert world.home(bob) == []
    world.redeliver([follow])  # the old follow, after the unfollow
    assert world.home(bob) == []
    assert p not in world.cached_home(bob).ids


def test_redelivered_unfollow_after_a_newer_follow_changes_nothing(world):
    ana, bob = world.users("ana", "bob")
    world.home(bob)
    p = world.post(ana)
    world.follow(bob, ana)
    world.unfollow(bob, ana)
    world.deliver()
    unfollow = world.delivered[-1]
    assert unfollow.type == model.UNFOLLOWED
    world.follow(bob, ana)
    world.deliver()
    assert world.home(bob) == [p]
    world.redeliver([unfollow])
    assert world.home(bob) == [p]
    assert p in world.cached_home(bob).ids


def test_redelivered_create_after_its_delete_does_not_bring_the_post_back(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    p = world.post(ana)
    world.deliver()
    create = world.delivered[-1]
    world.delete(ana, p)
    world.deliver()
    world.redeliver([create])
    assert world.home(bob) == []
    assert world.home(ana) == []
    assert p not in world.cached_home(bob).ids


def test_fetched_but_unacknowledged_events_come_again_and_change_nothing(world):
    """The consumer applied a batch and crashed before acknowledging it: the stream
    delivers the same events again."""
    star, ana, bob, f2, f3 = _world_with_history(world)
    world.post(ana)
    world.unfollow(f3, star)
    batch = world.pending()
    world.redeliver(batch)  # applied, not acknowledged
    for u in world.names:
        world.home(u)
    before = _everything(world)
    assert world.pending() == batch  # delivered again
    assert world.deliver() == len(batch)
    assert _everything(world) == before


def test_redelivery_does_not_create_absent_timelines(world):
    star, ana, bob, f2, f3 = world.users("star", "ana", "bob", "f2", "f3")
    world.follow(bob, ana)
    for f in (bob, f2, f3):
        world.follow(f, star)
    world.post(ana)
    world.post(star)
    world.unfollow(f3, star)
    world.deliver()
    assert all(world.cached_home(u) is None for u in world.names)
    world.redeliver(world.delivered)
    assert all(world.cached_home(u) is None for u in world.names)
