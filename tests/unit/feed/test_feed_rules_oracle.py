"""Every timeline rule at once, against an oracle: a hypothesis state machine follows,
unfollows (one by one, or a crowd at once: promotion and demotion), posts, deletes, lets the
fan-out consumer lag or catch up, redelivers old events, lets days pass (every timeline
inactive) and drops cached lists, with a small cap (2-6) and celebrity threshold (2-4) so
that trims, floors, promotions and demotions happen in most examples
(``--hypothesis-show-statistics`` shows how often).

The oracle is a set of follows and a list of posts: a user's home timeline is the
newest-first list of the live posts of the user and of everyone they follow now. After the
consumer catches up, every user's whole timeline, paged with ``next`` at any page size,
equals it. While the consumer lags, a page may miss what is not applied yet but is never
wrong: no deleted post, no post of someone the reader does not follow, newest first, each
once, and the reader's own posts all there (read-your-writes).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from feedworld import Records, World
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

N_USERS = 6
USER = st.integers(0, N_USERS - 1)
# Followees (and the authors of one posting rule) drawn from the first three users half of
# the time, so that authors cross the celebrity threshold (up and down) often, and post
# while celebrities.
FOLLOWEE = st.one_of(st.integers(0, 2), USER)
LIMIT = st.sampled_from([1, 2, 3, 5, 100])

_records: Records | None = None
_records_dir: Path | None = None


def records() -> Records:
    """One SQLite file for every example (each example's world has its own users)."""
    global _records, _records_dir
    if _records is None:
        _records_dir = Path(tempfile.mkdtemp(prefix="homefeed-feedrules-"))
        _records = Records(_records_dir)
    return _records


def teardown_module() -> None:
    global _records
    if _records is not None:
        _records.close()
        _records = None
        shutil.rmtree(_records_dir, ignore_errors=True)


class FeedRulesMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        # -- the oracle --
        self.follows: set[tuple[int, int]] = set()  # (follower, followee), by user index
        self.posts: list[tuple[int, int]] = []  # (post id, author index), oldest first
        self.deleted: set[int] = set()

    @initialize(
        cap=st.integers(2, 6),
        threshold=st.integers(2, 4),
        graph=st.lists(st.tuples(USER, USER), min_size=4, max_size=12),
        absent=st.sets(USER, max_size=3),
        authors=st.lists(USER, min_size=2, max_size=10),
        tiny_caches=st.booleans(),
    )
    def open_world(self, cap: int, threshold: int, graph: list[tuple[int, int]],
                   absent: set[int], authors: list[int], tiny_caches: bool) -> None:
        """A world with a follow graph drawn at once, where every user but the ``absent``
        ones has read their timeline (cached: fan-out pushes into it; the absent ones are
        skipped by fan-out and rebuilt on their first read), then a few posts, delivered.
        ``tiny_caches``: room for 3 lists of each kind and 4 posts, so that lists are
        evicted all the time and hydration goes to the record store."""
        self.world = World(records(), celebrity_threshold=threshold, timeline_cap=cap,
                           **({"max_lists": 3, "max_posts": 4} if tiny_caches else {}))
        self.uids = self.world.users(*(f"u{i}" for i in range(N_USERS)))
        self.threshold = threshold
        self.cap = cap
        for a, b in sorted(set(graph)):
            self.follow(a, b)
        self.world.deliver()
        for u in range(N_USERS):
            if u not in absent:
                self.world.home(self.uids[u])
        for a in authors:
            self.post(a, 1)
        self.world.deliver()

    def teardown(self) -> None:
        try:
            if self.world is not None and sys.exc_info()[0] is None:
                self.world.deliver()
                for u in range(N_USERS):
                    self.check_home(u, 2)
                    self.check_home(u, 100)
                counters = self.world.feed.counters
                for name in ("pushes", "db_pages", "rebuilds", "author_rebuilds"):
                    if counters[name]:
                        event(f"feed counter {name} > 0")
        finally:
            if self.world is not None:
                self.world.close()

    # -- the oracle -----------------------------------------------------------------------
    def oracle_home(self, u: int) -> list[int]:
        return [pid for pid, a in reversed(self.posts)
                if pid not in self.deleted and (a == u or (u, a) in self.follows)]

    def followers(self, u: int) -> int:
        return sum(1 for _, b in self.follows if b == u)

    def live(self) -> list[tuple[int, int]]:
        return [(pid, a) for pid, a in self.posts if pid not in self.deleted]

    def check_home(self, u: int, limit: int) -> None:
        got = self.world.home(self.uids[u], limit)
        want = self.oracle_home(u)
        assert got == want, (
            f"home of u{u} (limit {limit}, cap {self.cap}, threshold {self.threshold})\n"
            f"  got:     {got}\n  oracle:  {want}\n"
            f"  missing: {[p for p in want if p not in got]}\n"
            f"  extra:   {[p for p in got if p not in want]}")
        if len(want) > self.cap:
            event("a timeline longer than the cap was read whole")

    # -- writes ---------------------------------------------------------------------------
    @rule(a=USER, b=FOLLOWEE)
    def follow(self, a: int, b: int) -> None:
        if a == b:
            return
        self.world.follow(self.uids[a], self.uids[b])
        if (a, b) not in self.follows and self.followers(b) == self.threshold - 1:
            event("an author reached the celebrity threshold")
        self.follows.add((a, b))

    @rule(a=USER, b=FOLLOWEE)
    def unfollow(self, a: int, b: int) -> None:
        if a == b:
            return
        if (a, b) in self.follows and self.followers(b) == self.threshold:
            event("a celebrity dropped below the threshold")
        self.world.unfollow(self.uids[a], self.uids[b])
        self.follows.discard((a, b))

    @rule(b=st.integers(0, 2), extra=st.integers(0, 1))
    def promote(self, b: int, extra: int) -> None:
        """Users follow ``b`` until ``b`` has ``threshold + extra`` followers: a celebrity."""
        for a in range(N_USERS):
            if self.followers(b) >= self.threshold + extra:
                break
            if a != b and (a, b) not in self.follows:
                self.follow(a, b)

    @rule(b=st.integers(0, 2), fewer=st.integers(1, 2))
    def demote(self, b: int, fewer: int) -> None:
        """Followers of ``b`` leave until ``threshold - fewer`` remain: no longer a
        celebrity, if ``b`` was one."""
        for a in range(N_USERS):
            if self.followers(b) <= max(0, self.threshold - fewer):
                break
            if (a, b) in self.follows:
                self.unfollow(a, b)

    @rule(a=USER, n=st.integers(1, 4))
    def post(self, a: int, n: int) -> None:
        for _ in range(n):
            pid = self.world.post(self.uids[a])
            self.posts.append((pid, a))

    @rule(a=FOLLOWEE, n=st.integers(1, 4))
    def post_by_a_likely_celebrity(self, a: int, n: int) -> None:
        self.post(a, n)

    @rule(i=st.integers(0, 1000))
    def delete(self, i: int) -> None:
        live = self.live()
        if not live:
            return
        pid, a = live[i % len(live)]
        self.world.delete(self.uids[a], pid)
        self.deleted.add(pid)

    # -- the fan-out consumer -------------------------------------------------------------
    @rule()
    def deliver(self) -> None:
        self.world.deliver()

    @rule(n=st.integers(1, 4))
    def deliver_some(self, n: int) -> None:
        self.world.deliver_some(n)

    @rule(start=st.integers(0, 1000), size=st.integers(1, 6))
    def redeliver(self, start: int, size: int) -> None:
        events = self.world.delivered
        if not events:
            return
        start %= len(events)
        self.world.redeliver(events[start:start + size])
        event("old events redelivered")

    # -- the cache losing things ----------------------------------------------------------
    @rule(what=st.sampled_from(["days pass", "home", "author"]), u=USER)
    def cache_loses(self, what: str, u: int) -> None:
        """Days pass without reads (every home timeline inactive), or one list is dropped
        (evicted): the next read rebuilds it."""
        if what == "days pass":
            self.world.days_pass(self.world.settings.inactive_days + 1)
        else:
            self.world.run(self.world.cache.drop(what, self.uids[u]))

    # -- reads ----------------------------------------------------------------------------
    @rule(u=USER, limit=LIMIT)
    def read_while_lagging(self, u: int, limit: int) -> None:
        """Without waiting for the consumer: maybe incomplete, never wrong."""
        got = self.world.home(self.uids[u], limit)
        assert len(got) == len(set(got)) and got == sorted(got, reverse=True), got
        authors = dict(self.posts)
        for pid in got:
            assert pid not in self.deleted, f"u{u} reads deleted post {pid}"
            a = authors[pid]
            assert a == u or (u, a) in self.follows, f"u{u} reads {pid} by u{a}, not followed"
        own = [pid for pid in self.oracle_home(u) if authors[pid] == u]
        assert [pid for pid in got if authors[pid] == u] == own, "own posts missing"

    @rule(limit=LIMIT)
    def read_after_delivery(self, limit: int) -> None:
        """Once the consumer caught up, everyone reads: each whole timeline is the oracle's."""
        self.world.deliver()
        for u in range(N_USERS):
            self.check_home(u, limit)


# A few seconds by default; HOMEFEED_FEED_RULES_EXAMPLES=2000 for a long run.
FeedRulesMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("HOMEFEED_FEED_RULES_EXAMPLES", "60")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
    print_blob=True,
)
test_feed_rules_against_an_oracle = FeedRulesMachine.TestCase
