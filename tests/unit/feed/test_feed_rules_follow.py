"""Rules **merge** (follow) and **unmerge** (unfollow): following merges the followee's
recent posts into the follower's cached timeline; unfollowing removes them. Reads filter by
whom the reader follows *now*, so the page is right even before the consumer applies the
follow event."""


def test_merge_on_follow_brings_the_followees_recent_posts(world):
    ana, bob = world.users("ana", "bob")
    world.home(bob)  # cached, empty
    posts = [world.post(ana), world.post(ana)]
    world.deliver()
    assert world.home(bob) == []

    world.follow(bob, ana)
    world.deliver()

    assert set(posts) <= set(world.cached_home(bob).ids)  # merged, not rebuilt
    assert world.home(bob) == posts[::-1]


def test_merge_on_follow_interleaves_with_what_was_there(world):
    ana, eve, bob = world.users("ana", "eve", "bob")
    world.follow(bob, eve)
    world.deliver()
    world.home(bob)
    e1, a1, e2, a2 = world.post(eve), world.post(ana), world.post(eve), world.post(ana)
    world.deliver()
    world.follow(bob, ana)
    world.deliver()
    assert world.home(bob) == [a2, e2, a1, e1]


def test_merge_on_follow_of_a_celebrity_pulls_instead(world):
    star, f1, f2, bob = world.users("star", "f1", "f2", "bob")
    world.follow(f1, star)
    world.follow(f2, star)
    world.deliver()
    world.home(bob)
    posts = [world.post(star) for _ in range(3)]
    world.deliver()

    world.follow(bob, star)  # the third follower: a celebrity now
    world.deliver()

    assert star in world.celebrities()
    assert not set(posts) & set(world.cached_home(bob).ids)  # nothing merged into the cache
    assert world.home(bob) == posts[::-1]  # pulled at read time


def test_follow_shows_at_once_before_the_consumer_runs(world):
    """Before the follow event is applied, a cached timeline lacks the followee's old
    posts, but what it shows is never wrong; once applied, everything is there."""
    ana, bob = world.users("ana", "bob")
    world.home(bob)
    old = world.post(ana)
    world.deliver()
    world.follow(bob, ana)
    assert world.home(bob) in ([], [old])
    world.deliver()
    assert world.home(bob) == [old]


def test_unmerge_on_unfollow_removes_the_followees_posts(world):
    ana, eve, bob = world.users("ana", "eve", "bob")
    world.follow(bob, ana)
    world.follow(bob, eve)
    world.deliver()
    world.home(bob)
    a1, e1, a2 = world.post(ana), world.post(eve), world.post(ana)
    world.deliver()
    assert world.home(bob) == [a2, e1, a1]

    world.unfollow(bob, ana)
    assert world.home(bob) == [e1]  # filtered at once, event not applied yet
    world.deliver()

    assert world.cached_home(bob).ids == [e1]  # and gone from the cache
    assert world.home(bob) == [e1]


def test_unfollow_then_new_posts_do_not_reach_the_former_follower(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    world.unfollow(bob, ana)
    world.deliver()
    world.post(ana)
    world.deliver()
    assert world.home(bob) == []
    assert world.cached_home(bob).ids == []


def test_refollow_merges_again(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    p1 = world.post(ana)
    world.deliver()
    world.unfollow(bob, ana)
    world.deliver()
    p2 = world.post(ana)
    world.deliver()
    world.follow(bob, ana)
    world.deliver()
    assert world.home(bob) == [p2, p1]


def test_unmerge_keeps_the_readers_own_posts(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    a1 = world.post(ana)
    mine = world.post(bob)
    world.deliver()
    world.unfollow(bob, ana)
    world.deliver()
    assert world.home(bob) == [mine]
    assert a1 not in world.cached_home(bob).ids
