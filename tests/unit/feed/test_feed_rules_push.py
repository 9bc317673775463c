"""Rule **push**: a new post's id goes into the cached home timeline of each follower that
has one. Rule **inactive**: a timeline not read for ``inactive_days`` is absent; fan-out
does not create it, the next read rebuilds it."""


def test_push_reaches_the_cached_home_of_every_follower(world):
    ana, bob, cat, dan = world.users("ana", "bob", "cat", "dan")
    world.follow(bob, ana)
    world.follow(cat, ana)
    world.deliver()
    assert world.home(bob) == [] and world.home(cat) == []  # both timelines now cached

    p = world.post(ana)
    world.deliver()

    rebuilds = world.feed.counters["rebuilds"]
    assert world.cached_home(bob).ids == [p]  # pushed, not recomputed
    assert world.cached_home(cat).ids == [p]
    assert world.home(bob) == [p]
    assert world.home(cat) == [p]
    assert world.feed.counters["rebuilds"] == rebuilds
    assert world.home(dan) == []  # not a follower


def test_push_keeps_newest_first_order_across_authors(world):
    ana, eve, bob = world.users("ana", "eve", "bob")
    world.follow(bob, ana)
    world.follow(bob, eve)
    world.home(bob)
    posts = [world.post(ana), world.post(eve), world.post(ana)]
    world.deliver()
    assert world.home(bob) == posts[::-1]


def test_push_shows_the_authors_own_post_at_once(world):
    """Read-your-writes: the author sees their post before the fan-out consumer runs."""
    ana, bob = world.users("ana", "bob")
    world.home(ana)
    p = world.post(ana)
    assert world.home(ana) == [p]


def test_push_does_not_create_an_absent_timeline(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    assert world.cached_home(bob) is None  # bob never read: no timeline

    p = world.post(ana)
    world.deliver()

    assert world.cached_home(bob) is None  # fan-out skipped bob
    assert world.home(bob) == [p]  # and his first read rebuilds it, post included
    assert world.cached_home(bob).ids == [p]


def test_inactive_timeline_is_dropped_skipped_by_push_and_rebuilt_on_read(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    first = world.post(ana)
    world.deliver()
    assert world.home(bob) == [first]

    world.days_pass(world.settings.inactive_days + 1)
    later = world.post(ana)
    world.deliver()
    assert world.cached_home(bob) is None  # inactive: absent, and fan-out did not bring it back

    rebuilds = world.feed.counters["rebuilds"]
    assert world.home(bob) == [later, first]
    assert world.feed.counters["rebuilds"] == rebuilds + 1


def test_active_timeline_keeps_receiving_pushes(world):
    """Reading keeps a timeline alive: read every few days, it is never dropped."""
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    world.deliver()
    world.home(bob)
    posts = []
    for _ in range(4):
        world.days_pass(world.settings.inactive_days - 1)
        posts.append(world.post(ana))
        world.deliver()
        assert world.cached_home(bob) is not None
        assert world.home(bob) == posts[::-1]
