"""StreamHub: this API process's open streams (Mastodon's streaming API), fed by the
``LiveBus``.

Every message published on the bus (``service_layer/live.py``: a post created or deleted, a
notification written) reaches every API process; the hub routes it to the streams that
should show it, in the order messages arrive (the fan-out applies events in commit order):

- ``user`` of reader R: ``update`` for a post iff ``FeedManager.home_shows(R, post)`` (the
  home rules: followees, the reply rule, the boost rule), celebrity posts included (pulled,
  never pushed, but published); ``delete`` for a post R's home may have shown (R's own, or
  by an account R follows); ``notification`` for R's notifications;
- ``user:notification``: R's notifications only;
- ``public``, ``public:local``: public posts that are not boosts nor replies to others;
- ``hashtag``, ``hashtag:local`` (``tag``): public posts carrying the tag (ignoring case);
  deletes go to every public and hashtag stream (an id, as Mastodon sends them).

An ``update`` is rendered once per message and base URL (``MastodonApi``) and the framed
bytes are shared by every connection that gets it. A slow client never slows the others:
the hub only appends to a stream's bounded queue (``stream_queue``); a stream that falls
that far behind is closed with a reason (and its connection aborted if the server is stuck
writing to it), never buffered without limit. A revoked token's streams are closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable

import orjson

from homefeed.aio import wait_for
from homefeed.domain.errors import NotFound
from homefeed.domain.mastodon.entities import Urls
from homefeed.domain.model import Post
from homefeed.ports import LiveBus
from homefeed.service_layer.live import post_of

if TYPE_CHECKING:
    from homefeed.service_layer.feed import FeedManager
    from homefeed.service_layer.mastodon import MastodonApi
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.streaming")

USER = "user"
NOTIFICATIONS = "user:notification"
PUBLIC = "public"
PUBLIC_LOCAL = "public:local"
HASHTAG = "hashtag"
HASHTAG_LOCAL = "hashtag:local"
#: The streams offered (Mastodon's names); ``list`` and ``direct`` are not (no lists, no
#: direct messages in homefeed).
STREAMS = (USER, NOTIFICATIONS, PUBLIC, PUBLIC_LOCAL, HASHTAG, HASHTAG_LOCAL)
#: Streams that need a user's token (the others may be read anonymously, as on Mastodon).
PRIVATE = (USER, NOTIFICATIONS)
#: How many readers' home rules are evaluated at once for one post (a network cache answers
#: them concurrently; more would only open more connections to it).
CONCURRENCY = 64

#: A subscription: (stream name, tag or None).
Sub = tuple[str, str | None]

#: A viewer id no account has: a Status with the viewer's flags, all false.
NOBODY = 0

TOO_SLOW = "too far behind: the client does not read its stream fast enough"
REVOKED = "the access token was revoked"


async def home_shows(feed: FeedManager, reader: int, post: Post) -> bool:
    """The home rules (docs/conversations.md), in their one place: ``FeedManager``."""
    return await feed.home_shows(reader, post)


def public_shows(post: Post) -> bool:
    """The public timeline's rule: public posts, no boosts, no replies to others."""
    return (post.visibility == "public" and post.reblog_of_id is None
            and post.in_reply_to_account_id in (None, post.author_id))


