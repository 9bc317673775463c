"""The one place that wires adapters to ports, chosen by configuration (URLs).

| part              | unset (embedded)                 | set (scale-out)                       |
|-------------------|----------------------------------|---------------------------------------|
| DATABASE_URL      | SQLite in DATA_DIR + FTS5 index  | PostgreSQL + tsvector/GIN index       |
| CACHE_URL         | in-process timeline + post cache | Redis                                 |
| BUS_URL           | the outbox, read in-process      | NATS JetStream, fed by the outbox relay |
| (rate limits)     | in-process GCRA table            | the same GCRA, in Redis (CACHE_URL)   |

A process has a *role*: ``api`` (serves HTTP) or ``worker`` (runs consumers). Which
consumers run where follows from the configuration (``plan``), and combinations that would
silently be wrong are refused with a message that names the fix (``ProfileError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from homefeed.config import Settings
from homefeed.domain.errors import ProfileError
from homefeed.ports import (
    Closable,
    EventStream,
    LiveBus,
    MailStore,
    PostCache,
    RateLimiter,
    RecordStore,
    RelayParts,
    TokenRevocations,
    SearchIndex,
    TimelineCache,
    WebhookStore,
)
from homefeed.service_layer.consumers import CONSUMERS, FANOUT, MAILER, WEBHOOKS
from homefeed.service_layer.jobs.records import JobStore
from homefeed.service_layer.services import Homefeed

RELAY = "relay"
#: Every process role: a consumer of the event stream (``CONSUMERS``) or the relay.
ROLES = (*CONSUMERS, RELAY)


@dataclass(frozen=True)
class Plan:
    """What one process runs."""

    consumers: tuple[str, ...] = ()
    relay: bool = False
    #: The consumers read the outbox directly (no bus): one process at a time may run each,
    #: under a leader lock.
    exclusive: bool = False
    notes: list[str] = field(default_factory=list)


def plan(settings: Settings, role: str = "api", processes: int = 1, worker_roles: Sequence[str] = ROLES) -> Plan:
    """Decide what a process of ``role`` runs, or refuse the combination."""
    db_url, cache_url, bus_url = settings.database_url, settings.cache_url, settings.bus_url
    if db_url and not db_url.startswith(("postgresql://", "postgres://")):
        raise ProfileError(f"HOMEFEED_DATABASE_URL must be a postgresql:// URL (got {db_url.split('://')[0]}://...)")
    if cache_url and not cache_url.startswith(("redis://", "rediss://", "unix://")):
        raise ProfileError("HOMEFEED_CACHE_URL must be a redis:// URL")
    if bus_url and not bus_url.startswith(("nats://", "tls://")):
        raise ProfileError("HOMEFEED_BUS_URL must be a nats:// URL")

    if role == "api":
        if processes > 1 and not cache_url:
            raise ProfileError(
                f"{processes} API processes cannot share an in-process timeline cache: "
                "set HOMEFEED_CACHE_URL=redis://... (or run one process)"
            )
        if processes > 1 and not db_url:
            raise ProfileError(
                f"{processes} API processes cannot share the embedded SQLite writer: "
                "set HOMEFEED_DATABASE_URL=postgresql://... (or run one process)"
            )
        if not cache_url:
            # The cache lives in this process, so the fan-out must run here too.
            return Plan(consumers=CONSUMERS, relay=bool(bus_url), exclusive=not bus_url)
        if not db_url and not bus_url:
            # SQLite + Redis: one machine; the outbox is read here.
            return Plan(consumers=CONSUMERS, exclusive=True)
        return Plan(notes=["consumers run in `homefeed worker` processes: start at least one"])

    if role == "worker":
        unknown = set(worker_roles) - set(ROLES)
        if unknown:
            raise ProfileError(f"unknown worker role(s) {sorted(unknown)}; roles: {', '.join(ROLES)}, all")
        if FANOUT in worker_roles and not cache_url:
            raise ProfileError(
                "a fan-out worker would fill an in-process cache that no API process reads: "
                "set HOMEFEED_CACHE_URL=redis://... (the same for API and worker processes)"
            )
        if not db_url:
            raise ProfileError(
                "worker processes need a shared system of record: set "
                "HOMEFEED_DATABASE_URL=postgresql://... (the embedded profile runs its "
                "consumers inside `homefeed serve`)"
            )
        consumers = tuple(r for r in worker_roles if r in CONSUMERS)
        relay = RELAY in worker_roles and bool(bus_url)
        return Plan(consumers=consumers, relay=relay, exclusive=not bus_url)
    raise ProfileError(f"unknown role {role!r}")


def build(settings: Settings, node: int | None = 0) -> Homefeed:
    """Wire the adapters the settings ask for. ``node``: the id-generator node (None: claim
    one from PostgreSQL, for scale-out processes).

    Each adapter is assigned to a variable typed with its port: that is where the type
    checker proves that the adapter implements the port (structurally, every method)."""
    resources: list[Closable] = []
    relay_parts: RelayParts = {}
    store: RecordStore
    outbox: EventStream
    search_index: SearchIndex
    cache: TimelineCache
    posts: PostCache

    if settings.database_url:
        from homefeed.adapters.pg_db import PgDatabase
        from homefeed.adapters.pg_outbox import PgOutboxEventStream
        from homefeed.adapters.pg_search import PgSearchIndex
        from homefeed.adapters.pg_store import PgRecordStore

        from homefeed.adapters.pg_jobs import PgJobStore

        pg = PgDatabase(settings.database_url)
        store = PgRecordStore(pg, node=node)
        job_store: JobStore = PgJobStore(pg)
        pg_outbox = PgOutboxEventStream(pg)
        outbox = pg_outbox
        search_index = PgSearchIndex(pg)
        relay_parts["leader"] = lambda: pg_outbox.leader(RELAY)
        relay_parts["consumer_leader"] = lambda name: pg_outbox.leader(f"consumer:{name}")
    else:
        from homefeed.adapters.fts5_index import Fts5SearchIndex
        from homefeed.adapters.outbox_stream import OutboxEventStream
        from homefeed.adapters.sqlite_db import SqliteDatabase
        from homefeed.adapters.sqlite_store import SqliteRecordStore
        from homefeed.service_layer.relay import sqlite_relay_leader

        db = SqliteDatabase(
            settings.database_path,
            synchronous=settings.sqlite_synchronous.upper(),
            group_commit_max=settings.group_commit_max,
        )
        from homefeed.adapters.sqlite_jobs import SqliteJobStore

        store = SqliteRecordStore(db, node=node or 0)
        job_store = SqliteJobStore(db)
        outbox = OutboxEventStream(db)
        search_index = Fts5SearchIndex(db)
        relay_parts["leader"] = sqlite_relay_leader(settings.database_path)

    if settings.cache_url:
        from homefeed.adapters.redis_post_cache import RedisPostCache
        from homefeed.adapters.redis_timeline_cache import RedisTimelineCache

        posts = RedisPostCache(settings.cache_url)
        cache = RedisTimelineCache(
            settings.cache_url,
            cap=settings.timeline_cap,
            inactive_seconds=settings.inactive_days * 86400,
            deletes_key=posts.deletes_key,  # same server: home views carry a fingerprint
        )
        resources += [cache, posts]
    else:
        from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache

        cache = MemoryTimelineCache(
            cap=settings.timeline_cap,
            inactive_seconds=settings.inactive_days * 86400,
            max_lists=settings.cache_max_timelines,
        )
        posts = MemoryPostCache(settings.cache_max_posts)

    stream: EventStream = outbox
    if settings.bus_url:
        from homefeed.adapters.jetstream import JetStreamEventStream

        jetstream = JetStreamEventStream.from_url(settings.bus_url, deployment=store.deployment)
        stream = jetstream
        relay_parts["source"] = outbox
        relay_parts["sink"] = jetstream

    # Revoked OAuth tokens: every API process caches tokens, so with several of them (which
    # needs CACHE_URL) a revocation is announced on Redis; one process has nobody to tell.
    revocations: TokenRevocations | None = None
    if settings.cache_url:
        from homefeed.adapters.redis_revocations import RedisTokenRevocations

        revocations = RedisTokenRevocations(settings.cache_url, store.deployment)
        resources.append(revocations)

    # Live updates (streaming): published where the consumers run, heard by every API
    # process. Several processes share a Redis (CACHE_URL); one process needs no network.
    live_bus: LiveBus
    if settings.cache_url:
        from homefeed.adapters.redis_live import RedisLiveBus

        live_bus = RedisLiveBus(settings.cache_url, store.deployment)
        resources.append(live_bus)
    else:
        from homefeed.adapters.local_live import LocalLiveBus

        live_bus = LocalLiveBus()

    hf = Homefeed(
        settings,
        store=store,
        stream=stream,
        cache=cache,
        posts=posts,
        search_index=search_index,
        resources=resources,
        relay_parts=relay_parts,
        revocations=revocations,
        live_bus=live_bus,
    )
    hf.job_store = job_store
    _install_outside_world(hf)
    return hf


def webhook_store(hf: Homefeed) -> WebhookStore:
    """The webhook subscriptions and deliveries, in the record store's database."""
    hooks: WebhookStore
    if hf.store.backend == "postgresql":
        from homefeed.adapters.pg_webhooks import PgWebhookStore

        hooks = PgWebhookStore(hf.store.db)  # type: ignore[attr-defined]
    else:
        from homefeed.adapters.sqlite_webhooks import SqliteWebhookStore

        hooks = SqliteWebhookStore(hf.store.db)  # type: ignore[attr-defined]
    return hooks


