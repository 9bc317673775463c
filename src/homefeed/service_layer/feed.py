"""FeedManager: every home-timeline rule in one place, in one vocabulary.

- **push**: a new post's id goes into the cached home timeline of each follower that has one
  (no cached timeline = inactive or evicted: skipped, rebuilt on its next read).
- **celebrity**: an author with at least ``celebrity_threshold`` followers is not pushed;
  their posts are **pulled** from their cached author list when a follower reads.
- **merge** / **unmerge**: follow merges the followee's recent posts into the follower's
  timeline; unfollow removes them.
- **promote** / **demote**: an author crossing the threshold up is pulled from then on; one
  crossing down has their recent posts (never pushed) merged into every follower's timeline.
- **trim**: every cached list keeps only its newest ``timeline_cap`` ids; what is cut off
  raises the list's *floor*: the list holds every id it should above its floor.
- **rebuild**: a missing list is recomputed from the record store (the system of record).
- **unpush**: where several workers fan out at once, a batch's pushes are checked against
  the followers read again after them, and taken back from anyone who unfollowed meanwhile
  (``unpush_unfollowed``).
- **hydrate**: ids become posts through the post cache, then the record store.
- **public**: one more cached list (kind ``public``, key 0) holds the ids of public posts
  (not unlisted ones), pushed by the fan-out consumer, trimmed to the cap, rebuilt from the
  record store when absent, removed on delete; the public timeline reads it like a home.

Reading merges the home timeline with the pulled author lists and drops deleted posts.
Below the highest floor among the merged lists, the page continues from the record store,
so paging walks the whole history with nothing repeated or skipped. Cached lists hold a
superset (every post, reply and boost by the followees, and the reader's own); what a
reader sees is decided on read, here, for every strategy (hybrid, push, pull, cache down),
by the home rules of ``domain.feed_rules`` (docs/conversations.md):

- **author**: the reader's own posts and those of whom the reader follows *now* (so a late
  push after an unfollow never shows);
- **reply**: a reply by A to B != A shows only if the reader is A or B or follows B;
- **boost**: a boost of O is hidden if O's author is the reader, O is gone, or O or another
  boost of O is among the 40 *entries* (posts passing the first two rules) older than it.
  The entry stream is read ahead only when a boost near a page's end needs it.

``home_shows`` answers the same question for one post (the streaming hub asks it).

When the cache is down (its adapter raises ``Unavailable``) reads keep answering from the
record store, the system of record, and write nothing to the cache: a home page is computed
like the ``pull`` strategy (the followees' newest posts), a hydration reads the posts
table; same page contract, merely slower (``counters["cache_fallbacks"]``). The cache updates
an API process makes after a commit (read-your-writes) are best effort: the consumers,
which wait for the cache to return, apply the same updates from the events.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Iterable, Protocol, Sequence, TypeVar

from homefeed.domain.errors import CacheUnavailable, Unavailable
from homefeed.domain.feed_rules import BOOST_WINDOW, boost_hidden, is_celebrity, is_home_entry, on_public_list
from homefeed.domain.model import Post
from homefeed.ports import HomeView, IdSlice, PostCache, RecordStore, TimelineCache
from homefeed.service_layer.home_pages import HomePage, ViewPages

log = logging.getLogger("homefeed.feed")

HOME = "home"
AUTHOR = "author"
PUBLIC = "public"
#: The public timeline is one list: its key.
PUBLIC_KEY = 0
# Extra ids fetched per source beyond the page size, so that a few deleted or filtered
# entries do not force a second round.
SLACK = 8

T = TypeVar("T")
#: See ``FeedManager.small_side_min`` / ``small_side_ratio``.
SMALL_SIDE_MIN = 10_000
SMALL_SIDE_RATIO = 3
#: How many authors' follower counts ``_home_targets`` remembers (then it forgets them all).
FOLLOWER_COUNT_MEMO = 65_536

#: What a batch of the fan-out pushed into home lists, for the check after it
#: (``FeedManager.unpush_unfollowed``): author -> (their post ids, the users pushed to).
Pushed = dict[int, tuple[list[int], set[int]]]


def post_fields(p: Post) -> tuple:
    """What a cached post must agree on with the record store: what reads show and what
    the home rules decide by."""
    return (p.author_id, p.author_handle, p.text, p.visibility, p.in_reply_to_id,
            p.in_reply_to_account_id, p.reblog_of_id)


async def _cache(call: Awaitable[T]) -> T:
    """Await a timeline-cache call; its ``Unavailable`` becomes ``CacheUnavailable`` so
    that a read can tell a cache outage (fall back to the store) from a store outage (503)."""
    try:
        return await call
    except CacheUnavailable:
        raise
    except Unavailable as exc:
        raise CacheUnavailable(exc.message) from exc


class FeedManager:
    def __init__(
        self,
        store: RecordStore,
        cache: TimelineCache,
        posts: PostCache,
        celebrity_threshold: int,
        timeline_cap: int,
        strategy: str = "hybrid",
    ) -> None:
        self.store = store
        self.cache = cache
        self.posts = posts
        #: "hybrid" (the default), "push" (no one is a celebrity) or "pull" (no fan-out;
        #: every read is computed from the record store). The last two exist to measure
        #: the trade-off of DDIA chapter 1 against the hybrid.
        self.strategy = strategy
        self.threshold = celebrity_threshold if strategy != "push" else (1 << 62)
        self.cap = timeline_cap
        #: The fan-out intersects from the small side (``_home_targets``) for an author with
        #: at least this many followers, when they outnumber the cached home timelines at
        #: least ``small_side_ratio`` times (benchmarks/results/issue14_p16push.md).
        self.small_side_min = SMALL_SIDE_MIN
        self.small_side_ratio: float = SMALL_SIDE_RATIO
        #: The follower count each author's last fan-out saw (``_home_targets``): an author
        #: known to have few followers is not asked for again (a query per post).
        self._follower_counts: dict[int, int] = {}
        self.counters = {"rebuilds": 0, "author_rebuilds": 0, "pushes": 0, "db_pages": 0,
                         # fan-outs (posts, deletes) that took the small side (_home_targets)
                         "small_side_fanouts": 0,
                         # reads served by the record store because the cache was down
                         "cache_fallbacks": 0,
                         # read-your-writes cache updates left to the consumers (cache down)
                         "cache_updates_skipped": 0,
                         # home lists a post was taken back from: its reader had unfollowed
                         # its author while the fan-out pushed it (unpush_unfollowed)
                         "unpushed": 0}

    # -- graph facts ----------------------------------------------------------------------
    async def following_of(self, user_id: int) -> frozenset[int]:
        got = await _cache(self.cache.following(user_id))
        if got is None:
            version = await _cache(self.cache.following_version(user_id))
            ids = await self.store.following_ids(user_id)
            await _cache(self.cache.set_following(user_id, ids, version))
            got = frozenset(ids)
        return got

    async def celebrities(self) -> frozenset[int]:
        got = await _cache(self.cache.celebrities())
        if got is None:
            ids = await self.store.celebrity_ids(self.threshold)
            await _cache(self.cache.set_celebrities(ids))
            got = frozenset(ids)
        return got

    async def is_celebrity(self, user_id: int) -> bool:
        return user_id in await self.celebrities()

    async def promote_if_celebrity(self, user_id: int) -> bool:
        """Promotion is immediate, by whoever sees the count cross (API or consumer): from
        then on the author's posts are pulled, which is correct whether or not they were
        pushed. Counts are re-read from the record store, which has the last word."""
        count = await self.store.followers_count(user_id)
        if not is_celebrity(count, self.threshold):
            return False
        await self.celebrities()
        await self.cache.mark_celebrity(user_id, True)
        return True

    async def demote(self, author_id: int) -> None:
        """Demotion is done only by the fan-out consumer (or reconciliation), and always
        with a merge: the author's posts made while a celebrity were never pushed, and are
        no longer pulled once they leave the set."""
        await self.celebrities()
        if await self.cache.mark_celebrity(author_id, False):
            await self.merge_demoted(author_id)

    async def reconcile_celebrities(self) -> None:
        """Make the cached celebrity set equal the record store's counts."""
        truth = set(await self.store.celebrity_ids(self.threshold))
        cached = await self.celebrities()
        for user_id in truth - cached:
            await self.cache.mark_celebrity(user_id, True)
        for user_id in cached - truth:
            await self.demote(user_id)

    # -- rebuild --------------------------------------------------------------------------
    async def rebuild_home(self, user_id: int) -> None:
        await _cache(self.cache.begin(HOME, user_id))  # from now on pushes land in it
        ids = await self.store.home_post_ids(user_id, None, self.cap)
        floor = ids[-1] - 1 if len(ids) >= self.cap else 0
        await _cache(self.cache.install(HOME, user_id, ids, floor))
        self.counters["rebuilds"] += 1

    async def rebuild_author(self, author_id: int) -> None:
        await _cache(self.cache.begin(AUTHOR, author_id))
        ids = await self.store.author_post_ids(author_id, None, self.cap)
        floor = ids[-1] - 1 if len(ids) >= self.cap else 0
        await _cache(self.cache.install(AUTHOR, author_id, ids, floor))
        self.counters["author_rebuilds"] += 1

    async def rebuild_public(self) -> None:
        await _cache(self.cache.begin(PUBLIC, PUBLIC_KEY))
        ids = await self.store.public_post_ids(None, self.cap)
        floor = ids[-1] - 1 if len(ids) >= self.cap else 0
        await _cache(self.cache.install(PUBLIC, PUBLIC_KEY, ids, floor))
        self.counters["public_rebuilds"] = self.counters.get("public_rebuilds", 0) + 1

    async def _slice(self, kind: str, key: int, before: int | None, n: int) -> IdSlice:
        got = await _cache(self.cache.slice(kind, key, before, n))
        if got is None:
            if kind == HOME:
                await self.rebuild_home(key)
            elif kind == PUBLIC:
                await self.rebuild_public()
            else:
                await self.rebuild_author(key)
            got = await _cache(self.cache.slice(kind, key, before, n))
            if got is None:  # evicted at once (a cache too small): read the store directly
                ids = await (
                    self.store.home_post_ids(key, before, n)
                    if kind == HOME
                    else self.store.public_post_ids(before, n)
                    if kind == PUBLIC
                    else self.store.author_post_ids(key, before, n)
                )
                return IdSlice(ids, 0 if len(ids) < n else ids[-1] - 1)
        return got

    # -- hydrate --------------------------------------------------------------------------
    async def hydrate(self, ids: Sequence[int]) -> dict[int, Post]:
        """Posts by id from the post cache, the rest from the record store (and cached).
        With the post cache down, all from the record store, nothing cached."""
        if not ids:
            return {}
        try:
            got = await self.posts.get_many(ids)
        except Unavailable:  # the post cache is down (a store outage would fail below too)
            self.counters["cache_fallbacks"] += 1
            return {p.id: p for p in await self.store.posts_by_ids(ids)}
        if len(got) < len(ids):
            missing = [i for i in ids if i not in got]
            fetched = await self.store.posts_by_ids(missing)
            if fetched:
                try:
                    await self.posts.put_many(fetched)
                except Unavailable:
                    pass  # went down meanwhile: the posts are still right, just not cached
                for p in fetched:
                    got[p.id] = p
        return got

    # -- read -----------------------------------------------------------------------------
    async def read_home(
        self, user_id: int, before: int | None, limit: int
    ) -> tuple[list[Post], int | None]:
        """One page of the home timeline, newest first, and the cursor of the next page.

        Every strategy gives the same entry stream to one rule engine (``_home_page``):
        the hybrid reads the cached home list merged with the pulled author lists, then
        the record store past their floor; ``pull`` and the cache-down fallback read the
        record store alone."""
        if self.strategy == "pull":
            return await self.read_home_from_store(user_id, before, limit)
        try:
            return await self._read_home_cached(user_id, before, limit)
        except CacheUnavailable:
            self.counters["cache_fallbacks"] += 1
            return await self.read_home_from_store(user_id, before, limit)

    async def read_home_from_store(
        self, user_id: int, before: int | None, limit: int
    ) -> tuple[list[Post], int | None]:
        """The page from the record store alone (approach 1, the cache down, and what the
        audit compares the cached read with): the newest posts of the user and of whom
        they follow, below ``before``, through the same home rules."""
        following = frozenset(await self.store.following_ids(user_id))
        return await self._home_page(user_id, following, _StoreHomeIds(self.store, user_id, before), limit)

    _read_home_from_store = read_home_from_store  # the name older tests use

    @staticmethod
    def _pulled_authors(user_id: int, following: frozenset[int], celebs: frozenset[int]) -> list[int]:
        """The authors whose cached author lists a home read merges in: the celebrities the
        reader follows, and the reader (read-your-writes)."""
        if len(celebs) <= len(following):
            pulled = [c for c in celebs if c in following]
        else:
            pulled = [f for f in following if f in celebs]
        pulled.append(user_id)
        return pulled

    async def _read_home_cached(
        self, user_id: int, before: int | None, limit: int
    ) -> tuple[list[Post], int | None]:
        """The first round comes from one ``home_view`` call (one Redis round trip): the
        home list, the reader's own author list, and the following and celebrity sets when
        the adapter's copies are current; only what it could not answer is asked for
        separately. The first batch the page asks for is ``limit + SLACK`` ids (see
        ``_home_page``): that is what the view slices."""
        n = limit + SLACK
        view = await _cache(self.cache.home_view(user_id, before, n))
        posts, next_id, _ = await self._page_from_view(user_id, view, before, n, limit)
        return posts, next_id

    async def _page_from_view(
        self, user_id: int, view: HomeView, before: int | None, n: int, limit: int
    ) -> tuple[list[Post], int | None, "_CachedHomeIds"]:
        following = view.following
        if following is None:
            following = await self.following_of(user_id)
        celebs = view.celebrities
        if celebs is None:
            celebs = await self.celebrities()
        pulled = self._pulled_authors(user_id, following, celebs)
        source = _CachedHomeIds(self, user_id, pulled, before, first=(n, view.home, view.own))
        posts, next_id = await self._home_page(user_id, following, source, limit)
        return posts, next_id, source

    async def first_home_page(self, user_id: int, limit: int, pages: ViewPages) -> HomePage:
        """``read_home(user_id, None, limit)`` as a ``HomePage``, the kept one of ``pages``
        when it is still what a fresh read would compute (the scale-out profile's kept first
        pages, ``home_pages.ViewPages``): the ``home_view`` call a read starts with is made
        anyway, and its ``fingerprint`` (the two slices, the following and celebrity
        versions, the post deletes' version) equals the one the kept page was computed
        from, and so do the slices of the followed celebrities' author lists (asked again,
        one call each). Only a page computed from the first round alone is kept (no later
        round, nothing read past the lists' floor from the record store): then it is a
        function of exactly those facts and of the posts, which never change but by a delete."""
        if self.strategy == "pull":
            posts, next_id = await self.read_home_from_store(user_id, None, limit)
            return HomePage(posts, next_id)
        try:
            n = limit + SLACK
            kept = pages.get(user_id, limit)
            view = await _cache(self.cache.home_view(user_id, None, n, None if kept is None else kept[0]))
            fp = view.fingerprint
            if fp is not None:
                if kept is not None and kept[0] == fp:
                    if await self._same_slices(kept[1], n):
                        pages.hits += 1
                        return kept[2]
                    # a followed celebrity posted: the view answered the fingerprint alone
                    view = await _cache(self.cache.home_view(user_id, None, n))
                    fp = view.fingerprint
                pages.misses += 1
            posts, next_id, source = await self._page_from_view(user_id, view, None, n, limit)
        except CacheUnavailable:
            self.counters["cache_fallbacks"] += 1
            posts, next_id = await self.read_home_from_store(user_id, None, limit)
            return HomePage(posts, next_id)
        page = HomePage(posts, next_id)
        if fp is not None and source.rounds == 1:
            pages.put(user_id, limit, (fp, source.pulled_slices, page))
        return page

    async def _same_slices(self, slices: Sequence[tuple[int, IdSlice]], n: int) -> bool:
        for author, s in slices:
            if await _cache(self.cache.slice(AUTHOR, author, None, n)) != s:
                return False
        return True

    async def _home_page(
        self, user_id: int, following: frozenset[int], source: "_IdSource", limit: int
    ) -> tuple[list[Post], int | None]:
        """The home rules, in one place: the ids of ``source`` become *entries* (posts that
        exist and pass the author and reply rules), and each entry is shown unless it is a
        boost the boost rule hides. The boost rule looks at the ``BOOST_WINDOW`` entries
        older than the boost, so the stream is read ahead only when a boost near the end of
        the page needs it. An entry's fate depends on it and the entries older than it, so
        a page that starts at the cursor of the previous one continues the same sequence
        (no repeat, no skip) whatever the limit."""
        stream = _Entries(self, user_id, following, source)
        entries, boosts = stream.entries, stream.boosts
        out: list[Post] = []
        i = b = 0  # the next entry, the next boost in ``boosts``
        while True:
            need = limit - len(out)
            if not need:
                return out, out[-1].id
            if i >= len(entries):
                await stream.reach(i + need - 1, need + SLACK)
                if i >= len(entries):
                    return out, None
            # A run of entries that are not boosts: shown as they are.
            while b < len(boosts) and boosts[b] < i:
                b += 1
            j = min(len(entries), i + need, boosts[b] if b < len(boosts) else i + need)
            if j > i:
                out.extend(entries[i:j])
                i = j
                continue
            p = entries[i]  # a boost
            await stream.reach(i + BOOST_WINDOW, BOOST_WINDOW + SLACK)
            older = entries[i + 1 : i + 1 + BOOST_WINDOW]
            if not boost_hidden(p, await stream.original(i), user_id, older):
                out.append(p)
            i += 1

    async def home_shows(self, user_id: int, post: Post) -> bool:
        """Would ``post`` appear in ``user_id``'s home as of now (the streaming hub asks,
        per connection and event)? For a post that is not a boost: the author and reply
        rules against the reader's follows (one following-set lookup). For a boost, the
        boost rule too: its original, and the entries of the home older than it."""
        try:
            following = await self.following_of(user_id)
        except CacheUnavailable:
            following = frozenset(await self.store.following_ids(user_id))
        if not is_home_entry(post, user_id, following):
            return False
        if post.reblog_of_id is None:
            return True
        originals = await self.hydrate([post.reblog_of_id])
        original = originals.get(post.reblog_of_id)
        if original is None or original.author_id == user_id:
            return False
        try:
            pulled = self._pulled_authors(user_id, following, await self.celebrities())
            source: _IdSource = _CachedHomeIds(self, user_id, pulled, post.id)
            stream = _Entries(self, user_id, following, source)
            await stream.reach(BOOST_WINDOW - 1, BOOST_WINDOW + SLACK)
        except CacheUnavailable:
            stream = _Entries(self, user_id, following, _StoreHomeIds(self.store, user_id, post.id))
            await stream.reach(BOOST_WINDOW - 1, BOOST_WINDOW + SLACK)
        return not boost_hidden(post, original, user_id, stream.entries[:BOOST_WINDOW])

    async def read_public(self, before: int | None, limit: int) -> tuple[list[Post], int | None]:
        """One page of the public timeline (public posts of everyone, newest first) and the
        cursor of the next: from the cached ``public`` list, then, below its floor, from the
        record store; with the cache down, from the record store."""
        try:
            return await self._read_list_cached(PUBLIC, PUBLIC_KEY, before, limit, self.store.public_post_ids)
        except CacheUnavailable:
            self.counters["cache_fallbacks"] += 1
            return await self._read_store_ids(self.store.public_post_ids, before, limit)

    async def read_author(self, author_id: int, before: int | None, limit: int) -> tuple[list[Post], int | None]:
        """One page of an author's posts (public and unlisted), from their cached list."""
        async def store_ids(b: int | None, n: int) -> list[int]:
            return await self.store.author_post_ids(author_id, b, n)
        try:
            return await self._read_list_cached(AUTHOR, author_id, before, limit, store_ids)
        except CacheUnavailable:
            self.counters["cache_fallbacks"] += 1
            return await self._read_store_ids(store_ids, before, limit)

    async def _read_list_cached(self, kind: str, key: int, before: int | None, limit: int,
                                store_ids) -> tuple[list[Post], int | None]:
        out: list[Post] = []
        cursor = before
        while True:
            n = limit - len(out) + SLACK
            s = await self._slice(kind, key, cursor, n)
            posts = await self.hydrate(s.ids)
            for i in s.ids:
                p = posts.get(i)
                if p is None or (kind == PUBLIC and not on_public_list(p)):
                    continue
                out.append(p)
                if len(out) == limit:
                    return out, p.id
            if len(s.ids) >= n:
                cursor = s.ids[-1]
                continue
            if s.floor == 0:
                return out, None
            # Past the cache's floor: continue from the system of record.
            self.counters["db_pages"] += 1
            start = s.floor + 1 if cursor is None else min(cursor, s.floor + 1)
            rest, nxt = await self._read_store_ids(store_ids, start, limit - len(out))
            out.extend(rest)
            return out, nxt

    async def _read_store_ids(self, store_ids: Callable[[int | None, int], Awaitable[list[int]]],
                              before: int | None, limit: int) -> tuple[list[Post], int | None]:
        """A page continued from the system of record, past a cached list's floor (home,
        public): ``store_ids(before, n)`` gives ids newest first; posts deleted since their
        id was read are skipped and the read goes on, so a page is short only at the end."""
        out: list[Post] = []
        start = before
        while True:  # a post deleted since its id was read is skipped: read on
            need = limit - len(out)
            if need <= 0:
                return out, out[-1].id if out else None
            ids = await store_ids(start, need)
            posts = await self.hydrate(ids)
            out.extend(posts[i] for i in ids if i in posts)
            if len(ids) < need:
                return out, None
            if len(out) == limit:
                return out, ids[-1]
            start = ids[-1]

    # -- after a commit, in the API process (read-your-writes) -----------------------------
    # Best effort: the write is committed (with its event) before these run, so a backend
    # that fails here must not turn the answer into an error; the fan-out consumer applies
    # the same updates from the event once the backend is back, and reads meanwhile come
    # from the record store.
    async def posted(self, post: Post) -> None:
        """Read-your-writes after a post's commit: its author list (and the public list)
        has it before the fan-out consumer gets to it. A boost can be deleted before this
        runs (deleting its original deletes its boosts, by someone else's request), and its
        delete's event may be applied already: then this push would put back what nobody
        removes again. So, as the consumers do, apply, then check the record store, then
        correct (a boost only: nothing but its author deletes a plain post, and the author
        has not had its id yet)."""
        try:
            await self.posts.put_many([post])
            await self.cache.push(AUTHOR, [post.author_id], post.id)
            if on_public_list(post):
                await self.cache.push(PUBLIC, [PUBLIC_KEY], post.id)
            if post.reblog_of_id is not None and not await self.store.present_post_ids([post.id]):
                await self.deleted(post.id, post.author_id)
        except Unavailable as exc:
            self._update_skipped("post", exc)

    async def deleted(self, post_id: int, author_id: int) -> None:
        try:
            await self.posts.delete([post_id])
            await self.cache.remove(AUTHOR, [author_id], [post_id])
            await self.cache.remove(PUBLIC, [PUBLIC_KEY], [post_id])
        except Unavailable as exc:
            self._update_skipped("delete", exc)

    async def follows_changed(self, follower_id: int, followee_id: int) -> None:
        try:
            await self.cache.forget_following(follower_id)
            await self.promote_if_celebrity(followee_id)
        except Unavailable as exc:
            self._update_skipped("follow", exc)

    def _update_skipped(self, what: str, exc: Unavailable) -> None:
        self.counters["cache_updates_skipped"] += 1
        log.debug("cache update after a %s left to the consumers: %s", what, exc)

    # -- fan-out (the consumer of post and follow events) ----------------------------------
    async def followers_to_push(self, author_ids: Iterable[int]) -> dict[int, list[int]]:
        """The followers of the authors whose posts ``fan_out_post`` pushes, read at once
        for a batch of posts (``RecordStore.follower_ids_of``): every author but the
        celebrities (pulled, and whose lists are long) and those known to have as many
        followers as take the small side has an entry, empty or not."""
        if self.strategy == "pull":
            return {}
        celebs = await self.celebrities()
        # Not the authors known to take the small side (``_home_targets``): reading their
        # followers is what it avoids (1,000,000 rows); ``fan_out_post`` reads for them.
        counts, big = self._follower_counts, self.small_side_min
        wanted = [a for a in author_ids if a not in celebs and counts.get(a, 0) < big]
        if not wanted:
            return {}
        got = await self.store.follower_ids_of(wanted)
        return {a: got.get(a, []) for a in wanted}

    async def fan_out_post(self, post: Post, followers: Sequence[int] | None = None,
                           pushed: Pushed | None = None) -> int:
        """Push a new post (a boost too: it fans out by the booster's followers) into its
        followers' cached timelines, unless its author is a celebrity (then it is pulled
        from the author list, which holds their boosts and replies too); a public post that
        is neither a boost nor a reply to someone else also goes into the public timeline's
        list. Replies to others are pushed like posts: the reply rule is applied on read.
        Idempotent: pushing an id twice leaves one entry. ``followers``: the author's, if
        the caller read them already (``followers_to_push``). ``pushed``: where to note
        whom the post went to, for ``unpush_unfollowed``."""
        if on_public_list(post):
            await self.cache.push(PUBLIC, [PUBLIC_KEY], post.id)
        if self.strategy == "pull":
            return 0
        await self.cache.push(AUTHOR, [post.author_id], post.id)
        if await self.is_celebrity(post.author_id):
            return 0
        targets = await self._home_targets(post.author_id, followers)
        taken = await self.cache.push(HOME, targets, post.id)
        self.counters["pushes"] += taken
        if pushed is not None and targets:
            ids, users = pushed.setdefault(post.author_id, ([], set()))
            ids.append(post.id)
            users.update(targets)
        return taken

    async def unpush_unfollowed(self, pushed: Pushed) -> int:
        """Take a batch's posts back from the home lists of users who unfollowed the author
        while the fan-out pushed them. Needed where several workers apply the fan-out's
        events at once (JetStream): the fan-out reads an author's followers, then pushes;
        an unfollow committed in between and applied by another worker in between too (its
        unmerge removes what the list held then) leaves the post in the list of someone who
        no longer follows its author, and no later event removes it (reads hide it, by the
        author rule; the audit finds it). One worker applying events in order needs none of
        this: the unfollow's event comes after the post's and is applied after its push.

        So, after the pushes: read the followers again and remove the batch's posts from
        the lists of those who stopped following. An unfollow committed after that read is
        unmerged after it, hence after the pushes. A follow committed again between the
        read and the removal may have merged the posts just before they are removed: those
        users are looked up once more and merged again. Returns the lists corrected."""
        if not pushed:
            return 0
        small: list[int] = []
        now: dict[int, list[int]] = {}
        for a, (_, users) in pushed.items():
            if self._follower_counts.get(a, 0) >= self.small_side_min:  # 1,000,000 followers:
                now[a] = await self.store.followers_among(a, list(users))  # only those pushed to
            else:
                small.append(a)
        if small:
            now.update(await self.store.follower_ids_of(small))
        fixed = 0
        for author, (post_ids, users) in pushed.items():
            gone = users.difference(now.get(author, ()))
            if not gone:
                continue
            await self.cache.remove(HOME, list(gone), post_ids)
            fixed += len(gone)
            for back in await self.store.followers_among(author, list(gone)):
                await self.merge_followee(back, author)
        self.counters["unpushed"] += fixed
        return fixed

    async def _home_targets(self, author_id: int, followers: Sequence[int] | None) -> Sequence[int]:
        """The home lists a post of ``author_id`` is pushed to: their followers (``followers``
        if read already), or, when they far outnumber the cached home timelines (1,000,000
        followers, 10,000 timelines), the followers among the users with a cached timeline
        (``TimelineCache.home_keys``, then ``RecordStore.followers_among``): 10,000 lookups
        instead of reading 1,000,000 followers and pushing to 990,000 absent lists.

        Why both reach the same lists (the race with a rebuild). A rebuild calls ``begin``
        (from then on pushes land in the list), then reads the record store, then installs.
        The old path pushes to every follower's list that exists at the moment of its push;
        a list created after that moment is rebuilt by a store read that follows the post's
        commit (the fan-out runs from the outbox, after the commit), so it holds the post
        anyway. The small side lists the cached timelines a little earlier (before the
        follower lookup) and pushes only to those: a list created between the listing and
        the push is skipped. It too was created after the fan-out began, hence after the
        commit, so its rebuild holds the post for the same reason. Every list that exists
        at the listing is in it (``home_keys`` promises it; on Redis the registry is kept by
        the very scripts that create lists, ``lua/live.lua``), so the window is the old
        one, moved earlier, never wider. Followers are a snapshot either way (read at some
        moment of the fan-out); a follow committed meanwhile has its own event, whose merge
        brings the post."""
        known = len(followers) if followers is not None else self._follower_counts.get(author_id)
        if known is None or known >= self.small_side_min:  # a big author, or not known: ask
            n = known if followers is not None else await self.store.followers_count(author_id)
            assert n is not None
            self._remember(author_id, n)
            if n >= self.small_side_min:
                live = await self.cache.home_keys(int(n / self.small_side_ratio))
                if live is not None:
                    self.counters["small_side_fanouts"] += 1
                    if followers is not None:
                        return list(set(live).intersection(followers))
                    return await self.store.followers_among(author_id, live)
        if followers is None:
            followers = await self.store.follower_ids(author_id)
        self._remember(author_id, len(followers))
        return followers

    def _remember(self, author_id: int, count: int) -> None:
        """The follower count seen for an author (exact when the followers were read; a
        count gone stale only picks the other path for one post, both are correct)."""
        counts = self._follower_counts
        if len(counts) >= FOLLOWER_COUNT_MEMO and author_id not in counts:
            counts.clear()  # bounded; cheaper than an LRU on every post
        counts[author_id] = count

    async def fan_out_delete(self, post_id: int, author_id: int) -> None:
        await self.posts.delete([post_id])
        await self.cache.remove(AUTHOR, [author_id], [post_id])
        await self.cache.remove(PUBLIC, [PUBLIC_KEY], [post_id])
        # The followers' cached lists, chosen as for the post (``_home_targets``: a list
        # created after the choice is rebuilt by a store read after the delete's commit),
        # and the author's own home list too: a rebuild fills it with their own posts.
        followers = await self._home_targets(author_id, None)
        await self.cache.remove(HOME, [*followers, author_id], [post_id])

    async def merge_followee(self, follower_id: int, followee_id: int) -> None:
        # Also done by the API process after the commit, but best effort there (the cache
        # may have been down, and come back with the old set): forgetting twice is harmless.
        await self.cache.forget_following(follower_id)
        if await self.promote_if_celebrity(followee_id) or await self.is_celebrity(followee_id):
            return  # pulled at read time
        if not await self.cache.exists(HOME, [follower_id]):
            return  # rebuilt on the next read, follow included
        recent = await self._slice(AUTHOR, followee_id, None, self.cap)
        await self.cache.merge(HOME, follower_id, recent.ids, recent.floor)

    async def unmerge_followee(self, follower_id: int, followee_id: int) -> None:
        await self.cache.forget_following(follower_id)  # as in merge_followee
        recent = await self._slice(AUTHOR, followee_id, None, self.cap)
        await self.cache.remove(HOME, [follower_id], recent.ids)
        if await self.is_celebrity(followee_id):
            count = await self.store.followers_count(followee_id)
            if not is_celebrity(count, self.threshold):
                await self.demote(followee_id)

    async def merge_demoted(self, author_id: int, recent: IdSlice | None = None) -> None:
        """A celebrity became ordinary: their posts were never pushed, so merge their recent
        posts into the timeline of every follower that has one."""
        if recent is None:
            recent = await self._slice(AUTHOR, author_id, None, self.cap)
        followers = await self.cache.exists(HOME, await self.store.follower_ids(author_id))
        for f in followers:
            await self.cache.merge(HOME, f, recent.ids, recent.floor)


