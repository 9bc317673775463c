"""The reply rule (Mastodon's): a reply by A to B (B != A) reaches a reader's home only if
the reader is A, is B, or follows B; a self-reply (a thread) shows like a post. Evaluated
on read, so it holds for pushed and pulled (celebrity) replies, in rebuilds, and after a
later follow or unfollow of B."""

from __future__ import annotations

from feedworld import World


def test_a_reply_to_someone_the_reader_does_not_follow_stays_out(world: World) -> None:
    a, b, r = world.users("a", "b", "r")
    world.follow(r, a)
    world.deliver()
    world.home(r)
    parent = world.post(b)
    reply = world.reply(a, parent)
    thread = world.reply(a, world.post(a))  # a self-reply
    world.deliver()
    home = world.home(r)
    assert reply not in home
    assert thread in home
    assert reply in world.cached_home(r).ids  # pushed all the same: decided on read


def test_a_reply_shows_to_its_author_to_the_one_replied_to_and_to_their_followers(world: World) -> None:
    a, b, r, s = world.users("a", "b", "r", "s")
    world.follow(r, a)
    world.follow(r, b)
    world.follow(b, a)
    world.follow(s, a)
    world.deliver()
    parent = world.post(b)
    reply = world.reply(a, parent)
    world.deliver()
    assert reply in world.home(a)  # the author
    assert reply in world.home(b)  # the one replied to
    assert reply in world.home(r)  # follows both
    assert reply not in world.home(s)  # follows only the author


def test_a_later_follow_of_the_one_replied_to_brings_the_reply_and_an_unfollow_hides_it(world: World) -> None:
    a, b, r = world.users("a", "b", "r")
    world.follow(r, a)
    world.deliver()
    reply = world.reply(a, world.post(b))
    world.deliver()
    assert reply not in world.home(r)
    world.follow(r, b)
    world.deliver()
    assert reply in world.home(r)
    assert world.shows(r, reply)
    world.unfollow(r, b)
    world.deliver()
    assert reply not in world.home(r)
    assert not world.shows(r, reply)


def test_a_celebrity_reply_is_pulled_and_filtered_the_same_way(world: World) -> None:
    c, b, r, f1, f2 = world.users("c", "b", "r", "f1", "f2")
    for f in (r, f1, f2):
        world.follow(f, c)
    world.deliver()
    world.home(r)  # cached: a push would land in it
    assert c in world.celebrities()
    parent = world.post(b)
    reply = world.reply(c, parent)
    post = world.post(c)
    world.deliver()
    assert post in world.home(r) and reply not in world.home(r)
    assert reply not in (world.cached_home(r).ids)  # never pushed: pulled
    world.follow(r, b)
    world.deliver()
    assert reply in world.home(r)


def test_a_rebuilt_home_applies_the_reply_rule(world: World) -> None:
    a, b, r = world.users("a", "b", "r")
    world.follow(r, a)
    world.deliver()
    hidden = world.reply(a, world.post(b))
    thread = world.reply(a, world.post(a))
    world.deliver()
    before = world.home(r)
    world.run(world.cache.drop("home", r))
    world.days_pass(world.settings.inactive_days + 1)
    assert world.home(r) == before
    assert hidden not in before and thread in before


def test_the_public_timeline_has_no_replies_to_others_but_keeps_threads(world: World) -> None:
    a, b = world.users("a", "b")
    reply = world.reply(a, world.post(b))
    thread = world.reply(a, world.post(a))
    world.deliver()
    got = [p.id for p in world.run(world.feed.read_public(None, 100))[0]]
    assert thread in got and reply not in got
    world.run(world.cache.drop("public", 0))
    again = [p.id for p in world.run(world.feed.read_public(None, 100))[0]]
    assert thread in again and reply not in again