def mail_store(hf: Homefeed) -> MailStore:
    """Notification mails and opt-outs, in the record store's database."""
    mails: MailStore
    if hf.store.backend == "postgresql":
        from homefeed.adapters.pg_mail import PgMailStore

        mails = PgMailStore(hf.store.db)  # type: ignore[attr-defined]
    else:
        from homefeed.adapters.sqlite_mail import SqliteMailStore

        mails = SqliteMailStore(hf.store.db)  # type: ignore[attr-defined]
    return mails


def _install_outside_world(hf: Homefeed) -> None:
    """Register the ``webhooks`` consumer (and its dispatcher) and the ``mailer`` consumer
    (and its mail loop, when SMTP is configured) on ``hf.consumers``; with SMTP configured,
    the digest job mails through the same sender (``hf.mail_sender``)."""
    from homefeed.service_layer.mailer import DigestSender, MailerConsumer, MailLoop, mail_configured

    from homefeed.adapters.http_delivery import HttpSender
    from homefeed.service_layer.webhooks import Dispatcher, WebhookConsumer, fanout_first, retry_schedule

    settings = hf.settings
    store = webhook_store(hf)
    dispatcher = Dispatcher(store, HttpSender(allow_private=settings.webhooks_allow_private),
                            retry_schedule(settings),
                            # the embedded profile has one process: a lease left by a crash is stale
                            release_leases=hf.store.backend == "sqlite")
    consumer = WebhookConsumer(hf, store, dispatcher)
    consumer.yield_to = dispatcher.yield_to = fanout_first(hf)  # webhooks never delay the fan-out
    hf.consumers.register(WEBHOOKS, consumer, companion=dispatcher.run)
    mails = mail_store(hf)
    loop = MailLoop(mails, settings, release_leases=hf.store.backend == "sqlite") if mail_configured(settings) else None
    hf.consumers.register(MAILER, MailerConsumer(hf, mails, loop), companion=loop.run if loop else None)
    if mail_configured(settings):
        hf.mail_sender = DigestSender(settings, mails)


