"""The PostgreSQL schema: versioned migrations (append only) and ``homefeed migrate``.

Each migration runs in one transaction (PostgreSQL DDL is transactional); processes that
migrate at once queue on an advisory lock. Used by ``PgDatabase.open`` and by the CLI."""

from __future__ import annotations

import logging

import psycopg

from homefeed.domain.errors import Unavailable

log = logging.getLogger("homefeed.postgres")

#: First key of every advisory lock homefeed takes ("hfd\0"), so that ours never collide
#: with another application's locks in the same database.
LOCK_NAMESPACE = 0x68666400
_MIGRATION_LOCK = 0

# Versioned migrations: index i brings the schema from version i to i + 1. Append only.
# Each runs in one transaction (PostgreSQL DDL is transactional).
MIGRATIONS: list[str] = [
    # 1: the system of record, the outbox and consumer offsets
    """
    CREATE TABLE users (
        id              bigint PRIMARY KEY,
        handle          text NOT NULL,
        handle_key      text NOT NULL UNIQUE,   -- lower(handle): unique ignoring case
        display_name    text NOT NULL,
        token_hash      bytea NOT NULL UNIQUE,
        followers_count integer NOT NULL DEFAULT 0,
        following_count integer NOT NULL DEFAULT 0,
        posts_count     integer NOT NULL DEFAULT 0
    );
    CREATE INDEX users_by_followers ON users (followers_count);

    CREATE TABLE follows (
        follower_id bigint NOT NULL,
        followee_id bigint NOT NULL,
        id          bigint NOT NULL,            -- time-ordered: the pagination cursor
        PRIMARY KEY (follower_id, followee_id)
    );
    -- INCLUDE: follower_ids / following_ids are index-only scans
    CREATE INDEX follows_by_followee ON follows (followee_id, id) INCLUDE (follower_id);
    CREATE INDEX follows_by_follower ON follows (follower_id, id) INCLUDE (followee_id);
    CREATE INDEX follows_by_id ON follows (id);  -- max(id) at open: the id floor

    CREATE TABLE posts (
        id        bigint PRIMARY KEY,           -- time-ordered 64-bit id
        author_id bigint NOT NULL,
        text      text NOT NULL
    );
    CREATE INDEX posts_by_author ON posts (author_id, id);

    -- Delivery order is (xid, seq), NOT seq: see homefeed.adapters.pg_outbox.
    CREATE TABLE outbox (
        seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        xid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
        type       text NOT NULL,
        data       jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX outbox_by_xid ON outbox (xid, seq);

    CREATE TABLE consumer_offsets (
        consumer   text PRIMARY KEY,
        xid        xid8 NOT NULL,               -- position: the last (xid, seq) acknowledged
        seq        bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 2: the search index (derived; rebuilt from posts by `homefeed rebuild search`)
    """
    CREATE TABLE post_search (
        id    bigint PRIMARY KEY,               -- the post id
        terms tsvector NOT NULL                 -- array_to_tsvector(index_terms(text))
    );
    CREATE INDEX post_search_terms ON post_search USING gin (terms);
    -- more lexeme statistics: the planner picks the GIN index for rare terms and walks the
    -- primary key backwards for common ones (see pg_search)
    ALTER TABLE post_search ALTER COLUMN terms SET STATISTICS 1000;
    """,
    # 3: node ids: each process that makes ids claims one (IdGenerator's 10-bit node field)
    """
    CREATE SEQUENCE homefeed_node_seq;
    """,
    # 4: events a consumer gave up on (`homefeed dead-letters list|retry`), outbox stream
    """
    CREATE TABLE dead_letters (
        id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        consumer text NOT NULL,
        seq      bigint NOT NULL,               -- the event's Event.seq
        type     text NOT NULL,
        data     jsonb NOT NULL,
        reason   text NOT NULL,
        failures integer NOT NULL DEFAULT 1,    -- times dead-lettered (a failed retry adds one)
        retry    boolean NOT NULL DEFAULT false,-- deliver it again to its consumer
        at       timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX dead_letters_to_retry ON dead_letters (consumer, id) WHERE retry;
    """,
    # 5: the first answer to each Idempotency-Key, stored by the write it answers
    """
    CREATE TABLE idempotency_keys (
        scope_key   text PRIMARY KEY,           -- "<caller id | anon>:<Idempotency-Key>"
        fingerprint bytea NOT NULL,             -- of the first request (method, path, body)
        status      integer NOT NULL,
        body        bytea NOT NULL,             -- the answer, as sent
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
    """,
    # 6: which deployment this database is: the id keeps two deployments apart on one NATS
    # server (see homefeed.adapters.jetstream_names). A database that already had events
    # keeps the bus names it had (legacy_bus_names): its stream may hold events not yet
    # consumed. The outbox's identity sequence remembers events even once rows are gone.
    """
    CREATE TABLE deployment (
        one              boolean PRIMARY KEY DEFAULT true CHECK (one),
        id               text NOT NULL,
        legacy_bus_names boolean NOT NULL
    );
    INSERT INTO deployment (id, legacy_bus_names)
    VALUES (substr(replace(gen_random_uuid()::text, '-', ''), 1, 12),
            pg_sequence_last_value(pg_get_serial_sequence('outbox', 'seq')::regclass) IS NOT NULL);
    """,
    # 7: accounts and OAuth 2: a user's email, password (argon2id) and bio; registered
    # apps, one-use authorization codes and access tokens. Every secret is stored hashed.
    """
    ALTER TABLE users ADD COLUMN note text NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN email text;
    ALTER TABLE users ADD COLUMN email_key text;          -- lower(email): unique ignoring case
    ALTER TABLE users ADD COLUMN password_hash text;      -- argon2id, PHC string
    CREATE UNIQUE INDEX users_by_email ON users (email_key) WHERE email_key IS NOT NULL;

    CREATE TABLE oauth_apps (
        id            bigint PRIMARY KEY,
        name          text NOT NULL,
        website       text,
        redirect_uris text NOT NULL,                    -- newline-separated
        scopes        text NOT NULL,                    -- space-separated
        client_id     text NOT NULL UNIQUE,
        secret_hash   bytea NOT NULL,                   -- sha256(client_secret)
        created_at    double precision NOT NULL                     -- unix seconds
    );
    CREATE TABLE oauth_codes (
        code_hash        bytea PRIMARY KEY,             -- sha256(code)
        app_id           bigint NOT NULL,
        user_id          bigint NOT NULL,
        scopes           text NOT NULL,
        redirect_uri     text NOT NULL,
        challenge        text,                          -- PKCE
        challenge_method text,
        expires_at       double precision NOT NULL
    );
    CREATE TABLE oauth_tokens (
        token_hash   bytea PRIMARY KEY,                 -- sha256(access token)
        refresh_hash bytea UNIQUE,                      -- sha256(refresh token)
        app_id       bigint NOT NULL,
        user_id      bigint,                            -- NULL: the app's own token
        scopes       text NOT NULL,
        created_at   double precision NOT NULL,
        expires_at   double precision,
        revoked_at   double precision
    );
    CREATE INDEX oauth_tokens_by_user ON oauth_tokens (user_id);
    """,
    # 8: posts.visibility: "public" (every post so far) or "unlisted" (not on the public and
    # tag timelines); the partial index rebuilds the public timeline's cache without a scan.
    """
    ALTER TABLE posts ADD COLUMN visibility text NOT NULL DEFAULT 'public';
    CREATE INDEX posts_public ON posts(id DESC) WHERE visibility = 'public';
    """,
    # 9: conversations (docs/conversations.md): replies, boosts and their counters on posts;
    # mentions, favourites, notifications (derived, kept by the notifier), what readers
    # dismissed or cleared, and read markers. Old posts get NULL links and zero counters
    # (ADD COLUMN with a constant default rewrites nothing). The public timeline leaves out
    # boosts and replies to others: its index says so.
    """
    ALTER TABLE posts ADD COLUMN in_reply_to_id bigint,
                      ADD COLUMN in_reply_to_account_id bigint,
                      ADD COLUMN reblog_of_id bigint,
                      ADD COLUMN replies_count integer NOT NULL DEFAULT 0,
                      ADD COLUMN reblogs_count integer NOT NULL DEFAULT 0,
                      ADD COLUMN favourites_count integer NOT NULL DEFAULT 0;
    CREATE INDEX posts_replies ON posts (in_reply_to_id, id) WHERE in_reply_to_id IS NOT NULL;
    -- one boost per (original, booster); reblogged_by walks the second newest first
    CREATE UNIQUE INDEX posts_boosts ON posts (reblog_of_id, author_id) WHERE reblog_of_id IS NOT NULL;
    CREATE INDEX posts_boosts_by_id ON posts (reblog_of_id, id) WHERE reblog_of_id IS NOT NULL;
    DROP INDEX posts_public;
    CREATE INDEX posts_public ON posts (id DESC) WHERE visibility = 'public' AND reblog_of_id IS NULL
        AND (in_reply_to_account_id IS NULL OR in_reply_to_account_id = author_id);

    CREATE TABLE mentions (
        post_id bigint NOT NULL,
        user_id bigint NOT NULL,
        PRIMARY KEY (post_id, user_id)
    );
    CREATE INDEX mentions_by_user ON mentions (user_id, post_id);

    CREATE TABLE favourites (
        id      bigint PRIMARY KEY,             -- time-ordered: the cursor of /favourites
        user_id bigint NOT NULL,
        post_id bigint NOT NULL,
        UNIQUE (user_id, post_id)
    );
    CREATE INDEX favourites_by_user ON favourites (user_id, id) INCLUDE (post_id);
    CREATE INDEX favourites_by_post ON favourites (post_id, id) INCLUDE (user_id);

    CREATE TABLE notifications (
        user_id      bigint NOT NULL,           -- the recipient
        id           bigint NOT NULL,           -- the cause's id (follow, favourite, post)
        type         text NOT NULL,
        from_user_id bigint NOT NULL,
        post_id      bigint,
        PRIMARY KEY (user_id, id)
    );
    CREATE INDEX notifications_by_id ON notifications (id);
    CREATE INDEX notifications_by_post ON notifications (post_id) WHERE post_id IS NOT NULL;
    CREATE INDEX notifications_by_from ON notifications (user_id, from_user_id, id);
    CREATE TABLE notification_dismissals (
        user_id bigint NOT NULL,
        id      bigint NOT NULL,
        PRIMARY KEY (user_id, id)
    );
    ALTER TABLE users ADD COLUMN notifications_cleared_id bigint NOT NULL DEFAULT 0;

    CREATE TABLE markers (
        user_id      bigint NOT NULL,
        timeline     text NOT NULL,             -- "home", "notifications"
        last_read_id text NOT NULL,
        version      integer NOT NULL,
        updated_at   double precision NOT NULL, -- unix seconds
        PRIMARY KEY (user_id, timeline)
    );
    """,
]


async def schema_version(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT to_regclass('homefeed_schema') IS NOT NULL", prepare=False)
    if not (await cur.fetchone())[0]:  # type: ignore[index]
        return 0
    cur = await conn.execute("SELECT version FROM homefeed_schema", prepare=False)
    row = await cur.fetchone()
    return row[0] if row else 0


async def migrate(conn: psycopg.AsyncConnection) -> int:
    """Bring the schema to the newest version; returns it. ``conn`` must be in autocommit
    mode. Safe to run from several processes at once: they queue on an advisory lock, and
    each step is one transaction that also records the new version."""
    await conn.execute("SELECT pg_advisory_lock(%s::int, %s::int)", (LOCK_NAMESPACE, _MIGRATION_LOCK), prepare=False)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS homefeed_schema ("
            " one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)",
            prepare=False,
        )
        version = await schema_version(conn)
        if version > len(MIGRATIONS):
            raise Unavailable(
                f"the database schema is at version {version}, newer than this homefeed"
                f" knows ({len(MIGRATIONS)}): upgrade homefeed"
            )
        for target in range(version + 1, len(MIGRATIONS) + 1):
            async with conn.transaction():
                await conn.execute(MIGRATIONS[target - 1], prepare=False)  # type: ignore[arg-type]
                await conn.execute(
                    "INSERT INTO homefeed_schema(version) VALUES (%s)"
                    " ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                    (target,),
                    prepare=False,
                )
            log.info("migrated schema to version %d", target)
        return len(MIGRATIONS)
    finally:
        await conn.execute(
            "SELECT pg_advisory_unlock(%s::int, %s::int)", (LOCK_NAMESPACE, _MIGRATION_LOCK), prepare=False
        )


async def migrate_url(dsn: str) -> int:
    """``homefeed migrate``: create or upgrade the schema of the database at ``dsn``."""
    try:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    async with conn:
        return await migrate(conn)
