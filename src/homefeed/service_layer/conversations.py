"""The Mastodon client API's conversation use cases (issue 11): threads (``context``),
favourites, boosts, notifications and read markers, shaped as Mastodon answers them.

The records and their rules live in the record store (one transaction per write, with its
event); notifications are written by the ``notifier`` consumer from those events; which boosts
and replies a home shows is ``FeedManager``'s. This module reads and writes through them and
renders with ``MastodonApi`` (statuses spliced from cached parts, one ``post_stats`` call per
answer for the counters and the viewer's flags).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homefeed.domain.errors import NotFound
from homefeed.domain.mastodon import entities as E
from homefeed.domain.mastodon.conversations import (
    MARKER_TIMELINES,
    STATUS_TYPES,
    marker_entity,
    notification_bytes,
    notification_types,
)
from homefeed.domain.mastodon.pagination import Page
from homefeed.domain.model import Notification, Post

if TYPE_CHECKING:
    from homefeed.service_layer.mastodon import MastodonApi

#: Mastodon's thread limits (``Api::V1::Statuses::ContextsController``): an anonymous reader
#: gets 40 ancestors and 60 descendants at most 20 levels deep; a signed-in one, 4096 each.
ANCESTORS_LIMIT = 40
DESCENDANTS_LIMIT = 60
DESCENDANTS_DEPTH_LIMIT = 20
SIGNED_IN_LIMIT = 4096


class Conversations:
    def __init__(self, api: MastodonApi) -> None:
        self.api = api
        self.hf = api.hf

    async def _status_or_original(self, post_id: int) -> Post:
        """The status, or for a boost's wrapper the boosted original (what apps act on)."""
        post = await self.api.get_post(post_id)
        if post.reblog_of_id is not None:
            return await self.api.get_post(post.reblog_of_id)
        return post

    async def _posts(self, ids: list[int]) -> list[Post]:
        got = await self.hf.feed.hydrate(ids)
        return [got[i] for i in ids if i in got]

    # -- threads --------------------------------------------------------------------------
    async def context(self, urls: E.Urls, post_id: int, viewer: int | None) -> bytes:
        """The Context entity: ``ancestors`` oldest first (up to the first one that is gone:
        a reply to a deleted post has no ancestors beyond it), ``descendants`` in thread
        order (depth first, each post's replies by id)."""
        post = await self._status_or_original(post_id)
        signed_in = viewer is not None
        up_to = SIGNED_IN_LIMIT if signed_in else ANCESTORS_LIMIT
        ancestors: list[Post] = []
        cursor = post
        while cursor.in_reply_to_id is not None and len(ancestors) < up_to:
            parent = (await self.hf.feed.hydrate([cursor.in_reply_to_id])).get(cursor.in_reply_to_id)
            if parent is None:
                break
            ancestors.append(parent)
            cursor = parent
        ancestors.reverse()
        descendants = await self._posts(await self._descendant_ids(post.id, signed_in))
        parts = await self.api.status_parts(urls, ancestors + descendants, viewer)
        up = b",".join(p for p in parts[: len(ancestors)] if p is not None)
        down = b",".join(p for p in parts[len(ancestors):] if p is not None)
        return b'{"ancestors":[' + up + b'],"descendants":[' + down + b"]}"

    async def _descendant_ids(self, root: int, signed_in: bool) -> list[int]:
        limit = SIGNED_IN_LIMIT if signed_in else DESCENDANTS_LIMIT
        depth_limit = SIGNED_IN_LIMIT if signed_in else DESCENDANTS_DEPTH_LIMIT
        children: dict[int, list[int]] = {}
        seen = {root}
        level = [root]
        found = depth = 0
        while level and found < limit and depth < depth_limit:  # one query per level
            replies = await self.hf.store.reply_ids(level)
            nxt: list[int] = []
            for pid in level:
                kids = sorted(k for k in replies.get(pid, ()) if k not in seen)
                seen.update(kids)
                children[pid] = kids
                nxt.extend(kids)
            found += len(nxt)
            level = nxt
            depth += 1
        order: list[int] = []
        stack = list(reversed(children.get(root, [])))
        while stack and len(order) < limit:  # depth first, children by id
            pid = stack.pop()
            order.append(pid)
            stack.extend(reversed(children.get(pid, [])))
        return order

    # -- favourites -----------------------------------------------------------------------
    async def favourite(self, urls: E.Urls, user_id: int, post_id: int, on: bool) -> bytes:
        """Idempotent; the status with the viewer's ``favourited`` and the new count, or
        NotFound when the post was deleted by the time the answer is read (a delete racing
        the write: the answer must not show ``favourited: false`` for an acknowledged
        favourite; the favourite went with the post, as Mastodon's would)."""
        post = await self._status_or_original(post_id)
        if on:
            await self.hf.store.favourite(user_id, post.id)
        else:
            await self.hf.store.unfavourite(user_id, post.id)
        return await self.api.status_bytes(urls, post, user_id, recorded=True)

    async def favourites(self, urls: E.Urls, user_id: int, page: Page) -> tuple[bytes, list[int]]:
        """The viewer's favourited statuses, newest favourite first, and the favourites'
        ids (the ``Link`` cursors, as Mastodon pages them)."""
        oldest_first = page.min_id is not None
        lower = max(page.min_id or 0, page.since_id or 0) or None
        rows = await self.hf.store.favourites_page(user_id, page.max_id, lower, page.limit,
                                                   oldest_first=oldest_first)
        if oldest_first:
            rows = sorted(rows, key=lambda r: r[0], reverse=True)
        got = await self.hf.feed.hydrate([pid for _, pid in rows])
        kept = [(fid, got[pid]) for fid, pid in rows if pid in got]
        parts = await self.api.status_parts(urls, [p for _, p in kept], user_id)
        body = b"[" + b",".join(p for p in parts if p is not None) + b"]"
        return body, [fid for fid, _ in kept]

    async def favourited_by(self, urls: E.Urls, post_id: int, max_id: int | None,
                            limit: int) -> tuple[list[dict[str, Any]], list[int]]:
        post = await self._status_or_original(post_id)
        rows = await self.hf.store.favourited_by(post.id, max_id, limit)
        return [self.api.account_of(urls, u) for _, u in rows], [i for i, _ in rows]

    # -- boosts ---------------------------------------------------------------------------
    async def reblog(self, urls: E.Urls, user_id: int, post_id: int, visibility: str) -> bytes:
        """The boost's wrapper status (its own id, ``reblog`` = the original); boosting a
        boost boosts its original; boosting twice answers the same wrapper."""
        original = await self._status_or_original(post_id)
        handle = (await self.api.user_by_id(user_id)).handle
        boost, _, created = await self.hf.store.reblog(user_id, handle, original.id, visibility=visibility)
        if created:
            await self.hf.feed.posted(boost)
        return await self.api.status_bytes(urls, boost, user_id)

    async def unreblog(self, urls: E.Urls, user_id: int, post_id: int) -> bytes:
        """The ORIGINAL, with ``reblogged`` false (Mastodon's answer)."""
        original = await self._status_or_original(post_id)
        gone, original = await self.hf.store.unreblog(user_id, original.id)
        if gone is not None:
            await self.hf.feed.deleted(gone.id, gone.author_id)
            self.api.forget_status(gone.id)
        return await self.api.status_bytes(urls, original, user_id)

    async def reblogged_by(self, urls: E.Urls, post_id: int, max_id: int | None,
                           limit: int) -> tuple[list[dict[str, Any]], list[int]]:
        post = await self._status_or_original(post_id)
        rows = await self.hf.store.reblogged_by(post.id, max_id, limit)
        return [self.api.account_of(urls, u) for _, u in rows], [i for i, _ in rows]

    # -- notifications --------------------------------------------------------------------
    async def notifications(self, urls: E.Urls, user_id: int, page: Page, types: list[str],
                            exclude: list[str], from_user_id: int | None) -> tuple[bytes, list[int]]:
        chosen, excluded = notification_types(types, exclude)
        if chosen == [] or page.limit <= 0:
            return b"[]", []
        oldest_first = page.min_id is not None
        lower = max(page.min_id or 0, page.since_id or 0) or None
        rows = await self.hf.store.notifications_page(
            user_id, types=chosen, exclude_types=excluded, from_user_id=from_user_id,
            max_id=page.max_id, min_id=lower, limit=page.limit, oldest_first=oldest_first)
        if oldest_first:
            rows = sorted(rows, key=lambda n: n.id, reverse=True)
        parts = await self._render(urls, user_id, rows)
        kept = [(n.id, b) for n, b in zip(rows, parts) if b is not None]
        return b"[" + b",".join(b for _, b in kept) + b"]", [i for i, _ in kept]

    async def notification(self, urls: E.Urls, user_id: int, notification_id: int) -> bytes:
        n = await self.hf.store.notification(user_id, notification_id)
        part = (await self._render(urls, user_id, [n]))[0] if n is not None else None
        if part is None:
            raise NotFound("Record not found")
        return part

    async def _render(self, urls: E.Urls, user_id: int, rows: list[Notification]) -> list[bytes | None]:
        """Each notification as bytes (None when its status is gone meanwhile: the notifier
        removes it from the records as soon as it applies the delete)."""
        post_ids = [n.post_id for n in rows if n.post_id is not None and n.type in STATUS_TYPES]
        posts = await self.hf.feed.hydrate(post_ids) if post_ids else {}
        shown = list({i: posts[i] for i in post_ids if i in posts}.values())
        statuses = dict(zip((p.id for p in shown), await self.api.status_parts(urls, shown, user_id)))
        out: list[bytes | None] = []
        for n in rows:
            status: bytes | None = None
            if n.type in STATUS_TYPES:
                status = statuses.get(n.post_id) if n.post_id is not None else None
                if status is None:
                    out.append(None)
                    continue
            try:
                account, _ = await self.api.account_bytes(urls, n.from_user_id)
            except NotFound:
                out.append(None)
                continue
            out.append(notification_bytes(n.id, n.type, account, status))
        return out

    async def dismiss(self, user_id: int, notification_id: int) -> None:
        if not await self.hf.store.dismiss_notification(user_id, notification_id):
            raise NotFound("Record not found")

    async def clear(self, user_id: int) -> None:
        await self.hf.store.clear_notifications(user_id)

    async def unread_count(self, user_id: int, limit: int, types: list[str], exclude: list[str],
                           from_user_id: int | None) -> int:
        """Notifications newer than the ``notifications`` marker (all of them without a
        marker), capped at ``limit``: Mastodon 4.3's ``unread_count``."""
        chosen, excluded = notification_types(types, exclude)
        if chosen == [] or limit <= 0:
            return 0
        marker = (await self.hf.store.markers(user_id, ["notifications"])).get("notifications")
        last_read = int(marker.last_read_id) if marker is not None and marker.last_read_id.isdigit() else 0
        rows = await self.hf.store.notifications_page(
            user_id, types=chosen, exclude_types=excluded, from_user_id=from_user_id,
            min_id=last_read or None, limit=limit, oldest_first=True)
        return len(rows)

    # -- markers --------------------------------------------------------------------------
    async def markers(self, user_id: int, timelines: list[str]) -> dict[str, Any]:
        wanted = [t for t in MARKER_TIMELINES if t in set(timelines)]
        if not wanted:
            return {}
        got = await self.hf.store.markers(user_id, wanted)
        return {t: marker_entity(got[t]) for t in wanted if t in got}

    async def set_markers(self, user_id: int, positions: dict[str, int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for timeline in MARKER_TIMELINES:
            if timeline in positions:
                out[timeline] = marker_entity(
                    await self.hf.store.set_marker(user_id, timeline, str(positions[timeline])))
        return out
