"""The Mastodon client API's use cases that are not plain ``/v1`` ones: statuses and
accounts as Mastodon entities (cached, pre-serialised), paging by ``max_id``/``since_id``/
``min_id``, relationships, the public and tag timelines, search.

Every timeline rule stays in ``FeedManager``; this module only shapes what it returns.

Speed: a Status is spliced per request from bytes: the post's viewer-independent part
(``status_base`` without ``account`` and without what changes, cached per post: the post is
immutable), the author's Account entity (cached per user for ``ACCOUNT_TTL`` seconds, since
its counts change, or longer while the record store has committed nothing since it was
read: ``MastodonApi._fresh``) and its tail (``conversations.status_tail``): the counters, the boosted
original (a boost is the booster's wrapper with ``reblog`` = the original's Status) and the
viewer's ``favourited``/``reblogged``. The tails of a whole page come from ONE
``RecordStore.post_stats`` call, and render no HTML.

On the embedded profile the rows of ``post_stats`` and the first home page's rendering are
kept (``_post_stats``, ``home_rendered``): the store reports what each commit of this process
changed (``SqliteDatabase.on_shown_change``, told to ``_shown_changed``), so only what shows
a changed post or profile is dropped, and another process's commit drops everything (the
store's version moves). A warm home read runs no statement.
"""

from __future__ import annotations

import gzip
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Hashable

import orjson

from homefeed.domain.errors import Forbidden, NotFound
from homefeed.domain.ids import id_time
from homefeed.domain.mastodon import entities as E
from homefeed.domain.mastodon.content import extract_hashtags
from homefeed.domain.mastodon.conversations import status_tail
from homefeed.domain.mastodon.pagination import Page
from homefeed.domain.model import Post, User
from homefeed.domain.text import query_terms
from homefeed.service_layer.conversations import Conversations
from homefeed.service_layer.home_pages import first_page
from homefeed.service_layer.idempotency import IdempotentRequest
from homefeed.service_layer.services import Homefeed

#: zlib level of the kept home renderings' gzip answers (``Rendered.gzipped``).
GZIP_LEVEL = 1
#: Seconds an Account entity (with its counts) is reused before it is read again.
ACCOUNT_TTL = 30.0
_MAX_CACHED = 100_000
#: How far a ``min_id`` page walks down from the top, in statuses, before giving up.
MIN_ID_WALK = 4000

#: The members of ``status_base`` that change after a post is written: spliced per request
#: (``status_tail``) from one ``post_stats`` call, never cached.
_SPLICED = ("replies_count", "reblogs_count", "favourites_count", "reblog")

#: A Status's cached head (``MastodonApi._full``): the expiry of its Account part, the
#: bytes (account and base, open), the author's id and the version its Account was read at.
Head = tuple[float, bytes, int, Hashable]

Fetch = Callable[[int | None, int], Awaitable[tuple[list[Post], int | None]]]

#: What a list of Statuses is assembled from (``MastodonApi._assemble``): the posts, the
#: boosted originals by id, the counters and viewer flags by post id (``post_stats``),
#: whether there is a viewer, and whether posts without counters (gone) are left out.
Sources = tuple[list[Post], dict[int, Post], dict[int, Any], bool, bool]


def account_view(user: User) -> E.AccountView:
    return E.AccountView(
        id=user.id,
        username=user.handle,
        display_name=user.display_name,
        created_at=id_time(user.id),
        note=user.note,
        followers_count=user.followers_count,
        following_count=user.following_count,
        statuses_count=user.posts_count,
    )


