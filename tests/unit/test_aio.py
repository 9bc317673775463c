"""``homefeed.aio.wait_for`` keeps a cancellation that arrives in the same turn of the loop
as the result it waits for (Python 3.11's ``asyncio.wait_for`` returns the result and the
cancelled task goes on: a process that never exits), and otherwise behaves as
``asyncio.wait_for``: a result, a timeout with the awaitable cancelled, no limit with None."""

from __future__ import annotations

import asyncio

import pytest

from homefeed.aio import wait_for


async def _cancel_as_the_result_arrives(wait) -> str:  # type: ignore[no-untyped-def]
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiter = asyncio.create_task(wait(fut, 10))
    await asyncio.sleep(0)  # the waiter is waiting
    fut.set_result(1)  # the result arrives ...
    waiter.cancel()  # ... and a stop, in the same turn
    try:
        return f"returned {await waiter}"
    except asyncio.CancelledError:
        return "cancelled"


def test_a_cancellation_beside_the_result_is_not_lost() -> None:
    assert asyncio.run(_cancel_as_the_result_arrives(wait_for)) == "cancelled"


def test_result_timeout_and_no_limit() -> None:
    async def main() -> None:
        assert await wait_for(asyncio.sleep(0, "x"), 1) == "x"
        assert await wait_for(asyncio.sleep(0.01, "y"), None) == "y"
        slow = asyncio.create_task(asyncio.sleep(10))
        with pytest.raises(TimeoutError):
            await wait_for(slow, 0.05)
        await asyncio.sleep(0)
        assert slow.cancelled()  # the awaitable is cancelled on the timeout

    asyncio.run(main())


def test_no_module_uses_asyncio_wait_for() -> None:
    """Every wait with a limit goes through ``homefeed.aio.wait_for``: one call of the
    stdlib's, in a task that is stopped by cancelling it, is a process that may not exit."""
    from pathlib import Path

    import homefeed

    root = Path(homefeed.__file__).parent
    users = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if p.name != "aio.py" and "asyncio.wait_for(" in p.read_text()]
    assert users == []
