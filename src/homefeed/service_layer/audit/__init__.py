"""The audit: recompute from the system of record what each derived store should hold,
compare, and name every difference.

What is checked
---------------
``timelines`` (for each audited user)
    - **home cache**: the cached home timeline's ids above its *floor* (below it the list
      may be incomplete by design) must include every post by someone the user follows
      now who is not a celebrity (a celebrity's posts are pulled at read time; the cache
      *may* hold them, and the user's own posts, which rebuilds put there). Every other
      id above the floor is an *extra* if it is a post by someone the user does not follow
      and among that author's newest ``timeline_cap`` posts (an unfollow removes exactly
      those: older ones, pushed before the author became a celebrity or put there by a
      rebuild, may stay, as that rule allows). Reads hide extras (they filter by current
      follows), so they are reported as **hidden** differences. Ids of deleted posts are
      only counted (``ids_of_deleted_posts``): the rules leave them in the author's own
      home timeline and with users who had unfollowed the author, their author is gone
      with them, and hydration drops them from every read (the home read check and the
      post cache check see to that).
    - **home read**: the home timeline the user reads, computed by ``FeedManager.read_home``
      itself over read-only views of the caches, must equal the home computed from the
      record store alone through the same home rules (``read_home_from_store``: the newest
      posts of the user and everyone they follow, with the reply and boost rules; first
      ``timeline_cap + 100``).
    - **following cache**: a cached following set equals the follows in the record store.
    - **celebrity set** (once): the cached set equals the users whose follower count is at
      least the threshold.
    - **post cache**: every cached post referenced by an audited list exists and is equal.
``authors`` (user timelines: the cached author lists the home read pulls from)
    - above the floor: every post of the author; other ids are hidden extras.
``search``
    - every post but a boost is indexed under exactly ``index.terms_of(post)``; no entry
      without a post, nor for a boost (such an entry is hidden: search drops ids that do
      not hydrate, and a boost has no terms).
``counters``
    - followers, following and posts counts equal the counts of the records;
    - each post's replies, reblogs and favourites counts equal the counts of the records.
``notifications``
    - each user's notifications equal the function of the records (docs/conversations.md):
      none missing, none extra (``RecordStore.notification_diff``).

Safe while serving
------------------
The audit only reads: ``peek`` (never counts as a read: no TTL refresh, no recency, no
rebuild of a missing list), ``peek_many``, record-store and index queries. Events in flight
make derived stores lag the record store for a moment, so a difference is reported only if
it is still there after the consumers have applied every event committed before it was
first seen (``wait_caught_up``: the outbox head, then for a bus the relay and the bus
consumers), and only if it is the same difference. If the consumers do not catch up
within ``settle_timeout`` (nothing consuming: is the service running?), the differences are
reported with the consumers' lag.

Where it runs, and how
-----------------------
Everything here needs only the ``Homefeed``'s ports, so it runs wherever those stores are
visible: anywhere for the record store, the index and Redis; for the in-process cache of
the embedded profile only inside the serving process (``homefeed.entrypoints.ops``).

In the serving process the audit gives the event loop back after every store read
(``pacing``), so requests keep their latency while it runs, and it reports its progress
(``Auditor(progress=...)``: phase, done, total).

One job per module
------------------
``report`` (differences, the report, exit codes), ``plan`` (what to look at), ``timelines``
(home caches, reads, following and celebrity sets, author lists, cached posts), ``search``,
``counters``, ``settle`` (waiting for the events in flight), ``views`` (read-only views of
the caches for ``FeedManager.read_home``), ``pacing`` (yielding, progress), ``context``
(what the checks share), ``auditor`` (the whole audit). This package re-exports what callers import.
"""

from homefeed.service_layer.audit.auditor import Auditor, audit
from homefeed.service_layer.audit.context import PAGE, POSTS_PER_SAMPLED_USER, READ_BEYOND_CAP, WINDOW
from homefeed.service_layer.audit.pacing import Pacer, Progress
from homefeed.service_layer.audit.plan import Plan
from homefeed.service_layer.audit.report import PARTS, AuditReport, Difference
from homefeed.service_layer.audit.settle import wait_caught_up
from homefeed.service_layer.audit.views import ReadOnlyPosts, ReadOnlyTimelines

__all__ = [
    "Auditor", "audit", "PAGE", "POSTS_PER_SAMPLED_USER", "READ_BEYOND_CAP", "WINDOW", "Pacer",
    "Progress", "Plan", "PARTS", "AuditReport", "Difference", "wait_caught_up", "ReadOnlyPosts",
    "ReadOnlyTimelines",
]
