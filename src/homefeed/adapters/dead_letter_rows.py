"""What the two outbox streams (SQLite, PostgreSQL) share about their ``dead_letters`` table."""

from __future__ import annotations

from typing import Any

from homefeed.domain.model import Event
from homefeed.ports import DeadLetter, EventStream


def dead_letter_from_row(row: tuple, data: dict[str, Any]) -> DeadLetter:
    """``row`` = (id, consumer, seq, type, data, reason, failures, retry, at); ``data`` is the
    event's data, already decoded (each database returns it in its own form)."""
    id_, consumer, seq, type_, _, reason, failures, retry, at = row
    return DeadLetter(
        id=id_,
        consumer=consumer,
        event=Event(seq, type_, data),
        reason=reason,
        deliveries=failures,
        stream_seq=seq,
        source="consumer",
        at=at,
        retrying=bool(retry),
    )


async def retry_all(stream: EventStream, consumer: str | None = None) -> int:
    """Ask for a retry of every dead letter (of ``consumer``) not already being retried."""
    n = 0
    for dl in await stream.dead_letters(consumer, limit=1_000_000):
        if not dl.retrying:
            await stream.retry_dead_letter(dl.id)
            n += 1
    return n
