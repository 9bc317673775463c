"""The audit: recompute from the system of record what each derived store should hold,
compare, and name every difference.

What is checked
---------------
``timelines`` (for each audited user)
    - **home cache**: the cached home timeline's ids above its *floor* (below it the list
      may be incomplete by design) must include every post by someone the user follows
      now who is not a celebrity (a celebrity's posts are pulled at read time; the cache
      *may* hold them, and the user's own posts, which rebuilds put there). Every other
      id above the floor is an *extra* if it is a post by someone the user does not follow
      and among that author's newest ``timeline_cap`` posts (an unfollow removes exactly
      those: older ones, pushed before the author became a celebrity or put there by a
      rebuild, may stay, as that rule allows). Reads hide extras (they filter by current
      follows), so they are reported as **hidden** differences. Ids of deleted posts are
      only counted (``ids_of_deleted_posts``): the rules leave them in the author's own
      home timeline and with users who had unfollowed the author, their author is gone
      with them, and hydration drops them from every read (the home read check and the
      post cache check see to that).
    - **home read**: the home timeline the user reads, computed by ``FeedManager.read_home``
      itself over read-only views of the caches, must equal the newest posts of the user
      and everyone they follow, read from the record store (first ``timeline_cap + 100``).
    - **following cache**: a cached following set equals the follows in the record store.
    - **celebrity set** (once): the cached set equals the users whose follower count is at
      least the threshold.
    - **post cache**: every cached post referenced by an audited list exists and is equal.
``authors`` (user timelines: the cached author lists the home read pulls from)
    - above the floor: every post of the author; other ids are hidden extras.
``search``
    - every post is indexed under exactly ``index.terms_of(post)``; no entry without a post
      (such an entry is hidden: search drops ids that do not hydrate).
``counters``
    - followers, following and posts counts equal the counts of the records.

Safe while serving
------------------
The audit only reads: ``peek`` (never counts as a read: no TTL refresh, no recency, no
rebuild of a missing list), ``peek_many``, record-store and index queries. Events in flight
make derived stores lag the record store for a moment, so a difference is reported only if
it is still there after the consumers have applied every event committed before it was
first seen (``wait_caught_up``: the outbox head, then for a bus the relay and the bus
consumers), and only if it is the same difference. If the consumers do not catch up
within ``settle_timeout`` (nothing consuming: is the service running?), the differences are
reported with the consumers' lag.

Where it runs
-------------
Everything here needs only the ``Homefeed``'s ports, so it runs wherever those stores are
visible: anywhere for the record store, the index and Redis; for the in-process cache of
the embedded profile only inside the serving process (``homefeed.entrypoints.ops``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from homefeed.domain.model import Post
from homefeed.ports import IdSlice
from homefeed.service_layer.feed import AUTHOR, HOME, FeedManager
from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.audit")

PARTS = ("timelines", "authors", "search", "counters")
#: Ids per record-store page, posts per search window of the full walk.
PAGE = 1000
#: Consecutive posts per search window when sampling.
WINDOW = 100
#: Posts of the search index checked per sampled user (``--sample N``: N * 10 posts).
POSTS_PER_SAMPLED_USER = 10
#: How far the home read is compared beyond the cache (entries past ``timeline_cap``).
READ_BEYOND_CAP = 100


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    #: timelines | authors | search | counters
    part: str
    #: which store: "home cache", "home read", "following cache", "celebrity set",
    #: "post cache", "author cache", "search index", "counters", "stream"
    store: str
    #: what it is about: "@ana (123)", "post 456"
    subject: str
    problem: str
    #: True if reads hide it (the documented read-time filters): wrong data kept, not shown.
    hidden: bool = False
    #: What to check again to confirm it: ("home", uid) | ("author", uid) | ("celebs",) |
    #: ("post", pid) | ("search", pid) | ("counters", uid) | ("list", kind, key)
    recheck: tuple = ()
    #: Identity across the first look and the re-check.
    key: tuple = ()

    def __str__(self) -> str:
        tail = "  [hidden at read time]" if self.hidden else ""
        return f"{self.store:<16} {self.subject}: {self.problem}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part, "store": self.store, "subject": self.subject,
            "problem": self.problem, "hidden": self.hidden,
            "recheck": list(self.recheck), "key": [str(k) for k in self.key],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Difference":
        return cls(d["part"], d["store"], d["subject"], d["problem"], bool(d.get("hidden")),
                   tuple(d.get("recheck") or ()), tuple(d.get("key") or ()))


@dataclass
class AuditReport:
    differences: list[Difference] = field(default_factory=list)
    #: How much was looked at: users, home_lists, author_lists, reads, posts, ...
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Consumers still behind when the audit stopped waiting for them (events).
    behind: dict[str, int] = field(default_factory=dict)

    @property
    def visible(self) -> list[Difference]:
        return [d for d in self.differences if not d.hidden]

    def exit_code(self) -> int:
        """0: clean. 1: a difference that reads show (or that breaks a count). 3: only
        differences that reads hide (stale ids, entries of deleted posts)."""
        if self.visible:
            return 1
        return 3 if self.differences else 0

    def count(self, key: str, n: int = 1) -> None:
        self.checked[key] = self.checked.get(key, 0) + n

    def merge(self, other: "AuditReport") -> None:
        self.differences.extend(other.differences)
        for k, v in other.checked.items():
            self.count(k, v)
        self.notes.extend(other.notes)
        for k, v in other.behind.items():
            self.behind[k] = max(self.behind.get(k, 0), v)

    def lines(self) -> list[str]:
        out = [str(d) for d in self.differences]
        checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.checked.items() if v)
        out.append(f"checked: {checked or 'nothing'}")
        out.extend(f"note: {n}" for n in self.notes)
        if self.behind:
            out.append("consumers still behind: " + ", ".join(f"{k} {v}" for k, v in self.behind.items()))
        hidden = len(self.differences) - len(self.visible)
        if not self.differences:
            out.append("audit: clean")
        else:
            out.append(f"audit: {len(self.differences)} difference(s), {hidden} of them hidden at read time")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "differences": [d.as_dict() for d in self.differences],
            "checked": dict(self.checked),
            "notes": list(self.notes),
            "behind": dict(self.behind),
            "exit_code": self.exit_code(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditReport":
        return cls(
            [Difference.from_dict(x) for x in d.get("differences", [])],
            dict(d.get("checked", {})),
            list(d.get("notes", [])),
            dict(d.get("behind", {})),
        )


# --------------------------------------------------------------------------------------------
# read-only views of the caches, for FeedManager.read_home
# --------------------------------------------------------------------------------------------
class ReadOnlyTimelines:
    """A TimelineCache whose reads are ``peek`` (never a "read" for the inactivity clock)
    and whose writes do nothing: ``FeedManager.read_home`` over it computes exactly what a
    reader would get, touching nothing. A list it finds absent is read from the record
    store (the FeedManager's own fallback when a rebuilt list is gone at once)."""

    def __init__(self, cache: Any) -> None:
        self._c = cache

    async def slice(self, kind: str, key: int, before: int | None, limit: int) -> IdSlice | None:
        return await self._c.peek(kind, key, before, limit)

    async def peek(self, kind: str, key: int, before: int | None = None, limit: int | None = None) -> IdSlice | None:
        return await self._c.peek(kind, key, before, limit)

    async def begin(self, kind: str, key: int) -> None:
        return None

    async def install(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        return None

    async def push(self, kind: str, keys: Sequence[int], id_: int) -> int:
        return 0

    async def merge(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        return None

    async def remove(self, kind: str, keys: Sequence[int], ids: Sequence[int]) -> None:
        return None

    async def exists(self, kind: str, keys: Sequence[int]) -> list[int]:
        return [k for k in keys if await self._c.peek(kind, k, None, 0) is not None]

    async def drop(self, kind: str, key: int) -> None:
        return None

    async def following(self, user_id: int) -> frozenset[int] | None:
        return await self._c.following(user_id)

    async def following_version(self, user_id: int) -> int:
        return 0

    async def set_following(self, user_id: int, ids: Sequence[int], version: int | None = None) -> None:
        return None

    async def forget_following(self, user_id: int) -> None:
        return None

    async def celebrities(self) -> frozenset[int] | None:
        return await self._c.celebrities()

    async def set_celebrities(self, ids: Sequence[int]) -> None:
        return None

    async def mark_celebrity(self, user_id: int, is_celebrity: bool) -> bool:
        return False

    async def stats(self) -> dict[str, int]:
        return {}


class ReadOnlyPosts:
    def __init__(self, posts: Any) -> None:
        self._p = posts

    async def get_many(self, ids: Sequence[int]) -> dict[int, Post]:
        peek = getattr(self._p, "peek_many", None)
        return await (peek(ids) if peek is not None else self._p.get_many(ids))

    async def put_many(self, posts: Sequence[Post]) -> None:
        return None

    async def delete(self, ids: Sequence[int]) -> None:
        return None


# --------------------------------------------------------------------------------------------
# waiting for the events in flight
# --------------------------------------------------------------------------------------------
async def wait_caught_up(hf: Homefeed, timeout: float = 30.0, stall: float = 5.0) -> dict[str, int]:
    """Wait until every consumer has applied every event committed before this call (for
    a bus: relayed first). Returns {} once they have, else how far behind each one still
    is when ``timeout`` passed or nothing moved for ``stall`` seconds. Only reads."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    names = list(hf.consumers.handlers)
    parts = hf.relay_parts
    if "sink" in parts:  # outbox -> relay -> bus
        behind = await _wait_outbox(parts["source"], ["relay"], deadline, stall)
        if behind:
            return behind
    stream: Any = hf.stream
    if hasattr(stream, "consumer_stats") and hasattr(stream, "stream_state"):
        return await _wait_jetstream(stream, names, deadline, stall)
    return await _wait_outbox(stream, names, deadline, stall)


async def _wait_outbox(stream: Any, names: Sequence[str], deadline: float, stall: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    # PostgreSQL: the newest committed row, not the stable prefix's end (``head_position``),
    # which running transactions anywhere in the cluster hold back.
    tail_position = getattr(stream, "tail_position", None)
    mark = await (tail_position() if tail_position is not None else stream.head())
    last: dict[str, Any] = {}
    moved = loop.time()
    while True:
        positions = {n: await stream.position(n) for n in names}
        behind = [n for n in names if positions[n] < mark]
        if not behind:
            return {}
        if positions != last:
            last, moved = positions, loop.time()
        now = loop.time()
        if now >= deadline or now - moved >= stall:
            out = {}
            for n in behind:
                out[n] = (mark - positions[n]) if isinstance(mark, int) else await stream.lag(n)
            return out
        await asyncio.sleep(0.02)


async def _wait_jetstream(stream: Any, names: Sequence[str], deadline: float, stall: float) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    mark = (await stream.stream_state())["last_seq"]
    last: dict[str, Any] = {}
    moved = loop.time()
    while True:
        stats = {n: await stream.consumer_stats(n) for n in names}
        floors = {n: s["stream_seq_acked"] for n, s in stats.items()}
        behind = [n for n in names if floors[n] < mark]
        if not behind:
            return {}
        if floors != last:
            last, moved = floors, loop.time()
        now = loop.time()
        if now >= deadline or now - moved >= stall:
            return {n: stats[n]["pending"] + stats[n]["ack_pending"] for n in behind}
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------------------------
# the auditor
# --------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    users: list[int] = field(default_factory=list)
    home: set[int] = field(default_factory=set)  # users whose timelines part is checked
    author: set[int] = field(default_factory=set)
    counters: set[int] = field(default_factory=set)
    celebs: bool = False
    post_cache: set[int] = field(default_factory=set)
    search_full: bool = False
    search_windows: list[tuple[int, int | None]] = field(default_factory=list)
    search_ids: set[int] = field(default_factory=set)
    lists: set[tuple[str, int]] = field(default_factory=set)  # cached lists of unknown users


class Auditor:
    """One audit of ``hf``'s derived stores. ``sample``: that many users (half of them among
    those with a cached list, if the cache can list them) and ``sample * 10`` posts;
    None: everything. ``parts``: a subset of ``PARTS``."""

    def __init__(
        self,
        hf: Homefeed,
        *,
        sample: int | None = None,
        parts: Iterable[str] = PARTS,
        settle_timeout: float = 30.0,
        stall: float = 5.0,
        rechecks: int = 1,
        seed: int | None = None,
    ) -> None:
        self.hf = hf
        self.parts = tuple(p for p in PARTS if p in set(parts))
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown audit part(s) {sorted(unknown)}; parts: {', '.join(PARTS)}")
        if sample is not None and sample < 1:
            raise ValueError("sample must be at least 1")
        self.sample = sample
        self.settle_timeout = settle_timeout
        self.stall = stall
        self.rechecks = rechecks
        self.rng = random.Random(seed)
        self.store: Any = hf.store
        self.cache: Any = hf.cache
        self.posts_cache: Any = hf.feed.posts
        self.index: Any = hf.search_index
        self.cap = hf.feed.cap
        self.threshold = hf.feed.threshold
        self.reader = FeedManager(
            hf.store, ReadOnlyTimelines(hf.cache), ReadOnlyPosts(hf.feed.posts),  # type: ignore[arg-type]
            hf.settings.celebrity_threshold, hf.feed.cap, strategy=hf.feed.strategy,
        )
        self._handles: dict[int, str] = {}

    # -- the whole audit --------------------------------------------------------------------
    async def run(self) -> AuditReport:
        report = AuditReport()
        plan = await self._plan(report)
        diffs = await self._check(plan, report)
        for _ in range(self.rechecks):
            if not diffs:
                break
            log.info("audit: %d difference(s) seen; re-checking once the events in flight are applied", len(diffs))
            behind = await wait_caught_up(self.hf, self.settle_timeout, self.stall)
            report.behind = behind
            if behind:
                report.notes.append(
                    "the consumers did not catch up with the events committed before the"
                    f" differences were seen ({', '.join(f'{k}: {v} behind' for k, v in behind.items())});"
                    " some differences may be events not applied yet (is the service running?)"
                )
            first = {d.key for d in diffs}
            again = await self._check(self._replan(diffs), AuditReport())
            diffs = [d for d in again if d.key in first]
        report.differences = sorted(diffs, key=lambda d: (PARTS.index(d.part), d.store, d.subject, d.problem))
        return report

    async def _plan(self, report: AuditReport) -> _Plan:
        plan = _Plan()
        want_users = any(p in self.parts for p in ("timelines", "authors", "counters"))
        cached: dict[str, list[int]] = {HOME: [], AUTHOR: []}
        if "timelines" in self.parts or "authors" in self.parts:
            for kind in (HOME, AUTHOR):
                cached[kind] = await self.cache.keys(kind)
        if want_users:
            if self.sample is None:
                after = 0
                while True:
                    ids = await self.store.user_ids_after(after, PAGE)
                    if not ids:
                        break
                    plan.users.extend(ids)
                    after = ids[-1]
                known = set(plan.users)
                for kind in (HOME, AUTHOR):
                    plan.lists.update((kind, k) for k in cached[kind] if k not in known)
            else:
                listed = sorted(set(cached[HOME]) | set(cached[AUTHOR]))
                chosen = self.rng.sample(listed, min(len(listed), max(1, self.sample // 2)))
                picked = set(chosen)
                for uid in await self.store.sample_user_ids(self.sample):
                    if len(picked) >= self.sample:
                        break
                    picked.add(uid)
                plan.users = sorted(picked)
        if "timelines" in self.parts:
            plan.home = set(plan.users)
            plan.celebs = True
        if "authors" in self.parts:
            plan.author = set(plan.users)
        if "counters" in self.parts:
            plan.counters = set(plan.users)
        if "search" in self.parts:
            if self.sample is None:
                plan.search_full = True
            else:
                await self._sample_windows(plan)
        return plan

    async def _sample_windows(self, plan: _Plan) -> None:
        assert self.sample is not None
        first = await self.store.posts_after(0, 1)
        top = await self.store.max_post_id()
        entries = await self.index.entries(0, 1)
        starts = ([first[0].id] if first else []) + ([entries[0][0]] if entries else [])
        lo = min(starts) - 1 if starts else 0
        budget = self.sample * POSTS_PER_SAMPLED_USER
        for _ in range(max(1, -(-budget // WINDOW))):
            start = self.rng.randint(max(0, lo), max(lo, top))
            posts = await self.store.posts_after(start, WINDOW)
            upto = posts[-1].id if len(posts) == WINDOW else None
            plan.search_windows.append((start, upto))

    def _replan(self, diffs: Sequence[Difference]) -> _Plan:
        plan = _Plan()
        for d in diffs:
            kind, *rest = d.recheck
            if kind == "home":
                plan.home.add(rest[0])
            elif kind == "author":
                plan.author.add(rest[0])
            elif kind == "celebs":
                plan.celebs = True
            elif kind == "post":
                plan.post_cache.add(rest[0])
            elif kind == "search":
                plan.search_ids.add(rest[0])
            elif kind == "counters":
                plan.counters.add(rest[0])
            elif kind == "list":
                plan.lists.add((rest[0], rest[1]))
        return plan

    async def _check(self, plan: _Plan, report: AuditReport) -> list[Difference]:
        out: list[Difference] = []
        celebs_truth = set(await self.store.celebrity_ids(self.threshold)) if (plan.home or plan.celebs) else set()
        cached_celebs = await self.cache.celebrities() if (plan.home or plan.celebs) else None
        self._celebs_any = celebs_truth | set(cached_celebs or ())
        self._recent: dict[int, int] = {}
        if plan.celebs:
            out += await self._check_celebrities(celebs_truth, cached_celebs, report)
        post_ids: set[int] = set(plan.post_cache)
        # In the serving process SQLite reads do not suspend: let requests run between users.
        for uid in sorted(plan.home):
            out += await self._check_home(uid, report, post_ids)
            await asyncio.sleep(0)
        for uid in sorted(plan.author):
            out += await self._check_author(uid, report, post_ids)
            await asyncio.sleep(0)
        if post_ids:
            out += await self._check_post_cache(sorted(post_ids), report)
        listed = {kind: set(await self.cache.keys(kind)) for kind in {k for k, _ in plan.lists}}
        for kind, key in sorted(plan.lists):
            if key in listed[kind] and not await self.store.user_by_id(key):
                out.append(Difference(
                    "timelines" if kind == HOME else "authors", f"{kind} cache", f"user {key}",
                    "a cached list for a user who does not exist", hidden=True,
                    recheck=("list", kind, key), key=("list", kind, key)))
        if plan.counters:
            out += await self._check_counters(sorted(plan.counters), report)
        if plan.search_full:
            out += await self._check_search_full(report)
        for after, upto in plan.search_windows:
            posts = await self._posts_in(after, upto)
            out += await self._check_search_window(posts, after, upto, report)
        for pid in sorted(plan.search_ids):
            got = await self.store.posts_by_ids([pid])
            out += await self._check_search_window(got, pid - 1, pid, report)
        if plan.home or plan.author:
            report.count("users", len(plan.home | plan.author))
        return await self._label(out)

    # -- timelines ---------------------------------------------------------------------------
    async def _check_celebrities(
        self, truth: set[int], cached: frozenset[int] | None, report: AuditReport
    ) -> list[Difference]:
        if cached is None:
            report.notes.append("the celebrity set is not cached (loaded from the counts on the next read)")
            return []
        report.count("celebrity_sets")
        out = []
        for uid in sorted(truth - cached):
            out.append(Difference("timelines", "celebrity set", f"user {uid}",
                                  f"has at least {self.threshold} followers but is not in the cached set",
                                  recheck=("celebs",), key=("celebs", uid, "missing")))
        for uid in sorted(cached - truth):
            out.append(Difference("timelines", "celebrity set", f"user {uid}",
                                  f"is in the cached set with fewer than {self.threshold} followers",
                                  recheck=("celebs",), key=("celebs", uid, "extra")))
        return out

    async def _check_home(self, uid: int, report: AuditReport, post_ids: set[int]) -> list[Difference]:
        out: list[Difference] = []
        following = frozenset(await self.store.following_ids(uid))
        cached_following = await self.cache.following(uid)
        if cached_following is not None:
            report.count("following_sets")
            if cached_following != following:
                lacks = sorted(following - cached_following)
                extra = sorted(cached_following - following)
                out.append(Difference(
                    "timelines", "following cache", f"user {uid}",
                    f"lacks {_ids(lacks)}, has extra {_ids(extra)}",
                    recheck=("home", uid), key=("following", uid, tuple(lacks), tuple(extra))))
        lst = await self.cache.peek(HOME, uid)
        if lst is not None:
            report.count("home_lists")
            floor = lst.floor
            cached = {i for i in lst.ids if i > floor}
            post_ids.update(cached)
            must = await self._must_home(uid, following, floor)
            for pid in sorted(must - cached, reverse=True):
                out.append(Difference(
                    "timelines", "home cache", f"user {uid}",
                    f"post {pid} is missing (above the list's floor {floor})",
                    recheck=("home", uid), key=("home", uid, pid, "missing")))
            rest = cached - must
            if rest:
                posts = {p.id: p for p in await self.store.posts_by_ids(sorted(rest))}
                for pid in sorted(rest, reverse=True):
                    p = posts.get(pid)
                    if p is None:
                        # Deleting removes a post from its followers' lists; the rules leave it
                        # in the author's own home (rebuilds put own posts there) and in the
                        # lists of users who had unfollowed the author. Whose it was is gone
                        # with it, so it is only counted; hydration drops it from every read.
                        report.count("ids_of_deleted_posts")
                        continue
                    if p.author_id == uid or p.author_id in following:
                        continue  # own post, a celebrity's, or one committed after `must` was read
                    elif pid < await self._recent_floor(p.author_id):
                        # Unfollow removes the followee's newest `cap` posts only (the rule
                        # of unmerge): an older one (pushed before the followee became a
                        # celebrity, or put there by a rebuild) may stay; reads filter it.
                        continue
                    else:
                        problem = (f"holds post {pid} by user {p.author_id}, whom the user does not"
                                   " follow (unfollowing removes the followee's newest posts)")
                    out.append(Difference("timelines", "home cache", f"user {uid}", problem, hidden=True,
                                          recheck=("home", uid), key=("home", uid, pid, "extra")))
        out += await self._check_read(uid, report)
        return out

    async def _recent_floor(self, author: int) -> int:
        """The smallest of the author's newest ``cap`` post ids (0 if fewer than ``cap``)."""
        got = self._recent.get(author)
        if got is None:
            ids = await self.store.author_post_ids(author, None, self.cap)
            got = self._recent[author] = ids[-1] if len(ids) >= self.cap else 0
        return got

    async def _must_home(self, uid: int, following: frozenset[int], floor: int) -> set[int]:
        """Ids above ``floor`` of the posts by followees who are not celebrities."""
        authors = [a for a in following if a not in self._celebs_any]
        limit = 10 * self.cap + PAGE
        if len(authors) == len(following):  # no celebrity: one walk of the home query
            ids: list[int] = []
            before = None
            while len(ids) < limit:
                page = await self.store.home_post_ids(uid, before, PAGE)
                ids.extend(i for i in page if i > floor)
                if len(page) < PAGE or page[-1] <= floor:
                    break
                before = page[-1]
            posts = await self.store.posts_by_ids(ids)
            return {p.id for p in posts if p.author_id != uid}
        must: set[int] = set()
        for a in authors:
            before = None
            while True:
                page = await self.store.author_post_ids(a, before, self.cap)
                must.update(i for i in page if i > floor)
                if len(page) < self.cap or page[-1] <= floor or len(must) >= limit:
                    break
                before = page[-1]
        return must

    async def _check_read(self, uid: int, report: AuditReport) -> list[Difference]:
        depth = self.cap + READ_BEYOND_CAP
        got: list[int] = []
        before: int | None = None
        complete = False
        while len(got) < depth:
            posts, nxt = await self.reader.read_home(uid, before, min(100, depth - len(got)))
            got.extend(p.id for p in posts)
            if nxt is None:
                complete = True
                break
            before = nxt
        want = await self.store.home_post_ids(uid, None, depth)
        report.count("home_reads")
        bound = max(got[-1] if (got and not complete) else 0, want[-1] if len(want) >= depth else 0)
        g = [i for i in got if i >= bound]
        w = [i for i in want if i >= bound]
        out: list[Difference] = []
        gs, ws = set(g), set(w)
        for pid in sorted(ws - gs, reverse=True):
            out.append(Difference("timelines", "home read", f"user {uid}",
                                  f"post {pid} is missing from what the user reads",
                                  recheck=("home", uid), key=("read", uid, pid, "missing")))
        for pid in sorted(gs - ws, reverse=True):
            out.append(Difference("timelines", "home read", f"user {uid}",
                                  f"shows {pid}, which the record store does not place in this timeline",
                                  recheck=("home", uid), key=("read", uid, pid, "extra")))
        if not out and g != w:
            out.append(Difference("timelines", "home read", f"user {uid}",
                                  "posts out of order or repeated", recheck=("home", uid), key=("read", uid, "order")))
        return out

    async def _check_author(self, uid: int, report: AuditReport, post_ids: set[int]) -> list[Difference]:
        lst = await self.cache.peek(AUTHOR, uid)
        if lst is None:
            return []
        report.count("author_lists")
        floor = lst.floor
        cached = {i for i in lst.ids if i > floor}
        post_ids.update(cached)
        truth: set[int] = set()
        before = None
        while True:
            page = await self.store.author_post_ids(uid, before, PAGE)
            truth.update(i for i in page if i > floor)
            if len(page) < PAGE or page[-1] <= floor or len(truth) >= 10 * self.cap + PAGE:
                break
            before = page[-1]
        out: list[Difference] = []
        for pid in sorted(truth - cached, reverse=True):
            out.append(Difference("authors", "author cache", f"user {uid}",
                                  f"post {pid} is missing (above the list's floor {floor})",
                                  recheck=("author", uid), key=("author", uid, pid, "missing")))
        rest = cached - truth
        if rest:
            posts = {p.id: p for p in await self.store.posts_by_ids(sorted(rest))}
            for pid in sorted(rest, reverse=True):
                p = posts.get(pid)
                if p is not None and p.author_id == uid:
                    continue  # committed after the author's posts were read
                problem = (f"holds {pid}, which is not a post (deleted?)" if p is None
                           else f"holds post {pid} by user {p.author_id}")
                out.append(Difference("authors", "author cache", f"user {uid}", problem, hidden=True,
                                      recheck=("author", uid), key=("author", uid, pid, "extra")))
        return out

    async def _check_post_cache(self, ids: list[int], report: AuditReport) -> list[Difference]:
        out: list[Difference] = []
        for i in range(0, len(ids), PAGE):
            chunk = ids[i : i + PAGE]
            cached = await ReadOnlyPosts(self.posts_cache).get_many(chunk)
            if not cached:
                continue
            report.count("cached_posts", len(cached))
            truth = {p.id: p for p in await self.store.posts_by_ids(sorted(cached))}
            for pid, p in sorted(cached.items()):
                t = truth.get(pid)
                if t is None:
                    problem = "holds a post that does not exist (deleted?): reads that meet its id show it"
                elif (t.author_id, t.author_handle, t.text) != (p.author_id, p.author_handle, p.text):
                    problem = "holds a different version of the post"
                else:
                    continue
                out.append(Difference("timelines", "post cache", f"post {pid}", problem,
                                      recheck=("post", pid), key=("post", pid, problem)))
        return out

    # -- counters ----------------------------------------------------------------------------
    async def _check_counters(self, ids: list[int], report: AuditReport) -> list[Difference]:
        out: list[Difference] = []
        names = ("followers_count", "following_count", "posts_count")
        for i in range(0, len(ids), PAGE):
            got = await self.store.counters(ids[i : i + PAGE])
            report.count("counters", len(got))
            for uid, (stored, actual) in sorted(got.items()):
                for name, s, a in zip(names, stored, actual):
                    if s != a:
                        out.append(Difference("counters", "counters", f"user {uid}",
                                              f"{name} is {s}, the records count {a}",
                                              recheck=("counters", uid), key=("counters", uid, name, s, a)))
        return out

    # -- search ------------------------------------------------------------------------------
    async def _posts_in(self, after: int, upto: int | None) -> list[Post]:
        out: list[Post] = []
        while True:
            page = await self.store.posts_after(after, PAGE)
            keep = [p for p in page if upto is None or p.id <= upto]
            out.extend(keep)
            if len(keep) < len(page) or len(page) < PAGE:
                return out
            after = page[-1].id

    async def _check_search_full(self, report: AuditReport) -> list[Difference]:
        out: list[Difference] = []
        after = 0
        while True:
            posts = await self.store.posts_after(after, PAGE)
            if not posts:
                return out + await self._check_search_window([], after, None, report)
            out += await self._check_search_window(posts, after, posts[-1].id, report)
            after = posts[-1].id
            await asyncio.sleep(0)

    async def _check_search_window(
        self, posts: Sequence[Post], after: int, upto: int | None, report: AuditReport
    ) -> list[Difference]:
        """Compare the index with ``posts``: every post in (after, upto]."""
        entries: dict[int, frozenset[str]] = {}
        cursor = after
        while True:
            page = await self.index.entries(cursor, PAGE, upto)
            entries.update(page)
            if len(page) < PAGE:
                break
            cursor = page[-1][0]
        report.count("posts", len(posts))
        out: list[Difference] = []
        for p in posts:
            want = self.index.terms_of(p)
            have = entries.pop(p.id, None)
            if have is None:
                out.append(Difference("search", "search index", f"post {p.id}",
                                      "is not indexed: searches for its words miss it",
                                      recheck=("search", p.id), key=("search", p.id, "missing")))
            elif have != want:
                out.append(Difference("search", "search index", f"post {p.id}",
                                      f"indexed under the wrong terms: lacks {_terms(want - have)},"
                                      f" has extra {_terms(have - want)}",
                                      recheck=("search", p.id), key=("search", p.id, "terms")))
        for pid in sorted(entries):
            out.append(Difference("search", "search index", f"post {pid}",
                                  "has an entry but is not a post (deleted?)", hidden=True,
                                  recheck=("search", pid), key=("search", pid, "extra")))
        return out

    # -- labels ------------------------------------------------------------------------------
    async def _label(self, diffs: list[Difference]) -> list[Difference]:
        """Name users by handle in the subjects: "user 123" -> "@ana (123)"."""
        out = []
        for d in diffs:
            if d.subject.startswith("user "):
                uid = int(d.subject[5:])
                if uid not in self._handles:
                    u = await self.store.user_by_id(uid)
                    self._handles[uid] = f"@{u.handle} ({uid})" if u else f"user {uid}"
                d = Difference(d.part, d.store, self._handles[uid], d.problem, d.hidden, d.recheck, d.key)
            out.append(d)
        return out


def _ids(ids: Sequence[int]) -> str:
    if not ids:
        return "none"
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")


def _terms(terms: Iterable[str]) -> str:
    t = sorted(terms)
    return "{" + ", ".join(t) + "}" if t else "nothing"


async def audit(hf: Homefeed, **kwargs: Any) -> AuditReport:
    """Run one audit (see ``Auditor`` for the keyword arguments)."""
    return await Auditor(hf, **kwargs).run()
