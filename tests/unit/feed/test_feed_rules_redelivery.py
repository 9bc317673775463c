"""Idempotent redelivery: the fan-out consumer may get an event again (a lost
acknowledgement, a crashed worker, a batch redelivered after newer ones). Applying it again
changes nothing anyone reads, whatever the page size, and creates no absent timeline.

(The cached lists themselves may differ after a redelivery, invisibly: a redelivered post
can land in a list at or below its floor, where reads never look, and a redelivered follow
of someone since unfollowed merges then unmerges, which can trim entries under a raised
floor: later pages of that reader come from the record store. Reads are the contract.)"""

import pytest
from homefeed.domain import model
from homefeed.service_layer.consumers import FANOUT


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


class _UnfollowDuringTheRead:
    """The record store as a fan-out sees it when another worker is quicker: its read of
    the author's followers answers what was true at the read, and then, before the pushes,
    ``meanwhile`` runs (an unfollow is committed and applied by the other worker)."""

    def __init__(self, store, meanwhile) -> None:
        self._store = store
        self._meanwhile = meanwhile

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def _then(self, got):
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile()
        return got

    async def follower_ids(self, user_id):
        return await self._then(await self._store.follower_ids(user_id))

    async def follower_ids_of(self, user_ids):
        return await self._then(await self._store.follower_ids_of(user_ids))


@pytest.mark.parametrize("authors", [1, 2], ids=["one-author", "batch-of-authors"])
@pytest.mark.parametrize("parallel", [True, False], ids=["parallel-workers", "one-worker"])
def test_an_unfollow_applied_by_another_worker_during_a_push_leaves_nothing_behind(world, authors, parallel):
    """Two workers share the fan-out (JetStream). One reads the followers of ana's new post;
    bob unfollows ana, and the other worker applies that unfollow (its unmerge finds nothing
    of the post yet); then the first worker pushes the post to the followers it read, bob
    among them. The post must not stay in bob's cached list: nothing would ever remove it
    (reads hide it; the audit reports it). With one worker applying events in order the
    race cannot happen, and the check is not made (``Consumers.parallel``)."""
    ana, bob, cat, other = world.users("ana", "bob", "cat", "other")
    for f in (bob, cat):
        world.follow(f, ana)
        world.follow(f, other)
    world.deliver()
    world.home(bob), world.home(cat)
    posts = [world.post(ana)] + ([world.post(other)] if authors == 2 else [])
    batch = world.pending()
    assert [e.type for e in batch] == [model.POST_CREATED] * authors

    late = []

    async def unfollow_elsewhere():
        await world.hf.unfollow(bob, world.prefix + "ana")
        late.extend(e for e in await world.hf.stream.fetch(FANOUT, 100, timeout=0) if e.seq > batch[-1].seq)
        assert [e.type for e in late] == [model.UNFOLLOWED]
        await world.hf.consumers.fan_out(late)  # the other worker

    world.hf.consumers.parallel = parallel
    real = world.feed.store
    world.feed.store = _UnfollowDuringTheRead(real, unfollow_elsewhere)
    try:
        world.run(world.hf.consumers.fan_out(batch))
    finally:
        world.feed.store = real
    world.run(world.hf.stream.ack(FANOUT, batch + late))  # both workers acknowledge
    assert world.pending() == []
    assert world.home(bob) == posts[1:]  # the author rule hides ana's post either way
    assert world.home(cat) == posts[::-1]
    cached = world.cached_home(bob).ids
    if parallel:
        assert posts[0] not in cached
        assert posts[1:] == [p for p in posts[1:] if p in cached]  # other's post stays
    else:  # one worker never interleaves like this, and does not pay for the check:
        assert posts[0] in cached  # without it, the post would stay (what the check is for)
