"""The ``timelines`` and ``authors`` parts: home caches, what users read, following sets,
the celebrity set, author lists and the posts the cached lists reference (see the package
docstring for each rule)."""

from __future__ import annotations

from homefeed.service_layer.audit.context import BATCH, PAGE, READ_BEYOND_CAP, AuditContext
from homefeed.service_layer.audit.report import AuditReport, Difference, ids_text
from homefeed.service_layer.feed import AUTHOR, HOME, post_fields


class TimelineChecks:
    """One pass over the timelines of an audit (or of a re-check). Holds what the pass
    learns once and uses for every user: the celebrities (true or cached) and each
    author's newest-``cap`` floor."""

    def __init__(self, ctx: AuditContext, celebs_any: set[int]) -> None:
        self.ctx = ctx
        self.celebs_any = celebs_any
        self._recent: dict[int, int] = {}
        ctx.timelines_view.reset()
        ctx.posts_view.reset()

    # -- the celebrity set ---------------------------------------------------------------------
    def celebrities(self, truth: set[int], cached: frozenset[int] | None, report: AuditReport) -> list[Difference]:
        threshold = self.ctx.threshold
        if cached is None:
            report.notes.append("the celebrity set is not cached (loaded from the counts on the next read)")
            return []
        report.count("celebrity_sets")
        out = []
        for uid in sorted(truth - cached):
            out.append(Difference("timelines", "celebrity set", f"user {uid}",
                                  f"has at least {threshold} followers but is not in the cached set",
                                  recheck=("celebs",), key=("celebs", uid, "missing")))
        for uid in sorted(cached - truth):
            out.append(Difference("timelines", "celebrity set", f"user {uid}",
                                  f"is in the cached set with fewer than {threshold} followers",
                                  recheck=("celebs",), key=("celebs", uid, "extra")))
        return out

    # -- one user's home ---------------------------------------------------------------------
    async def home(self, uid: int, report: AuditReport, post_ids: set[int]) -> list[Difference]:
        ctx = self.ctx
        out: list[Difference] = []
        following = frozenset(await ctx.store.following_ids(uid))
        cached_following = await ctx.cache.following(uid)
        if cached_following is not None:
            report.count("following_sets")
            if cached_following != following:
                lacks = sorted(following - cached_following)
                extra = sorted(cached_following - following)
                out.append(Difference(
                    "timelines", "following cache", f"user {uid}",
                    f"lacks {ids_text(lacks)}, has extra {ids_text(extra)}",
                    recheck=("home", uid), key=("following", uid, tuple(lacks), tuple(extra))))
        lst = await ctx.cache.peek(HOME, uid)
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
                posts = {p.id: p for p in await ctx.store.posts_by_ids(sorted(rest))}
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
        out += await self.read(uid, report)
        return out

    async def _recent_floor(self, author: int) -> int:
        """The smallest of the author's newest ``cap`` post ids (0 if fewer than ``cap``)."""
        got = self._recent.get(author)
        if got is None:
            cap = self.ctx.cap
            ids = await self.ctx.store.author_post_ids(author, None, cap)
            got = self._recent[author] = ids[-1] if len(ids) >= cap else 0
        return got

    async def _must_home(self, uid: int, following: frozenset[int], floor: int) -> set[int]:
        """Ids above ``floor`` of the posts by followees who are not celebrities."""
        store, cap = self.ctx.store, self.ctx.cap
        authors = [a for a in following if a not in self.celebs_any]
        limit = 10 * cap + PAGE
        if len(authors) == len(following):  # no celebrity: one walk of the home query
            ids: list[int] = []
            before = None
            while len(ids) < limit:
                page = await store.home_post_ids(uid, before, PAGE)
                ids.extend(i for i in page if i > floor)
                if len(page) < PAGE or page[-1] <= floor:
                    break
                before = page[-1]
            posts = await store.posts_by_ids(ids)
            return {p.id for p in posts if p.author_id != uid}
        must: set[int] = set()
        for a in authors:
            before = None
            while True:
                page = await store.author_post_ids(a, before, cap)
                must.update(i for i in page if i > floor)
                if len(page) < cap or page[-1] <= floor or len(must) >= limit:
                    break
                before = page[-1]
        return must

    async def read(self, uid: int, report: AuditReport) -> list[Difference]:
        """What the user reads, page by page as a client pages, against the record store."""
        ctx = self.ctx
        depth = ctx.cap + READ_BEYOND_CAP
        got: list[int] = []
        before: int | None = None
        complete = False
        try:
            while len(got) < depth:
                posts, nxt = await ctx.reader.read_home(uid, before, min(100, depth - len(got)))
                got.extend(p.id for p in posts)
                if nxt is None:
                    complete = True
                    break
                before = nxt
        finally:
            ctx.timelines_view.forget()  # the home list rebuilt for this read lives as long as it
        want = await self._want_home(uid, depth)
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

    async def _want_home(self, uid: int, depth: int) -> list[int]:
        """The first ``depth`` ids of the home computed from the record store alone,
        through the same home rules (the audit checks the caches, not the rules)."""
        want: list[int] = []
        before: int | None = None
        while len(want) < depth:
            posts, nxt = await self.ctx.reader.read_home_from_store(uid, before, min(100, depth - len(want)))
            want.extend(p.id for p in posts)
            if nxt is None:
                break
            before = nxt
        return want

    # -- one author's list -------------------------------------------------------------------
    async def author(self, uid: int, report: AuditReport, post_ids: set[int]) -> list[Difference]:
        ctx = self.ctx
        lst = await ctx.cache.peek(AUTHOR, uid)
        if lst is None:
            return []
        report.count("author_lists")
        floor = lst.floor
        cached = {i for i in lst.ids if i > floor}
        post_ids.update(cached)
        truth: set[int] = set()
        before = None
        while True:
            page = await ctx.store.author_post_ids(uid, before, PAGE)
            truth.update(i for i in page if i > floor)
            if len(page) < PAGE or page[-1] <= floor or len(truth) >= 10 * ctx.cap + PAGE:
                break
            before = page[-1]
        out: list[Difference] = []
        for pid in sorted(truth - cached, reverse=True):
            out.append(Difference("authors", "author cache", f"user {uid}",
                                  f"post {pid} is missing (above the list's floor {floor})",
                                  recheck=("author", uid), key=("author", uid, pid, "missing")))
        rest = cached - truth
        if rest:
            posts = {p.id: p for p in await ctx.store.posts_by_ids(sorted(rest))}
            for pid in sorted(rest, reverse=True):
                p = posts.get(pid)
                if p is not None and p.author_id == uid:
                    continue  # committed after the author's posts were read
                problem = (f"holds {pid}, which is not a post (deleted?)" if p is None
                           else f"holds post {pid} by user {p.author_id}")
                out.append(Difference("authors", "author cache", f"user {uid}", problem, hidden=True,
                                      recheck=("author", uid), key=("author", uid, pid, "extra")))
        return out

    # -- the posts the lists reference ----------------------------------------------------------
    async def post_cache(self, ids: list[int], report: AuditReport) -> list[Difference]:
        ctx = self.ctx
        out: list[Difference] = []
        for i in range(0, len(ids), BATCH):
            chunk = ids[i : i + BATCH]
            cached = await ctx.posts_cache.peek_many(chunk)  # the cache alone, no overlay
            await ctx.pacer.tick()
            ctx.progress("post cache", min(i + BATCH, len(ids)), len(ids))
            if not cached:
                continue
            report.count("cached_posts", len(cached))
            truth = {p.id: p for p in await ctx.store.posts_by_ids(sorted(cached))}
            for pid, p in sorted(cached.items()):
                t = truth.get(pid)
                if t is None:
                    problem = "holds a post that does not exist (deleted?): reads that meet its id show it"
                elif post_fields(t) != post_fields(p):
                    problem = "holds a different version of the post"
                else:
                    continue
                out.append(Difference("timelines", "post cache", f"post {pid}", problem,
                                      recheck=("post", pid), key=("post", pid, problem)))
        return out

    # -- cached lists of users who do not exist -------------------------------------------------
    async def orphan_lists(self, lists: set[tuple[str, int]]) -> list[Difference]:
        ctx = self.ctx
        out: list[Difference] = []
        listed = {kind: set(await ctx.cache.keys(kind)) for kind in {k for k, _ in lists}}
        for kind, key in sorted(lists):
            if key in listed[kind] and not await ctx.store.user_by_id(key):
                out.append(Difference(
                    "timelines" if kind == HOME else "authors", f"{kind} cache", f"user {key}",
                    "a cached list for a user who does not exist", hidden=True,
                    recheck=("list", kind, key), key=("list", kind, key)))
        return out
