"""Waiting for a test receiver (webhooks, mail) to have what a test expects: liveness, not a
timing check. One loop for every kit, so a failure always says what had arrived."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(snapshot: Callable[[], list[T]], done: Callable[[list[T]], bool], timeout: float,
               what: str, describe: Callable[[list[T]], object]) -> list[T]:
    """Poll ``snapshot()`` until ``done`` holds for it; past ``timeout`` seconds fail with
    ``what`` and ``describe`` of the last 20 items received."""
    deadline = time.monotonic() + timeout
    while True:
        got = snapshot()
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not arrive within {timeout}s; got {len(got)}: {describe(got[-20:])}")
        time.sleep(0.02)
