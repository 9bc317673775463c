"""Rules **celebrity** (pull), **promotion** and **demotion** (``celebrity_threshold=3``).

An author with at least ``celebrity_threshold`` followers is not pushed: each follower's
read pulls their recent posts from the author's cached list and merges them in. Crossing the
threshold up (promotion) makes later posts pulled; crossing it down (demotion) merges the
posts they made while a celebrity (never pushed) into their followers' cached timelines.
"""

import pytest


def _celebrity(world, name="star", fans=("f1", "f2", "f3")):
    star = world.user(name)
    followers = [world.user(f) for f in fans]
    for f in followers:
        world.follow(f, star)
    world.deliver()
    return star, followers


def test_celebrity_posts_are_not_pushed(world):
    star, fans = _celebrity(world)
    for f in fans:
        world.home(f)  # cached timelines
    assert star in world.celebrities()

    p = world.post(star)
    world.deliver()

    for f in fans:
        assert p not in world.cached_home(f).ids  # nothing pushed


def test_celebrity_posts_are_pulled_and_merged_at_read_time(world):
    star, fans = _celebrity(world)
    ana = world.user("ana")
    f1 = fans[0]
    world.follow(f1, ana)
    world.deliver()
    world.home(f1)

    mine = world.post(f1)
    a1 = world.post(ana)
    s1 = world.post(star)
    a2 = world.post(ana)
    s2 = world.post(star)
    world.deliver()

    # pushed (ana), pulled (star) and own posts, one newest-first list
    assert world.home(f1) == [s2, a2, s1, a1, mine]
    assert world.home(fans[1]) == [s2, s1]
    assert world.home(f1) == world.recomputed_home(f1)


def test_celebrity_pull_pages_walk_everything_once(world):
    star, fans = _celebrity(world)
    ana = world.user("ana")
    f1 = fans[0]
    world.follow(f1, ana)
    world.deliver()
    world.home(f1)
    for i in range(8):
        world.post(star if i % 2 else ana)
    world.deliver()
    want = world.recomputed_home(f1)
    assert len(want) == 8
    for limit in (1, 2, 3, 7):
        assert world.home(f1, limit) == want, limit


def test_promotion_third_follower_makes_later_posts_pulled(world):
    ana, f1, f2, f3 = world.users("ana", "f1", "f2", "f3")
    world.follow(f1, ana)
    world.follow(f2, ana)
    world.deliver()
    world.home(f1)
    pushed = world.post(ana)
    world.deliver()
    assert world.cached_home(f1).ids == [pushed]
    assert ana not in world.celebrities()

    world.follow(f3, ana)  # the third follower: threshold reached
    world.deliver()
    assert ana in world.celebrities()

    pulled = world.post(ana)
    world.deliver()
    assert pulled not in world.cached_home(f1).ids
    for f in (f1, f2, f3):
        assert world.home(f) == [pulled, pushed]


def test_promotion_is_immediate_on_follow_before_the_consumer_runs(world):
    """The API process promotes as soon as it sees the count cross: a post made before the
    fan-out consumer catches up is already pulled, never lost."""
    ana, f1, f2, f3 = world.users("ana", "f1", "f2", "f3")
    world.follow(f1, ana)
    world.follow(f2, ana)
    world.deliver()
    world.home(f1)
    world.follow(f3, ana)
    assert ana in world.celebrities()
    p = world.post(ana)
    assert world.home(f1) == [p]
    world.deliver()
    assert world.home(f1) == [p]
    assert world.home(f3) == [p]


def test_demotion_merges_recent_posts_into_followers_cached_timelines(world):
    star, fans = _celebrity(world)
    f1, f2, f3 = fans
    world.home(f1)
    world.home(f2)
    while_famous = [world.post(star), world.post(star)]
    world.deliver()
    assert not set(while_famous) & set(world.cached_home(f1).ids)

    world.unfollow(f3, star)  # 2 followers left: below the threshold
    world.deliver()

    assert star not in world.celebrities()
    for f in (f1, f2):
        assert set(while_famous) <= set(world.cached_home(f).ids)  # merged into the cache
        assert world.home(f) == while_famous[::-1]
    assert world.home(f3) == []  # no longer a follower

    after = world.post(star)  # ordinary again: pushed
    world.deliver()
    assert after in world.cached_home(f1).ids
    assert world.home(f1) == [after, *while_famous[::-1]]


def test_demotion_does_not_create_absent_timelines(world):
    star, fans = _celebrity(world)
    f1, f2, f3 = fans
    p = world.post(star)
    world.deliver()
    world.unfollow(f3, star)
    world.deliver()
    assert world.cached_home(f1) is None  # never read: still absent
    assert world.home(f1) == [p]  # the rebuild finds the post in the record store


@pytest.mark.parametrize("flips", [1, 2, 3])
def test_promotion_and_demotion_back_and_forth_lose_nothing(world, flips):
    star, fans = _celebrity(world)
    f1, f2, f3 = fans
    for f in fans:
        world.home(f)
    posts = []
    for _ in range(flips):
        posts.append(world.post(star))
        world.unfollow(f3, star)  # demoted
        world.deliver()
        posts.append(world.post(star))
        world.follow(f3, star)  # promoted
        world.deliver()
        posts.append(world.post(star))
        world.deliver()
    want = posts[::-1]
    for f in fans:
        assert world.home(f) == want
        assert world.home(f, 2) == want
