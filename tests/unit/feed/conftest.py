"""Fixtures of the fast timeline-rule tests (``test_feed_rules_*.py``): see ``feedworld``."""

from __future__ import annotations

import pytest
from feedworld import World


@pytest.fixture
def world(tmp_path):
    """celebrity_threshold=3, timeline_cap=5: celebrities and trims after a handful of
    writes."""
    w = World(tmp_path)
    yield w
    w.close()
