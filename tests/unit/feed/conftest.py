"""Fixtures of the fast timeline-rule tests (``test_feed_rules_*.py``): see ``feedworld``."""

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
