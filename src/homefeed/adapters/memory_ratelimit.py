"""Rate limiter in process memory (embedded profile): GCRA, one integer per key.

The arithmetic is the port's (``homefeed.ports.RateLimiter``), in integer microseconds, as in
the Redis adapter's Lua script: both answer the same waits to the microsecond.

Memory is bounded twice:

- a key whose TAT is in the past means nothing any more (an absent key behaves the same),
  so it is dropped by a sweep. Sweeps are amortised O(1): one runs when the table has
  doubled since the last one. A key lives at most ``burst / rate`` seconds after its last
  request, so the table holds the keys active in that window;
- ``max_keys`` caps the table whatever the traffic (a flood from a million addresses):
  past it, the keys updated longest ago are forgotten, which lets those clients start over
  with a full burst. A limiter that forgets is a limiter that fails open, never one that
  grows until the process dies. ``evicted`` counts them.
"""

from __future__ import annotations

import time
from typing import Callable, ClassVar, Sequence

#: Smallest table size at which a sweep runs.
MIN_SWEEP = 1024


def interval_us(rate: float) -> int:
    """The emission interval ``T`` of ``rate`` requests per second, in whole microseconds
    (at least 1): what both adapters store and compare, so that they agree exactly."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests per second, not {rate!r}")
    return max(1, round(1_000_000 / rate))


def check_args(burst: int, cost: int) -> None:
    if burst < 1:
        raise ValueError(f"burst must be >= 1, not {burst}")
    if not 1 <= cost <= burst:
        # A cost above the burst could never be allowed: refusing it with a wait would lie.
        raise ValueError(f"cost must be in 1..burst ({burst}), not {cost}")


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class MemoryRateLimiter:
    """See the module docstring. ``clock``: integer microseconds (a monotonic clock by
    default: one process needs no wall time, and a clock stepped back by NTP must not
    lengthen waits); tests pass their own."""

    backend: ClassVar[str] = "memory"
    #: ``hit_now`` answers: the table is in this process, nothing is ever awaited.
    answers_now: ClassVar[bool] = True

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], int] = monotonic_us) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.max_keys = max_keys
        self.clock = clock
        #: key -> TAT (microseconds), in order of last update (oldest first).
        self._tat: dict[str, int] = {}
        self._sweep_at = min(max_keys, MIN_SWEEP)
        self._intervals: dict[float, int] = {}
        self.evicted = 0

    async def hit(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        return self.hit_now(key, rate, burst, cost)

    async def hit_many(self, hits: Sequence[tuple[str, float, int]]) -> list[float]:
        return [self.hit_now(key, rate, burst) for key, rate, burst in hits]

    def hit_now(self, key: str, rate: float, burst: int, cost: int = 1) -> float:
        """``hit``, without the coroutine (it never waits for anything); the port's steps, inlined:
        this runs before every request."""
        if burst < 1 or not 1 <= cost <= burst:
            check_args(burst, cost)
        interval = self._intervals.get(rate)
        if interval is None:
            if len(self._intervals) > 64:  # callers use a few configured rates
                self._intervals.clear()
            interval = self._intervals[rate] = interval_us(rate)
        now = self.clock()
        tats = self._tat
        old = tats.pop(key, None)  # popped and put back: the dict stays in update order
        tat = now if old is None or old < now else old
        new = tat + cost * interval
        if new - burst * interval > now:
            if old is not None:
                tats[key] = old
            return (new - burst * interval - now) / 1_000_000
        tats[key] = new
        if len(tats) > self._sweep_at:
            self._sweep(now)
        return 0.0

    def _sweep(self, now: int) -> None:
        """Drop every key whose TAT has passed; past ``max_keys``, forget the keys updated
        longest ago down to 90% of it (so that the next sweep is far away again)."""
        tats = self._tat
        for key in [k for k, tat in tats.items() if tat <= now]:
            del tats[key]
        if len(tats) > self.max_keys * 0.9:
            excess = len(tats) - int(self.max_keys * 0.9)
            for key in list(_first(tats, excess)):
                del tats[key]
            self.evicted += excess
        self._sweep_at = min(self.max_keys, max(MIN_SWEEP, 2 * len(tats)))

    def __len__(self) -> int:
        return len(self._tat)

    async def close(self) -> None:
        self._tat.clear()


def _first(d: dict[str, int], n: int):
    for i, key in enumerate(d):
        if i >= n:
            return
        yield key
