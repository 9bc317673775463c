"""What every check of an audit shares: the stores it reads (paced, read-only), the
timeline rules' figures, the reader that computes what a user sees, and where progress
goes. One per audit run."""

from __future__ import annotations

from dataclasses import dataclass
from homefeed.ports import PostCache, SearchIndex, TimelineCache

from homefeed.service_layer.audit.pacing import PacedRecordStore, Pacer, Progress
from homefeed.service_layer.audit.views import ReadOnlyPosts, ReadOnlyTimelines
from homefeed.service_layer.feed import FeedManager
from homefeed.service_layer.services import Homefeed

#: Ids per record-store page (and the depth bounds of the timeline checks).
PAGE = 1000
#: Users per counters query, posts per post-cache read and per search window of the full
#: walk: each is one query that holds the serving process's event loop (SQLite does not
#: suspend), so a batch is small enough to keep a request's wait short (~PAGE/4 rows).
BATCH = 250
#: Consecutive posts per search window when sampling.
WINDOW = 100
#: Posts of the search index checked per sampled user (``--sample N``: N * 10 posts).
POSTS_PER_SAMPLED_USER = 10
#: How far the home read is compared beyond the cache (entries past ``timeline_cap``).
READ_BEYOND_CAP = 100


def _no_progress(phase: str, done: int, total: int | None) -> None:
    return None


@dataclass
class AuditContext:
    store: PacedRecordStore
    #: The real caches: only their read-only methods are called (``peek``, ``keys``...).
    cache: TimelineCache
    posts_cache: PostCache
    index: SearchIndex
    cap: int
    threshold: int
    timelines_view: ReadOnlyTimelines
    posts_view: ReadOnlyPosts
    #: ``FeedManager.read_home`` over the read-only views: what a reader gets.
    reader: FeedManager
    pacer: Pacer
    progress: Progress

    @classmethod
    def of(cls, hf: Homefeed, progress: Progress | None = None, pacer: Pacer | None = None) -> "AuditContext":
        pacer = pacer or Pacer()
        store = PacedRecordStore(hf.store, pacer)
        timelines = ReadOnlyTimelines(hf.cache, pacer)
        posts = ReadOnlyPosts(hf.feed.posts, pacer)
        reader = FeedManager(
            store, timelines, posts,  # type: ignore[arg-type]  # read-only views of the ports
            hf.settings.celebrity_threshold, hf.feed.cap, strategy=hf.feed.strategy,
        )
        return cls(store, hf.cache, hf.feed.posts, hf.search_index, hf.feed.cap, hf.feed.threshold,
                   timelines, posts, reader, pacer, progress or _no_progress)
