"""The boost rule: a boost of O is hidden if O's author is the reader, if O is gone, or if
O or another boost of O is among the 40 entries of the home older than the boost. A boost
fans out by the booster's followers (pulled when the booster is a celebrity), never into
the public timeline; unboosting and deleting the original take boosts out everywhere."""

from __future__ import annotations

from feedworld import World

#: The contract's figure (docs/conversations.md), not the product's constant: a test of it.
BOOST_WINDOW = 40



def test_a_boost_of_the_readers_own_post_is_hidden(world: World) -> None:
    a, r = world.users("a", "r")
    world.follow(r, a)
    world.deliver()
    own = world.post(r)
    for _ in range(BOOST_WINDOW + 1):  # the original is far below: the author rule alone
        world.post(a)
    boost = world.boost(a, own)
    world.deliver()
    home = world.home(r)
    assert boost not in home and own in home
    assert not world.shows(r, boost)


def test_a_boost_of_a_post_among_the_last_40_entries_is_hidden(world: World) -> None:
    a, c, r = world.users("a", "c", "r")
    world.follow(r, a)
    world.follow(r, c)
    world.deliver()
    original = world.post(c)
    for _ in range(5):
        world.post(a)
    boost = world.boost(a, original)
    world.deliver()
    home = world.home(r)
    assert original in home and boost not in home
    assert not world.shows(r, boost)


def test_a_boost_of_a_post_older_than_40_entries_shows(world: World) -> None:
    a, c, r = world.users("a", "c", "r")
    world.follow(r, a)
    world.follow(r, c)
    world.deliver()
    original = world.post(c)
    for _ in range(BOOST_WINDOW):
        world.post(a)
    boost = world.boost(a, original)
    world.deliver()
    home = world.home(r)
    assert original in home and boost in home
    assert world.shows(r, boost)


def test_two_boosts_close_together_show_once_far_apart_both(world: World) -> None:
    a, b, x, c, r = world.users("a", "b", "x", "c", "r")
    for f in (a, b, c):
        world.follow(r, f)
    world.deliver()
    original = world.post(x)  # by someone the reader does not follow
    first = world.boost(a, original)
    world.post(c)
    second = world.boost(b, original)
    world.deliver()
    home = world.home(r)
    assert first in home and second not in home  # the older one shows
    assert [world.shows(r, first), world.shows(r, second)] == [True, False]

    other = world.post(x)
    early = world.boost(a, other)
    for _ in range(BOOST_WINDOW):
        world.post(c)
    late = world.boost(b, other)
    world.deliver()
    home = world.home(r)
    assert early in home and late in home


def test_a_hidden_entry_still_counts_in_the_window(world: World) -> None:
    """Entries are what passes the author and reply rules, shown or not: a boost hidden by
    the boost rule still hides a newer boost of the same original."""
    a, b, d, x, r = world.users("a", "b", "d", "x", "r")
    for f in (a, b, d):
        world.follow(r, f)
    world.deliver()
    original = world.post(x)
    b1 = world.boost(a, original)
    b2 = world.boost(b, original)  # hidden by b1
    for _ in range(BOOST_WINDOW - 1):
        world.post(d)
    b3 = world.boost(d, original)  # b1 is 41 entries down, b2 is 40: hidden by b2
    world.deliver()
    home = world.home(r)
    assert b1 in home and b2 not in home and b3 not in home


def test_unboost_takes_the_boost_out(world: World) -> None:
    a, x, r = world.users("a", "x", "r")
    world.follow(r, a)
    world.deliver()
    world.home(r)
    original = world.post(x)
    boost = world.boost(a, original)
    world.deliver()
    assert boost in world.home(r)
    assert world.boost(a, original) == boost  # at most one per (booster, original)
    assert world.unboost(a, original) == boost
    assert boost not in world.home(r)  # before the consumer: hydration drops it
    world.deliver()
    assert boost not in world.home(r)
    assert boost not in world.cached_home(r).ids
    assert boost not in [p.id for p in world.run(world.feed.read_author(a, None, 100))[0]]


def test_deleting_the_original_removes_its_boosts_everywhere(world: World) -> None:
    a, b, x, r = world.users("a", "b", "x", "r")
    world.follow(r, a)
    world.follow(r, b)
    world.deliver()
    world.home(r)
    original = world.post(x)
    boosts = [world.boost(a, original), world.post(b), world.boost(b, original)]
    boosts = [boosts[0], boosts[2]]
    world.deliver()
    assert boosts[0] in world.home(r)
    world.delete(x, original)
    assert not set(boosts) & set(world.home(r))  # before the consumer: the original is gone
    world.deliver()
    assert not set(boosts) & set(world.home(r))
    assert not set(boosts) & set(world.cached_home(r).ids)
    for booster in (a, b):
        assert not set(boosts) & {p.id for p in world.run(world.feed.read_author(booster, None, 100))[0]}
        assert not set(boosts) & set(world.cached_author(booster).ids)


def test_boosts_never_reach_the_public_timeline(world: World) -> None:
    a, x = world.users("a", "x")
    original = world.post(x)
    boost = world.boost(a, original)
    world.deliver()
    public = [p.id for p in world.run(world.feed.read_public(None, 100))[0]]
    assert original in public and boost not in public
    world.run(world.cache.drop("public", 0))
    assert boost not in [p.id for p in world.run(world.feed.read_public(None, 100))[0]]


def test_a_celebrity_boost_is_pulled(world: World) -> None:
    c, x, r, f1, f2 = world.users("c", "x", "r", "f1", "f2")
    for f in (r, f1, f2):
        world.follow(f, c)
    world.deliver()
    world.home(r)
    assert c in world.celebrities()
    original = world.post(x)
    boost = world.boost(c, original)
    world.deliver()
    assert boost in world.home(r)
    assert boost not in world.cached_home(r).ids  # not pushed
    assert boost in world.cached_author(c).ids  # the author list holds the boosts
    assert world.shows(r, boost)


def test_a_boost_is_not_indexed(world: World) -> None:
    a, x = world.users("a", "x")
    original = world.post(x, "zebra crossing")
    boost = world.boost(a, original)
    events = world.pending()
    world.run(world.hf.consumers.index_events(events))
    got = dict(world.run(world.records.search_index.entries(original - 1, 10)))
    assert original in got and boost not in got


def test_the_window_is_exactly_40_entries(world: World) -> None:
    """The original as the 40th entry below the boost hides it; as the 41st it does not."""
    a, c, r = world.users("a", "c", "r")
    world.follow(r, a)
    world.follow(r, c)
    world.deliver()
    inside = world.post(c)
    for _ in range(39):
        world.post(a)
    hidden = world.boost(a, inside)
    outside = world.post(c)
    for _ in range(40):
        world.post(a)
    shown = world.boost(a, outside)
    world.deliver()
    home = world.home(r)
    assert hidden not in home and shown in home
    assert [world.shows(r, hidden), world.shows(r, shown)] == [False, True]
