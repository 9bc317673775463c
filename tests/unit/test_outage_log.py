"""The outage log: one warning when a backend goes, one line when it is back, however many
calls fail in between; a success right after a failure (a server ending its sessions one by
one) ends the outage only if nothing fails for a quiet moment after it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from homefeed.adapters import outage as outage_mod
from homefeed.adapters.outage import OutageLog
from homefeed.domain.errors import Unavailable


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "homefeed.backends"]


def test_one_warning_per_outage_and_one_recovery_line(caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(outage_mod, "QUIET", 0.05)

    async def body() -> None:
        log = OutageLog("PostgreSQL")
        log.succeeded()  # no outage: nothing said
        errors = [log.failed(ConnectionRefusedError(f"refused {i}")) for i in range(100)]
        assert all(isinstance(e, Unavailable) and e.status == 503 for e in errors)
        assert errors[0].message == "the database (PostgreSQL) is unavailable; retry later"

        log.succeeded()  # at once: a session that still worked while the server shut down
        log.failed(ConnectionResetError("the next one did not"))
        await asyncio.sleep(0.08)
        assert log.down  # the success was followed by a failure: still the same outage

        log.succeeded()  # the last failure is a quiet period old: over
        assert not log.down and log.outages == 1
        lines = _lines(caplog)
        assert len(lines) == 2, lines
        assert lines[0].startswith("PostgreSQL is unavailable (ConnectionRefusedError: refused 0)")
        assert lines[1].startswith("PostgreSQL recovered after") and "(101 failed calls)" in lines[1]

        log.failed(TimeoutError())  # the next outage is a new one
        assert log.down and log.outages == 2 and log.failures == 1
        assert len(_lines(caplog)) == 3
        log.succeeded()  # right after a failure: confirmed once nothing failed for a while
        assert log.down
        await asyncio.sleep(0.08)
        assert not log.down and _lines(caplog)[-1].startswith("PostgreSQL recovered after")

    asyncio.run(body())


def test_calls_right_after_a_failure_may_fail_at_once(monkeypatch) -> None:
    monkeypatch.setattr(outage_mod, "PROBE_INTERVAL", 0.05)
    log = OutageLog("Redis")
    assert not log.recently_failed()
    log.failed(ConnectionRefusedError())
    assert log.recently_failed()
    assert log.skipped().status == 503 and log.failures == 2
    import time

    time.sleep(0.06)
    assert not log.recently_failed() and log.down  # time to try the backend again


def test_the_message_names_the_backend() -> None:
    assert OutageLog("Redis").failed(OSError()).message == "the cache (Redis) is unavailable; retry later"
