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

Conversations (issue 11, docs/conversations.md) are part of the records: replies to any post
(gone, or deleted later; self-replies are threads), boosts (of boosts too) and their undoing,
favourites and their undoing, mentions (``@handle`` of existing accounts, any case), and
each reader's dismissals and clears. The model of those records and every view computed from
them is ``oracle_model.Records`` (the follow and favourite ids, which notifications carry, are
learnt from the followers and favourites lists' cursors; nothing else is read back). After a
drain, every home also obeys the reply and boost rules, and:

- every status's context (ancestors up to the first gone post, descendants depth first);
- every post's counters (replies, reblogs, favourites) and each viewer's flags (post_stats);
- every user's whole notification list (the Mastodon use case, paged with ``max_id``) is
  the function of the records minus dismissals and ids at or below the cleared id.

The boost rule looks at the 40 entries older than a boost: most examples set FeedManager's
module constant ``BOOST_WINDOW`` (read at call time) to 3 or 1, and the oracle uses the same
number, so that the window decides often with a few dozen posts; the others keep 40 and may
have one long run of ~40 posts by one author.

Between checks, without draining, reads may lag behind the writes but must never be wrong:
a page never holds a deleted post, a post by someone the reader does not follow, a reply to
someone the reader does not follow, a boost of the reader's own or of a gone post, a post out
of order or twice, and a short page has no ``next``; a notification list never holds one of
the reader's own actions, a dismissed or cleared one, or one about a gone post. Right after ``create_post`` the
author's own home timeline starts with the new post (read-your-writes).

The outside world hears it all (README "Webhooks" and "Email"): half the examples (the
other half keep the run's time: rendering, sending and mailing every event costs) subscribe a
real HTTP receiver (``tests/webhook_kit.py``) to every webhook event before the first account
exists, and accounts registered at an even position have an email address, with a real SMTP
server (``tests/mail_kit.py``, bundling off: one mail per cause). The receiver and the
inbox keep every request of the example and the model keeps the history, so the outside
world is checked once, at the example's end (after every drain as well with
``HOMEFEED_ORACLE_OUTSIDE_EVERY_DRAIN=1``): the webhook dispatcher and the mail loop are let
settle (nothing pending, nothing waiting for a mail; in manual mode they are run here, as
they are the consumers' companions), and then:

- every webhook request carries a valid Standard Webhooks signature (``standardwebhooks``),
  one ``webhook-id`` always carries the same body, and every ``webhook-id`` was answered 2xx
  at last (some examples' receiver fails the first attempt of a third of the messages: they
  are retried, with the same id); delivered twice only if the second copy came after the
  first crash restart, or after the first stop that cut an attempt still sending (the
  dispatcher counts those: on a starved machine a stop's grace can run out);
- the messages delivered, one per ``webhook-id``, are exactly what the model's history says
  happened (``Records.webhooks``): every account, post, deletion, mention, follow, unfollow,
  favourite and boost, nothing that did not happen, no event under two ids (a favourite or
  boost whose original existed at a drain after it was rendered then: its message must
  arrive even if the original is deleted later);
- the mails are exactly one per mention of and per new follower of an account with an email
  (``Records.mails``), each to that address, naming the actor, its ``Message-ID`` derived
  from its cause (distinct causes, distinct ids), none sent twice but after a crash restart
  (the second copy after it).

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
import atexit
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import homefeed.service_layer.feed as feed_module
from homefeed.bootstrap import mail_store, open_homefeed, webhook_store
from homefeed.config import Settings
from homefeed.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from homefeed.domain.mastodon.content import extract_mentions
from homefeed.domain.mastodon.entities import Urls
from homefeed.domain.mastodon.pagination import Page
from homefeed.domain.text import index_terms, query_terms
from homefeed.domain.webhooks import EVENT_TYPES
from homefeed.service_layer.consumers import MAILER, WEBHOOKS
from homefeed.service_layer.mastodon import MastodonApi
from homefeed.service_layer.webhooks import WebhookAdmin
from tests.mail_kit import MESSAGE_ID, SmtpServer, actor_of, by_message_id
from tests.webhook_kit import Receiver, Received, verify

from .oracle_model import Records, model_mentions

T = TypeVar("T")

THRESHOLD = 3
CAP = 5
MAX_USERS = 10
URLS = Urls("http://oracle.test")
#: The mails' domain (their Message-IDs'): the host of the public URL.
MAIL_DOMAIN = "oracle.test"
#: A fast retry schedule (webhooks and mails): a failed attempt is tried again at once.
RETRY_SCHEDULE = ",".join(["0.01s"] * 6)
#: Seconds the dispatcher and the mail loop sleep when nothing woke them (1 s in the
#: product) while the test waits for them to settle: a retry is due 0.01 s after its
#: failure, and nothing wakes them for it. (Between checks they keep the product's pace:
#: polling that often all the time would cost the whole run much more than the settling.)
SETTLE_POLL = 0.01
#: A hang guard for the webhook dispatcher and the mail loop to settle (not a speed check).
SETTLE_TIMEOUT = 60.0
#: The outside world is checked at each example's end, against the whole history the model
#: keeps (the receiver and the inbox keep every request); ``1`` checks it after every drain
#: as well (each check lets the dispatcher and the mail loop settle: slower).
OUTSIDE_EVERY_DRAIN = os.environ.get("HOMEFEED_ORACLE_OUTSIDE_EVERY_DRAIN", "") == "1"
#: The product's boost window (feed_rules.BOOST_WINDOW, which FeedManager reads from its
#: module at call time). Some examples run with a small window instead, so that the
#: window decides often with homes of a few dozen posts.
REAL_WINDOW = feed_module.BOOST_WINDOW

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
# the outside world: one webhook receiver and one SMTP server for every example (each example
# has its own receiver path and email addresses, and resets them)
# --------------------------------------------------------------------------------------------

_OUTSIDE: dict[str, Any] = {}
_EXAMPLES = itertools.count(1)


def outside_world() -> tuple[Receiver, SmtpServer]:
    if not _OUTSIDE:
        _OUTSIDE["rx"], _OUTSIDE["smtp"] = Receiver(), SmtpServer()
        atexit.register(_OUTSIDE["smtp"].close)
        atexit.register(_OUTSIDE["rx"].close)
    return _OUTSIDE["rx"], _OUTSIDE["smtp"]


def hook_key(payload: dict[str, Any]) -> tuple[str, int, int]:
    """A webhook message as the model names it (``Records.webhooks``)."""
    t, d = payload["type"], payload["data"]
    if t in ("account.created", "status.created", "status.deleted"):
        return (t, int(d["id"]), 0)
    if t == "mention.created":
        return (t, int(d["status"]["id"]), int(d["account"]["id"]))
    if t in ("follow.created", "follow.deleted"):
        return (t, int(d["account"]["id"]), int(d["target_account"]["id"]))
    return (t, int(d["account"]["id"]), int(d["status"]["id"]))  # favourite, reblog


def flaky_answer(r: Received, attempt: int) -> int:
    """The first attempt of a third of the messages fails (500: retried on the schedule)."""
    return 500 if attempt == 1 and zlib.crc32(r.msg_id.encode()) % 3 == 0 else 204


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
        # -- the model of the records (oracle_model.Records; the names below are its parts) --
        self.m = Records(REAL_WINDOW)
        self.users = self.m.users  # (id, handle), in registration order
        self.follows = self.m.follows  # (follower, followee)
        self.posts = self.m.posts  # id -> (author, text, creation seq)
        self.deleted = self.m.deleted
        self.unlisted = self.m.unlisted  # posts kept off the public timeline
        self.masto: MastodonApi | None = None
        self.long_runs = 0
        self.seq = 0
        self.last_id = 0
        self.restarts = 0
        self.demoted = 0
        self.old_counters: dict[str, int] = {}  # FeedManager counters of closed instances
        # -- the outside world: this example's receiver path, secret and email addresses --
        self.rx, self.smtp = outside_world()
        self.rx.reset()
        self.smtp.inbox.reset()
        self.example = next(_EXAMPLES)
        self.hook_url = f"{self.rx.url}/{self.example}"
        self.secret = ""
        self.emails: dict[int, str] = {}  # user id -> email address
        self.crashed = False  # a crash restart happened: a message may have been sent twice
        # how many webhook requests and mails had arrived when the first crash restart was
        # over: a message sent twice is excused only if the second copy came after it
        self.crash_mark: tuple[int, int] | None = None
        # webhook requests that had arrived when the first stop that cut an attempt was over
        self.cut_mark: int | None = None
        self.outside = False  # this example has a webhook subscription and mail
        # webhook requests checked so far (each is verified once): how many, and by webhook-id
        # its key, bodies and statuses
        self.hooks_seen = 0
        # (the statuses as (request's position among the receiver's, status))
        self.hooks: dict[str, tuple[tuple[str, int, int], set[bytes], list[tuple[int, int]]]] = {}

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def open(self) -> Any:
        hf = self.run(open_homefeed(self.settings, run_consumers=not self.manual))
        self.masto = MastodonApi(hf)
        return hf

    @property
    def conv(self) -> Any:
        assert self.masto is not None
        return self.masto.conversations

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
                # every example ends with a full check, the outside world's included
                self.check_everything([1, 2, 3], outside=True)
        finally:
            try:
                if self.hf is not None:
                    self.cancel_consumers()  # no need to wait for a clean stop here
                    self.run(self.hf.close())
            finally:
                feed_module.BOOST_WINDOW = REAL_WINDOW
                self.loop.close()
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------
    def learn_follow_ids(self, followee: int) -> None:
        """The ids of the follows of ``followee`` that the model does not know yet (a
        follow notification's id is its follow's): the followers list's cursors, paged one
        by one. Identities only: what the notifications are is computed by the model."""
        handle = dict(self.users)[followee]
        before = None
        seen: dict[int, int] = {}
        for _ in range(MAX_USERS + 1):
            page = self.run(self.hf.followers(handle, 1, before))
            if not page["users"]:
                break
            before = int(page["next"])
            seen[int(page["users"][0]["id"])] = before
        for a, b in self.follows:
            if b == followee and (a, b) not in self.m.follow_ids:
                self.m.follow_ids[(a, b)] = seen[a]

    def learn_favourite_ids(self, uid: int) -> None:
        """The ids of the user's favourites the model does not know yet (0): the cursors of
        their favourites list (``/api/v1/favourites``), paged to the end."""
        seen: dict[int, int] = {}
        max_id = None
        for _ in range(100):
            body, fids = self.run(self.conv.favourites(URLS, uid, Page(limit=40, max_id=max_id)))
            if not fids:
                break
            seen.update(zip((int(s["id"]) for s in json.loads(body)), fids))
            max_id = fids[-1]
        for (u, p), fid in self.m.favourites.items():
            if u == uid and not fid:
                self.m.favourites[(u, p)] = seen[p]

    def add_post(self, pid: int, uid: int, text: str, *, parent: int | None = None,
                 reblog_of: int | None = None, unlisted: bool = False) -> None:
        """A post the service made (in commit order): into the model."""
        assert pid not in self.posts, f"post id {pid} reused"
        assert pid > self.last_id, f"post id {pid} not above the previous id {self.last_id}"
        self.last_id = pid
        self.seq += 1
        if reblog_of is None:  # the model's mention syntax is the product's
            assert model_mentions(text) == extract_mentions(text), text
        self.m.add_post(pid, uid, text, self.seq, parent=parent, reblog_of=reblog_of,
                        unlisted=unlisted)

    def user(self, i: int) -> tuple[int, str]:
        return self.users[i % len(self.users)]

    def live(self) -> list[int]:
        """Ids of the posts that exist, newest first (creation order, not id order)."""
        return self.m.live()

    def oracle_home(self, uid: int) -> list[int]:
        """The home rules of docs/conversations.md (author, reply, boost) over the records."""
        return self.m.home(uid)

    def oracle_user_posts(self, uid: int) -> list[int]:
        return self.m.user_posts(uid)

    def oracle_search(self, q: str) -> list[int]:
        need = model_query_terms(q)
        return [pid for pid in self.live() if need <= model_index_terms(self.posts[pid][1])]

    def followers_count(self, uid: int) -> int:
        return sum(1 for _, b in self.follows if b == uid)

    def check_page(self, where: str, got: dict[str, Any], limit: int,
                   transient: frozenset[int] | set[int] = frozenset()) -> list[int]:
        """A page's shape, and each post as created (``transient``: ids checked by the caller,
        posts made and taken away while a concurrent read ran)."""
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
            if pid in transient:
                continue
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
        """What a home page may hold even before the consumers caught up: no deleted post
        (nor a boost whose original is gone), only the reader's and followees' posts, no
        reply to someone the reader does not follow, no boost of the reader's own post."""
        following = self.m.following(uid)
        for pid in ids:
            author = self.posts[pid][0]
            assert pid not in self.deleted, f"{where}: deleted post {pid} shown"
            assert author == uid or author in following, (
                f"{where}: post {pid} by {author}, whom user {uid} does not follow")
            assert self.m.is_entry(uid, pid, following), (
                f"{where}: reply {pid} by {author} to {self.m.parent_author.get(pid)}, whom "
                f"user {uid} does not follow")
            o = self.m.reblog_of.get(pid)
            if o is not None:
                assert self.m.exists(o), f"{where}: boost {pid} of gone post {o} shown"
                assert self.posts[o][0] != uid, f"{where}: boost {pid} of the reader's own post {o}"

    def note_rendered(self) -> None:
        """Right after a drain: the model notes the favourites and boosts rendered by now."""
        self.m.drained()

    def dispatcher(self) -> Any:
        return self.hf.consumers.companions[WEBHOOKS].__self__  # type: ignore[attr-defined]

    def after_crash(self, n: int) -> bool:
        """Whether the ``n``-th webhook request (or mail, ``n`` negative: -1-n-th) came
        after the first crash restart."""
        if n >= 0 and self.cut_mark is not None and n >= self.cut_mark:
            return True
        if self.crash_mark is None:
            return False
        return n >= self.crash_mark[0] if n >= 0 else -1 - n >= self.crash_mark[1]

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
    def check_everything(self, limits: list[int], outside: bool = OUTSIDE_EVERY_DRAIN) -> None:
        """After a drain, every derived view equals the oracle's. The outside world (webhooks,
        mails) is checked when ``outside`` (the example's end; every drain with
        ``HOMEFEED_ORACLE_OUTSIDE_EVERY_DRAIN=1``); at the other drains the model notes which
        favourites and boosts the webhooks consumer has rendered by now (``note_rendered``)."""
        self.run(self.hf.drain())
        self.note_rendered()
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
        masto = self.masto
        assert masto is not None
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
        want_pub = self.m.public()  # no boosts, no replies to others
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
        self.check_conversations(limits)
        if outside:
            self.check_outside_world()

    def check_conversations(self, limits: list[int]) -> None:
        """After a drain: every status's context, every post's counters and each viewer's
        flags, and every user's whole notification list equal the function of the records."""
        live = self.live()
        for pid in live:
            viewer = self.users[pid % len(self.users)][0]
            ctx = json.loads(self.run(self.conv.context(URLS, pid, viewer)))
            got_up = [int(s["id"]) for s in ctx["ancestors"]]
            got_down = [int(s["id"]) for s in ctx["descendants"]]
            assert got_up == self.m.ancestors(pid), (
                f"ancestors of {pid}: {got_up} != oracle {self.m.ancestors(pid)}")
            assert got_down == self.m.descendants(pid), (
                f"descendants of {pid}: {got_down} != oracle {self.m.descendants(pid)}")
        for viewer, handle in self.users:
            stats = self.run(self.hf.store.post_stats(live, viewer))
            assert set(stats) == set(live), f"post_stats of {handle}: {sorted(set(live) - set(stats))} missing"
            for pid in live:
                st_ = stats[pid]
                got_c = (st_.replies_count, st_.reblogs_count, st_.favourites_count)
                assert got_c == self.m.counters(pid), (
                    f"counters (replies, reblogs, favourites) of {pid}: {got_c} != "
                    f"oracle {self.m.counters(pid)}")
                flags = (st_.favourited, st_.reblogged)
                want_flags = ((viewer, pid) in self.m.favourites, self.m.boost_of(viewer, pid) is not None)
                assert flags == want_flags, f"{handle}'s flags on {pid}: {flags} != {want_flags}"
        for uid, handle in self.users:
            got_n = self.notification_list(uid, limits)
            want_n = [tuple(n) for n in self.m.notifications(uid)]
            assert got_n == want_n, (
                f"notifications of {handle} ({uid}) after drain\n  got:    {got_n}\n"
                f"  oracle: {want_n}\n  missing: {[n for n in want_n if n not in got_n]}\n"
                f"  extra:   {[n for n in got_n if n not in want_n]}")
            if want_n:
                event("a user has notifications at a check")
        if self.m.dismissed and any(self.m.dismissed.values()):
            event("a dismissal exists at a check")
        if any(self.m.boost_shadowed(u) for u, _ in self.users):
            event(f"the boost window ({self.m.window}) hides a boost at a check")

    # -- the outside world: webhooks and mails ---------------------------------------------
    def settle_outside_world(self) -> None:
        """After a drain: wait until every webhook delivery is delivered, every mail sent
        and no notification waits for its mail (a delivery or mail that is dead fails at
        once). In manual mode no companion runs in the background: the dispatcher and the
        mail loop run here until then."""
        async def settle() -> None:
            hooks, mails = webhook_store(self.hf), mail_store(self.hf)
            companions = [self.hf.consumers.companions[name] for name in (WEBHOOKS, MAILER)]
            paces = [c.__self__.poll for c in companions]  # the dispatcher's, the mail loop's
            for c in companions:
                c.__self__.poll = SETTLE_POLL
                c.__self__.wake()
            stop = asyncio.Event()
            tasks = [asyncio.create_task(c(stop)) for c in companions] if self.manual else []
            try:
                deadline = self.loop.time() + SETTLE_TIMEOUT
                while True:
                    # notifications first: one seen in a mail is then in the counts read after
                    unmailed = self.hf.store.db.query_value(
                        "SELECT count(*) FROM mail_notifications WHERE mail_id IS NULL")
                    hc, mc = await hooks.delivery_counts(), await mails.mail_counts()
                    stuck = {k: v for k, v in {**hc, **mc}.items() if k not in ("pending", "delivered", "sent")}
                    assert not stuck, f"webhook deliveries or mails given up: {hc}, {mc}"
                    if set(hc) <= {"delivered"} and set(mc) <= {"sent"} and not unmailed:
                        return
                    assert self.loop.time() < deadline, (
                        f"webhooks and mails not settled after {SETTLE_TIMEOUT}s: {hc}, {mc}, "
                        f"{unmailed} notifications without a mail")
                    await asyncio.sleep(0.002)
            finally:
                stop.set()
                await asyncio.gather(*tasks)
                for c, pace in zip(companions, paces):
                    c.__self__.poll = pace

        self.run(settle())

    def check_outside_world(self) -> None:
        """Webhooks and mails equal what the model's history makes (see the module doc)."""
        if not self.outside:
            return
        self.settle_outside_world()
        must, may = self.m.webhooks()
        first = self.hooks_seen
        new = self.rx.snapshot()[first:]
        self.hooks_seen += len(new)
        for n, r in enumerate(new, first):
            if r.path != f"/hook/{self.example}":  # a request of the example before, cut by its end
                continue
            payload = verify(self.secret, r)  # every attempt is signed
            key, bodies, statuses = self.hooks.setdefault(r.msg_id, (hook_key(payload), set(), []))
            bodies.add(r.body)
            statuses.append((n, r.status))
        got: Counter[tuple[str, int, int]] = Counter()
        for msg_id, (key, bodies, statuses) in self.hooks.items():
            assert len(bodies) == 1, f"webhook-id {msg_id} ({key}): different bodies"
            ok = [n for n, s in statuses if 200 <= s < 300]
            assert ok, f"webhook {msg_id} {key} never delivered: {statuses}"
            assert len(ok) == 1 or self.after_crash(ok[-1]), (
                f"webhook {msg_id} {key} delivered {len(ok)} times (requests {ok}, the first "
                f"crash restart ended at request {self.crash_mark}, the first stop that cut an"
                f" attempt at {self.cut_mark})")
            if len(statuses) > 1:
                event("a webhook was sent again (same webhook-id)")
            got[key] += 1
        missing, extra = must - got, got - may
        assert not missing and not extra, (
            f"webhooks after drain: missing {sorted(missing.elements())}\n"
            f"  extra (or under two webhook-ids) {sorted(extra.elements())}\n  got {sorted(got.elements())}")
        if got:
            event("webhooks checked")

        want_mentions, want_follows = self.m.mails(set(self.emails))
        address = {a: uid for uid, a in self.emails.items()}
        names = {h.lower(): uid for uid, h in self.users}
        got_mentions: Counter[tuple[int, int]] = Counter()
        got_follows: Counter[tuple[int, int]] = Counter()
        inbox = self.smtp.inbox.snapshot()
        mine = [(rc, m) for rc, m in inbox if set(rc) & set(address)]
        last_copy = {str(m["Message-ID"]): i for i, (rc, m) in enumerate(inbox) if set(rc) & set(address)}
        for msg_id, copies in by_message_id(mine).items():
            parsed = MESSAGE_ID.fullmatch(msg_id)
            assert parsed and parsed.group(4) == MAIL_DOMAIN, f"Message-ID {msg_id!r}"
            kind, n, uid = parsed.group(1), int(parsed.group(2)), int(parsed.group(3))
            assert len(copies) == 1 or self.after_crash(-1 - last_copy[msg_id]), (
                f"mail {msg_id} sent {len(copies)} times (the last is mail {last_copy[msg_id]}, the "
                f"first crash restart ended at mail {self.crash_mark})")
            for rc, m in copies:
                assert rc == [self.emails.get(uid)] and m["To"] == self.emails.get(uid), (msg_id, rc, m["To"])
            actor = names[actor_of(copies[0][1])]
            if kind == "mention":
                assert self.posts[n][0] == actor, f"mail {msg_id} names {actor}, not the post's author"
                got_mentions[(uid, n)] += 1
            else:
                got_follows[(uid, actor)] += 1
        assert got_mentions == want_mentions, (
            f"mention mails: missing {sorted((want_mentions - got_mentions).elements())}, "
            f"extra {sorted((got_mentions - want_mentions).elements())}")
        assert got_follows == want_follows, (
            f"new-follower mails (recipient, follower): missing {sorted((want_follows - got_follows).elements())},"
            f" extra {sorted((got_follows - want_follows).elements())}")
        if got_mentions or got_follows:
            event("mails checked")

    def notification_list(self, uid: int, limits: list[int]) -> list[tuple[int, str, int, int | None]]:
        """The user's whole notification list through the Mastodon use case, paged with
        ``max_id``: (id, type, from, status id) newest first."""
        out: list[tuple[int, str, int, int | None]] = []
        max_id = None
        for n in range(400):
            body, ids = self.run(self.conv.notifications(
                URLS, uid, Page(limit=limits[n % len(limits)], max_id=max_id), [], [], None))
            got = json.loads(body)
            assert [int(x["id"]) for x in got] == ids, (body, ids)
            if not got:
                return out
            for x in got:
                status = x.get("status")
                out.append((int(x["id"]), x["type"], int(x["account"]["id"]),
                            int(status["id"]) if status else None))
            max_id = ids[-1]
        raise AssertionError(f"notifications of {uid}: more than 400 pages")

    # -- rules --------------------------------------------------------------------------------
    @initialize(small_caches=st.booleans(), manual_consumers=st.booleans(),
                window=st.sampled_from([3, 1, REAL_WINDOW]), outside_world=st.booleans(),
                flaky_receiver=st.booleans())
    def open_with_four_users(self, small_caches: bool, manual_consumers: bool,
                             window: int = REAL_WINDOW, outside_world: bool = True,
                             flaky_receiver: bool = False) -> None:
        """``small_caches``: room for 3 timelines of each kind and 4 posts, so lists are
        evicted all the time (rebuilt on read, skipped by fan-out) and hydration goes to the
        database. ``manual_consumers``: no consumer runs in the background; the ``consume``
        rule applies a few events at a time, so reads and searches see derived stores that
        lag behind the writes by a chosen amount (each consumer by its own). ``window``:
        the boost window. The product's is 40 entries; with the few dozen posts of an example
        it rarely decides, so most examples set ``FeedManager``'s module constant (read at
        call time) to 3 or 1, and the oracle uses the same number. ``outside_world``: a
        webhook subscription (every event, added before the first account exists) and SMTP;
        ``flaky_receiver``: the webhook receiver fails the first attempt of a third of the
        messages."""
        feed_module.BOOST_WINDOW = self.m.window = window
        event(f"boost window {window}")
        self.settings = Settings(
            data_dir=self.tmp, celebrity_threshold=THRESHOLD, timeline_cap=CAP,
            sqlite_synchronous="NORMAL",  # durability is test_crash's business; speed here
            public_url="http://oracle.test", webhooks_allow_private=True,
            webhook_retry_schedule=RETRY_SCHEDULE, mail_bundle_seconds=0,
            **(dict(smtp_url=self.smtp.url, mail_from=f"homefeed@{MAIL_DOMAIN}") if outside_world else {}),
            **(dict(cache_max_timelines=3, cache_max_posts=4) if small_caches else {}),
        )
        self.manual = manual_consumers
        if small_caches:
            event("small caches")
        if manual_consumers:
            event("manual consumers")
        self.hf = self.open()
        self.outside = outside_world
        if outside_world:
            event("webhooks and mail")
            self.rx.answer = flaky_answer if flaky_receiver else (lambda r, n: 204)
            if flaky_receiver:
                event("flaky webhook receiver")
            sub = self.run(WebhookAdmin(webhook_store(self.hf), True).add(self.hook_url, ",".join(EVENT_TYPES)))
            self.secret = sub["secret"]
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
        if self.outside and len(self.users) % 2 == 0:  # before anyone can follow or mention them
            self.emails[uid] = f"{handle.lower()}.{self.example}@mail.test"
            assert self.run(self.hf.store.set_password(uid, "not-a-hash", email=self.emails[uid]))
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
        if self.m.followed(fa, fb):
            self.learn_follow_ids(fb)
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
        self.m.unfollowed(fa, fb)
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
            assert got["text"] == text and got["author"] == {"id": str(uid), "handle": handle}
            self.add_post(pid, uid, text, unlisted=unlisted)
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
        if len(self.m.delete(pid)) > 1:
            event("deleting an original deleted its boosts")
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

    # -- conversations: replies, boosts, favourites, mentions, notifications --------------------
    def any_post(self, k: int) -> int | None:
        """Any post ever written: live or gone, an original or a boost."""
        ids = sorted(self.posts)
        return ids[k % len(ids)] if ids else None

    def write_reply(self, a: int, target: int, text: str, read_your_write: bool = False) -> None:
        """Reply to ``target`` (to its original if it is a boost); NotFound if it is gone."""
        uid, handle = self.user(a)
        try:
            post = self.run(self.hf.write_post(uid, text, in_reply_to_id=target))
        except NotFound:
            assert not self.m.exists(target), f"reply to live post {target}: NotFound"
            return
        assert self.m.exists(target), f"reply to gone post {target} accepted as {post.id}"
        parent = self.m.original(target)
        assert (post.in_reply_to_id, post.in_reply_to_account_id) == (parent, self.posts[parent][0]), post
        self.add_post(post.id, uid, text, parent=parent)
        event("a self-reply (thread)" if self.posts[parent][0] == uid else "a reply to another")
        if read_your_write:  # the author sees their reply at once, to whomever it is
            page = self.run(self.hf.home_timeline(uid, 1))
            assert page["posts"] and page["posts"][0]["id"] == str(post.id), (
                f"read-your-writes: {handle}'s home starts with {page['posts'][:1]}, not reply {post.id}")

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 200),
          parts=st.lists(st.tuples(st.sampled_from(VOCAB), st.sampled_from(SEPARATORS)), min_size=1, max_size=3),
          read_your_write=st.booleans())
    def reply(self, a: int, k: int, parts: list[tuple[str, str]], read_your_write: bool) -> None:
        """A reply to any post ever written (possibly deleted, possibly deleted later)."""
        target = self.any_post(k)
        if target is not None:
            text = "".join(w + s for w, s in parts).strip() or parts[0][0]
            self.write_reply(a, target, text, read_your_write)

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 50), text=st.sampled_from(VOCAB))
    def reply_in_thread(self, a: int, k: int, text: str) -> None:
        """A self-reply (a thread): shown like a post to the author's followers."""
        uid, _ = self.user(a)
        own = [p for p in self.live() if self.posts[p][0] == uid and p not in self.m.reblog_of]
        if own:
            self.write_reply(a, own[k % len(own)], text)

    @rule(a=st.integers(0, MAX_USERS - 1), who=st.lists(
        st.tuples(st.integers(0, MAX_USERS - 1), st.sampled_from([str, str.lower, str.upper])),
        min_size=1, max_size=3), word=st.sampled_from(VOCAB), k=st.none() | st.integers(0, 200))
    def mention(self, a: int, who: list[tuple[int, Any]], word: str, k: int | None) -> None:
        """A post (or a reply) mentioning accounts by ``@handle`` in any case; a handle not
        registered yet is no mention."""
        text = " ".join("@" + case(HANDLES[i]) for i, case in who) + " " + word
        target = self.any_post(k) if k is not None else None
        if target is None:
            self.post(a, [[(text, "")]], False)
        else:
            self.write_reply(a, target, text)

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 200), read_after=st.booleans())
    def boost(self, a: int, k: int, read_after: bool) -> None:
        """Boost any post (a boost: its original; gone: NotFound; twice: the same boost)."""
        uid, _ = self.user(a)
        target = self.any_post(k)
        if target is None:
            return
        try:
            got = json.loads(self.run(self.conv.reblog(URLS, uid, target, "public")))
        except NotFound:
            assert not self.m.exists(target), f"boost of live post {target}: NotFound"
            return
        assert self.m.exists(target), f"boost of gone post {target} accepted"
        o = self.m.original(target)
        bid = int(got["id"])
        assert int(got["reblog"]["id"]) == o and got["reblog"]["reblogged"] is True, got
        before = self.m.boost_of(uid, o)
        if before is not None:
            assert bid == before, f"boosting {o} again made {bid}, not {before}"
        else:
            self.add_post(bid, uid, "", reblog_of=o)
            event("boosted a boost" if target != o else "boosted a post")
            if self.posts[o][0] == uid:
                event("boosted an own post")
        assert got["reblog"]["reblogs_count"] == self.m.counters(o)[1], got["reblog"]
        if read_after:  # may lag, must not be wrong (no boost of the reader's own post...)
            self.read_home(a, 4, 3)

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 5), read_after=st.booleans())
    def boost_recent(self, a: int, k: int, read_after: bool) -> None:
        """Boost one of the newest posts (or boosts): boosts of one post close together, and
        close to it, which is where the boost window decides."""
        live = self.live()
        if live:
            self.boost(a, sorted(self.posts).index(live[k % len(live)]), read_after)

    @rule(a=st.integers(0, 1), k=st.integers(0, 5))
    def popular_boosts(self, a: int, k: int) -> None:
        """A popular user (many followers) boosts a recent post."""
        self.boost_recent(a, k, False)

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 200), by_original=st.booleans())
    def unboost(self, a: int, k: int, by_original: bool) -> None:
        """Undo a boost, named by the boost or by its original (any post when the user has
        no boost: nothing to undo)."""
        uid, _ = self.user(a)
        mine = sorted(b for b in self.m.reblog_of if self.posts[b][0] == uid)
        target = mine[k % len(mine)] if mine else self.any_post(k)
        if target is None:
            return
        if by_original:
            target = self.m.original(target)
        try:
            got = json.loads(self.run(self.conv.unreblog(URLS, uid, target)))
        except NotFound:
            assert not self.m.exists(target), f"unboost of live post {target}: NotFound"
            return
        assert self.m.exists(target), f"unboost of gone post {target} answered"
        o = self.m.original(target)
        b = self.m.boost_of(uid, o)
        if b is not None:
            self.m.delete(b)
            event("undid a boost")
        assert int(got["id"]) == o and got["reblogged"] is False, got
        assert got["reblogs_count"] == self.m.counters(o)[1], got

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 200), on=st.booleans())
    def favourite(self, a: int, k: int, on: bool) -> None:
        """Favourite any post (a boost: its original), or undo one of the user's favourites."""
        uid, _ = self.user(a)
        mine = sorted(p for u, p in self.m.favourites if u == uid)
        target = mine[k % len(mine)] if mine and not on else self.any_post(k)
        if target is None:
            return
        try:
            got = json.loads(self.run(self.conv.favourite(URLS, uid, target, on)))
        except NotFound:
            assert not self.m.exists(target), f"favourite of live post {target}: NotFound"
            return
        assert self.m.exists(target), f"favourite of gone post {target} answered"
        o = self.m.original(target)
        if on and (uid, o) not in self.m.favourites:
            # its id (the notification's): the newest of the user's favourites, as listed
            body, fids = self.run(self.conv.favourites(URLS, uid, Page(limit=1)))
            assert [int(s["id"]) for s in json.loads(body)] == [o], body
            self.m.favourited(uid, o, fids[0])
            event("favourited")
        elif not on and self.m.favourites.pop((uid, o), None) is not None:
            event("unfavourited")
        assert int(got["id"]) == o and got["favourited"] is on, got
        assert got["favourites_count"] == self.m.counters(o)[2], got

    @rule(a=st.integers(0, MAX_USERS - 1), k=st.integers(0, 50))
    def dismiss(self, a: int, k: int) -> None:
        """Dismiss one of the notifications the user sees (may lag); a dismissed one never
        comes back. An id the user has not: NotFound, nothing changes."""
        uid, handle = self.user(a)
        body, ids = self.run(self.conv.notifications(URLS, uid, Page(limit=10), [], [], None))
        for x in json.loads(body):  # may lag, never wrong
            nid, kind, status = int(x["id"]), x["type"], x.get("status")
            assert int(x["account"]["id"]) != uid, f"{handle} notified of their own action: {x}"
            assert nid > self.m.cleared[uid] and nid not in self.m.dismissed[uid], (
                f"{handle}'s cleared or dismissed notification {nid} listed")
            if kind != "follow":
                assert status is not None and self.m.exists(int(status["id"])), (
                    f"{handle}'s {kind} notification {nid} about a gone post")
                assert self.posts[int(status["id"])][0] == uid or kind == "mention", x
        if not ids:
            try:
                self.run(self.conv.dismiss(uid, 1))  # no record has so small an id
            except NotFound:
                return
            raise AssertionError(f"{handle} dismissed a notification they do not have")
        nid = ids[k % len(ids)]
        try:
            self.run(self.conv.dismiss(uid, nid))
        except NotFound:  # the notifier removed it meanwhile (its cause is gone)
            assert not self.manual, f"{handle}'s notification {nid}, just listed: NotFound"
            return
        self.m.dismissed[uid].add(nid)
        event("dismissed a notification")
        _, after = self.run(self.conv.notifications(URLS, uid, Page(limit=40), [], [], None))
        assert nid not in after, f"{handle}'s dismissed notification {nid} still listed"

    @rule(a=st.integers(0, MAX_USERS - 1))
    def clear(self, a: int) -> None:
        """Clear the user's notifications: those there now (the largest id raises the
        cleared id); in manual mode, what the notifier has not written yet may come later."""
        uid, handle = self.user(a)
        if not self.manual:  # so that no notification is written between the look and the clear
            self.run(self.hf.drain())
        top = self.run(self.hf.store.notifications_page(uid, limit=1))
        if not self.manual:
            want = self.m.notifications(uid)
            assert [n.id for n in top] == [n.id for n in want[:1]], (
                f"{handle}'s newest notification after drain: {top} != oracle {want[:1]}")
        self.run(self.conv.clear(uid))
        if top:
            self.m.cleared[uid] = max(self.m.cleared[uid], top[0].id)
            event("cleared notifications")
        _, after = self.run(self.conv.notifications(URLS, uid, Page(limit=40), [], [], None))
        assert after == [], f"{handle}'s notifications right after clear: {after}"

    @precondition(lambda self: self.m.window == REAL_WINDOW and self.long_runs < 1)
    @rule(a=st.integers(0, MAX_USERS - 1), n=st.integers(REAL_WINDOW - 3, REAL_WINDOW + 3))
    def long_run(self, a: int, n: int) -> None:
        """One author posts about the product's boost window (40) posts in a row, once per
        example: boosts written later are that far from what they boost."""
        self.long_runs += 1
        uid, _ = self.user(a)
        for i in range(n):
            got = self.run(self.hf.create_post(uid, f"run {i}"))
            self.add_post(int(got["id"]), uid, got["text"])

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
        st.tuples(st.sampled_from(["post", "follow", "unfollow", "delete", "read", "boost", "fav", "reply"]),
                  st.integers(0, MAX_USERS - 1), st.integers(0, 50)),
        min_size=2, max_size=8))
    def concurrent_burst(self, ops: list[tuple[str, int, int]]) -> None:
        """Several requests at once on the loop (as the HTTP server runs them): they
        interleave at every await, with each other and with the consumers. Each follow pair
        and each post to delete appears once, so the resulting records are known; a boost,
        favourite or reply may meet the delete of its post in either order (NotFound, or
        made and then taken away with the post)."""
        coros: list[Awaitable[Any]] = []
        plan: list[tuple[str, Any]] = []
        pairs: set[tuple[int, int]] = set()
        targeted: set[int] = set()
        acted: set[tuple[str, int, int]] = set()
        for n, (kind, a, b) in enumerate(ops):
            uid, _ = self.user(a)
            if kind in ("boost", "fav", "reply"):
                live = self.live()
                if not live:
                    continue
                target = live[b % len(live)]
                if (kind, uid, self.m.original(target)) in acted:
                    continue
                acted.add((kind, uid, self.m.original(target)))
                if kind == "boost":
                    coros.append(self.conv.reblog(URLS, uid, target, "public"))
                elif kind == "fav":
                    coros.append(self.conv.favourite(URLS, uid, target, True))
                else:
                    coros.append(self.hf.write_post(uid, f"burst re {n}", in_reply_to_id=target))
                plan.append((kind, (uid, target, f"burst re {n}")))
            elif kind == "post":
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
            elif kind == "delete":  # not boosts: another delete may take them with their original
                own = [p for p in self.live() if self.posts[p][0] == uid and p not in targeted
                       and p not in self.m.reblog_of]
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
            return await asyncio.gather(*coros, return_exceptions=True)

        results = self.run(together())
        burst_deleted = {arg for kind, arg in plan if kind == "delete"}
        new_posts: list[tuple[int, int, str, int | None, int | None]] = []
        new_favs: set[int] = set()
        for (kind, arg), res in zip(plan, results):
            if isinstance(res, BaseException):
                if not (isinstance(res, NotFound) and kind in ("boost", "fav", "reply")
                        and self.m.original(arg[1]) in burst_deleted):
                    raise res
                event(f"a {kind} met the delete of its post")
                continue
            if kind == "post":
                assert res["text"] == arg[1] and res["author"]["id"] == str(arg[0]), res
                new_posts.append((int(res["id"]), arg[0], arg[1], None, None))
            elif kind == "boost":
                uid, o = arg[0], self.m.original(arg[1])
                got = json.loads(res)
                assert int(got["reblog"]["id"]) == o, got
                before = self.m.boost_of(uid, o)
                if before is None:
                    new_posts.append((int(got["id"]), uid, "", None, o))
                else:
                    assert int(got["id"]) == before, got
            elif kind == "fav":
                uid, o = arg[0], self.m.original(arg[1])
                assert int(json.loads(res)["id"]) == o
                if self.m.favourited(uid, o):  # its id (0 for now) is learnt below
                    new_favs.add(uid)
            elif kind == "reply":
                new_posts.append((res.id, arg[0], arg[2], self.m.original(arg[1]), None))
            elif kind == "follow":
                assert res == {"following": True}
                before = self.followers_count(arg[1])
                self.m.followed(*arg)
                if before < THRESHOLD <= self.followers_count(arg[1]):
                    event("crossed the celebrity threshold up (concurrently)")
            elif kind == "unfollow":
                assert res == {"following": False}
                before = self.followers_count(arg[1])
                self.m.unfollowed(*arg)
                if before >= THRESHOLD > self.followers_count(arg[1]):
                    self.demoted += 1
                    event("crossed the celebrity threshold down (concurrently)")
        for pid, uid, text, parent, o in sorted(new_posts):  # commit order is id order
            self.add_post(pid, uid, text, parent=parent, reblog_of=o)
        for kind, arg in plan:  # after the adds: a delete takes boosts and favourites along
            if kind == "delete":
                self.m.delete(arg)
        for uid in new_favs:
            self.learn_favourite_ids(uid)
        for followee in {arg[1] for kind, arg in plan if kind == "follow"}:
            self.learn_follow_ids(followee)
        # boosters whose boost met the delete of its original: the boost may have been made
        # and taken away with the original, and a read among them may have seen it
        vanished = {arg[0] for (kind, arg), res in zip(plan, results)
                    if kind == "boost" and isinstance(res, NotFound)}
        for (kind, arg), res in zip(plan, results):
            if kind == "read":  # it ran among the writes: only its shape can be checked
                for p in res["posts"]:
                    if int(p["id"]) in self.posts:
                        continue
                    assert int(p["author"]["id"]) in vanished and p["text"] == "", (
                        f"concurrent read of {arg[0]}: post {p['id']} was never created: {p}")
                    try:
                        self.run(self.hf.get_post(int(p["id"])))
                    except NotFound:
                        event("a concurrent read saw a boost made and taken away with its original")
                    else:
                        raise AssertionError(f"boost {p['id']} answered NotFound, still served: {p}")
                ids = self.check_page(f"concurrent read of {arg[0]}", res, arg[1],
                                      transient={int(p["id"]) for p in res["posts"]} - set(self.posts))
                assert ids == sorted(set(ids), reverse=True), ids

    @rule(limits=st.lists(st.integers(1, 4), min_size=1, max_size=3))
    def drain_and_check(self, limits: list[int]) -> None:
        self.check_everything(limits)

    @precondition(lambda self: self.manual)
    @rule(which=st.integers(0, 3), k=st.integers(1, 6))
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
        self.crashed = self.crashed or crash
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
        if self.cut_mark is None and self.outside and self.dispatcher().counts["cut_at_stop"]:
            self.cut_mark = len(self.rx.snapshot())
            event("a stop cut a webhook attempt still sending")
        if crash and self.crash_mark is None:
            self.crash_mark = (len(self.rx.snapshot()), len(self.smtp.inbox.snapshot()))
        for key, v in getattr(self.hf.feed, "counters", {}).items():
            self.old_counters[key] = self.old_counters.get(key, 0) + v
        self.hf = self.open()


class TestHomefeedOracle(HomefeedMachine.TestCase):  # type: ignore[misc, valid-type]
    pytestmark = [pytest.mark.slow]
    settings = settings.get_profile(PROFILE)
