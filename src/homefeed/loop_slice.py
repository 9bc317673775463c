"""Long batches of in-process work that let the event loop breathe: the consumers' batches
(fan-out pushes, follower reads) and the search index's tokenizing yield the loop once every
``SLICE`` seconds of work, so the requests queued meanwhile run between their slices.

Its own module because both layers use it: the service layer (``consumers``) and an
adapter (``fts5_index``), which must not import the service layer.
"""

from __future__ import annotations

import asyncio
import time

#: Longest stretch, in seconds, of a batch's work without letting the event loop run anything
#: else (issue 14: on the embedded profile the in-process fan-out's pushes never suspend, so a
#: batch held the loop, and every request in flight, for as long as it took: 7-9 ms of CPU for
#: ~30 posts at 400 posts/s, several times that for the bigger batches of a faster machine;
#: tokenizing is ~50 µs of CPU a post, ~13 ms for a batch of 256). Past it the work yields one
#: turn of the loop, then goes on. 10 ms, not less: one turn of the loop under ``wrk -c32``
#: posts is already 10-17 ms of request work, and 2-ms slices cost 25-35% of the posts' rate
#: in process (the figures are in ``benchmarks/results/issue14_p16post.md``).
SLICE = 0.010


class LoopSlice:
    """Yields the event loop once ``SLICE`` seconds of work have passed since the last
    yield: cheap to ask (a clock read) after each unit of a batch's work. A yield is one
    turn of the loop (``sleep(0)``), not a wait: the work goes on as soon as what was
    ready ran, so a consumer is slowed only by work that was waiting anyway and its lag
    stays bounded by the loop's capacity, as before."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = time.perf_counter() + SLICE

    async def pause(self) -> None:
        if time.perf_counter() >= self.until:
            await asyncio.sleep(0)
            self.until = time.perf_counter() + SLICE
