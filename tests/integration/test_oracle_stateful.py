"""The whole service against an oracle, driven by a hypothesis state machine.

A ``RuleBasedStateMachine`` registers about ten users, makes them follow and unfollow each
other, post, delete, read and search, and restarts the service, on a real SQLite file, with
``celebrity_threshold=3`` and ``timeline_cap=5`` so that every path of the hybrid fan-out is
taken: push into cached timelines, pull and merge of celebrities, crossing the threshold up
and down, merge on follow and unmerge on unfollow, trim and floors, paging past the cap into
the database, rebuild of timelines that are not cached (after a restart all of them).

The oracle is a model of the *records* only (who exists, who follows whom now, which posts
exist and were not deleted, in creation order), kept by this test, never read back from the
service. After ``drain()`` every derived view must equal what the oracle computes:

- every user's WHOLE home timeline, paged to the end with ``next`` and small limits, is the
  newest-first list of the non-deleted posts of the user and of everyone they follow now,
  with nothing repeated or skipped;
- every user's own posts, paged likewise;
- search for a few words, hashtags and mentions: the posts that contain every term (a plain
  word also matches inside a hashtag or mention, ``#x`` only the hashtag, case ignored);
- profiles' counters, followers/following lists, and ``get_post`` of every post.

Between checks, without draining, reads may lag behind the writes but must never be wrong:
a page never holds a deleted post, a post by someone the reader does not follow, a post out
of order or twice, and a short page has no ``next``. Right after ``create_post`` the
author's own home timeline starts with the new post (read-your-writes).

Each example also draws how the service runs: consumers in the background (as deployed) or
applied by hand a few events at a time (so reads meet derived stores lagging by a chosen
amount, each consumer by its own), and normal or tiny caches (3 lists of each kind, 4 posts:
eviction and rebuild all the time). Restarts are clean, or abrupt: consumers cancelled, or
events applied without being acknowledged, so they are delivered again. A burst rule runs
several requests at once on the loop, interleaving with each other and with the consumers.

Run longer with ``HOMEFEED_HYPOTHESIS_PROFILE=oracle-long``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from homefeed.domain.text import index_terms, query_terms

T = TypeVar("T")

THRESHOLD = 3
CAP = 5
MAX_USERS = 10

# Handles in mixed case: handles are unique ignoring case, mentions are searched folded.
HANDLES = ["alice", "Bob", "carol", "DAVE", "eve_1", "Frank", "grace", "HEIDI", "ivan", "Judy"]

# Words posts are made of: plain words, hashtags and mentions in mixed case, a word with
# "_" (one word: "rust" must not match "rust_lang"), digits, non-ASCII letters.
VOCAB = [
    "rust", "Rust", "RUST", "#rust", "#Rust", "rust_lang",
    "go", "Go", "#go", "#GO",
    "hello", "Hello", "world", "World!",
    "@alice", "@Alice", "@bob", "@BOB", "alice",
    "café", "CAFÉ", "#café",
    "x1", "42", "news",
]
SEPARATORS = [" ", " ", " ", ", ", "! ", ".", " - ", "\n"]

QUERIES = [
    "rust", "#rust", "RUST", "#RUST", "rust_lang", "go", "#go", "hello", "world",
    "hello world", "#rust go", "rust #go", "@alice", "alice", "ALICE", "@bob", "bob",
    "café", "#CAFÉ", "x1 42", "news rust hello", "nothing_matches_this",
]


# --------------------------------------------------------------------------------------------
# an independent model of the search rules (ASCII + precomposed letters: \w is enough here)
# --------------------------------------------------------------------------------------------

_WORD = re.compile(r"([#@]?)(\w+)")


def model_index_terms(text: str) -> set[str]:
    out: set[str] = set()
    for tag, w in _WORD.findall(text):
        w = w.casefold()
        out.add(w)
        if tag:
            out.add(tag + w)
    return out


def model_query_terms(q: str) -> set[str]:
    return {tag + w.casefold() for tag, w in _WORD.findall(q)}


# --------------------------------------------------------------------------------------------
# settings profiles: ~20-30 s in CI by default
# --------------------------------------------------------------------------------------------

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
    print_blob=True,
)
settings.register_profile("oracle-ci", max_examples=120, stateful_step_count=100, **_COMMON)
settings.register_profile("oracle-long", max_examples=1000, stateful_step_count=120, **_COMMON)
settings.register_profile("oracle-quick", max_examples=10, stateful_step_count=30, **_COMMON)
PROFILE = os.environ.get("HOMEFEED_HYPOTHESIS_PROFILE", "oracle-ci")


class HomefeedMachine(RuleBasedStateMachine):
    """One service on one SQLite file and one event loop per example."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="homefeed-oracle-"))
        self.loop = asyncio.new_event_loop()
        self.settings: Settings | None = None
        self.hf: Any = None  # opened by the initialize rule
        self.manual = False  # consumers applied by the ``consume`` rule, not in the background
        # -- the model of the records --
        self.users: list[tuple[int, str]] = []  # (id, handle), in registration order
        self.follows: set[tuple[int, int]] = set()  # (follower, followee)
        self.posts: dict[int, tuple[int, str, int]] = {}  # id -> (author, text, creation seq)
        self.deleted: set[int] = set()
        self.unlisted: set[int] = set()  # posts kept off the public timeline
        self.seq = 0
        self.last_id = 0
        self.restarts = 0
        self.demoted = 0
        self.old_counters: dict[str, int] = {}  # FeedManager counters of closed instances

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def open(self) -> Any:
        return self.run(open_homefeed(self.settings, run_consumers=not self.manual))

    def consumer_names(self) -> list[str]:
        return sorted(self.hf.consumers.handlers)

    def cancel_consumers(self) -> None:
        """Stop the consumer tasks abruptly, as a crash would: a batch may have been applied
        and not acknowledged (it is delivered again after the restart)."""
        for t in getattr(self.hf.consumers, "_tasks", []):
            t.cancel()

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None and self.hf is not None:
                self.check_everything([1, 2, 3])  # every example ends with a full check
        finally:
            try:
                if self.hf is not None:
                    self.cancel_consumers()  # no need to wait for a clean stop here
                    self.run(self.hf.close())
            finally:
                self.loop.close()
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------
    def user(self, i: int) -> tuple[int, str]:
        return self.users[i % len(self.users)]

    def live(self) -> list[int]:
        """Ids of the posts that exist, newest first (creation order, not id order)."""
        ids = [pid for pid in self.posts if pid not in self.deleted]
        ids.sort(key=lambda pid: self.posts[pid][2], reverse=True)
        return ids

    def oracle_home(self, uid: int) -> list[int]:
        return [
            pid for pid in self.live()
            if self.posts[pid][0] == uid or (uid, self.posts[pid][0]) in self.follows
        ]

    def oracle_user_posts(self, uid: int) -> list[int]:
        return [pid for pid in self.live() if self.posts[pid][0] == uid]

    def oracle_search(self, q: str) -> list[int]:
        need = model_query_terms(q)
        return [pid for pid in self.live() if need <= model_index_terms(self.posts[pid][1])]

    def followers_count(self, uid: int) -> int:
        return sum(1 for _, b in self.follows if b == uid)

    def check_page(self, where: str, got: dict[str, Any], limit: int) -> list[int]:
        posts, nxt = got["posts"], got["next"]
        assert len(posts) <= limit, f"{where}: {len(posts)} posts for limit {limit}"
        if len(posts) < limit:
            assert nxt is None, f"{where}: short page ({len(posts)} < {limit}) with next={nxt}"
        if nxt is not None:  # a cursor: the page ends at it or above (walk checks the rest)
            assert posts and isinstance(nxt, str) and int(nxt) <= int(posts[-1]["id"]), (
                f"{where}: next {nxt!r} after last id {posts[-1]['id'] if posts else None}")
        ids = [int(p["id"]) for p in posts]
        for p in posts:
            pid = int(p["id"])
            assert pid in self.posts, f"{where}: post {pid} was never created"
            author, text, _ = self.posts[pid]
            assert p["text"] == text and int(p["author"]["id"]) == author, f"{where}: {p}"
            assert p["author"]["handle"] == dict(self.users)[author], f"{where}: {p}"
        return ids

    def walk(self, where: str, fetch: Callable[[int, int | None], Awaitable[dict]],
             limits: list[int], max_pages: int = 400) -> list[int]:
        """Every id of a paged list, following ``next`` with the given limits in turn."""
        out: list[int] = []
        before: int | None = None
        for n in range(max_pages):
            limit = limits[n % len(limits)]
            got = self.run(fetch(limit, before))
            out.extend(self.check_page(f"{where} page {n} (limit {limit}, before {before})",
                                       got, limit))
            if got["next"] is None:
                break
            nxt = int(got["next"])
            assert before is None or nxt < before, f"{where}: cursor did not move down"
            before = nxt
        else:
            raise AssertionError(f"{where}: more than {max_pages} pages")
        assert len(out) == len(set(out)), f"{where}: repeated posts {out}"
        assert out == sorted(out, reverse=True), f"{where}: not newest first {out}"
        return out

    def assert_sound(self, where: str, uid: int, ids: list[int]) -> None:
        """What a home page may hold even before the consumers caught up."""
        following = {b for a, b in self.follows if a == uid}
        for pid in ids:
            author = self.posts[pid][0]
            assert pid not in self.deleted, f"{where}: deleted post {pid} shown"
            assert author == uid or author in following, (
                f"{where}: post {pid} by {author}, whom user {uid} does not follow")

    def record_coverage(self) -> None:
        """Which paths this example took (see ``--hypothesis-show-statistics``)."""
        celebs = [u for u, _ in self.users if self.followers_count(u) >= THRESHOLD]
        if celebs:
            event("a celebrity exists at a check")
        if self.demoted:
            event("a celebrity dropped below the threshold")
        if any(len(self.oracle_home(u)) > CAP for u, _ in self.users):
            event("a home timeline is longer than the cap")
        counters = getattr(self.hf.feed, "counters", {})
        for name in ("pushes", "db_pages", "rebuilds", "author_rebuilds"):
            if counters.get(name, 0) + self.old_counters.get(name, 0):
                event(f"feed counter {name} > 0")
        if self.restarts:
            event("checked after a restart")

    # -- the full check ---------------------------------------------------------------------
    def check_everything(self, limits: list[int]) -> None:
        self.run(self.hf.drain())
        self.record_coverage()
        names = dict(self.users)
        for uid, handle in self.users:
            want = self.oracle_home(uid)
            got = self.walk(f"home of {handle}",
                            lambda limit, before, uid=uid: self.hf.home_timeline(uid, limit, before),
                            limits)
            assert got == want, (
                f"home timeline of {handle} ({uid}) after drain\n"
                f"  got:     {got}\n  oracle:  {want}\n"
                f"  missing: {[p for p in want if p not in got]}\n"
                f"  extra:   {[p for p in got if p not in want]}")
            # once more with the largest page: must be the same list
            got_big = self.walk(f"home of {handle} (limit 100)",
                                lambda limit, before, uid=uid: self.hf.home_timeline(uid, limit, before),
                                [100])
            assert got_big == want, f"home of {handle} with limit 100: {got_big} != {want}"

            want_own = self.oracle_user_posts(uid)
            got_own = self.walk(f"posts of {handle}",
                                lambda limit, before, h=handle: self.hf.user_posts(h, limit, before),
                                limits)
            assert got_own == want_own, f"posts of {handle}: {got_own} != {want_own}"

            profile = self.run(self.hf.profile(handle.swapcase()))  # handles ignore case
            assert profile["id"] == str(uid) and profile["handle"] == handle, profile
            counts = (profile["followers_count"], profile["following_count"], profile["posts_count"])
            want_counts = (self.followers_count(uid),
                           sum(1 for a, _ in self.follows if a == uid), len(want_own))
            assert counts == want_counts, f"counters of {handle}: {counts} != {want_counts}"

            followers = self.run(self.hf.followers(handle, 100))["users"]
            assert {int(u["id"]) for u in followers} == {a for a, b in self.follows if b == uid}
            following = self.run(self.hf.following(handle, 100))["users"]
            assert {int(u["id"]) for u in following} == {b for a, b in self.follows if a == uid}

        # The Mastodon client API over the same service: its home timeline (max_id paging)
        # equals the oracle; its public timeline (the cached public list) holds every live
        # public post, newest first.
        from homefeed.domain.mastodon.pagination import Page
        from homefeed.service_layer.mastodon import MastodonApi

        masto = MastodonApi(self.hf)
        for uid, handle in self.users:
            got_m: list[int] = []
            max_id = None
            for n in range(400):
                page = self.run(masto.home(uid, Page(limit=limits[n % len(limits)], max_id=max_id)))
                if not page:
                    break
                got_m.extend(p.id for p in page)
                max_id = page[-1].id
            assert got_m == self.oracle_home(uid), f"Mastodon home of {handle}: {got_m}"
        got_pub: list[int] = []
        max_id = None
        for n in range(1000):
            page = self.run(masto.public(Page(limit=limits[n % len(limits)], max_id=max_id)))
            if not page:
                break
            got_pub.extend(p.id for p in page)
            max_id = page[-1].id
        want_pub = [pid for pid in self.live() if pid not in self.unlisted]
        assert got_pub == want_pub, f"public timeline: {got_pub} != {want_pub}"
        if self.unlisted - self.deleted:
            event("an unlisted post exists at a check")

        for q in QUERIES:
            want = self.oracle_search(q)
            got = self.walk(f"search {q!r}",
                            lambda limit, before, q=q: self.hf.search(q, limit, before), limits)
            assert got == want, f"search {q!r}: got {got}, oracle {want}"

        for pid, (author, text, _) in self.posts.items():
            if pid in self.deleted:
                try:
                    self.run(self.hf.get_post(pid))
                except NotFound:
                    pass
                else:
                    raise AssertionError(f"deleted post {pid} still served by get_post")
            else:
                p = self.run(self.hf.get_post(pid))
                assert p["text"] == text and p["author"]["handle"] == names[author], p

    # -- rules --------------------------------------------------------------------------------
    @initialize(small_caches=st.booleans(), manual_consumers=st.booleans())
    def open_with_four_users(self, small_caches: bool, manual_consumers: bool) -> None:
        """``small_caches``: room for 3 timelines of each kind and 4 posts, so lists are
        evicted all the time (rebuilt on read, skipped by fan-out) and hydration goes to the
        database. ``manual_consumers``: no consumer runs in the background; the ``consume``
        rule applies a few events at a time, so reads and searches see derived stores that
        lag behind the writes by a chosen amount (each consumer by its own)."""
        self.settings = Settings(
            data_dir=self.tmp, celebrity_threshold=THRESHOLD, timeline_cap=CAP,
            sqlite_synchronous="NORMAL",  # durability is test_crash's business; speed here
            **(dict(cache_max_timelines=3, cache_max_posts=4) if small_caches else {}),
        )
        self.manual = manual_consumers
        if small_caches:
            event("small caches")
        if manual_consumers:
            event("manual consumers")
        self.hf = self.open()
        for _ in range(4):
            self.register()

    @precondition(lambda self: len(self.users) < MAX_USERS)
    @rule()
    def register(self) -> None:
        handle = HANDLES[len(self.users)]
        got = self.run(self.hf.register(handle))
        assert got["handle"] == handle and got["token"]
        uid = int(got["id"])
        assert uid not in dict(self.users)
        self.users.append((uid, handle))
        # the same handle in another case is taken, and the failure changes nothing
        try:
            self.run(self.hf.register(handle.swapcase()))
        except Conflict:
            pass
        else:
            raise AssertionError(f"{handle.swapcase()!r} registered although {handle!r} exists")

    @rule(a=st.integers(0, MAX_USERS - 1), b=st.integers(0, MAX_USERS - 1), read_after=st.booleans())
    def follow(self, a: int, b: int, read_after: bool = False) -> None:
        (fa, _), (fb, hb) = self.user(a), self.user(b)
        if fa == fb:
            try:
                self.run(self.hf.follow(fa, hb))
            except InvalidInput:
                return
            raise AssertionError("a user followed themselves")
        before = self.followers_count(fb)
        if before >= THRESHOLD:
            event("followed a celebrity")
        assert self.run(self.hf.follow(fa, hb)) == {"following": True}
        self.follows.add((fa, fb))
        if before < THRESHOLD <= self.followers_count(fb):
            event("crossed the celebrity threshold up")
        if read_after:  # may not show the followee's posts yet (lag), must not be wrong
            self.read_home(a, 4, 3)

    # Users 0 and 1 are "popular": more rules aim at them, so that they cross the celebrity
    # threshold up and down often (the same rules again, with narrower arguments).
    @rule(a=st.integers(0, MAX_USERS - 1), b=st.integers(0, 1))
    def follow_popular(self, a: int, b: int) -> None:
        self.follow(a, b)

    @rule(a=st.integers(0, MAX_USERS - 1), b=st.integers(0, 1))
    def unfollow_popular(self, a: int, b: int) -> None:
        self.unfollow(a, b)

    @rule(b=st.integers(0, 1), fans=st.lists(st.integers(0, MAX_USERS - 1), min_size=1, max_size=4))
    def fans_follow(self, b: int, fans: list[int]) -> None:
        """Several users follow a popular user in a row (usually making a celebrity)."""
        for a in fans:
            self.follow(a, b)

    @rule(b=st.integers(0, 1), k=st.integers(0, MAX_USERS - 1))
    def fans_leave(self, b: int, k: int) -> None:
        """Followers of a popular user leave until it is one below the threshold."""
        fb = self.user(b)[0]
        fans = sorted(a for a, x in self.follows if x == fb)
        while len(fans) >= THRESHOLD:
            a = fans.pop(k % len(fans))
            self.unfollow([u for u, _ in self.users].index(a), b)

    @rule(a=st.integers(0, MAX_USERS - 1), b=st.integers(0, MAX_USERS - 1), read_after=st.booleans())
    def unfollow(self, a: int, b: int, read_after: bool = False) -> None:
        (fa, _), (fb, hb) = self.user(a), self.user(b)
        if fa == fb:
            try:
                self.run(self.hf.unfollow(fa, hb))
            except InvalidInput:
                return
            raise AssertionError("a user unfollowed themselves")
        before = self.followers_count(fb)
        assert self.run(self.hf.unfollow(fa, hb)) == {"following": False}
        self.follows.discard((fa, fb))
        if before >= THRESHOLD > self.followers_count(fb):
            self.demoted += 1
            event("crossed the celebrity threshold down")
        if read_after:  # no drain: the unfollowed user's posts are gone from the home at once
            self.read_home(a, 4, 3)

    @rule(
        a=st.integers(0, MAX_USERS - 1),
        texts=st.lists(
            st.lists(st.tuples(st.sampled_from(VOCAB), st.sampled_from(SEPARATORS)),
                     min_size=1, max_size=4),
            min_size=1, max_size=3),
        read_your_write=st.booleans(),
    )
    def post(self, a: int, texts: list[list[tuple[str, str]]], read_your_write: bool,
             unlisted: bool = False) -> None:
        uid, handle = self.user(a)
        for parts in texts:
            text = "".join(w + s for w, s in parts).strip() or parts[0][0]
            assert set(index_terms(text)) == model_index_terms(text), text  # the model is right
            if unlisted:
                got = self.run(self.hf.write_post(uid, text, "unlisted")).public()
            else:
                got = self.run(self.hf.create_post(uid, text))
            pid = int(got["id"])
            if unlisted:
                self.unlisted.add(pid)
            assert got["text"] == text and got["author"] == {"id": str(uid), "handle": handle}
            assert pid not in self.posts, f"post id {pid} reused"
            assert pid > self.last_id, f"post id {pid} not above the previous id {self.last_id}"
            self.last_id = pid
            self.seq += 1
            self.posts[pid] = (uid, text, self.seq)
            if self.followers_count(uid) >= THRESHOLD:
                event("a celebrity posted")
            if read_your_write:  # no drain: the author sees their post at once
                page = self.run(self.hf.home_timeline(uid, 1))
                assert page["posts"] and page["posts"][0]["id"] == str(pid), (
                    f"read-your-writes: {handle}'s home starts with {page['posts'][:1]}, not {pid}")

    @rule(a=st.integers(0, MAX_USERS - 1), text=st.sampled_from(VOCAB), read_your_write=st.booleans())
    def post_unlisted(self, a: int, text: str, read_your_write: bool) -> None:
        """An unlisted post (the Mastodon API's visibility): in homes and on the profile like
        any post, never on the public timeline."""
        self.post(a, [[(text, "")]], read_your_write, unlisted=True)

    @rule(a=st.integers(0, 1), text=st.sampled_from(VOCAB), n=st.integers(1, 4),
          read_your_write=st.booleans())
    def post_popular(self, a: int, text: str, n: int, read_your_write: bool) -> None:
        self.post(a, [[(text, " "), (str(k), "")] for k in range(n)], read_your_write)

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 50), read_after=st.booleans())
    def delete_own(self, a: int, k: int, read_after: bool) -> None:
        uid, handle = self.user(a)
        own = [pid for pid, (author, _, _) in self.posts.items() if author == uid]
        if not own:
            return
        pid = own[k % len(own)]
        if pid in self.deleted:
            try:
                self.run(self.hf.delete_post(uid, pid))
            except NotFound:
                return
            raise AssertionError(f"deleting post {pid} twice did not say NotFound")
        self.run(self.hf.delete_post(uid, pid))
        self.deleted.add(pid)
        try:
            self.run(self.hf.get_post(pid))
        except NotFound:
            pass
        else:
            raise AssertionError(f"post {pid} served right after its deletion")
        if read_after:  # no drain: a deleted post is gone from every page at once
            ids = self.walk(f"home of {handle} right after deleting {pid}",
                            lambda limit, before: self.hf.home_timeline(uid, limit, before), [3])
            assert pid not in ids
            self.assert_sound(f"home of {handle}", uid, ids)

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 50))
    def delete_others_post(self, a: int, k: int) -> None:
        uid, _ = self.user(a)
        others = [pid for pid, (author, _, _) in self.posts.items() if author != uid]
        if not others:
            return
        pid = others[k % len(others)]
        try:
            self.run(self.hf.delete_post(uid, pid))
        except Forbidden:
            assert pid not in self.deleted, f"Forbidden for deleted post {pid} (want NotFound)"
        except NotFound:
            assert pid in self.deleted, f"NotFound for existing post {pid}"
        else:
            raise AssertionError(f"user {uid} deleted post {pid} of user {self.posts[pid][0]}")
        if pid not in self.deleted:  # nothing changed
            got = self.run(self.hf.get_post(pid))
            assert got["text"] == self.posts[pid][1]

    @rule(a=st.integers(0, MAX_USERS - 1), limit=st.integers(1, 4), pages=st.integers(1, 4))
    def read_home(self, a: int, limit: int, pages: int) -> None:
        """A read at a random time (no drain): it also creates a cached timeline, which changes
        which fan-out paths the next writes take. May lag, must not be wrong."""
        uid, handle = self.user(a)
        before: int | None = None
        seen: list[int] = []
        for n in range(pages):
            got = self.run(self.hf.home_timeline(uid, limit, before))
            ids = self.check_page(f"home of {handle} page {n}", got, limit)
            seen.extend(ids)
            if got["next"] is None:
                break
            before = int(got["next"])
        self.assert_sound(f"home of {handle} (no drain)", uid, seen)
        assert seen == sorted(set(seen), reverse=True), f"home of {handle}: order/repeats {seen}"

    @rule(limit=st.integers(1, 4))
    def everyone_reads(self, limit: int) -> None:
        """Every user reads a page: every home timeline is cached from now on, so the next
        writes take the push / merge / unmerge / demotion paths for all of them."""
        for i in range(len(self.users)):
            self.read_home(i, limit, 1)

    @rule(q=st.sampled_from(QUERIES), limit=st.integers(1, 4))
    def search_now(self, q: str, limit: int) -> None:
        """Search without draining: may miss a new post, never shows a wrong one."""
        got = self.run(self.hf.search(q, limit))
        ids = self.check_page(f"search {q!r}", got, limit)
        need = model_query_terms(q)
        assert need == set(query_terms(q))
        for pid in ids:
            assert pid not in self.deleted, f"search {q!r}: deleted post {pid}"
            assert need <= model_index_terms(self.posts[pid][1]), f"search {q!r}: {pid} no match"
        assert ids == sorted(set(ids), reverse=True)

    @rule(ops=st.lists(
        st.tuples(st.sampled_from(["post", "follow", "unfollow", "delete", "read"]),
                  st.integers(0, MAX_USERS - 1), st.integers(0, 50)),
        min_size=2, max_size=8))
    def concurrent_burst(self, ops: list[tuple[str, int, int]]) -> None:
        """Several requests at once on the loop (as the HTTP server runs them): they
        interleave at every await, with each other and with the consumers. Each follow pair
        and each post to delete appears once, so the resulting records are known."""
        coros: list[Awaitable[Any]] = []
        plan: list[tuple[str, Any]] = []
        pairs: set[tuple[int, int]] = set()
        targeted: set[int] = set()
        for n, (kind, a, b) in enumerate(ops):
            uid, _ = self.user(a)
            if kind == "post":
                text = f"burst {n} {VOCAB[b % len(VOCAB)]}"
                coros.append(self.hf.create_post(uid, text))
                plan.append(("post", (uid, text)))
            elif kind in ("follow", "unfollow"):
                fb, hb = self.user(b)
                if fb == uid or (uid, fb) in pairs:
                    continue
                pairs.add((uid, fb))
                coros.append((self.hf.follow if kind == "follow" else self.hf.unfollow)(uid, hb))
                plan.append((kind, (uid, fb)))
            elif kind == "delete":
                own = [p for p in self.live() if self.posts[p][0] == uid and p not in targeted]
                if not own:
                    continue
                pid = own[b % len(own)]
                targeted.add(pid)
                coros.append(self.hf.delete_post(uid, pid))
                plan.append(("delete", pid))
            else:
                coros.append(self.hf.home_timeline(uid, 1 + b % 4))
                plan.append(("read", (uid, 1 + b % 4)))
        async def together() -> list[Any]:
            return await asyncio.gather(*coros)

        results = self.run(together())
        new_posts = []
        for (kind, arg), res in zip(plan, results):
            if kind == "post":
                assert res["text"] == arg[1] and res["author"]["id"] == str(arg[0]), res
                new_posts.append((int(res["id"]), arg[0], arg[1]))
            elif kind == "follow":
                assert res == {"following": True}
                before = self.followers_count(arg[1])
                self.follows.add(arg)
                if before < THRESHOLD <= self.followers_count(arg[1]):
                    event("crossed the celebrity threshold up (concurrently)")
            elif kind == "unfollow":
                assert res == {"following": False}
                before = self.followers_count(arg[1])
                self.follows.discard(arg)
                if before >= THRESHOLD > self.followers_count(arg[1]):
                    self.demoted += 1
                    event("crossed the celebrity threshold down (concurrently)")
            elif kind == "delete":
                self.deleted.add(arg)
        for pid, uid, text in sorted(new_posts):  # commit order is id order
            assert pid > self.last_id and pid not in self.posts, f"post id {pid} out of order"
            self.last_id = pid
            self.seq += 1
            self.posts[pid] = (uid, text, self.seq)
        for (kind, arg), res in zip(plan, results):
            if kind == "read":  # it ran among the writes: only its shape can be checked
                ids = self.check_page(f"concurrent read of {arg[0]}", res, arg[1])
                assert ids == sorted(set(ids), reverse=True), ids

    @rule(limits=st.lists(st.integers(1, 4), min_size=1, max_size=3))
    def drain_and_check(self, limits: list[int]) -> None:
        self.check_everything(limits)

    @precondition(lambda self: self.manual)
    @rule(which=st.integers(0, 1), k=st.integers(1, 6))
    def consume(self, which: int, k: int) -> None:
        """Apply the next ``k`` events of one consumer (manual mode)."""
        names = self.consumer_names()
        self.run(self.hf.consumers.run_once(names[which % len(names)], k))

    @precondition(lambda self: self.restarts < 2)
    @rule(crash=st.booleans(), drain_first=st.booleans(), k=st.integers(1, 6))
    def restart(self, crash: bool, drain_first: bool, k: int) -> None:
        """Close and reopen on the same data dir: every cache starts empty, the consumers
        resume from their stored offsets. ``crash`` stops the consumers abruptly; in manual
        mode it applies the next ``k`` events of each consumer without acknowledging them,
        as a crash between applying and acknowledging would: they are delivered again."""
        self.restarts += 1
        note(f"restart #{self.restarts} crash={crash} drain_first={drain_first}")
        if drain_first:
            self.run(self.hf.drain())
        if crash:
            self.cancel_consumers()
            if self.manual:
                for name in self.consumer_names():
                    events = self.run(self.hf.stream.fetch(name, k, timeout=0))
                    self.run(self.hf.consumers.handlers[name](events))  # never acknowledged
                    if events:
                        event("events applied and not acknowledged before a restart")
        self.run(self.hf.close())
        for key, v in getattr(self.hf.feed, "counters", {}).items():
            self.old_counters[key] = self.old_counters.get(key, 0) + v
        self.hf = self.open()


class TestHomefeedOracle(HomefeedMachine.TestCase):  # type: ignore[misc, valid-type]
    pytestmark = [pytest.mark.slow]
    settings = settings.get_profile(PROFILE)
