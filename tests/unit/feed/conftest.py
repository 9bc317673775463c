"""The fast timeline-rule tests: FeedManager's rules over the embedded profile's ports (a
SQLite file, the memory caches), in seconds. One file per rule of the README's table:

- ``test_feed_rules_push.py``: push, inactive timelines
- ``test_feed_rules_celebrity.py``: celebrity pull, promotion, demotion
- ``test_feed_rules_follow.py``: merge on follow, unmerge on unfollow
- ``test_feed_rules_delete.py``: delete
- ``test_feed_rules_trim.py``: trim and floors
- ``test_feed_rules_rebuild.py``: rebuild of absent timelines
- ``test_feed_rules_redelivery.py``: idempotent redelivery of events
- ``test_feed_rules_oracle.py``: all of them at once, a state machine against an oracle

The world they run in is ``feedworld.World``."""

from __future__ import annotations

import pytest
from feedworld import Records, World


@pytest.fixture(scope="session")
def records(tmp_path_factory):
    """One SQLite file for every test of the layer (each world has its own users)."""
    r = Records(tmp_path_factory.mktemp("feed-records"))
    yield r
    r.close()


@pytest.fixture
def world(records):
    """celebrity_threshold=3, timeline_cap=5: celebrities and trims after a handful of
    writes."""
    w = World(records)
    yield w
    w.close()
