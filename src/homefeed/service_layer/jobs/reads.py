"""The durable home-read counter: nothing else records reads per hour across processes
(the metrics are per process and in memory), and the load report needs reads/s over the
last hour and day, the digest who has stopped reading.

The hot path only increments two dicts in this process's memory; every ``FLUSH_SECONDS``
(and at close) they are added to ``home_reads`` (per hour) and ``account_activity`` (last
read per account) in ONE write: a cost per minute, not per read. A crash loses at most the
last minute's counts, which a load figure can afford.
"""

from __future__ import annotations

import asyncio
import logging
import time

from homefeed.service_layer.jobs.records import JobRecords

log = logging.getLogger("homefeed.jobs")

FLUSH_SECONDS = 60.0


class ReadCounter:
    def __init__(self) -> None:
        self.hours: dict[int, int] = {}
        self.last_read: dict[int, float] = {}

    def home_read(self, user_id: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        hour = int(now // 3600)
        self.hours[hour] = self.hours.get(hour, 0) + 1
        self.last_read[user_id] = now

    async def flush(self, records: JobRecords) -> None:
        hours, last = self.hours, self.last_read
        if not hours and not last:
            return
        self.hours, self.last_read = {}, {}
        try:
            await records.add_reads(hours, last)
        except Exception:
            # Put them back: the next flush tries again.
            for h, n in hours.items():
                self.hours[h] = self.hours.get(h, 0) + n
            for u, t in last.items():
                self.last_read[u] = max(t, self.last_read.get(u, 0.0))
            raise

    async def flush_forever(self, records: JobRecords, every: float = FLUSH_SECONDS) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.flush(records)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be down a while: counted again later
                log.warning("recording home reads failed: %s", exc)