class Stream:
    """One open streaming connection (an SSE response or a WebSocket) and what it is
    subscribed to. The connection's task waits on ``next``; the hub calls ``deliver``."""

    __slots__ = ("hub", "user_id", "token_hash", "urls", "websocket", "subs", "pending", "limit",
                 "closed", "_waiter", "sending", "on_abort")

    def __init__(self, hub: StreamHub, user_id: int | None, token_hash: bytes | None, urls: Urls,
                 websocket: bool, limit: int) -> None:
        self.hub = hub
        self.user_id = user_id
        self.token_hash = token_hash
        self.urls = urls
        self.websocket = websocket
        self.subs: set[Sub] = set()
        #: A list, not a deque: an idle stream's queue is empty, and an empty deque
        #: costs ~600 bytes (its first block), an empty list 56.
        self.pending: list[bytes] = []
        self.limit = limit
        #: Why the stream is closed (None: open).
        self.closed: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        #: True while the connection's task is writing (it may be stuck there: a client
        #: that reads nothing); then closing it must abort the connection.
        self.sending = False
        #: Aborts the connection (set by the entrypoint where the server allows it).
        self.on_abort: Callable[[], None] | None = None

    def deliver(self, frame: bytes) -> None:
        if self.closed is not None:
            return
        if len(self.pending) >= self.limit:
            self.hub.counters["slow_disconnects"] += 1
            log.info("streaming: closing a stream of user %s: %s (%d events queued)",
                     self.user_id, TOO_SLOW, len(self.pending))
            self.close(TOO_SLOW)
            return
        self.pending.append(frame)
        self._wake()

    def close(self, reason: str) -> None:
        if self.closed is not None:
            return
        self.closed = reason
        self.pending.clear()
        self.hub._forget(self)
        self._wake()
        if self.sending and self.on_abort is not None:
            self.on_abort()  # stuck writing to a client that reads nothing: drop it

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def next(self, timeout: float) -> list[bytes]:
        """The frames queued, waiting up to ``timeout`` seconds for one ([] on timeout or
        when closed: the caller checks ``closed``)."""
        if not self.pending and self.closed is None:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _done, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        out, self.pending = self.pending, []
        return out


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _drop(index: dict[Any, set[Stream]], key: Any, stream: Stream) -> None:
    got = index.get(key)
    if got is not None:
        got.discard(stream)
        if not got:
            del index[key]


def sse_frame(event: str, payload: bytes) -> bytes:
    """``event: NAME`` and ``data: PAYLOAD``, a space after each colon, as Mastodon sends."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def ws_frame(sub: Sub, event: str, payload: bytes) -> bytes:
    """Mastodon's WebSocket message: the payload is a JSON string (of JSON, for a status)."""
    name = [sub[0]] if sub[1] is None else [sub[0], sub[1]]
    return orjson.dumps({"stream": name, "event": event, "payload": payload.decode()})


