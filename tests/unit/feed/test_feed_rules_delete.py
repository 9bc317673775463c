"""Rule **delete**: deleting a post removes it from every timeline it was pushed to, from
its author's list and from the post cache; no reader sees it, even before the consumer runs."""


def test_delete_removes_the_post_from_every_pushed_timeline(world):
    ana, bob, cat = world.users("ana", "bob", "cat")
    world.follow(bob, ana)
    world.follow(cat, ana)
    world.deliver()
    world.home(bob)
    world.home(cat)
    keep, gone = world.post(ana), world.post(ana)
    world.deliver()
    assert gone in world.cached_home(bob).ids

    world.delete(ana, gone)
    for reader in (ana, bob, cat):
        assert world.home(reader) == [keep]  # at once, before the consumer
    world.deliver()

    for reader in (bob, cat):
        assert world.cached_home(reader).ids == [keep]  # gone from the cache itself
        assert world.home(reader) == [keep]
    assert gone not in world.cached_author(ana).ids
    assert world.run(world.feed.posts.get_many([gone])) == {}
    assert world.home(ana) == [keep]


def test_delete_of_a_celebrity_post_leaves_the_pulled_timelines(world):
    star, f1, f2, f3 = world.users("star", "f1", "f2", "f3")
    for f in (f1, f2, f3):
        world.follow(f, star)
    world.deliver()
    world.home(f1)
    keep, gone = world.post(star), world.post(star)
    world.deliver()
    assert world.home(f1) == [gone, keep]
    world.delete(star, gone)
    world.deliver()
    for f in (f1, f2, f3):
        assert world.home(f) == [keep]


def test_delete_before_the_post_is_delivered_is_never_seen(world):
    """The consumer applies the create after the delete was committed: the post must not
    come back into any timeline."""
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    p = world.post(ana)
    world.delete(ana, p)
    world.deliver()
    assert world.home(bob) == []
    assert world.cached_home(bob).ids == []


def test_delete_below_the_cap_keeps_paging_whole(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    posts = [world.post(ana) for _ in range(12)]  # cap is 5: most live below the floor
    world.deliver()
    for old in posts[1:8:2]:
        world.delete(ana, old)
    world.deliver()
    want = [p for p in posts[::-1] if p not in posts[1:8:2]]
    for limit in (1, 2, 3, 5, 100):
        assert world.home(bob, limit) == want, limit