# -- the entry stream of a home read ---------------------------------------------------------
class _IdSource(Protocol):
    """Where a home read takes its ids: batches, newest first, each batch complete in its
    range and older than the one before; ``done`` once there is nothing older."""

    done: bool

    async def next(self, n: int) -> list[int]: ...


class _StoreHomeIds:
    """The home's ids straight from the record store (``pull``, the cache down)."""

    def __init__(self, store: RecordStore, user_id: int, before: int | None) -> None:
        self.store, self.user_id, self.start = store, user_id, before
        self.done = False

    async def next(self, n: int) -> list[int]:
        ids = await self.store.home_post_ids(self.user_id, self.start, n)
        if len(ids) < n:
            self.done = True
        else:
            self.start = ids[-1]
        return ids


class _CachedHomeIds:
    """The hybrid: the cached home list merged with the pulled author lists, then, below
    the highest floor among them, the record store. Each round asks every list for ``n``
    ids below the cursor; below the last id of a list that returned ``n`` (the *cut*) that
    list may hold more, so the round yields only what is above the cut (or the floor)."""

    def __init__(
        self, feed: "FeedManager", user_id: int, pulled: Sequence[int], before: int | None,
        first: tuple[int, IdSlice | None, IdSlice | None] | None = None,
    ) -> None:
        self.feed, self.user_id, self.pulled = feed, user_id, pulled
        self.cursor = before
        self.store_ids: _StoreHomeIds | None = None  # past the cache's floor
        self.done = False
        #: (n, home slice, own author slice) already read for the first round at ``before``
        #: (``home_view``); a None slice (absent, building) is sliced again, which rebuilds.
        self.first = first
        #: Calls of ``next`` so far, and the pulled author lists' slices (not the reader's
        #: own) of the first (what a kept first page was computed from: ``first_home_page``).
        self.rounds = 0
        self.pulled_slices: list[tuple[int, IdSlice]] = []

    async def next(self, n: int) -> list[int]:
        self.rounds += 1
        if self.store_ids is not None:
            ids = await self.store_ids.next(n)
            self.done = self.store_ids.done
            return ids
        feed, cursor, user_id = self.feed, self.cursor, self.user_id
        first, self.first = self.first, None
        if first is not None and first[0] == n:
            _, home, own = first
        else:
            home = own = None
        slices = [home if home is not None else await feed._slice(HOME, user_id, cursor, n)]
        for author in self.pulled:
            if author == user_id and own is not None:
                slices.append(own)
            else:
                slices.append(await feed._slice(AUTHOR, author, cursor, n))
                if author != user_id and self.rounds == 1:
                    self.pulled_slices.append((author, slices[-1]))
        floor_bound = 0
        cut_bound = 0  # below this a source that returned n ids may hold more
        for s in slices:
            if s.floor > floor_bound:
                floor_bound = s.floor
            if len(s.ids) >= n and s.ids[-1] - 1 > cut_bound:
                cut_bound = s.ids[-1] - 1
        bound = max(floor_bound, cut_bound)
        candidates = sorted({i for s in slices for i in s.ids if i > bound}, reverse=True)
        if cut_bound > floor_bound:
            self.cursor = cut_bound + 1
        elif bound == 0:
            self.done = True
        else:  # past the cache's floor: continue from the system of record
            feed.counters["db_pages"] += 1
            start = bound + 1 if cursor is None else min(cursor, bound + 1)
            self.store_ids = _StoreHomeIds(feed.store, self.user_id, start)
        return candidates


