"""One SQLite file in WAL mode: versioned migrations, one writer thread doing group commit,
and a read connection for the event loop.

Why a single writer thread: SQLite allows one writer at a time, and a commit's cost is
dominated by the fsync of the WAL. Queueing every write to one thread lets concurrent
requests share a commit (group commit) while each caller is still answered only after the
commit that holds its write. Each write runs inside a SAVEPOINT, so one failing write (a
taken handle, say) rolls back alone and the others in the batch commit.

Reads run on the caller's thread (the event loop) on their own connection: in WAL mode they
see the last committed state and never wait for the writer.

Deferred writes (issue 14). A write made where ``homefeed.ports.background_writes`` is set
(the event consumers: the search index, notifications, their acknowledgements) updates
derived data that nobody waits for: it does not start a commit of its own at once. While
requests are writing (one committed within ``WRITING_WINDOW``), it waits, at most
``DEFER_MAX`` seconds, for a write that somebody does wait for (a request's) and rides in its
commit; only if none comes does it commit alone. Under a load of posts the consumers' writes
(index, notifications, acknowledgements) so cost no fsync of their own, and a post never
waits behind a commit that holds only them. A deferred write is still committed before its
caller hears of it, like any other: nothing about durability or delivery changes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import mmap
import os
import queue
import sqlite3
import struct
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Hashable, TypeVar

from homefeed.domain.errors import Unavailable
from homefeed.ports import background_writes

log = logging.getLogger("homefeed.sqlite")

T = TypeVar("T")

#: Longest time a deferred write (see the module docstring) waits for a commit to ride in.
DEFER_MAX = 0.010
#: Deferred writes wait only while requests write: one was committed within this many
#: seconds. Else they are committed at once (consumers catching up with nobody posting).
WRITING_WINDOW = 0.1

# Versioned migrations: index i brings the schema from version i to i + 1. Append only.
MIGRATIONS: list[str] = [
    # 1: the system of record, the outbox and consumer offsets
    """
    CREATE TABLE users (
        id              INTEGER PRIMARY KEY,
        handle          TEXT NOT NULL,
        handle_key      TEXT NOT NULL UNIQUE,   -- lower(handle): handles are unique ignoring case
        display_name    TEXT NOT NULL,
        token_hash      BLOB NOT NULL UNIQUE,
        followers_count INTEGER NOT NULL DEFAULT 0,
        following_count INTEGER NOT NULL DEFAULT 0,
        posts_count     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX users_by_followers ON users(followers_count);

    CREATE TABLE follows (
        follower_id INTEGER NOT NULL,
        followee_id INTEGER NOT NULL,
        id          INTEGER NOT NULL,           -- time-ordered: the pagination cursor
        PRIMARY KEY (follower_id, followee_id)
    ) WITHOUT ROWID;
    CREATE INDEX follows_by_followee ON follows(followee_id, id);
    CREATE INDEX follows_by_follower ON follows(follower_id, id);

    CREATE TABLE posts (
        id        INTEGER PRIMARY KEY,          -- time-ordered 64-bit id
        author_id INTEGER NOT NULL,
        text      TEXT NOT NULL
    );
    CREATE INDEX posts_by_author ON posts(author_id, id);

    CREATE TABLE outbox (
        seq  INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order (one writer)
        type TEXT NOT NULL,
        data BLOB NOT NULL                      -- JSON
    );
    CREATE TABLE consumer_offsets (
        consumer TEXT PRIMARY KEY,
        seq      INTEGER NOT NULL
    );
    """,
    # 2: the search index (derived; rebuilt from posts by `homefeed rebuild search`)
    """
    CREATE VIRTUAL TABLE post_search USING fts5(
        terms,
        tokenize = "unicode61 remove_diacritics 0 categories 'L* N* Co M*' tokenchars '#@_'"
    );
    """,
    # 3: events a consumer gave up on (`homefeed dead-letters list|retry`)
    """
    CREATE TABLE dead_letters (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        consumer TEXT NOT NULL,
        seq      INTEGER NOT NULL,              -- the event's outbox seq
        type     TEXT NOT NULL,
        data     BLOB NOT NULL,                 -- JSON, as in the outbox
        reason   TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 1,    -- times dead-lettered (a failed retry adds one)
        retry    INTEGER NOT NULL DEFAULT 0,    -- 1: deliver it again to its consumer
        at       TEXT NOT NULL
    );
    CREATE INDEX dead_letters_by_consumer ON dead_letters(consumer, retry, id);
    """,
    # 4: the first answer to each Idempotency-Key, stored by the write it answers
    """
    CREATE TABLE idempotency_keys (
        scope_key   TEXT PRIMARY KEY,           -- "<caller id | anon>:<Idempotency-Key>"
        fingerprint BLOB NOT NULL,              -- of the first request (method, path, body)
        status      INTEGER NOT NULL,
        body        BLOB NOT NULL,              -- the answer, as sent
        created_at  REAL NOT NULL               -- unix seconds
    );
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
    """,
    # 5: which deployment this database is: the id keeps two deployments apart on one NATS
    # server (see homefeed.adapters.jetstream_names). A database that already had events
    # keeps the bus names it had (legacy_bus_names): its stream may hold events not yet
    # consumed. sqlite_sequence remembers the outbox's last seq even once rows are gone.
    """
    CREATE TABLE deployment (
        one              INTEGER PRIMARY KEY CHECK (one = 1),
        id               TEXT NOT NULL,
        legacy_bus_names INTEGER NOT NULL
    );
    INSERT INTO deployment(one, id, legacy_bus_names)
    VALUES (1, lower(hex(randomblob(6))),
            EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox' AND seq > 0));
    """,
    # 6: accounts and OAuth 2: a user's email, password (argon2id) and bio; registered
    # apps, one-use authorization codes and access tokens. Every secret is stored hashed.
    """
    ALTER TABLE users ADD COLUMN note TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN email TEXT;
    ALTER TABLE users ADD COLUMN email_key TEXT;          -- lower(email): unique ignoring case
    ALTER TABLE users ADD COLUMN password_hash TEXT;      -- argon2id, PHC string
    CREATE UNIQUE INDEX users_by_email ON users (email_key) WHERE email_key IS NOT NULL;

    CREATE TABLE oauth_apps (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        website       TEXT,
        redirect_uris TEXT NOT NULL,                    -- newline-separated
        scopes        TEXT NOT NULL,                    -- space-separated
        client_id     TEXT NOT NULL UNIQUE,
        secret_hash   BLOB NOT NULL,                   -- sha256(client_secret)
        created_at    REAL NOT NULL                     -- unix seconds
    );
    CREATE TABLE oauth_codes (
        code_hash        BLOB PRIMARY KEY,             -- sha256(code)
        app_id           INTEGER NOT NULL,
        user_id          INTEGER NOT NULL,
        scopes           TEXT NOT NULL,
        redirect_uri     TEXT NOT NULL,
        challenge        TEXT,                          -- PKCE
        challenge_method TEXT,
        expires_at       REAL NOT NULL
    );
    CREATE TABLE oauth_tokens (
        token_hash   BLOB PRIMARY KEY,                 -- sha256(access token)
        refresh_hash BLOB UNIQUE,                      -- sha256(refresh token)
        app_id       INTEGER NOT NULL,
        user_id      INTEGER,                            -- NULL: the app's own token
        scopes       TEXT NOT NULL,
        created_at   REAL NOT NULL,
        expires_at   REAL,
        revoked_at   REAL
    );
    CREATE INDEX oauth_tokens_by_user ON oauth_tokens (user_id);
    """,
    # 7: posts.visibility: "public" (every post so far) or "unlisted" (not on the public and
    # tag timelines); the index rebuilds the public timeline's cache without a scan.
    """
    ALTER TABLE posts ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
    CREATE INDEX posts_public ON posts(id) WHERE visibility = 'public';
    """,
    # 8: conversations (docs/conversations.md): replies, boosts and their counters on posts;
    # mentions, favourites, notifications (derived, kept by the notifier), what readers
    # dismissed or cleared, and read markers. Old posts get NULL links and zero counters.
    # The public timeline leaves out boosts and replies to others: its index says so.
    """
    ALTER TABLE posts ADD COLUMN in_reply_to_id INTEGER;
    ALTER TABLE posts ADD COLUMN in_reply_to_account_id INTEGER;
    ALTER TABLE posts ADD COLUMN reblog_of_id INTEGER;
    ALTER TABLE posts ADD COLUMN replies_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE posts ADD COLUMN reblogs_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE posts ADD COLUMN favourites_count INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX posts_replies ON posts(in_reply_to_id, id) WHERE in_reply_to_id IS NOT NULL;
    -- one boost per (original, booster); reblogged_by walks it newest first
    CREATE UNIQUE INDEX posts_boosts ON posts(reblog_of_id, author_id) WHERE reblog_of_id IS NOT NULL;
    CREATE INDEX posts_boosts_by_id ON posts(reblog_of_id, id) WHERE reblog_of_id IS NOT NULL;
    DROP INDEX posts_public;
    CREATE INDEX posts_public ON posts(id) WHERE visibility = 'public' AND reblog_of_id IS NULL
        AND (in_reply_to_account_id IS NULL OR in_reply_to_account_id = author_id);

    CREATE TABLE mentions (
        post_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        PRIMARY KEY (post_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX mentions_by_user ON mentions(user_id, post_id);

    CREATE TABLE favourites (
        id      INTEGER PRIMARY KEY,            -- time-ordered: the cursor of /favourites
        user_id INTEGER NOT NULL,
        post_id INTEGER NOT NULL,
        UNIQUE (user_id, post_id)
    );
    CREATE INDEX favourites_by_user ON favourites(user_id, id);
    CREATE INDEX favourites_by_post ON favourites(post_id, id);

    CREATE TABLE notifications (
        user_id      INTEGER NOT NULL,          -- the recipient
        id           INTEGER NOT NULL,          -- the cause's id (follow, favourite, post)
        type         TEXT NOT NULL,
        from_user_id INTEGER NOT NULL,
        post_id      INTEGER,
        PRIMARY KEY (user_id, id)
    ) WITHOUT ROWID;
    CREATE INDEX notifications_by_id ON notifications(id);
    CREATE INDEX notifications_by_post ON notifications(post_id) WHERE post_id IS NOT NULL;
    CREATE INDEX notifications_by_from ON notifications(user_id, from_user_id, id);
    CREATE TABLE notification_dismissals (
        user_id INTEGER NOT NULL,
        id      INTEGER NOT NULL,
        PRIMARY KEY (user_id, id)
    ) WITHOUT ROWID;
    ALTER TABLE users ADD COLUMN notifications_cleared_id INTEGER NOT NULL DEFAULT 0;

    CREATE TABLE markers (
        user_id      INTEGER NOT NULL,
        timeline     TEXT NOT NULL,             -- "home", "notifications"
        last_read_id TEXT NOT NULL,
        version      INTEGER NOT NULL,
        updated_at   REAL NOT NULL,             -- unix seconds
        PRIMARY KEY (user_id, timeline)
    ) WITHOUT ROWID;
    """,
    # 9 (issue 12): the scheduler's claims, one row per (job, slot): the unique key makes
    # each slot run once across processes, and a run whose lease expired is taken over.
    # job_results: what a job computed for readers (trends, the load report); home_reads
    # and account_activity: the durable read counter the load report and the digest need.
    """
    CREATE TABLE job_runs (
        job         TEXT NOT NULL,
        slot        INTEGER NOT NULL,           -- scheduled: its period's number; manual: -ms
        owner       TEXT NOT NULL,              -- host:pid:nonce of the process running it
        attempt     INTEGER NOT NULL DEFAULT 1, -- 2+: taken over after a lease expired
        started_at  REAL NOT NULL,
        lease_until REAL NOT NULL,
        finished_at REAL,
        duration_s  REAL,
        outcome     TEXT NOT NULL,              -- running | ok | failed
        detail      TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (job, slot)
    );
    CREATE INDEX job_runs_by_start ON job_runs(job, started_at);
    CREATE TABLE job_results (
        name        TEXT PRIMARY KEY,
        data        BLOB NOT NULL,              -- JSON
        computed_at REAL NOT NULL
    );
    CREATE TABLE home_reads (
        hour  INTEGER PRIMARY KEY,              -- unix seconds // 3600
        reads INTEGER NOT NULL
    );
    CREATE TABLE account_activity (
        user_id        INTEGER PRIMARY KEY,
        last_read_at   REAL NOT NULL,           -- last home timeline read (minute precision)
        digest_sent_at REAL
    );
    """,
    # 10 (issue 12): the outside world: webhook subscriptions and their deliveries, notification
    # mails (the notifications they carry, the mails, each account's opt-out). Delivery and
    # mail ids start at 2**40 and 2**41: `homefeed dead-letters` lists dead ones beside the
    # stream's dead letters (small ids), and `retry --id` tells them apart by the id alone.
    """
    CREATE TABLE webhook_subscriptions (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        url             TEXT NOT NULL,
        events          TEXT NOT NULL,                  -- comma-separated event types
        secret          TEXT NOT NULL,                  -- whsec_<base64>
        previous_secret TEXT,                           -- still signs until previous_until
        previous_until  REAL,
        after           TEXT NOT NULL,                  -- seq:<outbox seq when added>
        enabled         INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        created_at      REAL NOT NULL                   -- unix seconds
    );
    CREATE TABLE webhook_deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        subscription_id INTEGER NOT NULL,
        event_seq       INTEGER NOT NULL,               -- Event.seq: with part, the webhook-id
        part            INTEGER NOT NULL,
        type            TEXT NOT NULL,
        body            BLOB NOT NULL,                  -- the JSON sent, the same every attempt
        state           TEXT NOT NULL DEFAULT 'pending',-- pending, delivered, dead, gone
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_at         REAL NOT NULL,
        lease_until     REAL,                           -- claimed by a process until then
        last_error      TEXT,
        updated_at      REAL NOT NULL,
        UNIQUE (subscription_id, event_seq, part)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_at) WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries(state, id);
    INSERT INTO sqlite_sequence(name, seq) VALUES ('webhook_deliveries', 1099511627775);

    CREATE TABLE mail_prefs (
        user_id           INTEGER PRIMARY KEY,
        unsubscribe_token TEXT NOT NULL UNIQUE,
        opted_out         INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE mail_notifications (
        user_id      INTEGER NOT NULL,                  -- the recipient
        cause        TEXT NOT NULL,                     -- follow:<event seq>, mention:<post id>
        kind         TEXT NOT NULL,                     -- follow, mention
        actor_id     INTEGER NOT NULL,
        actor_handle TEXT NOT NULL,
        post_id      INTEGER,
        excerpt      TEXT NOT NULL DEFAULT '',
        created_at   REAL NOT NULL,
        mail_id      INTEGER,                           -- the mail that carries it
        PRIMARY KEY (user_id, cause)
    );
    CREATE INDEX mail_notifications_unsent ON mail_notifications(user_id) WHERE mail_id IS NULL;
    CREATE INDEX mail_notifications_by_mail ON mail_notifications(mail_id);
    CREATE TABLE mails (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id     INTEGER NOT NULL,
        message_id  TEXT NOT NULL UNIQUE,              -- derived from the events it carries
        state       TEXT NOT NULL DEFAULT 'pending',   -- pending, sent, dead
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_at     REAL NOT NULL,
        lease_until REAL,
        last_error  TEXT,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX mails_due ON mails(next_at) WHERE state = 'pending';
    CREATE INDEX mails_by_user ON mails(user_id, created_at);
    CREATE INDEX mails_by_state ON mails(state, id);
    INSERT INTO sqlite_sequence(name, seq) VALUES ('mails', 2199023255551);
    """,
]


def connect(path: Path, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


#: Temporary triggers on the writer connection (``watch_shown``) reporting every change of
#: what a Status shows, whichever write made it (no caller can forget to): a post's
#: counters (any update of its row), its favourites (the viewer's ``favourited``), its
#: boosts (``reblogged``, and a deleted post) as ``("post", id)``; a user's row (an Account:
#: names, note, counts) as ``("user", id)``, and, when what changed is the profile (names,
#: note) or the user is gone, also as ``("profile", id)``. TEMP: other processes'
#: connections, which have no ``homefeed_shown`` function, never see them (their commits
#: move the version instead).
SHOWN_TRIGGERS = """
CREATE TEMP TRIGGER IF NOT EXISTS shown_post_updated AFTER UPDATE ON main.posts
BEGIN SELECT homefeed_shown('post', NEW.id); END;
CREATE TEMP TRIGGER IF NOT EXISTS shown_post_inserted AFTER INSERT ON main.posts
WHEN NEW.reblog_of_id IS NOT NULL BEGIN SELECT homefeed_shown('post', NEW.reblog_of_id); END;
CREATE TEMP TRIGGER IF NOT EXISTS shown_post_deleted AFTER DELETE ON main.posts
BEGIN SELECT homefeed_shown('post', OLD.id); SELECT homefeed_shown('post', OLD.reblog_of_id)
WHERE OLD.reblog_of_id IS NOT NULL; END;
CREATE TEMP TRIGGER IF NOT EXISTS shown_favourite_inserted AFTER INSERT ON main.favourites
BEGIN SELECT homefeed_shown('post', NEW.post_id); END;
CREATE TEMP TRIGGER IF NOT EXISTS shown_favourite_deleted AFTER DELETE ON main.favourites
BEGIN SELECT homefeed_shown('post', OLD.post_id); END;
CREATE TEMP TRIGGER IF NOT EXISTS shown_user_updated AFTER UPDATE ON main.users
BEGIN SELECT homefeed_shown('user', NEW.id); END;
CREATE TEMP TRIGGER IF NOT EXISTS shown_profile_updated AFTER UPDATE OF handle, display_name, note ON main.users
BEGIN SELECT homefeed_shown('profile', NEW.id); END;
CREATE TEMP TRIGGER IF NOT EXISTS shown_user_deleted AFTER DELETE ON main.users
BEGIN SELECT homefeed_shown('user', OLD.id); SELECT homefeed_shown('profile', OLD.id); END;
"""


def watch_shown(conn: sqlite3.Connection, report: Callable[[str, int], None]) -> None:
    """Install ``SHOWN_TRIGGERS`` on ``conn``, each calling ``report(kind, id)``."""
    conn.create_function("homefeed_shown", 2, report)
    for statement in _split_sql(SHOWN_TRIGGERS):
        conn.execute(statement)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns it. Each step is one transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for target in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        for statement in _split_sql(MIGRATIONS[target - 1]):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")
        conn.execute("COMMIT")
        log.info("migrated schema to version %d", target)
    return len(MIGRATIONS)


def _split_sql(script: str) -> list[str]:
    out, buf = [], []
    for line in script.splitlines():
        buf.append(line)
        if sqlite3.complete_statement("\n".join(buf)):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    return out


class SqliteDatabase:
    """The file, its writer thread and its read connection. Shared by the record store,
    the outbox event stream and the FTS5 search index of the embedded profile."""

    def __init__(self, path: Path, synchronous: str = "FULL", group_commit_max: int = 512) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.group_commit_max = group_commit_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._commit_listeners: list[Callable[[], None]] = []
        self._last_waited = 0.0  # (writer thread) when the last batch with a waited-for write began
        self.reader: sqlite3.Connection | None = None
        self._version_cursor: sqlite3.Cursor | None = None
        self._shm: int | None = None  # the -shm file's descriptor (data_version)
        self._shm_map: mmap.mmap | None = None  # its first page, mapped read-only (data_version)
        #: (shown_version) the header after the last commit of this process that changed
        #: nothing shown (or whose changes the listeners were told of), and the value it is
        #: worth: the header before the first of a run of such commits. One tuple, replaced
        #: whole (written by the writer thread or, with listeners, by the loop).
        self._shown: tuple[bytes | None, Hashable] = (None, None)
        #: (writer thread) what the batch being committed changed that a Status shows, as
        #: the ``SHOWN_TRIGGERS`` report it
        self._touched: list[tuple[str, int]] = []
        #: told of each commit's ``_touched``, on the loop of its writes (``on_shown_change``)
        self._shown_listeners: list[weakref.WeakMethod] = []
        #: commits whose listeners are to be told: counted by the writer thread right before
        #: their ``COMMIT``, and by the loop once told (``telling``)
        self._to_tell = 0
        self._told = 0
        #: (writer thread -> loop) commits whose listeners are to be told (``_tell``)
        self._telling: collections.deque[tuple[bytes | None, bytes | None, list[tuple[str, int]], list[Any]]] = \
            collections.deque()

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = connect(self.path, self.synchronous)
        migrate(writer)
        watch_shown(writer, self._touched_row)
        self.reader = connect(self.path, self.synchronous)
        try:  # the wal-index, opened by the connections above (``data_version``)
            self._shm = os.open(f"{self.path}-shm", os.O_RDONLY)
        except OSError:
            self._shm = None
        self._shm_map = None
        if self._shm is not None:
            # Mapped as SQLite's own connections map it (shared: every commit's header is
            # seen at once). The file is never shortened while a connection has it open
            # (only the first connection to open a database resets it), and ``reader`` is
            # open until ``close``, which unmaps first. Not mappable (too short: not an
            # initialised wal-index): ``pread`` as before.
            try:
                if os.fstat(self._shm).st_size >= _WAL_HEADERS:
                    self._shm_map = mmap.mmap(self._shm, _WAL_HEADERS, mmap.MAP_SHARED, mmap.PROT_READ)
            except (OSError, ValueError):
                self._shm_map = None
        self._thread = threading.Thread(
            target=self._run_writer, args=(writer,), name="homefeed-sqlite-writer", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        if self._shm_map is not None:
            self._shm_map.close()
            self._shm_map = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if self._shm is not None:
            os.close(self._shm)
            self._shm = None

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the writer thread) after every commit."""
        self._commit_listeners.append(callback)

    def on_shown_change(self, callback: Callable[[list[tuple[str, int]]], None]) -> None:
        """Tell the bound method ``callback``, on the event loop of the writes, what each
        commit of this process changed that a Status shows (``SHOWN_TRIGGERS``: ``("post",
        id)`` for a post's counters and its boosters and favouriters, ``("user", id)`` for a
        user's row, ``("profile", id)`` for its names and note), before the writes' callers
        hear of the commit. From then on such a commit no longer moves ``shown_version``: a
        kept answer that shows none of what it changed stays valid, and the listener drops
        those that do. Held weakly: a listener that is gone is forgotten."""
        self._shown_listeners.append(weakref.WeakMethod(callback))  # type: ignore[arg-type]

    def _touched_row(self, kind: str, id_: int) -> None:
        """(Writer thread, from a ``SHOWN_TRIGGERS`` trigger inside a write.) A write rolled
        back after it was reported is reported anyway: one answer rendered again."""
        self._touched.append((kind, id_))

    # -- writes ---------------------------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T], *, neutral: bool = False) -> T:
        """Run ``fn(conn)`` inside a write transaction; return its result once committed.
        ``neutral``: the write changes nothing that a reader keeps an answer of by
        ``shown_version`` (the read counter's rows); a commit of neutral writes only leaves
        ``shown_version`` as it was."""
        if self._thread is None:
            raise Unavailable("the database is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, loop, fut, background_writes.get(), neutral))
        return await fut

    def _run_writer(self, conn: sqlite3.Connection) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            job = get()
            if job is None:
                conn.close()
                return
            batch = [job]
            stop = False
            waited = not job[3]  # a write somebody waits for: commit what is queued, at once
            deadline = 0.0
            while len(batch) < self.group_commit_max:
                try:
                    nxt = get_nowait()
                except queue.Empty:
                    if waited:
                        break
                    # Only deferred writes so far: wait for one that somebody waits for, if
                    # requests are writing (one was committed within WRITING_WINDOW); else
                    # (consumers catching up alone) there is nothing to wait for.
                    now = time.monotonic()
                    if not deadline:
                        if now - self._last_waited > WRITING_WINDOW:
                            break
                        deadline = now + DEFER_MAX
                    if now >= deadline:
                        break
                    try:
                        nxt = get(timeout=deadline - now)
                    except queue.Empty:
                        break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                waited = waited or not nxt[3]
            if waited:
                self._last_waited = time.monotonic()
            self._commit_batch(conn, batch)
            if stop:
                conn.close()
                return

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        self._touched = []
        listeners = [m for m in (ref() for ref in self._shown_listeners) if m is not None]
        if len(listeners) != len(self._shown_listeners):
            self._shown_listeners = [ref for ref in self._shown_listeners if ref() is not None]
        try:
            conn.execute("BEGIN IMMEDIATE")
            before = self._header()
            for fn, _, _, _, _ in batch:
                conn.execute("SAVEPOINT w")
                try:
                    result = fn(conn)
                except Exception as exc:  # this write alone is rolled back
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE w")
                    outcomes.append((True, result))
            if listeners:  # counted before the commit: from its first moment on, ``telling``
                self._to_tell += 1
            try:
                conn.execute("COMMIT")
            except Exception:
                if listeners:
                    self._to_tell -= 1
                raise
            self._committed(before, batch, listeners)
        except Exception as exc:  # the commit itself failed: nothing in the batch is durable
            log.exception("group commit failed")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            err = Unavailable(f"the database could not commit: {exc}")
            outcomes = [(False, err)] * len(batch)
        else:
            for listener in self._commit_listeners:
                listener()
        self._settle(batch, outcomes)

    def _settle(self, batch: list[Any], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[Any, list[tuple[Any, bool, Any]]] = {}
        for (_, loop, target, _, _), (ok, value) in zip(batch, outcomes):
            by_loop.setdefault(loop, []).append((target, ok, value))
        for loop, items in by_loop.items():
            try:  # one wake-up of the loop: the listeners told (``_tell``), then the writers
                loop.call_soon_threadsafe(self._resolve, items)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _resolve(self, items: list[tuple[asyncio.Future, bool, Any]]) -> None:
        if self._telling:
            self._tell()
        _resolve_all(items)

    # -- reads ----------------------------------------------------------------------------
    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        assert self.reader is not None, "database is not open"
        return self.reader.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | list = ()) -> tuple | None:
        assert self.reader is not None, "database is not open"
        return self.reader.execute(sql, params).fetchone()

    def _header(self) -> bytes | None:
        """The wal-index header now, if both copies agree (``data_version``'s reading)."""
        shm = self._shm_map
        if shm is not None:
            first = shm[:48]
            return first if first == shm[48:96] else None
        if self._shm is not None:
            header = os.pread(self._shm, 96, 0)
            return header[:48] if len(header) == 96 and header[:48] == header[48:] else None
        return None

    def _committed(self, before: bytes | None, batch: list[Any], listeners: list[Any]) -> None:
        """(Writer thread, right after a commit.) ``before``: the header read once the batch
        held the write lock, so no other commit came between it and this one. The header's
        ``iChange`` (SQLite's WAL-index format: a count of commits, one more for each) tells
        whether any came after: exactly one more, this commit alone, and what it changed is
        known: nothing shown (a batch of neutral writes only), or the rows the triggers
        reported, which the listeners are told of (``_tell``). Then the header now is worth
        the one before it (``shown_version``). More, and another connection committed
        meanwhile: the new header stands for itself."""
        after = self._header() if before is not None else None
        alone = False
        if before is not None and after is not None:
            commits_before, commits_after = _I_CHANGE.unpack_from(before, 8)[0], _I_CHANGE.unpack_from(after, 8)[0]
            alone = commits_after == (commits_before + 1) % (1 << 32)
        if listeners:  # told on the writes' loop right before their results (``_settle``)
            self._telling.append((before if alone else None, after, self._touched, listeners))
        elif alone and all(job[4] for job in batch) and not self._touched:
            assert before is not None and after is not None
            self._explain(before, after)

    def _tell(self) -> None:
        """(The loop.) Tell the listeners what each commit changed, then let it leave
        ``shown_version`` as it was: never the other way round, or a read between the two
        would take a kept answer the commit changed for a valid one. Run by the callback the
        writer queues, or sooner by ``shown_version`` itself: a caller hears of its write
        only after this, and a reader never sees a commit's header before it."""
        pending = self._telling
        while pending:
            before, after, touched, listeners = pending.popleft()
            try:
                for listener in listeners:
                    listener(touched)
                if before is not None and after is not None:
                    self._explain(before, after)
            except Exception:  # the version then moves: what is kept is read again
                log.exception("telling a commit's changes failed")
            finally:
                self._told += 1

    def telling(self) -> bool:
        """Is a commit of this process under way or committed with its listeners not yet
        told? Then ``shown_version`` may show its raw header for now, and will not once
        they are."""
        return self._to_tell != self._told

    def _explain(self, before: bytes, after: bytes) -> None:
        """The commit from header ``before`` to ``after`` changed nothing a kept answer still
        held shows: ``after`` is worth what ``before`` was worth (the value of the run of such
        commits ``before`` ends, if it ends one; else ``before`` itself, which readers may
        have seen: a commit of another connection came between)."""
        last, worth = self._shown
        self._shown = (after, worth if before == last else before)

    def shown_version(self) -> Hashable:
        """``data_version``, except that this process's commits that change nothing shown
        do not move it: those of neutral writes only (the read counter's, once a minute)
        and, once a listener is registered (``on_shown_change``), every commit of this
        process whose changes the listener was told of. The Mastodon home's kept renderings
        are checked against it: a commit that changes nothing on a page (a post elsewhere, a
        consumer's acknowledgement) no longer renders every kept page again. Raw otherwise:
        a commit of another connection (another process), or one not yet told, gives a value
        never seen before."""
        if self._telling:
            self._tell()
        v = self.data_version()
        last, worth = self._shown
        if last is not None and v == last:
            return worth
        return v

    def data_version(self) -> Hashable:
        """A value that changes whenever any connection (this process's writer thread, or
        another process) has committed since the last call. Lets an in-process cache of what
        the reads answer be exact: equal values, same answers (``MastodonApi``'s kept home
        pages).

        The database is in WAL mode: every commit rewrites the wal-index header at the start
        of the ``-shm`` file (SQLite's documented WAL-index format: the header twice, 48 bytes
        each, with the WAL's last valid frame, its salts and checksums; readers take their
        snapshot from it). The value is that header, read from the file mapped as SQLite maps
        it: ~0.35 µs, no system call, no statement and no lock, where ``PRAGMA data_version``
        takes and drops a shared lock (two ``fcntl`` calls) in ~4.4 µs and a ``pread`` (the
        fallback when the file could not be mapped) costs ~0.7 µs and a system call. The
        copies are read in SQLite's reader's order (the first, then the second; a writer
        writes the second, then the first), so a header being written reads as two copies
        that differ. A header that changes without a commit (a checkpoint) only costs a
        fresh rendering. While a writer is between its two copies (they differ) the value is
        a new object, equal to nothing: nothing is kept. Without a ``-shm`` file (not WAL):
        ``PRAGMA data_version``."""
        shm = self._shm_map
        if shm is not None:
            first = shm[:48]
            if first == shm[48:96]:
                return first
            return object()
        fd = self._shm
        if fd is not None:
            header = os.pread(fd, 96, 0)
            if len(header) == 96 and header[:48] == header[48:]:
                return header[:48]
            return object()
        reader = self.reader
        assert reader is not None, "database is not open"
        cursor = self._version_cursor
        if cursor is None or cursor.connection is not reader:  # one cursor, reused: ~0.3 µs less
            cursor = self._version_cursor = reader.cursor()
        return cursor.execute("PRAGMA data_version").fetchone()[0]  # type: ignore[no-any-return]

    def query_value(self, sql: str, params: tuple | list = ()) -> Any:
        """The first column of the one row an aggregate (``count``, ``max``) answers."""
        assert self.reader is not None, "database is not open"
        row = self.reader.execute(sql, params).fetchone()
        assert row is not None, "an aggregate answers one row"
        return row[0]


#: The wal-index header: two copies of 48 bytes at the start of the ``-shm`` file.
_WAL_HEADERS = 96
#: ``iChange`` of a wal-index header (at byte 8, in the machine's byte order): +1 per commit.
_I_CHANGE = struct.Struct("=I")


def _resolve_all(items: list[tuple[asyncio.Future, bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
