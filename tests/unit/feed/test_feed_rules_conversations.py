"""The home rules over random worlds of posts, replies and boosts, against the oracle of
``conversation_oracle`` (computed from the records alone, in plain Python): after the
fan-out consumer catches up, every home, paged at any limit, equals the oracle's; and
``home_shows`` says of every post what the home does.

The worlds are small (6 users, celebrity threshold 2-4, cap 2-6, so that pulled
celebrities, trims and reads past the cache's floor happen), with bursts of posts so that
boosts fall both inside and outside the 40-entry window."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import conversation_oracle as oracle
from feedworld import Records, World
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

N = 6
U = st.integers(0, N - 1)
OPS = st.lists(st.one_of(
    st.tuples(st.just("follow"), U, U),
    st.tuples(st.just("unfollow"), U, U),
    st.tuples(st.just("post"), U, st.integers(1, 3)),
    st.tuples(st.just("burst"), U, st.integers(10, 45)),
    st.tuples(st.just("reply"), U, st.integers(0, 10_000)),
    st.tuples(st.just("boost"), U, st.integers(0, 10_000)),
    st.tuples(st.just("unboost"), U, st.integers(0, 10_000)),
    st.tuples(st.just("delete"), st.just(0), st.integers(0, 10_000)),
    st.tuples(st.just("deliver"), st.just(0), st.just(0)),
    st.tuples(st.just("drop"), U, st.just(0)),
), min_size=5, max_size=30)

_records: Records | None = None
_dir: Path | None = None


def records() -> Records:
    global _records, _dir
    if _records is None:
        _dir = Path(tempfile.mkdtemp(prefix="homefeed-conversations-"))
        _records = Records(_dir)
    return _records


def teardown_module() -> None:
    global _records
    if _records is not None:
        _records.close()
        _records = None
        shutil.rmtree(_dir, ignore_errors=True)


class Model:
    """A world and the oracle's records of it."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.uids = world.users(*(f"u{i}" for i in range(N)))
        self.idx = {u: i for i, u in enumerate(self.uids)}
        self.posts: dict[int, oracle.P] = {}
        self.follows: set[tuple[int, int]] = set()

    def apply(self, op: str, a: int, k: int) -> None:
        w, ua = self.w, self.uids[a]
        live = sorted(self.posts)
        pick = live[k % len(live)] if live else None
        if op == "follow" and a != k % N:
            w.follow(ua, self.uids[k % N])
            self.follows.add((ua, self.uids[k % N]))
        elif op == "unfollow" and a != k % N:
            w.unfollow(ua, self.uids[k % N])
            self.follows.discard((ua, self.uids[k % N]))
        elif op in ("post", "burst"):
            for _ in range(k):
                pid = w.post(ua)
                self.posts[pid] = oracle.P(pid, ua)
        elif op == "reply" and pick is not None:
            pid = w.reply(ua, pick)
            self.posts[pid] = oracle.P(pid, ua, reply_to_author=self.posts[pick].author)
        elif op == "boost" and pick is not None:
            original = self.posts[pick].reblog_of or pick
            pid = w.boost(ua, pick)
            self.posts[pid] = oracle.P(pid, ua, reblog_of=original)
        elif op == "unboost" and pick is not None:
            gone = w.unboost(ua, pick)
            if gone is not None:
                del self.posts[gone]
        elif op == "delete" and pick is not None:
            p = self.posts[pick]
            w.delete(p.author, pick)
            del self.posts[pick]
            for b in [b for b in self.posts.values() if b.reblog_of == pick]:
                del self.posts[b.id]  # its boosts go with it
        elif op == "deliver":
            w.deliver()
        elif op == "drop":
            w.run(w.cache.drop("home", ua))


@settings(max_examples=int(os.environ.get("HOMEFEED_CONVERSATION_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(threshold=st.integers(2, 4), cap=st.integers(2, 6), graph=st.lists(st.tuples(U, U), max_size=12),
       ops=OPS, limit=st.sampled_from([1, 2, 3, 7, 100]))
def test_every_home_equals_the_oracle(threshold: int, cap: int, graph: list[tuple[int, int]],
                                      ops: list[tuple[str, int, int]], limit: int) -> None:
    m = Model(World(records(), celebrity_threshold=threshold, timeline_cap=cap))
    for a, b in sorted(set(graph)):
        m.apply("follow", a, b)
    m.w.deliver()
    for u in m.uids[::2]:
        m.w.home(u)  # some homes cached (pushed into), the others rebuilt on read
    for op, a, k in ops:
        m.apply(op, a, k)
    m.w.deliver()
    for u in m.uids:
        want = oracle.home(u, m.posts, m.follows)
        got = m.w.home(u, limit)
        assert got == want, (m.idx[u], limit, [p for p in want if p not in got], [p for p in got if p not in want])
        shown = set(got)
        for pid in m.posts:
            p = m.posts[pid]
            if p.reblog_of is not None and (p.author == u or p.author in {b for a, b in m.follows if a == u}):
                event("a boost entry shown" if pid in shown else "a boost entry hidden")
            if p.reply_to_author not in (None, p.author) and p.author in {b for a, b in m.follows if a == u}:
                event("a reply to another shown" if pid in shown else "a reply to another hidden")
            assert m.w.shows(u, pid) == (pid in shown), (m.idx[u], pid, m.posts[pid])


def test_paging_at_any_limit_gives_the_same_sequence(world: World) -> None:
    """Replies and boosts at page ends: every limit from 1 to 7 walks the same sequence as
    one big page (no repeat, no skip), whatever the boosts' lookahead needed."""
    a, b, c, x, r = world.users("a", "b", "c", "x", "r")
    for f in (a, b, c):
        world.follow(r, f)
    world.deliver()
    world.home(r)
    originals = [world.post(x) for _ in range(3)]
    for i in range(50):
        author = (a, b, c)[i % 3]
        if i % 7 == 3:
            world.boost(author, originals[i % 3])
        elif i % 5 == 1:
            world.reply(author, originals[0])  # to x: hidden
        elif i % 11 == 2:
            world.reply(author, world.post(c))  # to c, whom r follows: shown
        else:
            world.post(author)
    world.deliver()
    whole = world.home(r, 100)
    assert len(whole) > 7
    for limit in range(1, 8):
        assert world.home(r, limit) == whole, limit
    world.run(world.cache.drop("home", r))
    assert world.home(r, 3) == whole
