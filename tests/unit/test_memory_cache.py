"""MemoryTimelineCache against a simple oracle (hypothesis state machine), and MemoryPostCache.

The oracle keeps each list as a plain set plus its floor, trims by cutting the smallest id
into the floor, expires a home list not read (slice / install / begin) for more than
``inactive_seconds`` of an injected clock, and bounds the number of lists per kind by
evicting the least recently read. Alongside, it tracks what each list *should* hold (every
id given to it and not removed) to check the promise in the port's words: "the list holds
every id it should above its floor" and never anything it should not.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache
from homefeed.domain.model import Post
from homefeed.ports import IdSlice

CAP = 3
INACTIVE = 10
MAX_LISTS = 3

KINDS = st.sampled_from(["home", "author"])
KEYS = st.integers(1, 5)
IDS = st.lists(st.integers(1, 40), max_size=6)
ID = st.integers(1, 40)
FLOORS = st.integers(0, 25)


def call(coro):
    """The memory cache never suspends: drive a coroutine to completion without a loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the memory cache suspended")


class _L:
    def __init__(self, now: int) -> None:
        self.ids: set[int] = set()
        self.floor = 0
        self.used = now
        self.building = False
        self.should: set[int] = set()  # semantic: given and not removed since creation
        self.min_floor = 0  # semantic: the highest floor given since creation


class Oracle:
    def __init__(self) -> None:
        self.now = 0
        self.lists: dict[str, OrderedDict[int, _L]] = {"home": OrderedDict(), "author": OrderedDict()}
        self.evictions = 0

    def get(self, kind: str, key: int, touch: bool) -> _L | None:
        lst = self.lists[kind].get(key)
        if lst is None:
            return None
        if kind == "home":
            if self.now - lst.used > INACTIVE:
                del self.lists[kind][key]
                return None
            if touch:
                lst.used = self.now
        if touch:
            self.lists[kind].move_to_end(key)
        return lst

    def create(self, kind: str, key: int) -> _L:
        lst = self.get(kind, key, touch=True)
        if lst is None:
            lst = self.lists[kind][key] = _L(self.now)
            if len(self.lists[kind]) > MAX_LISTS:
                self.lists[kind].popitem(last=False)
                self.evictions += 1
        return lst

    @staticmethod
    def trim(lst: _L) -> None:
        while len(lst.ids) > CAP:
            cut = min(lst.ids)
            lst.ids.remove(cut)
            lst.floor = max(lst.floor, cut)

    def union(self, lst: _L, ids, floor: int) -> None:
        lst.floor = max(lst.floor, floor)
        lst.min_floor = max(lst.min_floor, floor)
        lst.ids |= set(ids)
        lst.should |= set(ids)
        self.trim(lst)


class TimelineCacheMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.model = Oracle()
        self.cache = MemoryTimelineCache(
            cap=CAP, inactive_seconds=INACTIVE, max_lists=MAX_LISTS, clock=lambda: self.model.now
        )
        self.following: OrderedDict[int, frozenset[int]] = OrderedDict()
        self.version = 0  # one counter for all users (bounded memory)
        self.celebs: frozenset[int] | None = None

    # -- id lists -------------------------------------------------------------------------
    @rule(kind=KINDS, key=KEYS, ids=IDS, floor=FLOORS)
    def install(self, kind, key, ids, floor):
        call(self.cache.install(kind, key, ids, floor))
        lst = self.model.create(kind, key)
        lst.building = False
        self.model.union(lst, ids, floor)

    @rule(kind=KINDS, key=KEYS)
    def begin(self, kind, key):
        call(self.cache.begin(kind, key))
        self.model.create(kind, key).building = True

    @rule(kind=KINDS, key=KEYS, ids=IDS, floor=FLOORS)
    def merge(self, kind, key, ids, floor):
        call(self.cache.merge(kind, key, ids, floor))
        lst = self.model.get(kind, key, touch=False)
        if lst is not None:
            self.model.union(lst, ids, floor)

    @rule(kind=KINDS, keys=st.lists(KEYS, max_size=4), id_=ID)
    def push(self, kind, keys, id_):
        taken = call(self.cache.push(kind, keys, id_))
        m = self.model
        took = 0
        candidates = 0
        for key in keys:
            lst = m.lists[kind].get(key)
            if lst is None:
                continue
            if kind == "home" and m.now - lst.used > INACTIVE:
                del m.lists[kind][key]
                continue
            if id_ in lst.ids:
                continue
            candidates += 1
            lst.should.add(id_)
            lst.ids.add(id_)
            m.trim(lst)
            if id_ in lst.ids:
                took += 1
        # "how many lists took it": every list that now holds it anew, at most every list
        # that could have (an id trimmed at once may or may not count)
        assert took <= taken <= candidates, (took, taken, candidates)

    @rule(kind=KINDS, keys=st.lists(KEYS, max_size=4), ids=IDS)
    def remove(self, kind, keys, ids):
        call(self.cache.remove(kind, keys, ids))
        for key in keys:
            lst = self.model.lists[kind].get(key)
            if lst is not None:
                lst.ids -= set(ids)
                lst.should -= set(ids)

    @rule(kind=KINDS, key=KEYS)
    def drop(self, kind, key):
        call(self.cache.drop(kind, key))
        self.model.lists[kind].pop(key, None)

    @rule(kind=KINDS, keys=st.lists(KEYS, max_size=5))
    def exists(self, kind, keys):
        got = call(self.cache.exists(kind, keys))
        want = [k for k in keys if self.model.get(kind, k, touch=False) is not None]
        assert got == want

    @rule(kind=KINDS, key=KEYS, before=st.none() | st.integers(1, 45), limit=st.integers(0, 5))
    def slice(self, kind, key, before, limit):
        got = call(self.cache.slice(kind, key, before, limit))
        lst = self.model.get(kind, key, touch=True)
        if lst is None or lst.building:
            assert got is None
            return
        below = sorted((i for i in lst.ids if before is None or i < before), reverse=True)
        assert got == IdSlice(below[:limit], lst.floor)

    @rule(dt=st.sampled_from([0, 1, 3, INACTIVE - 1, INACTIVE, INACTIVE + 1, 3 * INACTIVE]))
    def tick(self, dt):
        self.model.now += dt

    # -- graph facts ----------------------------------------------------------------------
    @rule(user=KEYS, ids=st.frozensets(KEYS, max_size=3), stale=st.booleans(), versioned=st.booleans())
    def set_following(self, user, ids, stale, versioned):
        current = self.version
        assert call(self.cache.following_version(user)) == current
        version = (current - 1 if stale else current) if versioned else None
        call(self.cache.set_following(user, ids, version))
        if version is None or version == current:
            self.following[user] = ids
            self.following.move_to_end(user)
            if len(self.following) > MAX_LISTS:
                self.following.popitem(last=False)

    @rule(user=KEYS)
    def forget_following(self, user):
        call(self.cache.forget_following(user))
        self.following.pop(user, None)
        self.version += 1

    @rule(user=KEYS)
    def following_of(self, user):
        got = call(self.cache.following(user))
        assert got == self.following.get(user)
        if got is not None:
            self.following.move_to_end(user)

    @rule(ids=st.frozensets(KEYS, max_size=3))
    def set_celebrities(self, ids):
        call(self.cache.set_celebrities(ids))
        self.celebs = ids

    @rule(user=KEYS, flag=st.booleans())
    def mark_celebrity(self, user, flag):
        changed = call(self.cache.mark_celebrity(user, flag))
        if self.celebs is None or (user in self.celebs) == flag:
            assert changed is False
        else:
            assert changed is True
            self.celebs = self.celebs | {user} if flag else self.celebs - {user}
        assert call(self.cache.celebrities()) == self.celebs

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def lists_match_the_oracle(self):
        if not hasattr(self, "model"):
            return
        for kind, lists in self.model.lists.items():
            real = self.cache._lists[kind]
            assert list(real) == list(lists), "same lists in the same recency order"
            assert len(real) <= MAX_LISTS
            for key, want in lists.items():
                got = real[key]
                arr = got.ids.tolist()
                assert arr == sorted(set(arr)), "ascending, no duplicates"
                assert set(arr) == want.ids
                assert got.floor == want.floor
                assert got.building == want.building
                assert len(arr) <= CAP
                # the promise, independently of the mirror above:
                assert {i for i in want.should if i > got.floor} <= set(arr)
                assert set(arr) <= want.should
                assert got.floor >= want.min_floor

    @invariant()
    def stats_match(self):
        if not hasattr(self, "model"):
            return
        stats = call(self.cache.stats())
        assert stats["home_timelines"] == len(self.model.lists["home"])
        assert stats["author_lists"] == len(self.model.lists["author"])
        assert stats["home_entries"] == sum(len(l.ids) for l in self.model.lists["home"].values())
        assert stats["evictions"] == self.model.evictions
        assert stats["following_sets"] == len(self.following) <= MAX_LISTS


TimelineCacheMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_timeline_cache_state_machine = TimelineCacheMachine.TestCase


# --------------------------------------------------------------------------------------------
# examples, for readability
# --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_home_list_expires_after_inactivity_and_push_skips_it():
    clock = Clock()
    c = MemoryTimelineCache(cap=5, inactive_seconds=100, max_lists=10, clock=clock)
    call(c.install("home", 1, [1], 0))
    call(c.install("author", 1, [1], 0))
    clock.now = 60
    assert call(c.slice("home", 1, None, 5)).ids == [1]  # a read counts as activity
    clock.now = 150
    assert call(c.push("home", [1], 2)) == 1  # 90 s since the read: still active
    clock.now = 160.5  # 100.5 s since the last read; pushes do not count as activity
    assert call(c.push("home", [1], 3)) == 0
    assert call(c.exists("home", [1])) == []
    assert call(c.slice("home", 1, None, 5)) is None
    assert call(c.slice("author", 1, None, 5)).ids == [1]  # author lists never expire
    call(c.install("home", 1, [7], 0))  # the rebuild starts afresh
    assert call(c.slice("home", 1, None, 5)) == IdSlice([7], 0)


