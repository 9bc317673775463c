"""``wait_for``: ``asyncio.wait_for`` that never loses a cancellation.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives in the same turn of
the loop as its awaitable's result (CPython gh-86296, fixed in 3.12 by rebuilding it on
``asyncio.timeout``): it returns the result, and the task that was told to stop goes on.
Every long-lived task here (a subscription, a consumer's fetch, the relay, a sleep between
retries) is stopped by ``cancel()`` and then awaited, so a lost cancellation is a process
that never exits: ``homefeed webhooks add`` printed its answer and then hung in
``Homefeed.close``, awaiting a token-revocation subscription whose connect had just
finished (3 runs in 160 on a loaded machine). This one is ``asyncio.timeout`` underneath,
which counts cancellations and re-raises them."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """``await aw``, raising ``TimeoutError`` after ``timeout`` seconds (None: no limit),
    with ``aw`` cancelled then, as ``asyncio.wait_for`` does."""
    async with asyncio.timeout(timeout):
        return await aw
