"""The building blocks as interfaces (ports): what a backend must provide, all of it.

The core (``service_layer``) and the entrypoints code against these Protocols only; each
backend is one adapter in ``homefeed.adapters``, wired in ``homefeed.bootstrap``. Every
method a caller uses is declared here, and every adapter of a port implements every method
of it: where a capability means nothing for a backend, the adapter implements it honestly
(a no-op, or an empty answer) and its docstring says why. Nothing is found by name at run
time, so a new backend is written from this file alone, and ``mypy`` (the assignments in
``bootstrap``) and ``tests/unit/test_ports_conformance.py`` check that it fits.

All I/O methods are coroutines so that network backends (PostgreSQL, Redis, NATS) fit the
same shape as the embedded ones, which simply never suspend.

Each adapter class names its backend in ``backend`` (a ClassVar): the one place the names
of the backends in use come from (``Homefeed.backends()``: metrics labels, ``/readyz``).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, ClassVar, Collection, Iterable, Protocol, Sequence, TypedDict

from homefeed.domain.deployment import Deployment
from homefeed.domain.errors import IdempotencyKeyTaken  # noqa: F401  (raised by idempotent_reply; its old home)
from homefeed.domain.model import Event, Marker, Notification, Post, PostStats, User
from homefeed.domain.oauth import AccessToken, AuthCode, OAuthApp
from homefeed.domain.mail import MailNotification
from homefeed.domain.webhooks import Delivery, NewDelivery, Subscription

#: Set (True) in a task whose writes only keep derived data in step and that no request
#: waits for (the event consumers, ``Consumers``): a record store may then hold such a
#: write back a little to commit it together with the next write a request waits for (the
#: embedded profile's group commit does: ``homefeed.adapters.sqlite_db``). A hint: an
#: adapter may ignore it; either way the write is committed before it returns.
background_writes: ContextVar[bool] = ContextVar("homefeed_background_writes", default=False)

#: The names an adapter's ``backend`` takes, for each part ``Homefeed.backends()`` names:
#: what the OpenAPI document lists (``/readyz``). The adapters are where a name comes from;
#: ``tests/unit/test_ports_conformance.py`` checks each one is listed here.
BACKEND_NAMES: dict[str, tuple[str, ...]] = {
    "store": ("sqlite", "postgresql"),
    "cache": ("memory", "redis"),
    "stream": ("outbox", "jetstream"),
    "search": ("fts5", "postgresql"),
}


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """The answer to remember for a request's ``Idempotency-Key``. A write given one stores
    it in the write's own transaction: a crash can never keep the write and lose the key (a
    retry would write again) nor keep the key without the write."""

    #: ``"<scope>:<key>"``: the key as the client sent it, scoped to the caller.
    scope_key: str
    #: What identifies the request the key was first used with (see service_layer.idempotency).
    fingerprint: bytes
    #: The HTTP status the write answers with.
    status: int
    #: The answer's body from what the write creates: the new ``User`` (``create_user``), the
    #: new ``Post`` (``create_post``), None (``follow``: its answer is the same whether or not
    #: it changed anything). Called before or inside the transaction.
    render: Callable[[Any], bytes]


class Closable(Protocol):
    """Holds connections (or memory) to release when the process stops. Caches and rate
    limiters connect on first use, so they have nothing to open: ``Homefeed.close`` closes
    them (its ``resources``), then the event stream, then the record store."""

    async def close(self) -> None: ...


class Resource(Closable, Protocol):
    """Opened before use: ``Homefeed.start`` opens the record store, then the event stream
    (which may keep its offsets in the record store). Adapters that share another's
    connection (the outbox streams share the record store's) implement ``open`` and
    ``close`` as no-ops."""

    async def open(self) -> None: ...


class RecordStore(Resource, Protocol):
    """The system of record. Every write is ONE transaction holding the record and its event
    in the outbox; it returns only after that transaction is durable."""

    #: "sqlite", "postgresql": the name metrics and ``/readyz`` show.
    backend: ClassVar[str]

    # -- writes (each one transaction: record + outbox event) ------------------------------
    # ``idempotency``: also store that record in the same transaction (a follow that changes
    # nothing stores it too); raises IdempotencyKeyTaken, writing nothing, if its scope_key
    # is already stored. A write that fails otherwise stores no record.
    async def create_user(
        self, handle: str, display_name: str, token_hash: bytes,
        *, idempotency: IdempotencyRecord | None = None,
    ) -> User:
        """Raises Conflict if the handle is taken (ignoring case)."""
    async def follow(
        self, follower_id: int, followee_id: int, *, idempotency: IdempotencyRecord | None = None
    ) -> tuple[bool, int]:
        """Returns (changed, followee's followers_count after). No event when unchanged."""
    async def unfollow(self, follower_id: int, followee_id: int) -> tuple[bool, int]: ...
    async def create_post(
        self, author_id: int, author_handle: str, text: str,
        *, idempotency: IdempotencyRecord | None = None, visibility: str = "public",
        in_reply_to_id: int | None = None, mention_ids: Sequence[int] = (),
    ) -> Post:
        """A reply names its parent (``in_reply_to_id``; NotFound if there is no such post:
        nothing is written); the post takes ``in_reply_to_account_id`` from the parent, whose
        ``replies_count`` goes up in the same transaction. ``mention_ids``: the accounts the
        text mentions; rows are stored for existing users other than the author, once each.
        The ``post_created`` event carries ``in_reply_to_id``, ``in_reply_to_account_id``,
        ``reblog_of_id`` (None) and ``mention_ids`` (those stored, ascending)."""
    async def delete_post(self, post_id: int, by_user_id: int) -> Post:
        """Raises NotFound (no such post) or Forbidden (not the author's). Also: the
        parent's ``replies_count`` goes down (a reply), the original's ``reblogs_count``
        goes down (a boost); deleting an original deletes its boosts (each with its own
        ``post_deleted`` event, the booster's ``posts_count`` down by one), its favourites
        and its mentions. Replies stay, pointing at the gone post. ``post_deleted`` carries
        ``reblog_of_id``, ``in_reply_to_id`` and ``visibility``."""

    # -- conversations: boosts, favourites (each one transaction with its event) ----------
    async def reblog(
        self, user_id: int, user_handle: str, post_id: int, *, visibility: str = "public"
    ) -> tuple[Post, Post, bool]:
        """(the boost, the original, created). Boosting a boost boosts its original. A user
        has at most one boost of an original: boosting again returns it (created=False, no
        event). A boost is a post of the booster's (text "", ``reblog_of_id``): the
        booster's ``posts_count`` and the original's ``reblogs_count`` go up, one
        ``post_created`` event. NotFound if ``post_id`` names no post."""
    async def unreblog(self, user_id: int, post_id: int) -> tuple[Post | None, Post]:
        """``post_id``: the original or a boost of it. Deletes the user's boost of that
        original as ``delete_post`` does (its event included); returns (the deleted boost,
        or None if there was none, the original). NotFound if ``post_id`` names no post."""
    async def favourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        """(changed, the post favourited). A boost's id favourites its original (as
        Mastodon). ``favourited`` event {favourite_id, user_id, post_id, author_id} when
        changed; the counter changes in the same transaction, so it stays exact under
        concurrency. NotFound if there is no such post."""
    async def unfavourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        """The reverse of ``favourite`` (``unfavourited`` event when changed)."""

    # -- conversations: reads ---------------------------------------------------------------
    async def post_stats(self, post_ids: Sequence[int], viewer_id: int | None) -> dict[int, PostStats]:
        """Counters of the existing posts among ``post_ids`` and whether ``viewer_id``
        favourited / boosted each (False without a viewer). One query."""
    async def reply_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        """For each of ``post_ids``: the ids of its direct replies, ascending (every id
        asked is a key, with [] when it has none)."""
    async def mention_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        """For each of ``post_ids``: the user ids it mentions, ascending (every id asked
        is a key)."""
    async def favourites_page(
        self, user_id: int, max_id: int | None, min_id: int | None, limit: int,
        oldest_first: bool = False,
    ) -> list[tuple[int, int]]:
        """(favourite id, post id) of the user's favourites with min_id < id < max_id,
        newest first (oldest first if ``oldest_first``)."""
    async def favourited_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        """(favourite id, user) newest first, favourite id < max_id."""
    async def reblogged_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        """(boost id, booster) newest first, boost id < max_id."""

    # -- notifications: a function of the records (docs/conversations.md) -------------------
    async def sync_notifications(
        self, *, post_ids: Sequence[int] = (), favourites: Sequence[tuple[int, int]] = (),
        follows: Sequence[tuple[int, int]] = (),
    ) -> list[Notification]:
        """Make the notifications derived from these causes equal what the records say now,
        in one transaction: a post (its mentions; the reblog notification of a boost; if
        gone, every notification with its id or about it), a favourite ``(user_id,
        post_id)``, a follow ``(follower_id, followee_id)``. Never one of someone's own
        action, a dismissed one, or one with id <= the recipient's cleared id. Idempotent,
        whatever the order of the calls. Returns the rows it inserted (new ones only)."""
    async def notifications_page(
        self, user_id: int, *, types: Collection[str] | None = None,
        exclude_types: Collection[str] = (), from_user_id: int | None = None,
        max_id: int | None = None, min_id: int | None = None, limit: int = 40,
        oldest_first: bool = False,
    ) -> list[Notification]:
        """The user's notifications with min_id < id < max_id, newest first (oldest first
        if ``oldest_first``); ``types`` None: every type (an empty collection: none)."""
    async def notification(self, user_id: int, notification_id: int) -> Notification | None: ...
    async def dismiss_notification(self, user_id: int, notification_id: int) -> bool:
        """Delete it and remember the dismissal (no sync or rebuild brings it back); False
        (nothing recorded) if the user has no such notification."""
    async def clear_notifications(self, user_id: int) -> int:
        """Delete all of the user's notifications (returns how many) and raise the user's
        ``notifications_cleared_id`` to the largest id deleted."""
    async def notification_diff(self, user_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """The audit: user -> (missing, extra) rows of the table against the function of
        the records, read in one snapshot; users with no difference are left out."""
    async def rebuild_notifications(self, user_ids: Sequence[int]) -> int:
        """Make the users' notifications equal the function of the records; rows changed."""
    async def post_counters(
        self, post_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        """For each existing post: (stored, recomputed) ``(replies, reblogs, favourites)``."""
    async def fix_post_counters(self, post_ids: Sequence[int]) -> int:
        """Set the posts' counters from the records; returns how many posts changed."""

    # -- markers ----------------------------------------------------------------------------
    async def markers(self, user_id: int, timelines: Sequence[str]) -> dict[str, Marker]:
        """The user's saved markers among ``timelines`` (absent ones are left out)."""
    async def set_marker(self, user_id: int, timeline: str, last_read_id: str) -> Marker:
        """Save the read position, versioned as Mastodon's (Rails' ``lock_version``):
        ``version`` 0 for a new marker, one more (and ``updated_at`` now, unix seconds) each
        time ``last_read_id`` changes, both unchanged when saved again at the same id."""

    # -- reads ----------------------------------------------------------------------------
    async def user_by_id(self, user_id: int) -> User | None: ...
    async def user_by_handle(self, handle: str) -> User | None: ...
    async def user_id_by_token_hash(self, token_hash: bytes) -> int | None: ...
    async def followers_page(
        self, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]:
        """(follow id, follower) newest follow first, follow id < before."""
    async def following_page(
        self, user_id: int, before: int | None, limit: int
    ) -> list[tuple[int, User]]: ...
    async def follower_ids(self, user_id: int) -> list[int]: ...
    async def follower_ids_of(self, user_ids: Sequence[int]) -> dict[int, list[int]]:
        """``follower_ids`` of each of ``user_ids`` in one read (the fan-out of a batch of
        posts: one statement for its authors, not one per post). A user without followers
        may be left out."""
    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        """Those of ``candidates`` who follow ``user_id``, each once, in any order. The
        fan-out of an author whose followers far outnumber the cached home timelines asks
        this for the users with a cached timeline (``TimelineCache.home_keys``): a lookup
        per candidate instead of reading every follower (1,000,000 rows for 10,000
        timelines)."""
    async def following_ids(self, user_id: int) -> list[int]: ...
    async def followers_count(self, user_id: int) -> int: ...
    async def celebrity_ids(self, threshold: int) -> list[int]: ...
    async def posts_by_ids(self, ids: Sequence[int]) -> list[Post]: ...
    async def present_post_ids(self, ids: Sequence[int]) -> set[int]:
        """Those of ``ids`` that are stored posts (the consumers' check, after applying a
        batch, for posts deleted meanwhile: an index lookup each, no post read)."""
    async def author_post_ids(self, author_id: int, before: int | None, limit: int) -> list[int]: ...
    async def public_post_ids(self, before: int | None, limit: int) -> list[int]:
        """Ids of public posts below ``before``, newest first, boosts and replies to others
        left out (self-replies kept): rebuilds the public timeline's cached list; reads are
        served from the cache."""
        ...
    async def home_post_ids(self, user_id: int, before: int | None, limit: int) -> list[int]:
        """Newest ids of posts by the user and everyone they follow, id < before, replies
        and boosts included (``FeedManager`` applies the home rules on read): the home
        timeline computed straight from the records (pull, approach 1)."""
    async def user_posts(self, author_id: int, before: int | None, limit: int) -> list[Post]: ...
    async def posts_after(self, after_id: int, limit: int) -> list[Post]:
        """Posts in ascending id order, id > after_id: how batch jobs walk every post."""
    async def max_post_id(self) -> int: ...
    async def count_users(self) -> int: ...
    async def bulk_load(
        self,
        users: Iterable[tuple[int, str, str, bytes]],
        follows: Iterable[tuple[int, int, int]],
        posts: Iterable[tuple[int, int, str]],
    ) -> None:
        """Load a world in one go, bypassing the outbox (a batch job: rebuild the derived
        stores afterwards); counters are recomputed from the records."""

    # -- idempotency keys -------------------------------------------------------------------
    async def idempotent_reply(
        self, scope_key: str, max_age_seconds: float
    ) -> tuple[bytes, int, bytes] | None:
        """(fingerprint, status, body) stored for ``scope_key`` at most ``max_age_seconds``
        ago (by the store's clock); None if there is none, or only an older one."""
    async def purge_idempotency_keys(self, older_than_seconds: float) -> int:
        """Delete the records stored more than ``older_than_seconds`` ago; returns how many."""

    # -- administration: the audit and the batch jobs, never the request path --------------
    async def user_ids_after(self, after_id: int, limit: int) -> list[int]:
        """User ids > after_id, ascending: how batch jobs walk every user."""
    async def sample_user_ids(self, n: int) -> list[int]:
        """Up to ``n`` user ids chosen at random."""
    async def counters(
        self, user_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        """For each existing user: (stored, recomputed) ``(followers, following, posts)``
        counts, both read in one snapshot."""
    async def fix_counters(self, user_ids: Sequence[int]) -> int:
        """Set the users' counters from the records, in one transaction that no concurrent
        follow/unfollow/post/delete of theirs can interleave with. Returns how many changed."""

    async def deployment(self) -> Deployment:
        """Which deployment this database is (generated by ``migrate``): it names the
        deployment's NATS stream, subjects and consumers, so deployments never share them."""

    # -- accounts and OAuth 2 (service_layer.accounts / .oauth) -----------------------------
    # Secrets arrive hashed (SHA-256 for tokens, codes and client secrets; argon2id for
    # passwords): the store never sees one in clear.
    async def create_account(
        self, handle: str, display_name: str, email: str, password_hash: str, token: AccessToken,
    ) -> User:
        """A user who logs in with an email and a password (``POST /api/v1/accounts``), and
        its first access token (``token.user_id`` is ignored: the new user's), in one
        transaction with its ``user_registered`` event. Conflict if the handle or the email
        is taken (both ignoring case)."""
    async def login_of(self, login: str) -> tuple[int, str | None] | None:
        """(user id, password hash or None) of the user whose handle or email is ``login``,
        ignoring case; None when there is none."""
    async def set_password(self, user_id: int, password_hash: str, email: str | None = None) -> bool:
        """Set a user's password (and email, when given: Conflict if taken); False if no such
        user."""
    async def update_profile(
        self, user_id: int, display_name: str | None, note: str | None
    ) -> User | None:
        """Change what is not None; the user after, or None if there is no such user."""
    async def create_app(
        self, name: str, website: str | None, redirect_uris: Sequence[str],
        scopes: frozenset[str], client_id: str, secret_hash: bytes,
    ) -> OAuthApp: ...
    async def app_by_client_id(self, client_id: str) -> OAuthApp | None: ...
    async def create_code(self, code: AuthCode) -> None: ...
    async def take_code(self, code_hash: bytes) -> AuthCode | None:
        """The code, deleted in the same statement: a code is used at most once, even by two
        concurrent requests. None if unknown or already used (expiry is the caller's check)."""
    async def create_token(self, token: AccessToken) -> None: ...
    async def access_token(self, token_hash: bytes) -> AccessToken | None:
        """The token with this hash, revoked ones included (``revoked`` says so)."""
    async def rotate_token(
        self, refresh_hash: bytes, app_id: int, new_hash: bytes, new_refresh_hash: bytes, now: float,
    ) -> tuple[AccessToken, bytes] | None:
        """The refresh grant: revoke the live token of ``app_id`` with this refresh token
        and issue its successor (same user and scopes) in one transaction; (the new token,
        the revoked token's access hash, to announce), or None if there is no such live
        token (used, revoked or another app's)."""
    async def revoke_token(self, token_hash: bytes, app_id: int) -> bytes | None:
        """Revoke the app's token whose access or refresh hash is ``token_hash``; the
        revoked token's access hash (to announce), or None if nothing was live."""

    # The deployment id (stored by ``migrate``, naming the stream and consumers of this
    # deployment) joins this port as ``async def deployment_id(self) -> str`` once both
    # databases provide it.


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a consumer gave up on after repeated failures (one shape for every stream)."""

    #: The handle for ``retry_dead_letter``.
    id: int
    consumer: str
    #: The event, or None if it could not be decoded (JetStream only).
    event: Event | None
    reason: str
    #: JetStream: deliveries before it was given up. Outbox streams: times it was
    #: dead-lettered (1, plus one for each retry that failed again).
    deliveries: int
    #: Position of the event in its stream (outbox streams: ``Event.seq``).
    stream_seq: int
    #: "consumer" (put there by the consumer) or "max_deliver" (JetStream's advisory).
    source: str
    at: str
    #: A retry is requested and not yet applied (outbox streams).
    retrying: bool = False


#: A place in one stream, comparable with ``<`` to another place in the SAME stream only:
#: ``(0, seq)`` where a stream has one sequence, ``(xid, seq)`` for the PostgreSQL outbox.
StreamPosition = tuple[int, int]


class EventStream(Resource, Protocol):
    """Outbox events in commit order, to durable named consumers, at least once.

    Two kinds of adapter: the outbox itself read in place (SQLite, PostgreSQL: the consumer
    offsets live in the database, ``backend = "outbox"``), and a bus the outbox is relayed
    onto (NATS JetStream). Capabilities of the bus that the outbox has no use for (events
    pushed ahead of a fetch, ack deadlines, delayed redelivery) are no-ops there."""

    #: "outbox", "jetstream".
    backend: ClassVar[str]

    @property
    def redelivery_after(self) -> float | None:
        """Seconds after which an event fetched and not acknowledged is delivered again, to
        any process (JetStream's ``ack_wait``): a consumer whose batch takes longer reports
        it ``in_progress`` before then, or a busy worker would see its batch applied a
        second time elsewhere, out of order, and spend the event's ``max_deliver``. None
        where nothing is redelivered on a deadline (the outbox: an event stays in hand
        until acknowledged)."""

    # -- consuming -------------------------------------------------------------------------
    async def fetch(self, consumer: str, max_events: int, timeout: float) -> list[Event]:
        """The next events after what ``consumer`` acknowledged; waits up to ``timeout``
        seconds for at least one."""
    async def ack(self, consumer: str, events: Sequence[Event]) -> None:
        """Record that ``events`` (the last batch fetched) are applied."""
    async def nak(self, consumer: str, events: Sequence[Event], delay: float | None = None) -> None:
        """Give ``events`` (fetched, not acknowledged) back for redelivery, now or after
        ``delay`` seconds."""
    async def in_progress(self, events: Sequence[Event]) -> None:
        """The events fetched are still being worked on (an outage is being ridden out):
        a stream that redelivers unacknowledged events after a deadline postpones it."""
    async def take_delivered(self, consumer: str) -> list[Event]:
        """For a consumer about to stop: events delivered to this process that no fetch
        returned yet (a stream that pushes ahead of the fetches has some)."""

    # -- where consumers stand ---------------------------------------------------------------
    async def lag(self, consumer: str) -> int:
        """Events committed but not yet acknowledged by ``consumer``."""
    async def lags(self, consumers: Sequence[str]) -> dict[str, int]:
        """``lag`` of each of ``consumers``, read together: one statement where the backend
        can (the outbox streams), the requests sent at once where it cannot (JetStream).
        ``/healthz`` and the metrics ask for every consumer's lag; one read per consumer
        was most of a ``/healthz``'s cost (benchmarks/RESULTS.md, issue 14)."""
    async def head(self) -> int:
        """The ``Event.seq`` of the newest event the stream delivers (0 if none): a cheap
        read that proves the stream answers (``/readyz``)."""
    async def end_position(self) -> StreamPosition:
        """Where the newest stored event is, including events not deliverable yet: a
        consumer whose ``acked_position`` reaches it has applied every event stored before
        this call (the audit waits for that)."""
    async def acked_position(self, consumer: str) -> StreamPosition:
        """Up to where ``consumer`` has acknowledged every event, as stored (the place any
        process sees)."""
    async def replay_from(
        self, consumer: str, *, event_seq: int | None = None, start_time: datetime | None = None
    ) -> dict[str, Any]:
        """Make ``consumer`` apply again every event from the one whose ``Event.seq`` is
        ``event_seq`` (0: from the beginning), or from the first stored at ``start_time``
        (raises InvalidInput where the stream keeps no time). Returns a description of
        the new start (``event_seq`` or ``start_time``, and what the backend adds).
        JetStream recreates the durable consumer, which every worker then follows. An
        outbox moves the stored offset: a consumer running now that caches its offset
        (SQLite), or acknowledges a batch fetched before (PostgreSQL), may move it forward
        again (``homefeed replay`` works around both)."""

    # -- dead letters ------------------------------------------------------------------------
    async def dead_letter(self, consumer: str, event: Event, reason: str) -> None:
        """Record ``event`` for ``consumer`` with ``reason`` and acknowledge it (the
        consumer goes on with the next event)."""
    async def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]: ...
    async def retry_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """Deliver the event again to its consumer (only), after the events it already has;
        the dead letter goes once the consumer acknowledges it."""
    async def retry_dead_letters(self, consumer: str | None = None) -> int: ...

    async def stats(self) -> dict[str, int]:
        """What this process's adapter counted (published, redelivered, reconnects, ...),
        for metrics; {} where it counts nothing."""


class EventSink(Protocol):
    """Where the outbox relay publishes (a bus: NATS JetStream)."""

    async def publish(self, events: Sequence[Event]) -> int:
        """Store every event, in order, durably; return how many were new (a duplicate of
        one already stored, by ``Event.seq``, is not)."""


class Leadership(Protocol):
    """What a leader election hands its leader while it leads."""

    #: Set when leadership is lost (the lock's connection died): the leader stops at once.
    lost: asyncio.Event


#: Makes one attempt to lead: ``async with factory() as leadership:`` waits to be elected.
LeaderFactory = Callable[[], AbstractAsyncContextManager[Leadership]]
#: The same per consumer name: one process at a time runs each consumer reading the outbox.
ConsumerLeaderFactory = Callable[[str], AbstractAsyncContextManager[Leadership]]


class RelayParts(TypedDict, total=False):
    """What an outbox relay needs in this process (``Homefeed.relay_parts``)."""

    #: The outbox, read as the consumer "relay" (only with a bus).
    source: EventStream
    #: The bus the relay publishes to (only with a bus).
    sink: EventSink
    #: The election of the one relay that runs.
    leader: LeaderFactory
    #: The election of the one process running each consumer that reads the outbox itself.
    consumer_leader: ConsumerLeaderFactory


class SearchIndex(Protocol):
    #: "fts5", "postgresql".
    backend: ClassVar[str]

    async def index(self, posts: Sequence[Post]) -> None:
        """Upsert: indexing a post twice leaves one entry."""
    async def remove(self, post_ids: Sequence[int]) -> None: ...
    async def clear(self) -> None: ...
    async def search(self, terms: Sequence[str], before: int | None, limit: int) -> list[int]:
        """Ids of posts having every term, newest first, id < before."""

    # -- administration: the audit, the rebuild, metrics -----------------------------------
    async def entries(
        self, after: int, limit: int, upto: int | None = None
    ) -> list[tuple[int, frozenset[str]]]:
        """(post id, terms stored for it) for ids in (after, upto], ascending."""
    def terms_of(self, post: Post) -> frozenset[str]:
        """The terms this index stores for ``post`` (what ``index`` would write)."""
    async def count(self) -> int | None:
        """About how many posts are indexed (an estimate where counting exactly would scan
        the index); None if not known now. Never stalls the event loop."""


@dataclass(frozen=True, slots=True)
class IdSlice:
    """Part of a cached id list: ``ids`` newest first (all < the asked ``before``), and the
    list's ``floor``: the list holds every id it should that is greater than ``floor``."""

    ids: list[int]
    floor: int


@dataclass(frozen=True, slots=True)
class HomeView:
    """What the first round of a cached home read needs, from one ``TimelineCache.home_view``
    call (one Redis round trip): ``home`` and ``own`` are ``slice`` answers for the reader's
    home list and their own author list (None: absent or building, the caller rebuilds);
    ``following`` and ``celebrities`` are the cached sets when the adapter can tell cheaply
    that its copy is current (None: not known by this call, ask ``following`` /
    ``celebrities`` as usual).

    ``fingerprint``: when not None, a value that compares equal (``==``) for two views of
    the same reader and ``before`` only if nothing a page computed from the view could
    depend on in this cache changed in between: the two slices (ids and floors), the
    reader's following set, the celebrity set, and no post deleted from the post cache the
    adapter watches (``RedisTimelineCache``'s ``deletes_key``). A value seen once is never
    seen again after such a change (versions are random, not counters). None: the adapter
    does not vouch (no watched post cache, a version missing, a slice absent): the caller
    keeps nothing by it. The lists the read merges besides these two (followed celebrities'
    author lists) are not in it."""

    home: IdSlice | None
    own: IdSlice | None
    following: frozenset[int] | None
    celebrities: frozenset[int] | None
    fingerprint: Any = None


class TimelineCache(Closable, Protocol):
    """Compact id lists (``home`` timelines and ``author`` recent-post lists), each capped,
    plus the small graph facts the read path needs. Never the only copy of anything: every
    method may find nothing and the caller rebuilds from the record store."""

    #: "memory", "redis".
    backend: ClassVar[str]

    # -- id lists: kind is "home" or "author" ---------------------------------------------
    async def slice(self, kind: str, key: int, before: int | None, limit: int) -> IdSlice | None:
        """None if the list is not cached (absent, or evicted)."""
    async def begin(self, kind: str, key: int) -> None:
        """Start a rebuild: create the list if absent, marked *building*. Pushes land in a
        building list, but ``slice`` answers None for it. Marking before the record store
        is read closes the race where a post committed after that read is pushed while
        the list does not exist yet, and so would be missing from the rebuilt list."""
    async def install(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        """Create the list if absent, union ``ids`` into it, raise its floor to at least
        ``floor``, trim to the cap, clear the building mark. Idempotent."""
    async def push(self, kind: str, keys: Sequence[int], id_: int) -> int:
        """Insert ``id_`` into each list of ``keys`` that exists (absent = inactive: skip).
        Returns how many lists took it."""
    async def merge(self, kind: str, key: int, ids: Sequence[int], floor: int) -> None:
        """Like install, but only if the list exists."""
    async def remove(self, kind: str, keys: Sequence[int], ids: Sequence[int]) -> None: ...
    async def exists(self, kind: str, keys: Sequence[int]) -> list[int]:
        """Those of ``keys`` whose list exists."""
    async def drop(self, kind: str, key: int) -> None: ...
    async def home_keys(self, limit: int) -> list[int] | None:
        """The users whose home list may exist, for a fan-out that intersects from the small
        side (``FeedManager.fan_out_post``): every user whose home list exists when the call
        starts is in it (one created later is not needed: its rebuild reads the record store
        after the post's commit); users without one may be (harmless: a push skips them).
        None when there are more than ``limit`` of them, or the adapter cannot tell: the
        caller then pushes to every follower."""

    async def home_view(self, user_id: int, before: int | None, limit: int, kept: Any = None) -> HomeView:
        """The first round of ``user_id``'s home read at once: ``slice("home", user_id,
        before, limit)``, ``slice("author", user_id, before, limit)`` (TTLs refreshed as by
        ``slice``), and the following and celebrity sets if current copies are at hand
        (exactly what ``following`` / ``celebrities`` would answer now, or None).
        ``kept``: a ``fingerprint`` of an earlier view the caller holds; when this view's
        equals it, the adapter may answer the fingerprint alone (``home``, ``own``,
        ``following``, ``celebrities`` None: the caller has what they would give)."""

    # -- graph facts ----------------------------------------------------------------------
    async def following(self, user_id: int) -> frozenset[int] | None: ...
    async def following_version(self, user_id: int) -> int:
        """Read before loading the set from the record store; pass to ``set_following``."""
    async def set_following(self, user_id: int, ids: Sequence[int], version: int | None = None) -> None:
        """Cache the set, unless ``forget_following`` ran since ``version`` was read (then
        the loaded set may predate a follow or unfollow, and is not cached)."""
    async def forget_following(self, user_id: int) -> None:
        """Called after a follow or unfollow commits: drop the set, bump the version."""
    async def celebrities(self) -> frozenset[int] | None: ...
    async def set_celebrities(self, ids: Sequence[int]) -> None: ...
    async def mark_celebrity(self, user_id: int, is_celebrity: bool) -> bool:
        """Update one member if the set is cached; True if membership changed."""

    # -- administration: the audit, metrics -----------------------------------------------
    async def peek(
        self, kind: str, key: int, before: int | None = None, limit: int | None = None
    ) -> IdSlice | None:
        """``slice`` that does not count as a read: no TTL refresh, no recency update, and
        a list past its inactivity deadline is absent. ``limit=None``: every id kept (the
        newest ``cap``). None if absent or building."""
    async def keys(self, kind: str) -> list[int]:
        """The keys whose ``kind`` list exists now (building ones included)."""
    async def stats(self) -> dict[str, int]:
        """How many lists and entries the cache holds, evictions, ...: for metrics."""


class PostCache(Closable, Protocol):
    """Hydration cache: post id -> post. Bounded; a miss goes to the record store."""

    #: "memory", "redis".
    backend: ClassVar[str]

    async def get_many(self, ids: Sequence[int]) -> dict[int, Post]: ...
    async def put_many(self, posts: Sequence[Post]) -> None: ...
    async def delete(self, ids: Sequence[int]) -> None: ...

    # -- administration: the audit, metrics -----------------------------------------------
    async def peek_many(self, ids: Sequence[int]) -> dict[int, Post]:
        """``get_many`` that leaves no trace (hit/miss counters untouched)."""
    async def stats(self) -> dict[str, int]:
        """``hits`` and ``misses`` of ``get_many`` in this process, and ``posts`` (how many
        are cached) where the adapter knows it without a round trip."""


# -- rate limiting: asked by the HTTP layer before a request reaches the service -------------


class TokenRevocations(Closable, Protocol):
    """Tells every API process that an access token was revoked, so that each drops it
    from its in-process token cache at once (``Homefeed.caller`` reads no SQL for a token
    it knows). Redis pub/sub or a NATS core subject in the scale-out profile; nothing to
    tell in the embedded one (one process)."""

    #: "local", "redis", "nats".
    backend: ClassVar[str]

    async def announce(self, token_hash: bytes) -> None:
        """Publish the revocation (best effort: the caller has already dropped its entry)."""
    async def listen(
        self, on_revoked: Callable[[bytes], None], on_reset: Callable[[bool], None]
    ) -> None:
        """Run until cancelled: call ``on_revoked`` for each announced hash;
        ``on_reset(False)`` when the channel goes down (announcements may be missed: stop
        trusting cached tokens) and ``on_reset(True)`` once it is (re)subscribed (drop
        everything cached, and cache again). Returns at once where nothing is ever
        announced (one process)."""


class LiveBus(Closable, Protocol):
    """Carries live updates (posts created and deleted, notifications written) from where the
    consumers apply events to every API process, whose ``StreamHub`` routes them to its open
    streams. In-process in the embedded profile (one process), Redis pub/sub in the
    scale-out one, so that any API process can hold any reader's stream.

    Best effort, like Mastodon's own streaming: a message published while a process is not
    subscribed is not delivered to it (a client that reconnects re-reads its timeline with
    ``since_id``); the records, the timelines and the notifications never depend on it."""

    #: "local", "redis".
    backend: ClassVar[str]

    async def publish(self, message: bytes) -> None:
        """Send ``message`` to every listener (this process's included)."""
    def listened(self) -> bool:
        """False only when a message published now would reach nobody, so that a publisher
        need not even make it (the in-process bus before any stream opened in the process:
        issue 14, a post's live message was built for nobody). A bus between processes
        cannot tell: True."""
    async def listen(
        self, on_message: Callable[[bytes], None], on_reset: Callable[[bool], None]
    ) -> None:
        """Run until cancelled: call ``on_message`` for each message published, in the order
        published by one publisher; ``on_reset(False)`` when the channel goes down (messages
        may be missed) and ``on_reset(True)`` once it is (re)subscribed."""


class RateLimiter(Closable, Protocol):
    """GCRA (the generic cell rate algorithm): a token bucket kept as ONE number per key, its
    *theoretical arrival time* (TAT). A key allows ``burst`` requests at once, then one every
    ``1/rate`` seconds; memory is O(1) per key and the wait it answers is exact.

    In integer microseconds, with ``T = round(1e6 / rate)`` (at least 1) and ``now``::

        tat   = max(stored TAT, or now if none, now)
        new   = tat + cost * T
        allow = new - burst * T
        if allow > now: refused, nothing stored; the caller may retry in (allow - now)
        else:           allowed, TAT := new

    A key whose TAT is in the past is the same as an absent key, so adapters may forget it.
    Several processes sharing one adapter's storage share one limit."""

    #: "memory", "redis".
    backend: ClassVar[str]

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        """Count ``cost`` requests for ``key`` (rate: requests per second, > 0; burst >= 1;
        1 <= cost <= burst). Returns 0.0 if allowed, else the seconds until the same
        request would be (and then counts nothing). Raises on a backend failure: the caller
        decides whether to fail open."""
    async def hit_many(self, hits: Sequence[tuple[str, float, int]]) -> list[float]:
        """``hit`` (cost 1) for each ``(key, rate, burst)``, as if one after the other, in
        one round trip where the backend can: a request checked against several limits."""
    #: True if ``hit_now`` answers (an in-process limiter): the middleware then calls it on
    #: every request, without a coroutine per call.
    answers_now: ClassVar[bool]

    def hit_now(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        """``hit`` without awaiting. Only called when ``answers_now``; a limiter behind a
        network raises NotImplementedError."""


# -- the outside world: webhook subscriptions and deliveries, notification emails ------------


class WebhookStore(Protocol):
    """Webhook subscriptions and their deliveries, in the system of record (so that no
    delivery is lost when a process dies). Shares the record store's database: opened and
    closed with it. Times are unix seconds (``time.time()``) of the calling process."""

    async def add_subscription(self, url: str, events: Sequence[str], secret: str) -> "Subscription":
        """A new subscription; it gets the events committed after this returns."""
    async def subscriptions(self) -> list["Subscription"]:
        """Every subscription, oldest first (disabled ones too)."""
    async def remove_subscription(self, subscription_id: int) -> bool:
        """Delete it and its deliveries not yet made; False if there is none."""
    async def rotate_secret(self, subscription_id: int, secret: str, keep_seconds: float) -> "Subscription | None":
        """Make ``secret`` current; the current one keeps signing for ``keep_seconds``."""
    async def disable_subscription(self, subscription_id: int, reason: str) -> None: ...

    async def add_deliveries(self, deliveries: Sequence["NewDelivery"], now: float) -> int:
        """Insert the deliveries not already there (keyed by subscription, event, part),
        due at once; returns how many were new. A redelivered event adds nothing."""
    async def claim_deliveries(
        self, now: float, limit: int, per_subscription: int, exclude: Sequence[int], lease_seconds: float,
    ) -> list["Delivery"]:
        """Lease up to ``limit`` due pending deliveries of enabled subscriptions not in
        ``exclude``, at most ``per_subscription`` of each, oldest due first. A leased
        delivery is not claimed again until its lease ends (a process that died holding
        it: at-least-once)."""
    async def delivered(self, delivery_ids: Sequence[int], now: float) -> None:
        """These deliveries got a 2xx (one write for many: the dispatcher batches them)."""
    async def attempt_failed(
        self, delivery_id: int, now: float, next_at: float | None, error: str, state: str,
    ) -> None:
        """One attempt failed (attempts + 1): due again at ``next_at``, or in ``state``
        (``dead``, ``gone``) when ``next_at`` is None."""
    async def postpone(self, delivery_id: int, next_at: float) -> None:
        """Give a claimed delivery back unattempted (its endpoint's circuit is open): its
        attempts are not used up."""
    async def release_leases(self) -> int:
        """Forget every lease (embedded profile at start: no other process can hold one)."""
    async def dead_deliveries(self, limit: int = 1000) -> list[tuple[int, int, str, str, bytes, str, int, float]]:
        """(id, subscription id, msg id, type, body, last error, attempts, updated_at) of
        the dead deliveries, oldest first."""
    async def retry_delivery(self, delivery_id: int, now: float) -> bool:
        """A dead delivery is pending again with its attempts reset; False if none."""
    async def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each state."""


class MailStore(Protocol):
    """Notification emails in the system of record: what to tell whom (keyed by cause, so a
    redelivered event adds nothing), the mails bundling them, each account's opt-out."""

    async def recipients(self, user_ids: Sequence[int]) -> dict[int, str]:
        """The email of each of ``user_ids`` who has one and has not opted out."""
    async def add_notifications(self, notes: Sequence["MailNotification"], now: float) -> int:
        """Insert those not already there; how many were new."""
    async def compose(self, now: float, bundle_seconds: float, domain: str) -> int:
        """Put the notifications not yet in a mail into new mails, due at once: for each
        person, one mail with all of them, unless a mail to them was made less than
        ``bundle_seconds`` ago (then they wait); ``bundle_seconds == 0``: one mail each.
        Returns how many mails were made."""
    async def claim_mails(self, now: float, limit: int, lease_seconds: float) -> list[tuple[int, int, str, int]]:
        """Lease due pending mails: (id, user id, Message-ID, attempts made)."""
    async def mail_contents(self, mail_id: int) -> tuple[str, str, str, list["MailNotification"]] | None:
        """(email, handle, unsubscribe token, notifications) of a mail's recipient, or None
        if the person has no email any more or opted out since."""
    async def mail_done(self, mail_id: int, now: float, state: str, next_at: float | None, error: str) -> None:
        """Record an attempt: ``sent``, ``pending`` again at ``next_at``, ``dead``, or
        ``dropped`` (the person opted out meanwhile)."""
    async def opt_out(self, token: str) -> bool:
        """The person of this unsubscribe token gets no more mail; False if unknown."""
    async def unsubscribe_token(self, user_id: int) -> str | None:
        """The unsubscribe token of ``user_id`` (made on first use), or None if the person
        opted out: the digest job's mails carry the same one-click link."""
    async def release_leases(self) -> int: ...
    async def dead_mails(self, limit: int = 1000) -> list[tuple[int, int, str, str, int, float]]:
        """(id, user id, Message-ID, last error, attempts, updated_at) of dead mails."""
    async def retry_mail(self, mail_id: int, now: float) -> bool: ...
    async def mail_counts(self) -> dict[str, int]: ...
