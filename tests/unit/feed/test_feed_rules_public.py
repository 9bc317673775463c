"""The public timeline: one more cached list (kind ``public``, key 0) in FeedManager's
vocabulary. Public posts are pushed into it by the fan-out consumer (unlisted ones never),
it is trimmed to the cap, rebuilt from the record store when absent, loses a deleted post,
and redelivered events change nothing anyone reads. Reads page past the cap from the record
store with no gap or duplicate. The oracle is the record store (``public_post_ids``): the
worlds of this layer share one SQLite file, so the public timeline holds other worlds' posts
too, and every check compares the whole of it."""

from homefeed.service_layer.feed import PUBLIC, PUBLIC_KEY


def _post(world, author, visibility="public"):
    return world.run(world.hf.write_post(author, f"{visibility} by {world.names[author]}", visibility)).id


def _read(world, limit):
    out, before = [], None
    for _ in range(10_000):
        posts, nxt = world.run(world.feed.read_public(before, limit))
        assert len(posts) <= limit
        out.extend(p.id for p in posts)
        if nxt is None:
            assert len(out) == len(set(out))
            return out
        before = nxt
    raise AssertionError("paging did not end")


def _oracle(world):
    return world.run(world.feed.store.public_post_ids(None, 1_000_000))


def test_public_posts_in_unlisted_out_whatever_the_page_size(world):
    ana, bob = world.users("ana", "bob")
    pub = [_post(world, a) for a in (ana, bob, ana, bob, ana, ana, bob)]
    unl = [_post(world, a, "unlisted") for a in (ana, bob, ana)]
    world.deliver()
    for limit in (1, 2, 3, 40):
        got = _read(world, limit)
        assert got == _oracle(world)
        assert set(pub) <= set(got) and not set(unl) & set(got)


def test_the_list_is_trimmed_to_the_cap_and_reads_continue_below_it(world):
    ana = world.user("ana")
    _read(world, 5)  # the list exists from now on: pushes land in it
    for _ in range(12):
        _post(world, ana)
    world.deliver()
    cached = world.run(world.cache.peek(PUBLIC, PUBLIC_KEY))
    assert cached is not None and len(cached.ids) <= world.settings.timeline_cap
    assert _read(world, 2) == _oracle(world)


def test_rebuilt_from_the_record_store_when_absent(world):
    ana = world.user("ana")
    for _ in range(3):
        _post(world, ana)
    world.deliver()
    world.run(world.cache.drop(PUBLIC, PUBLIC_KEY))
    before = world.feed.counters.get("public_rebuilds", 0)
    assert _read(world, 4) == _oracle(world)
    assert world.feed.counters["public_rebuilds"] == before + 1
    assert world.run(world.cache.peek(PUBLIC, PUBLIC_KEY)) is not None


def test_a_deleted_post_leaves_the_list(world):
    ana = world.user("ana")
    _read(world, 5)
    p = _post(world, ana)
    world.deliver()
    assert p in _read(world, 5)
    world.delete(ana, p)
    world.deliver()
    assert p not in world.run(world.cache.peek(PUBLIC, PUBLIC_KEY)).ids
    assert p not in _read(world, 5) and _read(world, 5) == _oracle(world)


def test_redelivery_changes_nothing(world):
    ana, bob = world.users("ana", "bob")
    _read(world, 5)
    for a in (ana, bob, ana):
        _post(world, a)
    _post(world, bob, "unlisted")
    gone = _post(world, ana)
    world.delete(ana, gone)
    world.deliver()
    before = {limit: _read(world, limit) for limit in (2, 40)}
    world.redeliver(world.delivered)
    world.redeliver(world.delivered[::-1])
    assert {limit: _read(world, limit) for limit in (2, 40)} == before
