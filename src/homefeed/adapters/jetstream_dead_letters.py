"""Dead letters on JetStream: events that kept failing, recorded with the reason, listed and
retried.

The dead-letter stream (``<stream>_DEAD``) captures ``<dead_letter_prefix>.<consumer>``,
where :meth:`dead_letter` puts an event that keeps failing, with the reason; and, as a
safety net, the server's ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.*``
advisories, so that an event the server gave up on after ``max_deliver`` deliveries without
any answer (a worker that crashed on it every time) is reported too, never silently dropped.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import nats.js.errors
import orjson
from nats.aio.msg import Msg

from homefeed.adapters.jetstream_connection import message_of
from homefeed.adapters.jetstream_names import ADVISORY_MAX_DELIVERIES, TARGET_HEADER, token
from homefeed.adapters.jetstream_publish import JetStreamPublisher
from homefeed.domain.model import Event
from homefeed.ports import DeadLetter

log = logging.getLogger("homefeed.jetstream")


class JetStreamDeadLetters(JetStreamPublisher):
    """``dead_letter``, ``dead_letters``, ``retry_dead_letter(s)``."""

    def dead_letter_subject(self, consumer: str) -> str:
        return f"{self.dead_letter_prefix}.{token(consumer)}"

    async def dead_letter(self, consumer: str, event: Event, reason: str) -> None:
        """Record ``event`` with ``reason`` in the dead-letter stream, then terminate it
        for ``consumer`` (no more redeliveries). Reported by :meth:`dead_letters`."""
        await self._dead_letter_msg(consumer, message_of(event), event, reason)

    async def _dead_letter_msg(self, consumer: str, m: Msg, event: Event | None, reason: str) -> None:
        md = m.metadata
        body: dict[str, Any] = {
            "consumer": consumer,
            "reason": reason,
            "deliveries": md.num_delivered,
            "stream_seq": md.sequence.stream,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "event": (
                {"seq": event.seq, "type": event.type, "data": event.data}
                if event is not None
                else {"raw": m.data.decode("utf-8", "replace")}
            ),
        }
        headers = self._headers(f"dl.{token(consumer)}.{md.sequence.stream}")
        await self._ensure_streams()
        await self._call(
            "dead-letter publish",
            lambda: self._js.publish(self.dead_letter_subject(consumer), orjson.dumps(body), headers=headers),
        )
        await self._reply_all(f"term for {consumer}", [m], b"+TERM")
        self._counts["dead_lettered"] += 1
        log.error("event %s dead-lettered for %s: %s", body["event"].get("seq"), consumer, reason)

    async def dead_letters(self, consumer: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters, oldest first (of ``consumer`` only, if given)."""
        await self._ensure_streams()
        out: list[DeadLetter] = []
        seq = 1
        while len(out) < limit:
            raw = await self._call("read dead letters", functools.partial(self._next_dead, seq))
            if raw is None:
                break
            seq = int(raw.seq) + 1
            dl = await self._decode_dead(raw)
            if dl is not None and (consumer is None or dl.consumer == consumer):
                out.append(dl)
        return out

    async def _next_dead(self, seq: int) -> Any:
        try:
            return await self._js.get_msg(self.dead_letter_stream, seq=seq, subject=">", next=True)
        except nats.js.errors.NotFoundError:
            return None

    async def _decode_dead(self, raw: Any) -> DeadLetter | None:
        try:
            body = orjson.loads(raw.data or b"{}")
        except orjson.JSONDecodeError:
            return None
        at = raw.time.isoformat() if raw.time else ""
        if raw.subject.startswith(ADVISORY_MAX_DELIVERIES + "."):
            stream_seq = int(body.get("stream_seq", 0))
            event = None
            try:
                m = await self._js.get_msg(self.stream, seq=stream_seq)
                e = orjson.loads(m.data)
                event = Event(int(e["seq"]), str(e["type"]), e.get("data") or {})
            except (nats.js.errors.NotFoundError, orjson.JSONDecodeError, KeyError, ValueError):
                pass
            return DeadLetter(
                id=int(raw.seq),
                consumer=str(body.get("consumer", "")),
                event=event,
                reason=f"not acknowledged after {body.get('deliveries')} deliveries (max_deliver)",
                deliveries=int(body.get("deliveries", 0)),
                stream_seq=stream_seq,
                source="max_deliver",
                at=str(body.get("timestamp", at)),
            )
        e = body.get("event") or {}
        event = Event(int(e["seq"]), str(e["type"]), e.get("data") or {}) if "seq" in e else None
        return DeadLetter(
            id=int(raw.seq),
            consumer=str(body.get("consumer", "")),
            event=event,
            reason=str(body.get("reason", "")),
            deliveries=int(body.get("deliveries", 0)),
            stream_seq=int(body.get("stream_seq", 0)),
            source="consumer",
            at=str(body.get("at", at)),
        )

    async def retry_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        """Publish the event again on the events subject, for its consumer only (a new
        ``Nats-Msg-Id``; the other consumers skip it), then delete the dead letter. The
        retried event comes after newer events: handlers are idempotent, not order-blind,
        so retry after fixing the cause and check the audit."""
        raw = await self._call(
            "read dead letter", lambda: self._js.get_msg(self.dead_letter_stream, seq=dead_letter_id)
        )
        dl = await self._decode_dead(raw)
        if dl is None or dl.event is None:
            raise ValueError(f"dead letter {dead_letter_id} has no event to retry")
        headers = self._headers(f"retry.{self.dead_letter_stream}.{dead_letter_id}")
        headers[TARGET_HEADER] = dl.consumer
        payload = self._payload(dl.event)
        subject = self.subject_for(dl.event.type)
        await self._call("republish dead letter", lambda: self._js.publish(subject, payload, headers=headers))

        async def delete() -> None:
            try:
                await self._js.delete_msg(self.dead_letter_stream, dead_letter_id)
            except nats.js.errors.NotFoundError:
                pass

        await self._call("delete dead letter", delete)
        return dl

    async def retry_dead_letters(self, consumer: str | None = None) -> int:
        n = 0
        for dl in await self.dead_letters(consumer):
            if dl.event is not None:
                await self.retry_dead_letter(dl.id)
                n += 1
        return n

