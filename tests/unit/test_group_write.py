"""``GroupWrite`` (group commit): against an oracle of what each caller asked, every caller
returns only once a write held its item, writes asked for during a write share the next
one, a failed write fails exactly its own callers, and a caller cancelled while it waits
does not cancel the write for the others."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homefeed.aio import GroupWrite


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=30))
def test_each_caller_returns_once_its_item_is_written(calls: list[tuple[int, bool]]) -> None:
    """``calls``: (turns to wait before calling, whether the write holding it fails)."""
    async def go() -> None:
        written: list[list[int]] = []
        failed: list[list[int]] = []
        failing: set[int] = {i for i, (_, fails) in enumerate(calls) if fails}

        async def write(batch: list[int]) -> None:
            await asyncio.sleep(0)  # a round trip: others arrive meanwhile
            if failing & set(batch):
                failed.append(batch)
                raise OSError(f"batch {batch} failed")
            written.append(batch)

        group: GroupWrite[int] = GroupWrite(write, "test")

        async def caller(i: int, delay: int) -> str:
            for _ in range(delay):
                await asyncio.sleep(0)
            try:
                await group(i)
            except OSError as exc:
                assert any(i in b and str(b) in str(exc) for b in failed), "told another write's failure"
                return "failed"
            assert any(i in b for b in written), f"{i} returned before its write"
            return "ok"

        got = await asyncio.gather(*(caller(i, d) for i, (d, _) in enumerate(calls)))
        flat = [i for b in written for i in b]
        assert sorted(flat + [i for b in failed for i in b]) == list(range(len(calls))), (
            "every item in exactly one write")
        for i, outcome in enumerate(got):
            assert (outcome == "ok") == (i in flat)
            if i in failing:
                assert outcome == "failed"

    asyncio.run(go())


def gated() -> tuple[GroupWrite[int], list[list[int]], asyncio.Event]:
    """A group whose writes wait for the gate, and what they wrote."""
    written: list[list[int]] = []
    gate = asyncio.Event()

    async def write(batch: list[int]) -> None:
        await gate.wait()
        written.append(batch)

    return GroupWrite(write, "test"), written, gate


def test_writes_during_a_write_share_the_next_one() -> None:
    async def go() -> list[list[int]]:
        group, written, gate = gated()
        first = asyncio.create_task(group(0))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(group(i)) for i in range(1, 6)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *rest)
        return written

    assert asyncio.run(go()) == [[0], [1, 2, 3, 4, 5]]


def test_a_cancelled_caller_does_not_cancel_the_write_for_the_others() -> None:
    async def go() -> list[list[int]]:
        group, written, gate = gated()
        a, b = asyncio.create_task(group(1)), asyncio.create_task(group(2))
        await asyncio.sleep(0)
        a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await a
        gate.set()
        await b
        return written

    assert asyncio.run(go()) == [[1, 2]]
