"""The Mastodon client API's use cases that are not plain ``/v1`` ones: statuses and
accounts as Mastodon entities (cached, pre-serialised), paging by ``max_id``/``since_id``/
``min_id``, relationships, the public and tag timelines, search.

Every timeline rule stays in ``FeedManager``; this module only shapes what it returns.

Speed: a Status is three parts, serialised once and spliced per request as bytes: the
post's viewer-independent part (``status_base`` without ``account``, cached per post: the
post is immutable), the author's Account entity (cached per user for ``ACCOUNT_TTL``
seconds, since its counts change) and the viewer's flags (homefeed has no favourites or
bookmarks yet: one constant). A warm home read runs no SQL and renders no HTML.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from homefeed.domain.errors import Forbidden, NotFound
from homefeed.domain.ids import id_time
from homefeed.domain.mastodon import entities as E
from homefeed.domain.mastodon.content import extract_hashtags, extract_mentions
from homefeed.domain.mastodon.pagination import Page
from homefeed.domain.model import Post, User
from homefeed.domain.text import query_terms
from homefeed.service_layer.idempotency import IdempotentRequest
from homefeed.service_layer.services import Homefeed

#: Seconds an Account entity (with its counts) is reused before it is read again.
ACCOUNT_TTL = 30.0
_MAX_CACHED = 100_000
#: How far a ``min_id`` page walks down from the top, in statuses, before giving up.
MIN_ID_WALK = 4000

_VIEWER = orjson.dumps(
    {"favourited": False, "reblogged": False, "muted": False, "bookmarked": False,
     "pinned": False, "filtered": []}
)[1:-1]

Fetch = Callable[[int | None, int], Awaitable[tuple[list[Post], int | None]]]


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
        # (base url, user id) -> (expiry, Account JSON bytes, Account dict)
        self._accounts: dict[tuple[str, int], tuple[float, bytes, dict[str, Any]]] = {}
        # base url -> post id -> (expiry of its account part, Status bytes with the viewer
        # flags, without): a warm timeline is one dict lookup per status.
        # (and the author's id, to forget them when the author's profile changes).
        self._full: dict[str, dict[int, tuple[float, bytes, bytes, int]]] = {}

    # -- accounts -------------------------------------------------------------------------
    async def user_by_id(self, user_id: int) -> User:
        user = await self.hf.store.user_by_id(user_id)
        if user is None:
            raise NotFound("Record not found")
        return user

    def _account_from_user(self, urls: E.Urls, user: User) -> tuple[bytes, dict[str, Any]]:
        entity = E.account_entity(account_view(user), urls)
        raw = orjson.dumps(entity)
        if len(self._accounts) > _MAX_CACHED:
            self._accounts.clear()
        self._accounts[(urls.base, user.id)] = (time.monotonic() + ACCOUNT_TTL, raw, entity)
        return raw, entity

    async def account_bytes(self, urls: E.Urls, user_id: int) -> tuple[bytes, dict[str, Any]]:
        got = self._accounts.get((urls.base, user_id))
        if got is not None and got[0] > time.monotonic():
            return got[1], got[2]
        return self._account_from_user(urls, await self.user_by_id(user_id))

    async def account(self, urls: E.Urls, user_id: int) -> dict[str, Any]:
        return (await self.account_bytes(urls, user_id))[1]

    def forget_account(self, user_id: int) -> None:
        """The user's profile changed: drop its cached Account entity and the cached
        statuses that embed it (on every base URL), so that this process answers the new
        profile at once. (Other processes catch up within ``ACCOUNT_TTL``.)"""
        for key in [k for k in self._accounts if k[1] == user_id]:
            self._accounts.pop(key, None)
        for full in self._full.values():
            for post_id in [i for i, got in full.items() if got[3] == user_id]:
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
        mentioned: dict[str, E.AccountView] = {}
        for name in extract_mentions(post.text, urls.host):
            user = await self.hf.store.user_by_handle(name)
            if user is not None:
                mentioned[name.lower()] = account_view(user)
        view = E.StatusView(id=post.id, account=_AUTHOR_PLACEHOLDER, text=post.text,
                            created_at=id_time(post.id), visibility=post.visibility)
        base = E.status_base(view, urls, mentioned, account={})
        base = _fix_author(base, urls, post)
        del base["account"]
        raw = orjson.dumps(base)[1:-1]
        if len(self._bases) > _MAX_CACHED:
            self._bases.popitem(last=False)
        self._bases[key] = raw
        return raw

    async def status_bytes(self, urls: E.Urls, post: Post, viewer: bool) -> bytes:
        return (await self.statuses_bytes(urls, [post], viewer))[1:-1]

    async def statuses_bytes(self, urls: E.Urls, posts: list[Post], viewer: bool) -> bytes:
        full = self._full.get(urls.base)
        if full is None:
            full = self._full[urls.base] = {}
        now = time.monotonic()
        parts: list[bytes] = []
        for p in posts:
            got = full.get(p.id)
            if got is None or got[0] <= now:
                got = await self._assemble(urls, p, full)
            parts.append(got[1] if viewer else got[2])
        return b"[" + b",".join(parts) + b"]"

    async def _assemble(self, urls: E.Urls, post: Post,
                        full: dict[int, tuple[float, bytes, bytes, int]]) -> tuple[float, bytes, bytes, int]:
        await self.account_bytes(urls, post.author_id)
        expiry, account, _ = self._accounts[(urls.base, post.author_id)]
        base = await self._base(urls, post)
        head = b'{"account":' + account + b"," + base
        got = (expiry, head + b"," + _VIEWER + b"}", head + b"}", post.author_id)
        if len(full) > _MAX_CACHED:
            full.clear()
        full[post.id] = got
        return got

    async def status(self, urls: E.Urls, post: Post, viewer: bool, with_text: bool = False) -> dict[str, Any]:
        out = orjson.loads(await self.status_bytes(urls, post, viewer))
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
                     once: IdempotentRequest | None = None) -> dict[str, Any]:
        # Everything the answer needs but the post is read first, so that a keyed write can
        # store its answer in the transaction that creates the post.
        account, entity = await self.account_bytes(urls, user_id)
        mentioned: dict[str, E.AccountView] = {}
        if isinstance(text, str):
            for name in extract_mentions(text, urls.host)[:20]:
                user = await self.hf.store.user_by_handle(name)
                if user is not None:
                    mentioned[name.lower()] = account_view(user)

        def answer(post: Post) -> dict[str, Any]:
            view = E.StatusView(id=post.id, account=_AUTHOR_PLACEHOLDER, text=post.text,
                                created_at=id_time(post.id), visibility=post.visibility)
            base = _fix_author(E.status_base(view, urls, mentioned, account=entity), urls, post)
            return E.with_viewer(base, E.ViewerState())

        post = await self.hf.write_post(user_id, text, visibility, once=once, answer=answer)
        return answer(post)

    async def delete(self, urls: E.Urls, user_id: int, post_id: int) -> dict[str, Any]:
        post = await self.get_post(post_id)
        if post.author_id != user_id:
            raise NotFound("Record not found")  # as Mastodon: another's status is not yours to see
        answer = await self.status(urls, post, True, with_text=True)
        try:
            await self.hf.delete_post(user_id, post_id)
        except Forbidden:
            raise NotFound("Record not found") from None
        self._accounts.pop((urls.base, user_id), None)
        self._full.get(urls.base, {}).pop(post_id, None)
        return answer

    # -- timelines ------------------------------------------------------------------------
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
                     viewer: bool) -> dict[str, Any]:
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
            statuses = [await self.status(urls, posts[i], viewer) for i in ids if i in posts]
        return E.search_entity(accounts, statuses, hashtags)


_AUTHOR_PLACEHOLDER = E.AccountView(id=0, username="_", display_name="", created_at=id_time(1 << 22))


def _fix_author(base: dict[str, Any], urls: E.Urls, post: Post) -> dict[str, Any]:
    """``status_base`` with the post's author in its URLs (built with a placeholder so that
    no Account is needed to render the viewer-independent part)."""
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
