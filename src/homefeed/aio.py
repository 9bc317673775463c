"""``wait_for``: ``asyncio.wait_for`` that never loses a cancellation; ``GroupWrite``: small
writes of many tasks made in one.

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
from typing import Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """``await aw``, raising ``TimeoutError`` after ``timeout`` seconds (None: no limit),
    with ``aw`` cancelled then, as ``asyncio.wait_for`` does."""
    async with asyncio.timeout(timeout):
        return await aw


class GroupWrite(Generic[T]):
    """Group commit: writes asked for while one is under way share the next, one call of
    ``write`` for all of them, and each caller returns once the write holding its item is
    done (or raises what that write raised). The write runs in a task of its own, so a
    caller cancelled while it waits only stops waiting: the write goes on for the others.

    Used where many tasks of a process write small rows at about the same time: the
    consumers' acknowledgements on the PostgreSQL outbox, the webhook dispatcher's
    successes."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], name: str) -> None:
        self._write = write
        self._name = name
        self._pending: list[T] = []
        self._next: asyncio.Future[None] | None = None  # resolved by the write holding _pending
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> None:
        self._pending.append(item)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        written = self._next
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        await asyncio.shield(written)

    async def _run(self) -> None:
        while self._pending:
            batch, written = self._pending, self._next
            self._pending, self._next = [], None
            assert written is not None
            # (GeneratorExit, a task dropped with its closed loop, touches nothing)
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                self._fail(written, RuntimeError(f"{self._name}: the write was cancelled"))
                raise
            except Exception as exc:
                self._fail(written, exc)
            else:
                if not written.done():
                    written.set_result(None)

    @staticmethod
    def _fail(written: asyncio.Future[None], exc: Exception) -> None:
        if not written.done():
            written.set_exception(exc)
            written.exception()  # retrieved: callers cancelled meanwhile are not told
