"""What both outbox streams (SQLite, PostgreSQL) share as ``EventStream`` adapters: the
capabilities of the port that a bus has and the outbox read in place has no use for, each
implemented honestly (and said why), plus ``replay_from`` as a move of the stored offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Sequence

from homefeed.domain.errors import InvalidInput
from homefeed.domain.model import Event


class OutboxStreamBase:
    """Base of the outbox ``EventStream`` adapters: ``seek_before`` is theirs."""

    backend: ClassVar[str] = "outbox"
    #: No deadline: an event stays in hand until it is acknowledged.
    redelivery_after: float | None = None

    async def open(self) -> None:
        """Nothing to open: the stream reads the database the record store opened."""

    async def close(self) -> None:
        """Nothing to close: the record store closes the database."""

    async def nak(self, consumer: str, events: Sequence[Event], delay: float | None = None) -> None:
        """Nothing to give back: the next fetch starts after the last acknowledged event,
        so every event not acknowledged comes again by itself (the consumer paces its own
        retries, so ``delay`` needs no keeping)."""

    async def in_progress(self, events: Sequence[Event]) -> None:
        """Nothing to postpone: the outbox has no acknowledgement deadline; an event stays
        in hand until it is acknowledged."""

    async def take_delivered(self, consumer: str) -> list[Event]:
        """Always empty: the outbox delivers nothing ahead of a fetch."""
        return []

    async def stats(self) -> dict[str, int]:
        """Empty: what there is to know (the lag of each consumer) is ``lag``."""
        return {}

    async def seek_before(self, consumer: str, seq: int) -> None:
        """Move ``consumer`` so that the next event it gets is the one with ``Event.seq``
        ``seq`` (0: the first event)."""
        raise NotImplementedError

    async def replay_from(
        self, consumer: str, *, event_seq: int | None = None, start_time: datetime | None = None
    ) -> dict[str, Any]:
        """Move the stored offset of ``consumer`` before ``event_seq`` (``seek_before``).
        The outbox keeps no time index: ``start_time`` is refused."""
        if start_time is not None:
            raise InvalidInput("the outbox cannot start from a time: give an event id")
        if event_seq is None or event_seq < 0:
            raise InvalidInput("give the event id to apply again from (0: every event)")
        await self.seek_before(consumer, event_seq)
        return {"event_seq": event_seq}
