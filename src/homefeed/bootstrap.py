"""The one place that wires adapters to ports, chosen by configuration.

The embedded profile: SQLite (record store, outbox event stream, FTS5 search index) and an
in-process timeline cache and post cache, all in one process.
"""

from __future__ import annotations

from homefeed.adapters.fts5_index import Fts5SearchIndex
from homefeed.adapters.memory_cache import MemoryPostCache, MemoryTimelineCache
from homefeed.adapters.outbox_stream import OutboxEventStream
from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.adapters.sqlite_store import SqliteRecordStore
from homefeed.config import Settings
from homefeed.service_layer.services import Homefeed


def build(settings: Settings) -> Homefeed:
    db = SqliteDatabase(
        settings.database_path,
        synchronous=settings.sqlite_synchronous.upper(),
        group_commit_max=settings.group_commit_max,
    )
    cache = MemoryTimelineCache(
        cap=settings.timeline_cap,
        inactive_seconds=settings.inactive_days * 86400,
        max_lists=settings.cache_max_timelines,
    )
    return Homefeed(
        settings,
        store=SqliteRecordStore(db),
        stream=OutboxEventStream(db),
        cache=cache,
        posts=MemoryPostCache(settings.cache_max_posts),
        search_index=Fts5SearchIndex(db),
    )


async def open_homefeed(settings: Settings, run_consumers: bool = True) -> Homefeed:
    """Build and start: the record store is open and (by default) consumers are running."""
    hf = build(settings)
    await hf.start(run_consumers=run_consumers)
    return hf
