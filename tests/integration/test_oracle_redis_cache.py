"""The oracle state machine of ``test_oracle_stateful`` with the Redis timeline and post
caches (the scale-out profile's caches; SQLite stays the record store): home reads go through
``home_view``'s script, the following sets kept in process under their version, and the
bare connection (``redis_cache.FastLane``), across restarts that keep Redis.

Opt-in, because it FLUSHES the Redis database it is given at the start of each example:
``HOMEFEED_ORACLE_REDIS_URL=redis://127.0.0.1:6379/12 .venv/bin/pytest
tests/integration/test_oracle_redis_cache.py`` (a database no one else uses)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from tests.integration.test_oracle_stateful import PROFILE, HomefeedMachine, settings

URL = os.environ.get("HOMEFEED_ORACLE_REDIS_URL", "")


class RedisCacheMachine(HomefeedMachine):
    def open(self) -> Any:
        if not getattr(self, "_flushed", False):
            import redis

            redis.Redis.from_url(URL).flushdb()
            self._flushed = True
        self.settings = dataclasses.replace(self.settings, cache_url=URL)
        return super().open()


@pytest.mark.skipif(not URL, reason="set HOMEFEED_ORACLE_REDIS_URL to a Redis database it may flush")
class TestHomefeedOracleRedisCache(RedisCacheMachine.TestCase):  # type: ignore[misc, valid-type]
    pytestmark = [pytest.mark.slow]
    settings = settings.get_profile(PROFILE)