class StreamHub:
    def __init__(self, hf: Homefeed, bus: LiveBus | None) -> None:
        self.hf = hf
        self.bus = bus
        #: Set by the entrypoint (the app's Mastodon views render the statuses).
        self.api: MastodonApi | None = None
        self.streams: set[Stream] = set()
        self._by_user: dict[int, set[Stream]] = {}
        self._by_token: dict[bytes, set[Stream]] = {}
        self._inbox: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Since start (``/metrics``: ``homefeed_streaming_*``): streams opened and closed,
        #: live messages received and routed by kind, disconnects by cause.
        self.counters = {"opened": 0, "closed": 0, "messages": 0, "updates": 0, "deletes": 0,
                         "notifications": 0, "slow_disconnects": 0, "revoked_disconnects": 0,
                         "bus_resets": 0, "route_failures": 0}
        #: Whether the bus is subscribed now (messages published meanwhile are missed).
        self.subscribed = False
        self._ready = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, wait: float = 0.0) -> None:
        """Listen to the bus (once per process, on the first stream opened), and wait up to
        ``wait`` seconds for the subscription: a stream answered after it misses nothing
        published after its answer."""
        if self.bus is not None and not self._tasks:
            self._tasks = [
                asyncio.create_task(self.bus.listen(self.on_message, self.on_reset), name="live-listen"),
                asyncio.create_task(self._run(), name="stream-hub"),
            ]
        if wait and not self.subscribed and self._tasks:
            try:
                await wait_for(self._ready.wait(), wait)
            except asyncio.TimeoutError:
                log.warning("streaming: the live bus is not subscribed; answering the stream anyway")

    def figures(self) -> dict[str, int]:
        """Open streams by transport, and the counters (the metrics sampler reads these)."""
        websocket = sum(1 for s in self.streams if s.websocket)
        return {"open": len(self.streams), "open_websocket": websocket,
                "open_sse": len(self.streams) - websocket, **self.counters}

    def close_all(self, reason: str = "the server is shutting down") -> None:
        """End every open stream (a draining server: their responses then complete, and
        the drain does not wait for them)."""
        for stream in list(self.streams):
            stream.close(reason)

    async def stop(self) -> None:
        self.close_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []

    def on_message(self, raw: bytes) -> None:
        self._inbox.append(raw)
        self._wakeup.set()

    def on_reset(self, subscribed: bool) -> None:
        if not subscribed:
            self.counters["bus_resets"] += 1
            self._ready.clear()
        else:
            self._ready.set()
        self.subscribed = subscribed

    # -- streams --------------------------------------------------------------------------
    def open(self, user_id: int | None, token_hash: bytes | None, urls: Urls, websocket: bool) -> Stream:
        stream = Stream(self, user_id, token_hash, urls, websocket, self.hf.settings.stream_queue)
        self.streams.add(stream)
        self.counters["opened"] += 1
        if user_id is not None:
            self._by_user.setdefault(user_id, set()).add(stream)
        if token_hash is not None:
            self._by_token.setdefault(token_hash, set()).add(stream)
        return stream

    def _forget(self, stream: Stream) -> None:
        self.streams.discard(stream)
        self.counters["closed"] += 1  # once per stream: ``Stream.close`` acts once
        if stream.user_id is not None:
            _drop(self._by_user, stream.user_id, stream)
        if stream.token_hash is not None:
            _drop(self._by_token, stream.token_hash, stream)

    def token_revoked(self, token_hash: bytes) -> None:
        """Close every stream opened with this token (``Homefeed.forget_token``)."""
        for stream in list(self._by_token.get(token_hash, ())):
            self.counters["revoked_disconnects"] += 1
            stream.close(REVOKED)

    async def recheck_tokens(self) -> None:
        """The revocation channel was down: announcements may have been missed, so read
        each open stream's token again and close those revoked meanwhile."""
        for token_hash in list(self._by_token):
            try:
                record = await self.hf.store.access_token(token_hash)
            except Exception:
                return  # the store is away: checked again at the next reset
            if record is not None and record.revoked:
                self.token_revoked(token_hash)

    # -- routing --------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self._inbox:
                self._wakeup.clear()
                await self._wakeup.wait()
            raw = self._inbox.popleft()
            self.counters["messages"] += 1
            if not self.streams:
                continue
            try:
                await self.route(orjson.loads(raw))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["route_failures"] += 1
                log.exception("streaming: could not route a live message")

    async def route(self, message: dict[str, Any]) -> None:
        kind = message.get("k")
        if kind == "post":
            await self._post(post_of(message), message.get("tags") or [])
        elif kind == "delete":
            await self._delete(int(message["id"]), message.get("author_id"))
        elif kind == "notification":
            await self._notification(message)

    async def _readers(self, readers: Iterable[int], check: Callable[[int], Any]) -> list[int]:
        """Those of ``readers`` for which ``await check(reader)`` is true, evaluated
        ``CONCURRENCY`` at a time (the order of the answer is the order of ``readers``)."""
        readers = list(readers)
        out: list[int] = []
        for i in range(0, len(readers), CONCURRENCY):
            chunk = readers[i:i + CONCURRENCY]
            if len(chunk) == 1:
                oks = [await check(chunk[0])]
            else:
                oks = await asyncio.gather(*(check(r) for r in chunk), return_exceptions=True)
            for reader, ok in zip(chunk, oks):
                if isinstance(ok, BaseException):
                    self.counters["route_failures"] += 1
                    log.warning("streaming: home rule for reader %s failed: %r", reader, ok)
                elif ok:
                    out.append(reader)
        return out

    async def _post(self, post: Post, tags: list[str]) -> None:
        targets: list[tuple[Stream, Sub]] = []
        readers = [r for r, streams in self._by_user.items()
                   if any((USER, None) in s.subs for s in streams)]
        shown = await self._readers(readers, lambda r: home_shows(self.hf.feed, r, post))
        for reader in shown:
            for s in self._by_user.get(reader, ()):
                if (USER, None) in s.subs:
                    targets.append((s, (USER, None)))
        if public_shows(post):
            lowered = set(tags)
            for s in self.streams:
                for sub in s.subs:
                    name, tag = sub
                    if name in (PUBLIC, PUBLIC_LOCAL) or (
                            name in (HASHTAG, HASHTAG_LOCAL) and tag is not None and tag.lower() in lowered):
                        targets.append((s, sub))
        if not targets:
            return
        self.counters["updates"] += 1
        bodies: dict[tuple[str, int | None], bytes | None] = {}
        frames: dict[tuple[bool, str, int | None, Sub | None], bytes] = {}
        for s, sub in targets:
            base = s.urls.base
            viewer = self._viewer(s, sub, post)
            key = (base, viewer)
            if key not in bodies:
                bodies[key] = await self._status(s.urls, post, viewer)
            body = bodies[key]
            if body is None:
                continue
            fkey = (s.websocket, base, viewer, sub if s.websocket else None)
            frame = frames.get(fkey)
            if frame is None:
                frame = frames[fkey] = ws_frame(sub, "update", body) if s.websocket else sse_frame("update", body)
            s.deliver(frame)

    @staticmethod
    def _viewer(s: Stream, sub: Sub, post: Post) -> int | None:
        """Whose flags (``favourited``, ``reblogged``...) the Status carries. Public streams:
        nobody's (as an anonymous read). A user stream: the reader's, which for a new post
        are all false for everyone (one rendering, shared: ``NOBODY``); a boost's original
        may carry the reader's own flags, so a boost is rendered per reader."""
        if sub[0] != USER:
            return None
        return s.user_id if post.reblog_of_id is not None else NOBODY

    async def _status(self, urls: Urls, post: Post, viewer: int | None) -> bytes | None:
        assert self.api is not None, "the entrypoint sets StreamHub.api before opening a stream"
        try:
            return await self.api.status_bytes(urls, post, viewer)
        except NotFound:  # a boost whose original is gone meanwhile is gone
            return None

    async def _delete(self, post_id: int, author_id: int | None) -> None:
        payload = str(post_id).encode()
        self.counters["deletes"] += 1
        readers = [r for r, streams in self._by_user.items()
                   if any((USER, None) in s.subs for s in streams)]

        async def may_have_shown(reader: int) -> bool:
            return author_id is None or reader == author_id or author_id in await self.hf.feed.following_of(reader)

        shown = set(await self._readers(readers, may_have_shown))
        for s in list(self.streams):
            for sub in s.subs:
                name = sub[0]
                if (name == USER and s.user_id in shown) or name in (PUBLIC, PUBLIC_LOCAL, HASHTAG, HASHTAG_LOCAL):
                    s.deliver(ws_frame(sub, "delete", payload) if s.websocket else sse_frame("delete", payload))

    async def _notification(self, message: dict[str, Any]) -> None:
        user_id = int(message["user_id"])
        streams = [s for s in self._by_user.get(user_id, ()) if s.subs & {(USER, None), (NOTIFICATIONS, None)}]
        if not streams:
            return
        self.counters["notifications"] += 1
        bodies: dict[str, bytes | None] = {}
        for s in streams:
            base = s.urls.base
            if base not in bodies:
                bodies[base] = await self._notification_entity(s.urls, message)
            body = bodies[base]
            if body is None:
                continue
            for sub in s.subs & {(USER, None), (NOTIFICATIONS, None)}:
                s.deliver(ws_frame(sub, "notification", body) if s.websocket else sse_frame("notification", body))

    async def _notification_entity(self, urls: Urls, message: dict[str, Any]) -> bytes | None:
        """Mastodon's Notification entity, as ``GET /api/v1/notifications/:id`` answers it;
        None if it is gone already (dismissed, or its cause undone)."""
        assert self.api is not None
        try:
            return await self.api.conversations.notification(urls, int(message["user_id"]), int(message["id"]))
        except NotFound:
            return None