def test_push_to_many_followers_few_of_them_active():
    """A big author's push (far more keys than lists) reaches exactly the live lists, once
    each, and still drops an expired one."""
    clock = Clock()
    c = MemoryTimelineCache(cap=5, inactive_seconds=100, max_lists=10, clock=clock)
    for k in (3, 500, 999):
        call(c.install("home", k, [1], 0))
    clock.now = 50
    call(c.slice("home", 500, None, 5))
    call(c.slice("home", 999, None, 5))
    clock.now = 120  # list 3 was last read at 0: expired
    followers = [*range(1, 1000), 500, 999]  # 1,001 keys for 3 lists, two given twice
    assert call(c.push("home", followers, 7)) == 2
    assert call(c.push("home", followers, 7)) == 0
    assert call(c.exists("home", [3, 500, 999])) == [500, 999]
    assert call(c.slice("home", 500, None, 5)) == IdSlice([7, 1], 0)


def test_number_of_lists_is_bounded_least_recently_read_goes_first():
    c = MemoryTimelineCache(cap=5, max_lists=3)
    for key in (1, 2, 3):
        call(c.install("home", key, [key], 0))
    call(c.slice("home", 1, None, 5))  # 1 is now the most recently read; 2 the least
    call(c.push("home", [2], 9))  # a push is not a read
    call(c.install("home", 4, [4], 0))
    assert call(c.exists("home", [1, 2, 3, 4])) == [1, 3, 4]
    assert call(c.stats())["evictions"] == 1


def test_floor_after_trim_and_push_below_a_full_list():
    c = MemoryTimelineCache(cap=3)
    call(c.install("home", 1, [10, 20, 30, 40], 0))
    assert call(c.slice("home", 1, None, 10)) == IdSlice([40, 30, 20], 10)
    assert call(c.push("home", [1], 5)) == 0  # below the floor of a full list: cut at once
    assert call(c.slice("home", 1, None, 10)) == IdSlice([40, 30, 20], 10)
    call(c.push("home", [1], 15))  # above the floor, below all kept: cut, floor rises to it
    s = call(c.slice("home", 1, None, 10))
    assert s.ids == [40, 30, 20] and s.floor == 15
    call(c.remove("home", [1], [30]))
    assert call(c.slice("home", 1, None, 10)) == IdSlice([40, 20], 15)


def test_large_install_takes_the_bulk_path_and_trims():
    c = MemoryTimelineCache(cap=50)
    call(c.install("home", 1, list(range(100, 0, -1)), 0))  # > 32 ids, unsorted
    s = call(c.slice("home", 1, None, 1000))
    assert s.ids == list(range(100, 50, -1)) and s.floor == 50
    call(c.install("home", 1, list(range(1, 200, 2)), 0))
    s = call(c.slice("home", 1, None, 1000))
    assert len(s.ids) == 50 and s.ids == sorted(set(s.ids), reverse=True)
    assert s.ids[0] == 199 and all(i > s.floor for i in s.ids)


def test_async_use_from_an_event_loop():
    async def main():
        c = MemoryTimelineCache(cap=2)
        await c.install("home", 1, [1, 2, 3], 0)
        return await c.slice("home", 1, None, 10)

    assert asyncio.run(main()) == IdSlice([3, 2], 1)


# --------------------------------------------------------------------------------------------
# MemoryPostCache
# --------------------------------------------------------------------------------------------


def post(i: int) -> Post:
    return Post(i, 1, "a", str(i))


def test_post_cache_evicts_the_entry_inserted_longest_ago():
    c = MemoryPostCache(max_posts=3)
    call(c.put_many([post(1), post(2), post(3)]))
    call(c.put_many([post(4)]))
    assert set(call(c.get_many([1, 2, 3, 4]))) == {2, 3, 4}
    call(c.put_many([post(5), post(6), post(7), post(8)]))  # one batch over the bound
    assert set(call(c.get_many(range(1, 9)))) == {6, 7, 8}
    assert len(c) == 3


def test_post_cache_counts_hits_and_misses():
    c = MemoryPostCache(max_posts=10)
    call(c.put_many([post(1), post(2)]))
    assert call(c.get_many([1, 2, 3])) == {1: post(1), 2: post(2)}
    assert (c.hits, c.misses) == (2, 1)
    call(c.delete([1, 99]))
    assert call(c.get_many([1])) == {}
    assert (c.hits, c.misses) == (2, 2)


@pytest.mark.parametrize("bound", [1, 2, 5])
def test_post_cache_never_exceeds_its_bound(bound):
    c = MemoryPostCache(max_posts=bound)
    for start in range(0, 30, 4):
        call(c.put_many([post(i) for i in range(start, start + 4)]))
        assert len(c) <= bound