class _Entries:
    """The entries of one home read (posts that exist and pass the author and reply rules),
    read from ``source`` only as far as asked: each batch of ids is hydrated at once, but
    filtered into ``entries`` lazily, so a page costs the posts it shows. The originals
    of boosts are hydrated (through the post cache) when a boost is decided."""

    def __init__(self, feed: "FeedManager", user_id: int, following: frozenset[int], source: _IdSource) -> None:
        self.feed, self.user_id, self.following, self.source = feed, user_id, following, source
        self.entries: list[Post] = []
        #: The indexes in ``entries`` of the boosts, ascending.
        self.boosts: list[int] = []
        self.originals: dict[int, Post] = {}
        self._asked: set[int] = set()
        self._ids: list[int] = []  # the batch being filtered, and where
        self._at = 0
        self._posts: dict[int, Post] = {}

    async def reach(self, upto: int, n: int) -> None:
        """Read on until entry ``upto`` exists or the stream ends (batches of ``n`` ids per
        source)."""
        entries = self.entries
        reader, following = self.user_id, self.following
        while len(entries) <= upto:
            ids, at = self._ids, self._at
            if at >= len(ids):
                if self.source.done:
                    return
                ids = await self.source.next(n)
                self._ids, self._at = ids, 0
                self._posts = await self.feed.hydrate(ids) if ids else {}
                continue
            posts, add = self._posts, entries.append
            room = upto + 1 - len(entries)
            self._at = len(ids)
            for k in range(at, len(ids)):
                p = posts.get(ids[k])
                if p is None:
                    continue
                # The author and reply rules (feed_rules.is_home_entry), the common case
                # (not a reply to someone else) spelled out: this runs for every post read.
                to = p.in_reply_to_account_id
                if to is None or to == p.author_id:
                    if p.author_id != reader and p.author_id not in following:
                        continue
                elif not is_home_entry(p, reader, following):
                    continue
                if p.reblog_of_id is not None:
                    self.boosts.append(len(entries))
                add(p)
                room -= 1
                if not room:
                    self._at = k + 1
                    break

    async def original(self, index: int) -> Post | None:
        """The original of the boost ``entries[index]`` (None: gone). Hydrates those of
        every boost read so far at once (one post-cache round trip)."""
        o = self.entries[index].reblog_of_id
        if o not in self._asked:
            want = {p.reblog_of_id for p in self.entries[index:]
                    if p.reblog_of_id is not None and p.reblog_of_id not in self._asked}
            self._asked.update(want)
            self.originals.update(await self.feed.hydrate(sorted(want)))
        return self.originals.get(o)  # type: ignore[arg-type]
