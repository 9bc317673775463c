"""The use cases of homefeed, one method each. Validation of what users send happens here
(the HTTP layer only decodes), so every entrypoint gets the same rules.

A write use case commits to the record store (record + outbox event in one transaction),
then updates the caches of this process for read-your-writes. Everything else that derives
from the write happens in the consumers, from the event.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

import orjson

from homefeed.aio import wait_for
from homefeed.config import Settings
from homefeed.domain.errors import Forbidden, InvalidInput, NotFound, Unauthorized, Unavailable
from homefeed.domain.mastodon.content import extract_mentions
from homefeed.domain.mastodon.scopes import covers
from homefeed.domain.model import VISIBILITIES, Caller, Post, User
from homefeed.domain.text import (
    query_terms,
    validate_display_name,
    validate_handle,
    validate_post_text,
)
from homefeed.ports import (
    Closable,
    EventStream,
    LiveBus,
    PostCache,
    RecordStore,
    RelayParts,
    SearchIndex,
    TimelineCache,
    TokenRevocations,
)
from homefeed.service_layer.consumers import Consumers
from homefeed.service_layer.feed import FeedManager
from homefeed.service_layer.home_pages import (HomePages, InvalidatingPostCache, InvalidatingTimelineCache,
                                               ViewPages, first_page)
from homefeed.service_layer.idempotency import IdempotentRequest, IdempotentWrites
from homefeed.service_layer.live import LivePublisher
from homefeed.service_layer.streaming import StreamHub

from homefeed.service_layer.jobs.reads import ReadCounter

if TYPE_CHECKING:
    from homefeed.service_layer.jobs.digest import MailSender
    from homefeed.service_layer.jobs.records import JobStore
    from homefeed.service_layer.relay import OutboxRelay
    from homefeed.service_layer.scheduler import Scheduler

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
#: How many ``@username`` names of one text are looked up as mentions.
MAX_MENTIONS = 20


#: What a ``/v1`` registration token may do: everything its user may (no admin scopes:
#: being a user is not being an operator).
FULL_SCOPES: frozenset[str] = frozenset({"read", "write", "follow", "push", "profile"})

#: How long a process trusts its cached answer for an OAuth token before reading the record
#: again: revocations are announced to every process (``TokenRevocations``) and applied at
#: once; this bounds the damage should an announcement ever be lost.
TOKEN_RECHECK_SECONDS = 300.0

#: ``/healthz`` reports the consumers' lag from a snapshot at most this many seconds old:
#: the first request after it expires reads the lags again (one read, shared by every
#: request arriving meanwhile). A load balancer probing many times a second, or a benchmark,
#: then costs one lag read per interval instead of one per probe (the read was ~3/4 of a
#: ``/healthz``'s CPU, benchmarks/RESULTS.md "issue 14").
HEALTH_MAX_AGE = 0.25


def require_scope(caller: Caller, *alternatives: str) -> int:
    """The caller's user id when its token was granted one of ``alternatives`` (Mastodon's
    rule: ``read`` covers ``read:statuses``, ``write:statuses`` does not cover
    ``write:follows``); Forbidden (403) otherwise, and also for an app-only token where a
    user is needed."""
    if not any(covers(caller.scopes, scope) for scope in alternatives):
        raise Forbidden("this action is outside the token's scopes (" + " or ".join(alternatives) + ")")
    if caller.user_id is None:
        raise Forbidden("this action needs a user's token, not an app's")
    return caller.user_id


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return limit


def page(posts: list[Post], next_id: int | None) -> dict[str, Any]:
    return {"posts": [p.public() for p in posts], "next": None if next_id is None else str(next_id)}


class Homefeed:
    """The application: wired adapters plus the use cases over them."""

    def __init__(
        self,
        settings: Settings,
        store: RecordStore,
        stream: EventStream,
        cache: TimelineCache,
        posts: PostCache,
        search_index: SearchIndex,
        resources: Sequence[Closable] = (),
        relay_parts: RelayParts | None = None,
        revocations: TokenRevocations | None = None,
        live_bus: LiveBus | None = None,
    ) -> None:
        self.settings = settings
        #: Connections closed before the event stream and the record store (caches, rate
        #: limiter: they connect on first use, so there is nothing to open).
        self.resources: list[Closable] = list(resources)
        #: What an outbox relay needs here: source, sink (when a bus is configured), leader.
        self.relay_parts: RelayParts = relay_parts or {}
        self._relay_task: asyncio.Task[None] | None = None
        self._relay_stop: asyncio.Event | None = None
        #: The outbox relay, while this process runs one.
        self.relay: OutboxRelay | None = None
        self.store = store
        self.stream = stream
        #: First home pages kept in memory (``home_pages``): only with the in-process cache,
        #: whose every change this process makes and so can tell the pages about.
        self.home_pages: HomePages | None = None
        #: With a shared (Redis) cache: first home pages kept while the home read's first
        #: round says nothing they depend on changed (``home_pages.ViewPages``).
        self.view_pages: ViewPages | None = None
        if cache.backend == "memory" and settings.feed_strategy != "pull":
            self.home_pages = HomePages()
            cache = InvalidatingTimelineCache(cache, self.home_pages)
            posts = InvalidatingPostCache(posts, self.home_pages)
        elif settings.feed_strategy != "pull":
            self.view_pages = ViewPages()
        self.cache = cache
        self.posts = posts
        self.search_index = search_index
        self.feed = FeedManager(
            store,
            cache,
            posts,
            settings.celebrity_threshold,
            settings.timeline_cap,
            strategy=settings.feed_strategy,
        )
        self.consumers = Consumers(self.feed, stream, search_index)
        #: token hash -> (who it acts for, when to read its record again (None: never, a
        #: /v1 token, which cannot be revoked)). The hot path: a known token costs no SQL.
        self._callers: dict[bytes, tuple[Caller, float | None]] = {}
        #: Bumped by every revocation and reset: a token read from the store while it
        #: changed is not cached (the revocation may have landed between read and insert).
        self._token_epoch = 0
        #: Announces revocations to the other API processes (None: one process).
        self.revocations = revocations
        self._revocations_task: asyncio.Task[None] | None = None
        #: Whether tokens may be cached: always with one process; with several, only while
        #: the revocation channel is subscribed (else an announcement could be missed).
        self._cache_tokens = revocations is None
        self._handles: dict[int, str] = {}  # user id -> handle (immutable), see _handle_of
        #: Writes sent with an ``Idempotency-Key``: run once, answered alike ever after.
        self.idempotency = IdempotentWrites(store, settings.idempotency_hours * 3600)
        #: Live updates (Mastodon's streaming API): the consumers of this process publish
        #: onto the bus (``live``), the open streams of this process listen (``streams``).
        self.live_bus = live_bus
        self.live = LivePublisher(live_bus) if live_bus is not None else None
        self.streams = StreamHub(self, live_bus)
        #: The batch side's records (job claims, results, the read counter): set by
        #: ``bootstrap.build`` (None: no scheduler, no read counter).
        self.job_store: JobStore | None = None
        #: Sends the digest's emails (None: no SMTP configured, no email attempted).
        self.mail_sender: MailSender | None = None
        #: The scheduled jobs of this process, once ``start(scheduler=True)``.
        self.scheduler: Scheduler | None = None
        #: True in a process that serves or works (holds the in-process cache if any).
        self.serving = False
        #: Home reads, counted here and flushed to ``job_store`` every minute.
        self.reads = ReadCounter()
        self._batch_tasks: list[asyncio.Task[None]] = []
        #: ``health``'s snapshot: (when its read began, the answer), and the read under way.
        self._health: tuple[float, dict[str, Any], int | None] | None = None
        self._health_read: tuple[asyncio.Future[dict[str, Any]], int | None] | None = None

    def backends(self) -> dict[str, str]:
        """Which backend serves each part: ``{"store", "cache", "stream", "search"}`` ->
        ``"sqlite"``, ``"memory"``, ``"outbox"``, ``"fts5"``... The one place that says it
        (metrics labels, ``/readyz``), from the adapters themselves."""
        return {
            "store": self.store.backend,
            "cache": self.cache.backend,
            "stream": self.stream.backend,
            "search": self.search_index.backend,
        }

    def backend_profile(self) -> str:
        """``store+cache+stream``, e.g. ``sqlite+memory+outbox`` (the metrics label)."""
        b = self.backends()
        return f"{b['store']}+{b['cache']}+{b['stream']}"

    # -- lifecycle ------------------------------------------------------------------------
    async def start(
        self,
        run_consumers: bool = True,
        *,
        consumers: Sequence[str] | None = None,
        relay: bool = False,
        exclusive: bool = False,
        scheduler: bool = False,
    ) -> None:
        """Open every backend, then start ``consumers`` (default: all, if ``run_consumers``)
        and the outbox relay. ``exclusive``: each consumer runs under a leader lock, for
        consumers reading the outbox directly from several processes. ``scheduler``: this
        is a serving or worker process: run the scheduled jobs (one run per slot across
        every process: see ``scheduler``) and record home reads durably."""
        await self.store.open()
        await self.stream.open()
        if consumers is None:
            consumers = tuple(self.consumers.handlers) if run_consumers else ()
        if consumers:
            leader = self.relay_parts.get("consumer_leader") if exclusive else None
            self.consumers.start(consumers, leader=leader)
            if self.live is not None:
                self.live.attach(self.consumers)  # after the entrypoint's metrics hook: chained
                self.live.start()
        if relay:
            self._start_relay()
        if scheduler:
            self._start_batch_side()
        if self.revocations is not None:
            self._revocations_task = asyncio.create_task(
                self.revocations.listen(self.forget_token, self.forget_all_tokens),
                name="token-revocations",
            )

    def _start_batch_side(self) -> None:
        from homefeed.service_layer.jobs.catalog import default_jobs
        from homefeed.service_layer.scheduler import Scheduler

        self.serving = True
        if self.job_store is None:
            return
        self._batch_tasks.append(asyncio.create_task(self.reads.flush_forever(self.job_store), name="home-reads"))
        if self.settings.scheduler:
            self.scheduler = Scheduler(self, default_jobs(self), self.job_store)
            self.scheduler.start()

    def _start_relay(self) -> None:
        from homefeed.service_layer.relay import OutboxRelay

        parts = self.relay_parts
        if "sink" not in parts:
            return  # no bus: consumers read the outbox itself
        relay = self.relay = OutboxRelay(parts["source"], parts["sink"], parts.get("leader"))
        self._relay_stop = asyncio.Event()
        self._relay_task = asyncio.create_task(relay.run(self._relay_stop), name="relay")

    async def close(self) -> None:
        if self._revocations_task is not None:
            self._revocations_task.cancel()
            try:
                await self._revocations_task
            except (asyncio.CancelledError, Exception):
                pass
            self._revocations_task = None
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        for task in self._batch_tasks:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._batch_tasks.clear()
        if self.job_store is not None and self.serving:
            try:
                await self.reads.flush(self.job_store)
            except Exception:  # the store is going away: a minute of counts is lost
                pass
        await self.streams.stop()
        await self.consumers.stop()
        if self.live is not None:
            await self.live.stop()
        if self._relay_task is not None and self._relay_stop is not None:
            self._relay_stop.set()
            try:
                await wait_for(self._relay_task, timeout=10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._relay_task.cancel()
            self._relay_task = None
        for resource in reversed(self.resources):
            await resource.close()
        await self.stream.close()
        await self.store.close()

    async def lags(self) -> dict[str, int]:
        """Events committed but not yet applied, per consumer (and not yet relayed to the
        bus, under "relay", when there is one)."""
        # The relay first: an event between the relay and the consumers is then counted by
        # one of the two readings.
        relay = await self.relay_parts["source"].lag("relay") if "sink" in self.relay_parts else None
        lags = await self.consumers.lags()
        if relay is not None:
            lags["relay"] = relay
        return lags

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every committed event is relayed and applied by every consumer. With
        no consumer running anywhere (batch jobs, tests), apply them here."""
        if not self.consumers.running and "sink" not in self.relay_parts:
            await self.consumers.drain(timeout)
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            lags = await self.lags()
            if not any(lags.values()):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"not drained within {timeout}s: {lags}")
            await asyncio.sleep(0.01)

    # -- users ----------------------------------------------------------------------------
    # ``once``: the request's Idempotency-Key; the write stores its answer (see
    # IdempotentWrites.run, which calls these with it).
    async def register(
        self, handle: Any, display_name: Any = None, *, once: IdempotentRequest | None = None
    ) -> dict[str, Any]:
        handle = validate_handle(handle)
        display_name = validate_display_name(display_name, handle)
        token = secrets.token_urlsafe(32)

        def answer(user: User) -> dict[str, Any]:
            return {**user.public(), "token": token}

        record = once.record(answer) if once else None
        user = await self.store.create_user(handle, display_name, hash_token(token), idempotency=record)
        return answer(user)

    async def authenticate(self, token: str | None, scope: str | None = None) -> int:
        """The user a ``/v1`` request acts for. A token from either API works; an OAuth
        token must hold ``scope`` (when given) and belong to a user."""
        caller = await self.caller(token)
        if scope is not None and caller.app_id is not None:
            return require_scope(caller, scope)
        if caller.user_id is None:
            raise Forbidden("this action needs a user's token, not an app's")
        return caller.user_id

    def known_caller(self, token: str) -> Caller | None:
        """``caller(token)`` when this process knows the token (its memory, which a
        revocation empties at once) and it has not passed its recheck time; None otherwise
        (the awaited ``caller`` then answers or refuses). No coroutine: the hot paths', and
        ``caller``'s own first look."""
        h = hash_token(token)
        hit = self._callers.get(h)
        if hit is None:
            return None
        known, until = hit
        if until is not None and until <= time.time():
            del self._callers[h]  # past its recheck: read again
            return None
        return known

    async def caller(self, token: str | None) -> Caller:
        """Who ``token`` acts for, with its scopes; Unauthorized (401) when it is missing,
        unknown, expired or revoked. A ``/v1`` registration token is the user's own key:
        every scope. An OAuth access token carries its app and the scopes it was granted.

        Known tokens are answered from this process's memory (no SQL on the hot path); a
        revocation drops the entry here and on every other process (``TokenRevocations``)."""
        if not token:
            raise Unauthorized("missing bearer token")
        known = self.known_caller(token)
        if known is not None:
            return known
        h = hash_token(token)
        now = time.time()
        epoch = self._token_epoch
        recheck = None
        uid = await self.store.user_id_by_token_hash(h)
        if uid is not None:
            found = Caller(user_id=uid, app_id=None, scopes=FULL_SCOPES)
        else:
            record = await self.store.access_token(h)
            # app 0 owns the authorize page's log-in sessions: a cookie, never a bearer token
            if record is None or record.revoked or record.app_id == 0:
                raise Unauthorized("invalid bearer token")
            if record.expires_at is not None and record.expires_at <= now:
                raise Unauthorized("the access token has expired")
            found = Caller(user_id=record.user_id, app_id=record.app_id, scopes=record.scopes)
            recheck = now + TOKEN_RECHECK_SECONDS
            if record.expires_at is not None:
                recheck = min(recheck, record.expires_at)
        if epoch == self._token_epoch and self._cache_tokens:
            if len(self._callers) > 100_000:
                self._callers.clear()
            self._callers[h] = (found, recheck)
        return found

    def forget_token(self, token_hash: bytes) -> None:
        """A token was revoked (here or on another process): never answer from memory."""
        self._token_epoch += 1
        self._callers.pop(token_hash, None)
        self.streams.token_revoked(token_hash)

    def forget_all_tokens(self, subscribed: bool = True) -> None:
        """The revocation channel went down (``subscribed`` False: cache no token until it
        is back) or was (re)subscribed (announcements may have been missed meanwhile)."""
        self._token_epoch += 1
        self._callers.clear()
        self._cache_tokens = subscribed
        if subscribed and self.streams.streams:  # announcements may have been missed
            asyncio.get_running_loop().create_task(self.streams.recheck_tokens())

    async def token_revoked(self, token_hash: bytes) -> None:
        """Drop the token here, then tell the other processes (best effort: each also
        rereads its cached tokens every ``TOKEN_RECHECK_SECONDS``)."""
        self.forget_token(token_hash)
        if self.revocations is not None:
            try:
                await self.revocations.announce(token_hash)
            except Exception:  # the revocation is committed; the announcement is best effort
                import logging

                logging.getLogger("homefeed.oauth").exception("could not announce a token revocation")

    async def user(self, handle: str) -> User:
        if not isinstance(handle, str) or not handle:
            raise NotFound("no such user")
        user = await self.store.user_by_handle(handle)
        if user is None:
            raise NotFound(f"no user with handle {handle!r}")
        return user

    async def profile(self, handle: str) -> dict[str, Any]:
        return (await self.user(handle)).profile()

    async def follow(
        self, user_id: int, handle: str, *, once: IdempotentRequest | None = None
    ) -> dict[str, Any]:
        target = await self.user(handle)
        if target.id == user_id:
            raise InvalidInput("you cannot follow yourself")
        changed, _ = await self.store.follow(
            user_id, target.id, idempotency=once.record(_following) if once else None
        )
        if changed:
            await self.feed.follows_changed(user_id, target.id)
        return _following(None)

    async def unfollow(self, user_id: int, handle: str) -> dict[str, Any]:
        target = await self.user(handle)
        if target.id == user_id:
            raise InvalidInput("you cannot unfollow yourself")
        changed, _ = await self.store.unfollow(user_id, target.id)
        if changed:
            await self.feed.follows_changed(user_id, target.id)
        return {"following": False}

    async def followers(self, handle: str, limit: int | None = None, before: int | None = None) -> dict[str, Any]:
        user = await self.user(handle)
        limit = check_limit(limit)
        rows = await self.store.followers_page(user.id, before, limit)
        return _user_page(rows, limit)

    async def following(self, handle: str, limit: int | None = None, before: int | None = None) -> dict[str, Any]:
        user = await self.user(handle)
        limit = check_limit(limit)
        rows = await self.store.following_page(user.id, before, limit)
        return _user_page(rows, limit)

    # -- posts ----------------------------------------------------------------------------
    async def create_post(
        self, user_id: int, text: Any, *, once: IdempotentRequest | None = None,
        in_reply_to_id: int | None = None,
    ) -> dict[str, Any]:
        return (await self.write_post(user_id, text, once=once, in_reply_to_id=in_reply_to_id)).public()

    async def write_post(
        self, user_id: int, text: Any, visibility: str = "public", *,
        once: IdempotentRequest | None = None, answer: Callable[[Post], dict[str, Any]] = Post.public,
        in_reply_to_id: int | None = None, mentions: Sequence[User] | None = None,
    ) -> Post:
        """Validate and store a post (``visibility`` "public" or "unlisted"); ``answer`` is
        what a keyed write stores as its reply (the entrypoint's shape of the post).

        ``in_reply_to_id``: a reply (NotFound when that post does not exist; a reply to a
        boost is a reply to its original, as apps show the original). ``mentions``: the
        accounts the text mentions, when the caller resolved them already
        (``resolve_mentions``); else they are resolved here."""
        text = validate_post_text(text, self.settings.max_post_length)
        if visibility not in VISIBILITIES:
            raise InvalidInput(f"visibility must be one of {', '.join(VISIBILITIES)}")
        if in_reply_to_id is not None:
            parent = (await self.feed.hydrate([in_reply_to_id])).get(in_reply_to_id)
            if parent is None:
                raise NotFound("no such post to reply to")
            if parent.reblog_of_id is not None:
                in_reply_to_id = parent.reblog_of_id
        if mentions is None:
            mentions = await self.resolve_mentions(user_id, text)
        post = await self.store.create_post(
            user_id, await self._handle_of(user_id), text,
            idempotency=once.record(answer) if once else None, visibility=visibility,
            in_reply_to_id=in_reply_to_id, mention_ids=tuple(u.id for u in mentions),
        )
        await self.feed.posted(post)
        return post

    async def resolve_mentions(self, author_id: int, text: str, local_domain: str | None = None) -> list[User]:
        """The existing accounts that ``@username`` in ``text`` names (Mastodon's mention
        rule, ``extract_mentions``), in order, each once, the author never, at most
        ``MAX_MENTIONS`` names looked up (a text cannot make the write read without bound).
        ``local_domain``: this instance's host, so that ``@user@host`` counts too."""
        out: list[User] = []
        if "@" not in text:  # no mention without one: skip the text's tokenizing (most posts)
            return out
        seen: set[int] = {author_id}
        for name in extract_mentions(text, local_domain)[:MAX_MENTIONS]:
            user = await self.store.user_by_handle(name)
            if user is not None and user.id not in seen:
                seen.add(user.id)
                out.append(user)
        return out

    async def _handle_of(self, user_id: int) -> str:
        """The author's handle, which every post carries. Handles never change, so it is
        read from the record store once per user and process, not once per post (a round
        trip per post on PostgreSQL)."""
        handle = self._handles.get(user_id)
        if handle is None:
            author = await self.store.user_by_id(user_id)
            if author is None:
                raise Unauthorized("the token's user no longer exists")
            handle = author.handle
            if len(self._handles) > 100_000:
                self._handles.clear()
            self._handles[user_id] = handle
        return handle

    async def get_post(self, post_id: int) -> dict[str, Any]:
        got = await self.feed.hydrate([post_id])
        post = got.get(post_id)
        if post is None:
            raise NotFound("no such post")
        return post.public()

    async def delete_post(self, user_id: int, post_id: int) -> None:
        post = await self.store.delete_post(post_id, user_id)
        await self.feed.deleted(post.id, post.author_id)

    # -- reads ----------------------------------------------------------------------------
    async def home_timeline(self, user_id: int, limit: int | None = None, before: int | None = None) -> dict[str, Any]:
        limit = check_limit(limit)
        if before is None:  # the first page: kept in memory between changes (home_pages)
            first = await first_page(self, user_id, limit)
            posts, next_id = first.posts, first.next_id
        else:
            posts, next_id = await self.feed.read_home(user_id, before, limit)
        self.reads.home_read(user_id)
        return page(posts, next_id)

    async def home_timeline_body(self, user_id: int, limit: int | None = None) -> bytes:
        """``home_timeline(user_id, limit)`` (the first page) as its JSON body, the bytes
        kept with the page: the hot path of ``GET /v1/timelines/home``."""
        limit = check_limit(limit)
        first = await first_page(self, user_id, limit)
        self.reads.home_read(user_id)
        body = first.body
        if body is None:
            body = first.body = orjson.dumps(page(first.posts, first.next_id))
        return body

    def warm_home_body(self, token: str, limit: int | None) -> bytes | None:
        """``home_timeline_body(await authenticate(token, "read"), limit)`` when all of it is
        in this process's memory: the token known (``caller``'s cache, which a revocation
        empties at once) and the reader's first page of ``limit`` kept with its body. The
        same answer, the same counters (the kept-page hit, the durable read counter) and the
        same scope rule, without the four coroutines of the awaited path: None when
        anything is missing or wrong (unknown or expired token, an app's token outside
        ``read``, a limit out of range, no kept page), and the caller takes that path, which
        answers or refuses."""
        pages = self.home_pages
        if pages is None:
            return None
        known = self.known_caller(token)
        if known is None:
            return None
        uid = known.user_id
        if uid is None or (known.app_id is not None and not covers(known.scopes, "read")):
            return None
        if limit is None:
            limit = DEFAULT_LIMIT
        elif not 1 <= limit <= MAX_LIMIT:
            return None
        page = pages.get(uid, limit)
        if page is None or page.body is None:
            return None
        pages.hits += 1
        self.reads.home_read(uid)
        return page.body

    async def user_posts(self, handle: str, limit: int | None = None, before: int | None = None) -> dict[str, Any]:
        user = await self.user(handle)
        limit = check_limit(limit)
        posts = await self.store.user_posts(user.id, before, limit)
        return page(posts, posts[-1].id if len(posts) == limit else None)

    async def search(self, q: Any, limit: int | None = None, before: int | None = None) -> dict[str, Any]:
        if not isinstance(q, str):
            raise InvalidInput("q is required")
        terms = query_terms(q)
        limit = check_limit(limit)
        out: list[Post] = []
        cursor = before
        # The index may still hold a post deleted a moment ago: hydrate and skip it.
        while len(out) < limit:
            need = limit - len(out)
            ids = await self.search_index.search(terms, cursor, need)
            posts = await self.feed.hydrate(ids)
            out.extend(posts[i] for i in ids if i in posts)
            if len(ids) < need:
                return page(out, None)
            cursor = ids[-1]
        return page(out, out[-1].id)

    # -- status ---------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """Liveness: this process answers. The consumers' lag is added when the backends
        holding the offsets answer; when one is down (an outage) the process is still alive
        and must not be restarted by a liveness probe, so the answer stays 200 and says why
        the lag is missing (``/readyz`` is the check that names the failing backend).

        The answer is a snapshot at most ``HEALTH_MAX_AGE`` seconds old (its age counted from
        when its read began), and never one read before a commit of this process that added
        events (on every profile: a client that wrote here and then waits for "behind 0" is
        never told so before its own event is applied). Requests that find it expired share
        one new read, if that read began after this process's last such commit. Callers
        must not change the dict returned: it is the snapshot."""
        commits = self._outbox_commits()
        snap = self._health
        if snap is not None and time.monotonic() - snap[0] < HEALTH_MAX_AGE and snap[2] == commits:
            return snap[1]
        pending = self._health_read
        if pending is None or pending[1] != commits:
            pending = self._health_read = (asyncio.ensure_future(self._read_health(commits)), commits)
        # shielded: a client that hangs up does not cancel the read the others wait for
        return await asyncio.shield(pending[0])

    def _outbox_commits(self) -> int | None:
        """How many commits that added events this process has made (the outbox counts
        them: SQLite's every commit, PostgreSQL's holding outbox rows), or None."""
        outbox = self.relay_parts.get("source", self.stream)
        return getattr(outbox, "commits", None)

    async def _read_health(self, commits: int | None) -> dict[str, Any]:
        began = time.monotonic()
        try:
            try:
                lags = await self.lags()
            except Unavailable as exc:
                body: dict[str, Any] = {"status": "ok", "consumers": {}, "lag_error": exc.message}
            else:
                body = {"status": "ok", "consumers": {k: {"behind": v} for k, v in lags.items()}}
            if self._outbox_commits() == commits:  # else a newer read is already due
                self._health = (began, body, commits)
            return body
        finally:
            if self._health_read is not None and self._health_read[1] == commits:
                self._health_read = None

    async def readiness(self, timeout: float = 2.0) -> dict[str, dict[str, Any]]:
        """Ask each backend one cheap read through its port, all at once, each within
        ``timeout``: ``{"store"|"cache"|"stream"|"search": {"ok", "ms", "error"?}}``."""

        probes: dict[str, Callable[[], Awaitable[object]]] = {
            "store": lambda: self.store.max_post_id(),
            "cache": lambda: self.cache.celebrities(),
            "stream": lambda: self.stream.head(),
            "search": lambda: self.search_index.search(["readyz"], None, 1),
        }

        async def one(probe: Callable[[], Awaitable[object]]) -> dict[str, Any]:
            t0 = time.perf_counter()
            try:
                await wait_for(probe(), timeout)
            except asyncio.TimeoutError:
                return {"ok": False, "ms": round((time.perf_counter() - t0) * 1000, 2),
                        "error": f"no answer within {timeout:g}s"}
            except Exception as exc:  # a backend that fails to answer is what we report
                return {"ok": False, "ms": round((time.perf_counter() - t0) * 1000, 2),
                        "error": f"{type(exc).__name__}: {exc}"[:300]}
            return {"ok": True, "ms": round((time.perf_counter() - t0) * 1000, 2)}

        results = await asyncio.gather(*(one(p) for p in probes.values()))
        return dict(zip(probes, results))


def _following(_: None) -> dict[str, Any]:
    """The answer to a follow, whether or not it changed anything."""
    return {"following": True}


def _user_page(rows: list[tuple[int, User]], limit: int) -> dict[str, Any]:
    return {
        "users": [u.public() for _, u in rows],
        "next": str(rows[-1][0]) if len(rows) == limit else None,
    }

