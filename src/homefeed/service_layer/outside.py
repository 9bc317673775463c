"""Dead letters of the outside world: webhook deliveries and emails whose retries are spent,
shown and retried by ``homefeed dead-letters`` beside the event stream's own.

A stream's dead letter is an *event* a consumer could not apply; these are *messages* the
outside world would not take, kept in their own tables (the consumer applied the event
fine: it recorded the message). ``dead-letters list`` shows them as dead letters of the
consumers ``webhooks`` and ``mailer``, ``retry`` makes them pending again with a fresh
schedule. Their ids are the delivery's (from 2**40) and the mail's (from 2**41), so they
never collide with a stream's dead-letter ids and ``retry --id N`` needs nothing else.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from homefeed.domain.model import Event
from homefeed.ports import DeadLetter
from homefeed.service_layer.consumers import MAILER, WEBHOOKS  # the consumer's name

if TYPE_CHECKING:
    from homefeed.service_layer.services import Homefeed

#: The first id of webhook deliveries and of mails (see the migrations).
DELIVERY_IDS, MAIL_IDS = 1 << 40, 1 << 41


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def dead_letters(hf: Homefeed, consumer: str | None = None) -> list[DeadLetter]:
    from homefeed.bootstrap import mail_store, webhook_store

    out: list[DeadLetter] = []
    if consumer in (None, WEBHOOKS):
        for id_, sub_id, msg_id, type_, body, error, attempts, at in await webhook_store(hf).dead_deliveries():
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = {}
            out.append(DeadLetter(
                id=id_, consumer=WEBHOOKS,
                event=Event(0, type_, {"webhook_id": msg_id, "subscription_id": sub_id, "body": data}),
                reason=error, deliveries=attempts, stream_seq=0, source="delivery", at=_iso(at)))
    if consumer in (None, MAILER):
        for id_, user_id, message_id, error, attempts, at in await mail_store(hf).dead_mails():
            out.append(DeadLetter(
                id=id_, consumer=MAILER,
                event=Event(0, "mail", {"message_id": message_id, "user_id": user_id}),
                reason=error, deliveries=attempts, stream_seq=0, source="delivery", at=_iso(at)))
    return out


def is_outside_id(dead_letter_id: int) -> bool:
    return dead_letter_id >= DELIVERY_IDS


async def retry(hf: Homefeed, dead_letter_id: int) -> DeadLetter:
    """Make a dead delivery or mail pending again (attempts reset). ValueError if none."""
    from homefeed.bootstrap import mail_store, webhook_store

    found = [d for d in await dead_letters(hf) if d.id == dead_letter_id]
    if not found:
        raise ValueError(f"no dead letter has id {dead_letter_id}")
    now = time.time()
    if dead_letter_id >= MAIL_IDS:
        await mail_store(hf).retry_mail(dead_letter_id, now)
    else:
        await webhook_store(hf).retry_delivery(dead_letter_id, now)
    return found[0]


async def retry_all(hf: Homefeed, consumer: str | None = None) -> int:
    n = 0
    for d in await dead_letters(hf, consumer):
        await retry(hf, d.id)
        n += 1
    return n