class MastodonApi:
    def __init__(self, hf: Homefeed) -> None:
        self.hf = hf
        # (base url, post id) -> the status without account/viewer, as JSON object members
        self._bases: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        # (base url, user id) -> (expiry, Account JSON bytes, Account dict, the user's
        # version read just before the user was read, or None: ``_fresh``)
        self._accounts: dict[tuple[str, int], tuple[float, bytes, dict[str, Any], Hashable]] = {}
        # base url -> post id -> (expiry of its account part, the Status's head: account and
        # base, open, the author's id, to forget it when the author's profile changes, and
        # the account part's version): a warm timeline is one dict lookup per status, plus
        # its tail (status_tail).
        self._full: dict[str, dict[int, Head]] = {}
        #: Kept home renderings assembled again when only an Account part's TTL had passed
        #: (``home_rendered``): no ``post_stats`` statement.
        self.revalidated = 0
        #: Threads, favourites, boosts, notifications and markers (issue 11).
        self.conversations = Conversations(self)
        #: The record store's "nothing was committed since" value (SQLite's wal-index
        #: header: ``SqliteDatabase.shown_version``, which the read counter's commits do not
        #: move), which lets a rendered home page be kept (``home_body``); None
        #: (PostgreSQL, several processes): every read renders.
        db: Any = getattr(hf.store, "db", None)
        self._data_version: Callable[[], Hashable] | None = (
            db.shown_version if hf.store.backend == "sqlite" and hasattr(db, "shown_version") else None)
        #: What this process's commits changed that a Status shows, as the store reports it
        #: (``SqliteDatabase.on_shown_change``): a user's changes (id -> how many) make the
        #: Account parts read before them stale (``_user_version``); readers whose kept
        #: rendering shows a changed post or user (``_showing_posts``, ``_showing_users``) lose it.
        self._user_changes: dict[int, int] = {}
        self._showing_posts: dict[int, set[int]] = {}
        self._showing_users: dict[int, set[int]] = {}
        #: user -> readers whose rendering's ``until`` was already bounded by that user's
        #: Account part (a change of its counts): not walked again by the next such change
        #: (each post is one), only dropped by a change of its profile
        self._bounded_users: dict[int, set[int]] = {}
        #: bumped by every report of changes: a rendering is kept only if none came while it
        #: was made (``home_rendered``)
        self._changes = 0
        #: post id -> viewer -> its ``post_stats`` row, kept while nothing changes it, under
        #: the store version ``_stats_version`` (``_post_stats``)
        self._stats: dict[int, dict[int | None, Any]] = {}
        self._stats_version: Hashable = None
        self._stats_kept = 0
        self._telling: Callable[[], bool] | None = None
        if self._data_version is not None and hasattr(db, "on_shown_change"):
            db.on_shown_change(self._shown_changed)
            self._telling = db.telling

    # -- accounts -------------------------------------------------------------------------
    async def user_by_id(self, user_id: int) -> User:
        user = await self.hf.store.user_by_id(user_id)
        if user is None:
            raise NotFound("Record not found")
        return user

    def _account_from_user(self, urls: E.Urls, user: User, version: Hashable = None) -> tuple[bytes, dict[str, Any]]:
        """``version``: the record store's version read before ``user`` was (None: unknown)."""
        entity = E.account_entity(account_view(user), urls)
        raw = orjson.dumps(entity)
        if len(self._accounts) > _MAX_CACHED:
            self._accounts.clear()
        self._accounts[(urls.base, user.id)] = (time.monotonic() + ACCOUNT_TTL, raw, entity, version)
        return raw, entity

    def _version(self) -> Hashable:
        """The record store's version now (None without one: PostgreSQL)."""
        version_of = self._data_version
        return None if version_of is None else version_of()

    def _user_version(self, user_id: int, version: Hashable = None) -> Hashable:
        """A user's row's version: the record store's (``version``, else now) and how many
        changes of the row this process's commits made (``_shown_changed``); None without a
        store version."""
        if version is None:
            version = self._version()
            if version is None:
                return None
        return (version, self._user_changes.get(user_id, 0))

    def _fresh(self, expiry: float, version: Hashable, now: float, user_id: int) -> bool:
        """May a cached Account part of ``user_id`` (read at ``version``, kept until
        ``expiry``) be shown? Within ``ACCOUNT_TTL`` of its read, as always; and past it
        while the row's version is still ``version`` (nothing committed by another process,
        no change of the row by this one): the row is then the one a new read would return,
        so showing it is as fresh as reading it again. Without that second rule every kept
        home rendering was rendered again as soon as the first of its ~20 Account parts
        expired, i.e. every ~1.5 s (the parts are shared by all pages and expire at spread
        times), one ``post_stats`` statement and ~20 users read each time, on a store where
        nothing had changed."""
        return expiry > now or (version is not None and version == self._user_version(user_id))

    async def account_bytes(self, urls: E.Urls, user_id: int) -> tuple[bytes, dict[str, Any]]:
        got = self._accounts.get((urls.base, user_id))
        if got is not None and self._fresh(got[0], got[3], time.monotonic(), user_id):
            return got[1], got[2]
        version = self._user_version(user_id)
        return self._account_from_user(urls, await self.user_by_id(user_id), version)

    def _shown_changed(self, changed: list[tuple[str, int]]) -> None:
        """(``SqliteDatabase.on_shown_change``, on the loop, before the writes' callers hear
        of their commit.) ``changed``: ("post", id) whose counters, boosts or favourites
        changed, ("user", id) whose row changed, ("profile", id) whose names or note did.
        The kept renderings that show a changed post or profile are dropped; the Account
        parts of a changed user become stale (``_user_version``), and a rendering showing
        one may be shown until that part's ``ACCOUNT_TTL`` passes (as any cached Account:
        counts change with every post and follow); the other renderings stay valid, since
        the commit no longer moves the store's version."""
        if not changed:
            return
        self._changes += 1
        users = self._user_changes
        showing_posts, showing_users = self._showing_posts, self._showing_users
        stats = self._stats
        readers: set[int] = set()
        authors: dict[int, set[int]] = {}
        for kind, id_ in changed:
            if kind == "user":  # counts: its Account may be shown until its part expires
                users[id_] = users.get(id_, 0) + 1
                got = showing_users.pop(id_, None)
                if got:
                    authors[id_] = got
                    bounded = self._bounded_users.get(id_)
                    if bounded is None:
                        self._bounded_users[id_] = got
                    else:
                        bounded |= got
            elif kind == "profile":  # names, note: shown at once, as the owner expects
                for index in (showing_users, self._bounded_users):
                    got = index.pop(id_, None)
                    if got:
                        readers |= got
            else:
                stats.pop(id_, None)
                got = showing_posts.pop(id_, None)
                if got:
                    readers |= got
        if len(users) > _MAX_CACHED:  # bounded: forget every Account part read before
            users.clear()
            self._accounts.clear()
            self._full.clear()
        pages = self.hf.home_pages
        if pages is None:
            return
        if readers:
            pages.views_changed(readers)
        for author, showing_it in authors.items():
            # Its Account part, read before the change, may be shown until it expires.
            for view in pages.views_of(showing_it):
                expiry = view.expiries.get(author)
                if expiry is not None and expiry < view.until:
                    view.until = expiry

    def _index(self, reader: int, sources: Sources) -> None:
        """Note which posts and users ``reader``'s kept rendering (of ``sources``) shows. A
        reader's entries for what its page no longer shows stay (dropping a rendering twice
        is harmless) until the index outgrows ``_MAX_CACHED``: then it is made again from the
        renderings kept now, and if that is still too many, they are dropped."""
        self._note(reader, sources)
        if len(self._showing_posts) <= _MAX_CACHED:
            return
        self._showing_posts.clear()
        self._showing_users.clear()
        self._bounded_users.clear()
        pages = self.hf.home_pages
        if pages is None:
            return
        for kept_by, view in list(pages.all_views()):
            if view.sources is not None:
                self._note(kept_by, view.sources)
        if len(self._showing_posts) > _MAX_CACHED:
            self._showing_posts.clear()
            self._showing_users.clear()
            pages.views_changed(None)

    def _note(self, reader: int, sources: Sources) -> None:
        posts, originals, _, _, _ = sources
        showing_posts, showing_users = self._showing_posts, self._showing_users
        for p in (*posts, *originals.values()):
            got = showing_posts.get(p.id)
            if got is None:
                showing_posts[p.id] = {reader}
            else:
                got.add(reader)
            got = showing_users.get(p.author_id)
            if got is None:
                showing_users[p.author_id] = {reader}
            else:
                got.add(reader)

    async def account(self, urls: E.Urls, user_id: int) -> dict[str, Any]:
        return (await self.account_bytes(urls, user_id))[1]

    def forget_account(self, user_id: int) -> None:
        """The user's profile changed: drop its cached Account entity and the cached
        statuses that embed it (on every base URL), so that this process answers the new
        profile at once. (Other processes catch up within ``ACCOUNT_TTL``.)"""
        for key in [k for k in self._accounts if k[1] == user_id]:
            self._accounts.pop(key, None)
        for full in self._full.values():
            for post_id in [i for i, got in full.items() if got[2] == user_id]:
                full.pop(post_id, None)

    def account_of(self, urls: E.Urls, user: User) -> dict[str, Any]:
        return self._account_from_user(urls, user)[1]

    async def lookup(self, urls: E.Urls, acct: str) -> dict[str, Any]:
        name = acct.lstrip("@")
        local, _, domain = name.partition("@")
        if domain and domain != urls.host:
            raise NotFound("Record not found")
        user = await self.hf.store.user_by_handle(local)
        if user is None:
            raise NotFound("Record not found")
        return self.account_of(urls, user)

    async def relationships(self, user_id: int, ids: list[int]) -> list[dict[str, Any]]:
        following = await self.hf.feed.following_of(user_id)
        out = []
        for other in ids:
            followed_by = user_id in await self.hf.feed.following_of(other)
            out.append(E.relationship_entity(E.RelationshipView(other, other in following, followed_by)))
        return out

    async def follow(self, user_id: int, target_id: int, follow: bool) -> dict[str, Any]:
        target = await self.user_by_id(target_id)
        if follow:
            await self.hf.follow(user_id, target.handle)
        else:
            await self.hf.unfollow(user_id, target.handle)
        # the cached account counts of both are now stale (statuses embedding them expire
        # with ACCOUNT_TTL)
        for key in [k for k in self._accounts if k[1] in (user_id, target_id)]:
            self._accounts.pop(key, None)
        return (await self.relationships(user_id, [target_id]))[0]

    async def follows_page(self, urls: E.Urls, user_id: int, followers: bool, limit: int,
                           max_id: int | None) -> tuple[list[dict[str, Any]], list[int]]:
        await self.user_by_id(user_id)
        store = self.hf.store
        rows = await (store.followers_page(user_id, max_id, limit) if followers
                      else store.following_page(user_id, max_id, limit))
        return [self.account_of(urls, u) for _, u in rows], [fid for fid, _ in rows]

    # -- statuses -------------------------------------------------------------------------
    async def _base(self, urls: E.Urls, post: Post) -> bytes:
        key = (urls.base, post.id)
        got = self._bases.get(key)
        if got is not None:
            return got
        base = status_base_of(post, urls, await self._mentioned(post))
        del base["account"]
        for counted in _SPLICED:  # added per request (status_tail): they change
            del base[counted]
        raw = orjson.dumps(base)[1:-1]
        if len(self._bases) > _MAX_CACHED:
            self._bases.popitem(last=False)
        self._bases[key] = raw
        return raw

    async def _mentioned(self, post: Post) -> dict[str, E.AccountView]:
        """The accounts the post mentions, as recorded when it was written (a boost's
        wrapper mentions nobody)."""
        if post.reblog_of_id is not None or "@" not in post.text:
            return {}
        ids = (await self.hf.store.mention_ids([post.id])).get(post.id, [])
        out: dict[str, E.AccountView] = {}
        for uid in ids:
            user = await self.hf.store.user_by_id(uid)
            if user is not None:
                out[user.handle.lower()] = account_view(user)
        return out

    async def status_bytes(self, urls: E.Urls, post: Post, viewer: int | None,
                           recorded: bool = False) -> bytes:
        """``recorded``: the status must still be in the records when its counters and flags
        are read, else NotFound. A write's answer (favourite) asks for it: a delete committed
        after the write (often in the same group commit) would otherwise render the post
        with no stats row, i.e. zero counters and ``favourited: false``, contradicting the
        acknowledged write."""
        part = (await self.status_parts(urls, [post], viewer, recorded=recorded))[0]
        if part is None:  # a boost whose original is gone is gone
            raise NotFound("Record not found")
        return part

    async def statuses_bytes(self, urls: E.Urls, posts: list[Post], viewer: int | None) -> bytes:
        """A JSON array of Statuses; boosts whose original is gone are left out."""
        parts = await self.status_parts(urls, posts, viewer)
        return b"[" + b",".join(p for p in parts if p is not None) + b"]"

    async def status_parts(self, urls: E.Urls, posts: list[Post], viewer: int | None,
                           recorded: bool = False) -> list[bytes | None]:
        """Each post as Status bytes (None: a boost whose original is gone, or with
        ``recorded`` a post whose row is gone by the time of the stats read), spliced from
        its cached head and ONE ``post_stats`` call for the whole list (counters and the
        viewer's flags of the posts and of the boosted originals)."""
        return (await self._status_parts(urls, posts, viewer, recorded))[0]

    async def _status_parts(self, urls: E.Urls, posts: list[Post], viewer: int | None,
                            recorded: bool = False) -> tuple[list[bytes | None], float, Sources, dict[int, float]]:
        """``status_parts``, until when they may be shown and the Account parts' expiries
        (``_assemble``), and what they were assembled from (to assemble them again without
        a statement: ``home_rendered``)."""
        current = self._version()
        if not posts:
            sources: Sources = (posts, {}, {}, viewer is not None, recorded)
            return [], float("inf"), sources, {}
        wanted = [p.reblog_of_id for p in posts if p.reblog_of_id is not None]
        originals = await self.hf.feed.hydrate(wanted) if wanted else {}
        ids = [p.id for p in posts]
        ids.extend(i for i in originals if i not in ids)
        stats = await self._post_stats(ids, viewer, current)
        sources = (posts, originals, stats, viewer is not None, recorded)
        out, until, expiries = await self._assemble(urls, sources, current)
        return out, until, sources, expiries

    async def _post_stats(self, ids: list[int], viewer: int | None, current: Hashable) -> dict[int, Any]:
        """``RecordStore.post_stats``, the rows this process read before and that nothing
        changed since taken from ``_stats`` (a post's are dropped by ``_shown_changed``;
        all are dropped when another process commits): after a push, a page's rendering
        reads the new post's counters alone, not the 19 others'. While a commit of this
        process is not yet told (``SqliteDatabase.telling``) the version seen is not the
        one the rows are kept under: the rows are read and not kept."""
        if current is None:
            return await self.hf.store.post_stats(ids, viewer)
        cache = self._stats
        keep = True
        if current != self._stats_version:
            if self._telling is not None and self._telling():
                keep = False
                cache = {}
            else:
                cache.clear()
                self._stats_kept = 0
                self._stats_version = current
        out: dict[int, Any] = {}
        missing: list[int] = []
        for i in ids:
            by_viewer = cache.get(i)
            got = None if by_viewer is None else by_viewer.get(viewer)
            if got is None:
                missing.append(i)
            else:
                out[i] = got
        if missing:
            changes = self._changes
            read = await self.hf.store.post_stats(missing, viewer)
            out.update(read)
            if keep and self._changes == changes and self._version() == current:
                self._stats_kept += len(read)
                if self._stats_kept > _MAX_CACHED:  # bounded (rows dropped since are counted too)
                    cache.clear()
                    self._stats_kept = len(read)
                for i, row in read.items():
                    by_viewer = cache.get(i)
                    if by_viewer is None:
                        cache[i] = {viewer: row}
                    else:
                        by_viewer[viewer] = row
        return out

    async def _assemble(self, urls: E.Urls, sources: Sources,
                        current: Hashable) -> tuple[list[bytes | None], float, dict[int, float]]:
        """The Status bytes of ``sources`` (the posts, the boosted originals, the counters
        and flags read at the record store's version ``current``), each its cached head
        (``_head``: the Account part and the base) and its tail, and until when they may be
        shown while the version stays ``current``: the earliest expiry of the Account parts
        used that were read at another version (a rendering kept longer could show an
        Account older than ``ACCOUNT_TTL`` allows); those read at ``current`` are as fresh as
        a new read while it holds (``_fresh``)."""
        posts, originals, stats, seen, recorded = sources
        full = self._full.get(urls.base)
        if full is None:
            full = self._full[urls.base] = {}
        now = time.monotonic()
        out: list[bytes | None] = []
        until = float("inf")
        expiries: dict[int, float] = {}  # author -> the earliest expiry of its parts used
        for p in posts:
            inner: bytes | None = None
            if recorded and p.id not in stats:
                out.append(None)
                continue
            if p.reblog_of_id is not None:
                original = originals.get(p.reblog_of_id)
                if original is None:
                    out.append(None)
                    continue
                got = await self._head(urls, original, full, now)
                if current is None or got[3] != self._user_version(got[2], current):
                    until = min(until, got[0])
                if got[0] < expiries.get(got[2], float("inf")):
                    expiries[got[2]] = got[0]
                inner = got[1] + status_tail(stats.get(original.id), None, seen)
            got = await self._head(urls, p, full, now)
            if current is None or got[3] != self._user_version(got[2], current):
                until = min(until, got[0])
            if got[0] < expiries.get(got[2], float("inf")):
                expiries[got[2]] = got[0]
            out.append(got[1] + status_tail(stats.get(p.id), inner, seen))
        return out, until, expiries

    async def _head(self, urls: E.Urls, post: Post, full: dict[int, Head], now: float) -> Head:
        got = full.get(post.id)
        if got is None or not self._fresh(got[0], got[3], now, post.author_id):
            await self.account_bytes(urls, post.author_id)
            expiry, account, _, version = self._accounts[(urls.base, post.author_id)]
            got = (expiry, b'{"account":' + account + b"," + await self._base(urls, post), post.author_id, version)
            if len(full) > _MAX_CACHED:
                full.clear()
            full[post.id] = got
        return got

    async def status(self, urls: E.Urls, post: Post, viewer: int | None, with_text: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = orjson.loads(await self.status_bytes(urls, post, viewer))
        if with_text:
            out["text"] = post.text
        return out

    async def get_post(self, post_id: int) -> Post:
        got = await self.hf.feed.hydrate([post_id])
        post = got.get(post_id)
        if post is None:
            raise NotFound("Record not found")
        return post

    async def create(self, urls: E.Urls, user_id: int, text: Any, visibility: str,
                     once: IdempotentRequest | None = None, *,
                     in_reply_to_id: int | None = None) -> dict[str, Any]:
        # Everything the answer needs but the post is read first, so that a keyed write can
        # store its answer in the transaction that creates the post.
        _, entity = await self.account_bytes(urls, user_id)
        mentions = await self.hf.resolve_mentions(user_id, text, urls.host) if isinstance(text, str) else []
        mentioned = {u.handle.lower(): account_view(u) for u in mentions}

        def answer(post: Post) -> dict[str, Any]:
            base = status_base_of(post, urls, mentioned, account=entity)
            return E.with_viewer(base, E.ViewerState())

        post = await self.hf.write_post(user_id, text, visibility, once=once, answer=answer,
                                        in_reply_to_id=in_reply_to_id, mentions=mentions)
        return answer(post)

    async def delete(self, urls: E.Urls, user_id: int, post_id: int) -> dict[str, Any]:
        post = await self.get_post(post_id)
        if post.author_id != user_id:
            raise NotFound("Record not found")  # as Mastodon: another's status is not yours to see
        answer = await self.status(urls, post, user_id, with_text=True)
        try:
            await self.hf.delete_post(user_id, post_id)
        except Forbidden:
            raise NotFound("Record not found") from None
        self._accounts.pop((urls.base, user_id), None)
        self.forget_status(post_id)
        return answer

    def forget_status(self, post_id: int) -> None:
        """A status was deleted here: drop its cached parts (on every base URL)."""
        for full in self._full.values():
            full.pop(post_id, None)

    # -- timelines ------------------------------------------------------------------------
    async def home_body(self, urls: E.Urls, user_id: int, page: Page) -> tuple[bytes, list[int]]:
        got = await self.home_rendered(urls, user_id, page)
        return got.body, got.ids

    async def home_rendered(self, urls: E.Urls, user_id: int, page: Page) -> "Rendered":
        """The home timeline's page as the JSON array of Statuses, and the page's ids (for
        the ``Link`` header): ``home`` + ``statuses_bytes``, the hot path of
        ``GET /api/v1/timelines/home``.

        The first page (no cursor) is rendered once and kept with the reader's kept first
        page (``home_pages``: dropped by pushes, deletes, follows...), for as long as the
        record store has committed nothing (``data_version``: a favourite, a boost, a reply,
        a profile change all commit, so the counters, flags and Accounts shown are the ones a
        fresh rendering would show) and no Account part in it read at another version is past
        ``ACCOUNT_TTL`` (``_assemble``). A warm read then runs no statement (one ``pread`` of
        SQLite's wal-index header) instead of the page's ``post_stats``. When only an Account
        part has expired, the expired Accounts are read again and the page is assembled
        again from the counters it was rendered with, without ``post_stats``."""
        version_of = self._data_version
        kept = None
        if (version_of is not None and page.max_id is None and page.since_id is None
                and page.min_id is None and page.limit > 0 and self.hf.home_pages is not None):
            kept = await first_page(self.hf, user_id, page.limit)
        if kept is None or (len(kept.posts) < page.limit and kept.next_id is not None):
            posts = await self.home(user_id, page)
            return Rendered(0, 0.0, await self.statuses_bytes(urls, posts, user_id), [p.id for p in posts], None, {})
        self.hf.reads.home_read(user_id)  # as ``home``
        assert version_of is not None
        version = version_of()
        changes = self._changes
        got: Rendered | None = kept.views.get(urls.base)
        if got is not None and got.version == version and got.until > time.monotonic():
            return got
        if got is not None and got.version == version and got.sources is not None:
            # Only an Account part's ``ACCOUNT_TTL`` has passed, and nothing was committed
            # since the rendering: its counters and flags are still what ``post_stats`` would
            # read, so only the expired Accounts are read again (once for every page that
            # shows them) and the page assembled from what it was (``revalidated``).
            parts, until, expiries = await self._assemble(urls, got.sources, version)
            sources = got.sources
            self.revalidated += 1
        else:
            parts, until, sources, expiries = await self._status_parts(urls, kept.posts, user_id)
        body = b"[" + b",".join(p for p in parts if p is not None) + b"]"
        ids = [p.id for p in kept.posts]
        if got is not None and got.body == body and got.ids == ids:
            # A commit that changed nothing here (another reader's favourite, a post on
            # someone else's page): the same bytes, so its compressed body and headers too.
            got = got.again(version, until, sources, expiries)
        else:
            got = Rendered(version, until, body, ids, sources, expiries)
        if version_of() == version and self._changes == changes:  # nothing changed meanwhile: keep it
            got.kept = True
            kept.views[urls.base] = got
            self._index(user_id, sources)
        return got

    def warm_home(self, urls: E.Urls, user_id: int, page: Page) -> "Rendered | None":
        """``home_rendered(urls, user_id, page)`` when its answer is the kept rendering, still
        valid (the same checks: the reader's kept first page, nothing committed since, no
        Account part expired), counted the same way (the kept-page hit, the read counter);
        None otherwise (then ``home_rendered``). No coroutine: the hot path's."""
        version_of = self._data_version
        pages = self.hf.home_pages
        if (version_of is None or pages is None or page.max_id is not None or page.since_id is not None
                or page.min_id is not None or page.limit <= 0):
            return None
        kept = pages.get(user_id, page.limit)
        if kept is None:
            return None
        got: Rendered | None = kept.views.get(urls.base)
        if got is None or got.version != version_of() or got.until <= time.monotonic():
            return None
        # (a kept rendering is of a full page, or of the last one: ``home_rendered``)
        pages.hits += 1
        self.hf.reads.home_read(user_id)
        return got

    async def home(self, user_id: int, page: Page) -> list[Post]:
        self.hf.reads.home_read(user_id)  # the durable read counter (load report, digest)
        return await paged(lambda b, n: self.hf.feed.read_home(user_id, b, n), page)

    async def public(self, page: Page) -> list[Post]:
        return await paged(self.hf.feed.read_public, page)

    async def author(self, author_id: int, page: Page) -> list[Post]:
        await self.user_by_id(author_id)
        return await paged(lambda b, n: self.hf.feed.read_author(author_id, b, n), page)

    async def tag(self, name: str, page: Page) -> list[Post]:
        terms = query_terms("#" + name)
        if not terms:
            return []

        async def fetch(before: int | None, n: int) -> tuple[list[Post], int | None]:
            ids = await self.hf.search_index.search(terms, before, n)
            posts = await self.hf.feed.hydrate(ids)
            tag = name.lower()
            out = [posts[i] for i in ids if i in posts and posts[i].visibility == "public"
                   and tag in (t.lower() for t in extract_hashtags(posts[i].text))]
            return out, (ids[-1] if len(ids) == n else None)

        return await paged(fetch, page)

    # -- search ---------------------------------------------------------------------------
    async def search(self, urls: E.Urls, q: str, kind: str | None, limit: int, offset: int,
                     viewer: int | None) -> dict[str, Any]:
        accounts: list[dict[str, Any]] = []
        statuses: list[Any] = []
        hashtags: list[dict[str, Any]] = []
        q = q.strip()
        if kind in (None, "accounts") and offset == 0:
            name = q.lstrip("@").partition("@")[0]
            if name:
                user = await self.hf.store.user_by_handle(name)
                if user is not None:
                    accounts.append(self.account_of(urls, user))
        if kind in (None, "hashtags") and offset == 0:
            for tag in extract_hashtags(q if q.startswith("#") else "#" + q)[:1]:
                hashtags.append(E.tag_entity(tag, urls))
        if kind in (None, "statuses") and query_terms(q):
            found = await self.hf.search(q, min(offset + limit, 100))
            ids = [int(p["id"]) for p in found["posts"]][offset:offset + limit]
            posts = await self.hf.feed.hydrate(ids)
            parts = await self.status_parts(urls, [posts[i] for i in ids if i in posts], viewer)
            statuses = [orjson.loads(p) for p in parts if p is not None]
        return E.search_entity(accounts, statuses, hashtags)


class Rendered:
    """A home page rendered as Statuses (``home_rendered``): valid while the record store's
    ``version`` holds and until ``until`` (monotonic; the Accounts' expiry). ``headers``:
    the answer's headers, per request path, query and encoding, kept by the HTTP layer.
    ``kept``: it is the reader's kept rendering (read again until a commit), so worth
    compressing once for the clients that accept gzip (``gzipped``); one rendered for a
    single read is not (compressing 37 KB costs more than writing it)."""

    __slots__ = ("version", "until", "body", "ids", "sources", "expiries", "headers", "kept", "_gzipped")

    def __init__(self, version: Hashable, until: float, body: bytes, ids: list[int],
                 sources: Sources | None, expiries: dict[int, float]) -> None:
        self.version, self.until, self.body, self.ids = version, until, body, ids
        #: what ``body`` was assembled from (``MastodonApi._assemble``), for a kept one
        self.sources = sources
        #: author -> when the Account part shown for it expires (``ACCOUNT_TTL`` after its
        #: read): ``until`` becomes at most that once the author's row changes
        self.expiries = expiries
        self.headers: dict[Any, list[tuple[bytes, bytes]]] = {}
        self.kept = False
        self._gzipped: bytes | None = None

    def again(self, version: Hashable, until: float, sources: Sources, expiries: dict[int, float]) -> Rendered:
        """The same rendering found valid again at ``version`` (rendered anew to the same
        bytes): a new one, its compressed body and headers shared (they depend on the bytes
        only); this one stays as it was for a request still holding it."""
        new = Rendered(version, until, self.body, self.ids, sources, expiries)
        new.headers, new._gzipped = self.headers, self._gzipped
        return new

    def gzipped(self) -> bytes:
        """``body`` gzip-compressed, once (level 1: ~10x smaller for these pages, at a
        third of level 6's CPU; ``mtime`` 0, so the same body gives the same bytes)."""
        got = self._gzipped
        if got is None:
            got = self._gzipped = gzip.compress(self.body, GZIP_LEVEL, mtime=0)
        return got


_AUTHOR_PLACEHOLDER = E.AccountView(id=0, username="_", display_name="", created_at=id_time(1 << 22))


def status_base_of(post: Post, urls: E.Urls, mentioned: dict[str, E.AccountView],
                   account: dict[str, Any] | None = None) -> dict[str, Any]:
    """``status_base`` of a post, with the author in its URLs (built with a placeholder so
    that no Account is needed to render the viewer-independent part; ``account`` {} until
    spliced). A boost's wrapper has no content of its own and Mastodon's activity URLs."""
    view = E.StatusView(id=post.id, account=_AUTHOR_PLACEHOLDER, text=post.text,
                        created_at=id_time(post.id), visibility=post.visibility,
                        in_reply_to_id=post.in_reply_to_id,
                        in_reply_to_account_id=post.in_reply_to_account_id)
    if post.reblog_of_id is not None:
        base = E.status_base(view, urls, {}, content="", account=account or {})
        base["uri"] = base["url"] = urls.status_uri(post.author_handle, post.id) + "/activity"
        return base
    base = E.status_base(view, urls, mentioned, account=account or {})
    base["uri"] = urls.status_uri(post.author_handle, post.id)
    base["url"] = urls.status_url(post.author_handle, post.id)
    return base


async def paged(fetch: Fetch, page: Page) -> list[Post]:
    """One Mastodon page from a newest-first source ``fetch(before, n) -> (posts, next)``.
    ``max_id``: older than it; ``since_id``: newer than it, the newest ones; ``min_id``: the
    page just newer than it (selected oldest first), answered newest first."""
    if page.limit <= 0:
        return []
    if page.min_id is None:
        out: list[Post] = []
        cursor = page.max_id
        while len(out) < page.limit:
            posts, nxt = await fetch(cursor, page.limit - len(out))
            for p in posts:
                if page.since_id is not None and p.id <= page.since_id:
                    return out
                out.append(p)
            if nxt is None or not posts:
                break
            cursor = nxt
        return out[: page.limit]
    lower = max(page.min_id, page.since_id or 0)
    window: list[Post] = []
    cursor = page.max_id
    walked = 0
    while walked < MIN_ID_WALK:
        posts, nxt = await fetch(cursor, 40)
        walked += 40
        done = False
        for p in posts:
            if p.id <= lower:
                done = True
                break
            window.append(p)
        if done or nxt is None or not posts:
            break
        cursor = nxt
    return window[-page.limit:]