def build_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter behind ``rate_limit_per_token`` / ``rate_limit_per_address``, or None
    when neither is set (then the HTTP layer adds no middleware at all). On Redis when
    CACHE_URL is set, so that every API process counts against one shared limit; else in
    this process's memory (one process: the embedded profile refuses more than one without
    Redis). The Redis limiter makes its own fail-fast client: see ``redis_ratelimit``."""
    if settings.token_limit is None and settings.address_limit is None:
        return None
    if settings.cache_url:
        from homefeed.adapters.redis_ratelimit import RedisRateLimiter

        limiter: RateLimiter = RedisRateLimiter(settings.cache_url)
        return limiter
    from homefeed.adapters.memory_ratelimit import MemoryRateLimiter

    return MemoryRateLimiter()


def build_login_limiter(settings: Settings) -> RateLimiter:
    """The limiter that slows repeated failed log-ins, always on (a password guess must
    never be cheap): shared in Redis when CACHE_URL is set, else in this process."""
    if settings.cache_url:
        from homefeed.adapters.redis_ratelimit import RedisRateLimiter

        limiter: RateLimiter = RedisRateLimiter(settings.cache_url)  # as build_rate_limiter
        return limiter
    from homefeed.adapters.memory_ratelimit import MemoryRateLimiter

    return MemoryRateLimiter()


async def open_homefeed(settings: Settings, run_consumers: bool = True) -> Homefeed:
    """Build and start the embedded process: the record store is open and (by default) the
    consumers the plan gives an API process are running."""
    hf = build(settings)
    p = plan(settings, "api")
    await hf.start(consumers=p.consumers if run_consumers else (), relay=p.relay and run_consumers)
    return hf
