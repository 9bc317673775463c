"""TimelineCache contract (``homefeed.ports.TimelineCache``).

Id lists (``home`` / ``author``) hold ids newest first, capped; a list's ``floor`` means
"the list holds every id it should that is greater than floor". Lists are created only by
``begin`` / ``install``; ``push`` and ``merge`` touch only lists that exist. Nothing here
puts a backend under memory pressure, so a list that was installed is expected to still be
there (the port allows a cache to lose lists; these tests do not provoke it).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.ports import IdSlice

from .conftest import run

HOME, AUTHOR = "home", "author"


def check_slice(s: IdSlice | None, *, holds: set[int], floor_at_least: int = 0) -> IdSlice:
    """The slice is newest first, and the list holds every id of ``holds`` above its floor."""
    assert s is not None
    assert s.ids == sorted(set(s.ids), reverse=True)
    assert s.floor >= floor_at_least
    assert {i for i in holds if i > s.floor} <= set(s.ids)
    return s


def test_absent_list_is_none_and_not_created_by_push_or_merge(timeline_cache):
    async def main():
        async with timeline_cache(cap=5) as c:
            assert await c.slice(HOME, 1, None, 10) is None
            assert await c.exists(HOME, [1, 2]) == []
            assert await c.push(HOME, [1, 2], 100) == 0
            await c.merge(HOME, 1, [100, 101], 0)
            await c.remove(HOME, [1], [100])
            await c.drop(HOME, 1)
            assert await c.slice(HOME, 1, None, 10) is None
            assert await c.exists(HOME, [1, 2]) == []

    run(main())


def test_install_creates_and_slice_pages_newest_first(timeline_cache):
    async def main():
        async with timeline_cache(cap=50) as c:
            await c.install(HOME, 1, [10, 30, 20, 50, 40], 0)
            assert await c.exists(HOME, [1, 2]) == [1]
            assert await c.slice(HOME, 1, None, 10) == IdSlice([50, 40, 30, 20, 10], 0)
            assert (await c.slice(HOME, 1, None, 2)).ids == [50, 40]
            assert (await c.slice(HOME, 1, 40, 2)).ids == [30, 20]
            assert (await c.slice(HOME, 1, 41, 2)).ids == [40, 30]
            assert (await c.slice(HOME, 1, 10, 5)).ids == []
            assert (await c.slice(HOME, 1, 10**18, 1)).ids == [50]
            # an empty list exists too (a user whose timeline has nothing yet)
            await c.install(HOME, 2, [], 0)
            assert await c.slice(HOME, 2, None, 10) == IdSlice([], 0)

    run(main())


def test_install_is_idempotent_unions_and_never_lowers_the_floor(timeline_cache):
    async def main():
        async with timeline_cache(cap=50) as c:
            await c.install(AUTHOR, 7, [5, 6, 7], 4)
            once = await c.slice(AUTHOR, 7, None, 50)
            await c.install(AUTHOR, 7, [5, 6, 7], 4)
            assert await c.slice(AUTHOR, 7, None, 50) == once == IdSlice([7, 6, 5], 4)
            await c.install(AUTHOR, 7, [8, 6], 1)  # lower floor: ignored
            assert await c.slice(AUTHOR, 7, None, 50) == IdSlice([8, 7, 6, 5], 4)
            await c.install(AUTHOR, 7, [], 5)
            s = check_slice(await c.slice(AUTHOR, 7, None, 50), holds={5, 6, 7, 8}, floor_at_least=5)
            assert set(s.ids) <= {5, 6, 7, 8}

    run(main())


def test_trim_to_cap_keeps_newest_and_raises_floor(timeline_cache):
    async def main():
        async with timeline_cache(cap=5) as c:
            await c.install(HOME, 1, list(range(1, 13)), 0)
            s = await c.slice(HOME, 1, None, 100)
            assert s.ids == [12, 11, 10, 9, 8]
            assert 7 <= s.floor < 8  # every cut id is at or below the floor
            check_slice(s, holds=set(range(1, 13)))

    run(main())


def test_push_goes_only_into_existing_lists_and_is_idempotent(timeline_cache):
    async def main():
        async with timeline_cache(cap=10) as c:
            await c.install(HOME, 1, [1], 0)
            await c.install(HOME, 3, [], 0)
            assert await c.push(HOME, [1, 2, 3], 5) == 2
            assert await c.exists(HOME, [1, 2, 3]) == [1, 3]
            assert (await c.slice(HOME, 1, None, 10)).ids == [5, 1]
            assert (await c.slice(HOME, 3, None, 10)).ids == [5]
            assert await c.slice(HOME, 2, None, 10) is None
            assert await c.push(HOME, [1, 3], 5) == 0  # already there: nobody takes it again
            assert (await c.slice(HOME, 1, None, 10)).ids == [5, 1]
            # an id older than the newest goes into its place
            assert await c.push(HOME, [1], 3) == 1
            assert (await c.slice(HOME, 1, None, 10)).ids == [5, 3, 1]
            # kinds are separate namespaces
            assert await c.push(AUTHOR, [1], 9) == 0
            assert (await c.slice(HOME, 1, None, 10)).ids == [5, 3, 1]

    run(main())


def test_push_into_a_full_list_trims_the_oldest(timeline_cache):
    async def main():
        async with timeline_cache(cap=3) as c:
            await c.install(HOME, 1, [10, 20, 30], 0)
            await c.push(HOME, [1], 40)
            s = await c.slice(HOME, 1, None, 10)
            assert s.ids == [40, 30, 20] and 10 <= s.floor < 20
            # an id below everything kept: the list must still tell the truth about it
            await c.push(HOME, [1], 5)
            check_slice(await c.slice(HOME, 1, None, 10), holds={5, 20, 30, 40})
            assert len((await c.slice(HOME, 1, None, 10)).ids) <= 3

    run(main())


def test_merge_is_install_only_if_the_list_exists(timeline_cache):
    async def main():
        async with timeline_cache(cap=4) as c:
            await c.merge(HOME, 1, [1, 2], 0)
            assert await c.slice(HOME, 1, None, 10) is None
            await c.install(HOME, 1, [10], 0)
            await c.merge(HOME, 1, [1, 2, 11, 12], 0)
            s = await c.slice(HOME, 1, None, 10)
            assert s.ids == [12, 11, 10, 2] and s.floor < 2
            await c.merge(HOME, 1, [13], 3)
            s = check_slice(await c.slice(HOME, 1, None, 10), holds={1, 2, 10, 11, 12, 13}, floor_at_least=3)
            assert s.ids[:4] == [13, 12, 11, 10]
            await c.merge(HOME, 1, [13], 3)  # idempotent
            assert await c.slice(HOME, 1, None, 10) == s

    run(main())


def test_remove_and_drop(timeline_cache):
    async def main():
        async with timeline_cache(cap=10) as c:
            for key in (1, 2, 3):
                await c.install(HOME, key, [1, 2, 3], 0)
            await c.remove(HOME, [1, 2, 99], [2, 77])
            assert (await c.slice(HOME, 1, None, 10)).ids == [3, 1]
            assert (await c.slice(HOME, 2, None, 10)).ids == [3, 1]
            assert (await c.slice(HOME, 3, None, 10)).ids == [3, 2, 1]
            await c.remove(HOME, [1], [2])  # idempotent
            assert await c.slice(HOME, 1, None, 10) == IdSlice([3, 1], 0)
            assert await c.exists(HOME, [99]) == []
            await c.drop(HOME, 1)
            await c.drop(HOME, 1)
            assert await c.slice(HOME, 1, None, 10) is None
            assert await c.exists(HOME, [1, 2, 3]) == [2, 3]

    run(main())


def test_kinds_are_independent(timeline_cache):
    async def main():
        async with timeline_cache(cap=10) as c:
            await c.install(HOME, 1, [1], 0)
            await c.install(AUTHOR, 1, [2], 0)
            assert (await c.slice(HOME, 1, None, 10)).ids == [1]
            assert (await c.slice(AUTHOR, 1, None, 10)).ids == [2]
            await c.drop(AUTHOR, 1)
            assert (await c.slice(HOME, 1, None, 10)).ids == [1]
            assert await c.exists(AUTHOR, [1]) == []

    run(main())


def test_begin_marks_a_list_building_until_install(timeline_cache):
    async def main():
        async with timeline_cache(cap=10) as c:
            await c.begin(HOME, 1)
            assert await c.slice(HOME, 1, None, 10) is None  # building: not served
            assert await c.exists(HOME, [1]) == [1]  # but it exists: pushes land in it
            assert await c.push(HOME, [1], 50) == 1
            await c.install(HOME, 1, [10, 20], 0)  # what the store said before the push
            assert await c.slice(HOME, 1, None, 10) == IdSlice([50, 20, 10], 0)
            # a rebuild of a list that is cached: begin hides it until install again
            await c.begin(HOME, 1)
            assert await c.slice(HOME, 1, None, 10) is None
            await c.install(HOME, 1, [30], 0)
            assert (await c.slice(HOME, 1, None, 10)).ids == [50, 30, 20, 10]

    run(main())


def test_following_sets_and_versions(timeline_cache):
    async def main():
        async with timeline_cache() as c:
            assert await c.following(1) is None
            await c.set_following(1, [2, 3, 3])
            assert await c.following(1) == frozenset({2, 3})
            await c.set_following(4, [])
            assert await c.following(4) == frozenset()
            v = await c.following_version(1)
            await c.forget_following(1)
            assert await c.following(1) is None
            assert await c.following_version(1) != v
            # loaded before the follow/unfollow committed: stale, not cached
            await c.set_following(1, [2, 3], version=v)
            assert await c.following(1) is None
            v2 = await c.following_version(1)
            await c.set_following(1, [2, 3, 5], version=v2)
            assert await c.following(1) == frozenset({2, 3, 5})
            await c.forget_following(99)  # never cached: harmless
            assert await c.following(99) is None

    run(main())


def test_celebrity_set(timeline_cache):
    async def main():
        async with timeline_cache() as c:
            assert await c.celebrities() is None
            assert await c.mark_celebrity(1, True) is False  # not cached: nothing to update
            assert await c.celebrities() is None
            await c.set_celebrities([1, 2])
            assert await c.celebrities() == frozenset({1, 2})
            assert await c.mark_celebrity(3, True) is True
            assert await c.mark_celebrity(3, True) is False
            assert await c.mark_celebrity(1, False) is True
            assert await c.mark_celebrity(1, False) is False
            assert await c.celebrities() == frozenset({2, 3})
            await c.set_celebrities([])
            assert await c.celebrities() == frozenset()

    run(main())


def test_stats_are_counters(timeline_cache):
    async def main():
        async with timeline_cache() as c:
            await c.install(HOME, 1, [1, 2], 0)
            stats = await c.stats()
            assert isinstance(stats, dict)
            assert all(isinstance(k, str) and isinstance(v, int) for k, v in stats.items())

    run(main())


# --------------------------------------------------------------------------------------------
# property: random operations keep the floor promise
# --------------------------------------------------------------------------------------------

_KEYS = st.integers(1, 3)
_IDS = st.lists(st.integers(1, 60), max_size=8)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("install"), _KEYS, _IDS, st.integers(0, 30)),
        st.tuples(st.just("merge"), _KEYS, _IDS, st.integers(0, 30)),
        st.tuples(st.just("push"), st.lists(_KEYS, max_size=3), st.integers(1, 60)),
        st.tuples(st.just("remove"), st.lists(_KEYS, max_size=3), _IDS),
        st.tuples(st.just("drop"), _KEYS),
        st.tuples(st.just("begin"), _KEYS),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, cap=st.integers(1, 6))
def test_random_operations_keep_every_id_above_the_floor(timeline_cache, ops, cap):
    async def main():
        async with timeline_cache(cap=cap) as c:
            for key in (1, 2, 3):  # hypothesis reuses the fixture: a durable cache keeps lists
                await c.drop(HOME, key)
            should: dict[int, set[int]] = {}  # key -> ids the list should hold (if it exists)
            min_floor: dict[int, int] = {}
            building: set[int] = set()
            for op in ops:
                kind = op[0]
                if kind in ("install", "begin"):
                    key = op[1]
                    if key not in should:
                        should[key], min_floor[key] = set(), 0
                    if kind == "begin":
                        building.add(key)
                    else:
                        building.discard(key)
                        should[key] |= set(op[2])
                        min_floor[key] = max(min_floor[key], op[3])
                elif kind == "merge":
                    key = op[1]
                    await c.merge(HOME, key, op[2], op[3])
                    if key in should:
                        should[key] |= set(op[2])
                        min_floor[key] = max(min_floor[key], op[3])
                    continue
                elif kind == "push":
                    keys, id_ = op[1], op[2]
                    existing = {k for k in keys if k in should}
                    had = {k for k in existing if id_ in (await _peek(c, k, building))}
                    taken = await c.push(HOME, keys, id_)
                    # a list already holding the id does not take it again
                    assert 0 <= taken <= len(existing - had)
                    for k in existing:
                        should[k].add(id_)
                    continue
                elif kind == "remove":
                    await c.remove(HOME, op[1], op[2])
                    for k in op[1]:
                        if k in should:
                            should[k] -= set(op[2])
                    continue
                elif kind == "drop":
                    await c.drop(HOME, op[1])
                    should.pop(op[1], None)
                    building.discard(op[1])
                    continue
                if kind == "install":
                    await c.install(HOME, op[1], op[2], op[3])
                else:
                    await c.begin(HOME, op[1])

            assert sorted(await c.exists(HOME, [1, 2, 3])) == sorted(should)
            for key in (1, 2, 3):
                s = await c.slice(HOME, key, None, 1000)
                if key not in should or key in building:
                    assert s is None
                    continue
                check_slice(s, holds=should[key], floor_at_least=min_floor[key])
                assert set(s.ids) <= should[key]  # nothing removed or never given
                assert len(s.ids) <= cap
                for before in (None, 10, 30, 45):
                    page = await c.slice(HOME, key, before, 2)
                    below = [i for i in s.ids if before is None or i < before]
                    assert page == IdSlice(below[:2], s.floor)

    run(main())


async def _peek(c, key: int, building: set[int]) -> set[int]:
    """What a list holds, without changing it (a building list is not readable: empty)."""
    if key in building:
        return set()
    s = await c.slice(HOME, key, None, 1000)
    return set() if s is None else set(s.ids)


def test_the_public_list_is_one_more_kind(timeline_cache):
    """The public timeline's list (kind "public", key 0): absent until installed, pushed,
    trimmed to the cap, removed from, apart from the home and author lists."""
    async def main():
        async with timeline_cache(cap=3) as c:
            assert await c.slice("public", 0, None, 10) is None
            assert await c.push("public", [0], 5) == 0
            await c.begin("public", 0)
            await c.install("public", 0, [3, 2, 1], 0)
            for i in (4, 5, 5):
                await c.push("public", [0], i)
            await c.remove("public", [0], [4])
            s = await c.slice("public", 0, None, 10)
            assert s is not None and s.ids[0] == 5 and 4 not in s.ids and len(s.ids) <= 3
            assert await c.slice(HOME, 0, None, 10) is None

    run(main())


# -- home_view: the first round of a home read in one call -----------------------------------
_VIEW_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("install"), st.sampled_from([HOME, AUTHOR]),
                  st.lists(st.integers(1, 40), max_size=6), st.integers(0, 5)),
        st.tuples(st.just("begin"), st.sampled_from([HOME, AUTHOR])),
        st.tuples(st.just("push"), st.sampled_from([HOME, AUTHOR]), st.integers(1, 40)),
        st.tuples(st.just("drop"), st.sampled_from([HOME, AUTHOR])),
        st.tuples(st.just("load_following"), st.frozensets(st.integers(2, 9), max_size=4)),
        st.tuples(st.just("forget_following")),
        st.tuples(st.just("set_celebrities"), st.frozensets(st.integers(2, 9), max_size=3)),
        st.tuples(st.just("mark_celebrity"), st.integers(2, 9), st.booleans()),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_VIEW_OPS, before=st.none() | st.integers(1, 45), limit=st.integers(0, 8))
def test_home_view_answers_as_slice_following_and_celebrities_would(timeline_cache, ops, before, limit):
    """``home_view`` is the home read's first round in one call: its slices are what
    ``slice`` answers for the reader's home and own author lists (None while absent or
    building), and its sets, when given, are what ``following`` / ``celebrities`` answer.
    A set loaded the way a read loads it (``following_version`` then ``set_following``) is
    given, and a follow change (``forget_following``) is never answered from an old copy."""
    async def main():
        async with timeline_cache(cap=5) as c:
            loaded: frozenset[int] | None = None  # the following set the view must give
            for op in ops:
                kind = op[0]
                if kind == "install":
                    await c.install(op[1], 1, op[2], op[3])
                elif kind == "begin":
                    await c.begin(op[1], 1)
                elif kind == "push":
                    await c.push(op[1], [1], op[2])
                elif kind == "drop":
                    await c.drop(op[1], 1)
                elif kind == "load_following":
                    version = await c.following_version(1)
                    await c.set_following(1, sorted(op[1]), version)
                    loaded = op[1]
                elif kind == "forget_following":
                    await c.forget_following(1)
                    loaded = None
                elif kind == "set_celebrities":
                    await c.set_celebrities(sorted(op[1]))
                else:
                    await c.mark_celebrity(op[1], op[2])
            view = await c.home_view(1, before, limit)
            if loaded is not None:
                assert view.following == loaded
            else:
                assert view.following is None
            assert view.home == await c.slice(HOME, 1, before, limit)
            assert view.own == await c.slice(AUTHOR, 1, before, limit)
            assert view.following in (None, await c.following(1))
            if view.celebrities is not None:
                assert view.celebrities == await c.celebrities()

    run(main())


def test_home_view_gives_the_celebrities_once_read(timeline_cache):
    """After ``celebrities`` was answered once, a view gives the same set, and a change of
    the set (``mark_celebrity``) is seen by the next view."""
    async def main():
        async with timeline_cache(cap=5) as c:
            await c.set_celebrities([7, 8])
            assert await c.celebrities() == frozenset({7, 8})
            assert (await c.home_view(1, None, 5)).celebrities == frozenset({7, 8})
            assert await c.mark_celebrity(9, True)
            got = (await c.home_view(1, None, 5)).celebrities
            assert got in (None, frozenset({7, 8, 9}))

    run(main())


# -- home_view's fingerprint: equal fingerprints, equal first rounds ---------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_VIEW_OPS, limit=st.integers(0, 8))
def test_equal_fingerprints_mean_equal_slices_and_sets(timeline_cache, ops, limit):
    """A kept first page is served while the view's ``fingerprint`` is unchanged
    (``FeedManager.first_home_page``), so two views with the same (non-None) fingerprint must
    see the same home and own slices, following set and celebrity set, whatever happened in
    between. ``home_view(kept=fp)`` answers either a full view or, when nothing changed, the
    fingerprint ``fp`` itself. (The memory adapter gives no fingerprint: the embedded profile
    keeps its pages by invalidation, ``home_pages.HomePages``.)

    The sets are compared when both views know them: an absent set is loaded from the record
    store on demand, under the version the view saw, so "not loaded" and "loaded" under one
    version are the same facts. Loads follow the record store's rule: the set changes only
    with a follow change, which calls ``forget_following`` (a load after none reloads the
    same set)."""
    async def main():
        async with timeline_cache(cap=5) as c:
            seen: list[tuple[object, tuple]] = []
            truth: frozenset[int] | None = None  # the record store's following set of user 1
            await c.forget_following(1)  # (examples share the cache: a new truth from here on)

            def same(a, b) -> bool:
                return a == b or a is None or b is None

            async def observe() -> None:
                view = await c.home_view(1, None, limit)
                fp = view.fingerprint
                state = (await c.slice(HOME, 1, None, limit), await c.slice(AUTHOR, 1, None, limit),
                         await c.following(1), await c.celebrities())
                if fp is None:
                    return
                assert (view.home, view.own) == state[:2]
                for old_fp, old_state in seen:
                    if old_fp == fp:
                        assert old_state[:2] == state[:2]
                        assert same(old_state[2], state[2]) and same(old_state[3], state[3])
                seen.append((fp, state))
                again = await c.home_view(1, None, limit, kept=fp)
                if again.fingerprint != fp:  # something changed meanwhile (following() may renew a version)
                    assert again.home == await c.slice(HOME, 1, None, limit)

            await observe()
            for op in ops:
                kind = op[0]
                if kind == "install":
                    await c.install(op[1], 1, op[2], op[3])
                elif kind == "begin":
                    await c.begin(op[1], 1)
                elif kind == "push":
                    await c.push(op[1], [1], op[2])
                elif kind == "drop":
                    await c.drop(op[1], 1)
                elif kind == "load_following":
                    if truth is None:
                        truth = op[1]
                    version = await c.following_version(1)
                    await c.set_following(1, sorted(truth), version)
                elif kind == "forget_following":
                    await c.forget_following(1)
                    truth = None
                elif kind == "set_celebrities":
                    await c.set_celebrities(sorted(op[1]))
                else:
                    await c.mark_celebrity(op[1], op[2])
                await observe()

    run(main())


# --------------------------------------------------------------------------------------------
# home_keys: the users with a cached home list (the fan-out's small side)
# --------------------------------------------------------------------------------------------


def test_home_keys_holds_every_home_list_and_answers_none_over_the_limit(timeline_cache):
    async def main():
        async with timeline_cache(cap=10) as c:
            keys = await c.home_keys(100)
            if keys is None:  # an adapter that cannot tell (a Redis Cluster): allowed
                return
            assert keys == []
            await c.install(HOME, 1, [5], 0)
            await c.begin(HOME, 2)  # building lists take pushes: they are in it
            await c.install(HOME, 3, [], 0)
            await c.install(AUTHOR, 4, [6], 0)  # another kind: not a home timeline
            await c.merge(HOME, 5, [7], 0)  # creates nothing
            assert set(await c.home_keys(100)) >= {1, 2, 3}
            assert set(await c.home_keys(100)) <= {1, 2, 3}  # nothing above was left out...
            assert await c.home_keys(2) is None  # ...and over the limit: None
            await c.drop(HOME, 3)
            got = await c.home_keys(100)
            assert got is not None and {1, 2} <= set(got) <= {1, 2, 3}  # gone ones may stay
            await c.install(HOME, 3, [8], 0)  # and come back
            assert set(await c.home_keys(100)) == {1, 2, 3}
            assert await c.push(HOME, await c.home_keys(100), 9) == 3

    run(main())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["install", "begin", "drop", "list"]), _KEYS), max_size=30))
def test_home_keys_never_misses_an_existing_list(timeline_cache, ops):
    """After any sequence of creations and drops, every user whose home list exists is in
    ``home_keys`` (a missing one would lose a fan-out's push)."""
    async def main():
        async with timeline_cache(cap=5) as c:
            for key in (1, 2, 3):
                await c.drop(HOME, key)
            for op, key in ops:
                if op == "install":
                    await c.install(HOME, key, [key], 0)
                elif op == "begin":
                    await c.begin(HOME, key)
                elif op == "drop":
                    await c.drop(HOME, key)
                got = await c.home_keys(1000)
                if got is None:
                    return
                assert len(got) == len(set(got))
                assert set(await c.exists(HOME, [1, 2, 3])) <= set(got)

    run(main())

