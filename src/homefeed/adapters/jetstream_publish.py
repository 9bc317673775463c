"""Publishing onto the JetStream events stream: the outbox relay's side.

Order. The relay publishes a batch pipelined (all messages sent, then the acks awaited) and
still keeps commit order: every message of a batch but the first carries
``Nats-Expected-Last-Msg-Id: <seq of the previous event>``, so if a message is lost (the
connection dropped while it was in flight) every later one of the batch is refused by the
server instead of being stored past the gap, and the batch is resent from the first event
not acknowledged. (The server checks ``Nats-Msg-Id`` first, so resending what was stored
already is answered "duplicate".) The first message of a send has no expectation; its
predecessors were all acknowledged before, so it cannot overtake them.

Every event carries ``Homefeed-Deployment: <id>`` when the adapter knows its deployment, so
a consumer can tell an event of its own deployment from anyone else's.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Sequence

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from homefeed.adapters.jetstream_connection import TRANSIENT, JetStreamConnection
from homefeed.adapters.jetstream_names import DEPLOYMENT_HEADER, EXPECTED_LAST_MSG_ID, MSG_ID
from homefeed.adapters.jetstream_names import token as subject_token
from homefeed.aio import wait_for
from homefeed.domain.errors import Unavailable
from homefeed.domain.model import Event

log = logging.getLogger("homefeed.jetstream")


class JetStreamPublisher(JetStreamConnection):
    """``publish``: events in commit order, each stored exactly once within the duplicate
    window however often the relay resends it."""

    async def _opened(self, nc: NATS) -> None:
        await super()._opened(nc)
        # One inbox for every publish acknowledgement of this connection: a request per
        # message would make a subscription per message.
        self._ack_inbox = nc.new_inbox()
        await nc.subscribe(self._ack_inbox + ".*", cb=self._on_pub_ack)

    def subject_for(self, event_type: str) -> str:
        return f"{self.subject_prefix}.{subject_token(event_type)}"

    def _headers(self, msg_id: str) -> dict[str, str]:
        headers = {MSG_ID: msg_id}
        if self.deployment_id is not None:
            headers[DEPLOYMENT_HEADER] = self.deployment_id
        return headers

    @staticmethod
    def _payload(e: Event) -> bytes:
        return orjson.dumps({"seq": e.seq, "type": e.type, "data": e.data})

    async def _on_pub_ack(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        fut = self._ack_futures.pop(token, None)
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            fut.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            resp = orjson.loads(msg.data)
        except orjson.JSONDecodeError as exc:
            fut.set_exception(exc)
            return
        if "error" in resp:
            fut.set_exception(nats.js.errors.APIError.from_error(resp["error"]))
        else:
            fut.set_result(resp)

    def _forget_ack(self, token: str, _fut: asyncio.Future) -> None:
        self._ack_futures.pop(token, None)

    async def _send(self, subject: str, payload: bytes, headers: dict[str, str]) -> asyncio.Future:
        nc = self._require()
        token = str(next(self._tokens))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._ack_futures[token] = fut
        fut.add_done_callback(functools.partial(self._forget_ack, token))
        try:
            await nc.publish(subject, payload, reply=f"{self._ack_inbox}.{token}", headers=headers)
        except BaseException:
            self._ack_futures.pop(token, None)
            raise
        return fut

    async def publish(self, events: Sequence[Event]) -> int:
        """Publish ``events`` (ascending ``seq``) in order and wait until JetStream stored
        every one. Returns how many were new (the others were duplicates within the window).
        Retries through reconnects for up to ``publish_timeout``; then raises Unavailable
        (nothing is lost: the caller has not acknowledged its source and will resend)."""
        if not events:
            return 0
        async with self._publish_lock:
            await self._ensure_streams()
            return await self._publish_locked(list(events))

    async def _publish_locked(self, events: list[Event]) -> int:
        payloads = [self._payload(e) for e in events]
        subjects = [self.subject_for(e.type) for e in events]
        deadline = time.monotonic() + self.publish_timeout
        stored = 0
        i = 0  # events[:i] are acknowledged by the server
        delay = 0.02
        last_error: BaseException | None = None
        while i < len(events):
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"JetStream did not store events {events[i].seq}..{events[-1].seq} within"
                    f" {self.publish_timeout}s: {last_error!r}"
                )
            if not await self._wait_connected(deadline - time.monotonic()):
                continue
            start = i
            end = min(len(events), start + self.max_in_flight)
            futs: list[asyncio.Future] = []
            try:
                for k in range(start, end):
                    headers = self._headers(str(events[k].seq))
                    if k > start:
                        headers[EXPECTED_LAST_MSG_ID] = str(events[k - 1].seq)
                    futs.append(await self._send(subjects[k], payloads[k], headers))
            except TRANSIENT + (nats.errors.ConnectionClosedError,) as exc:
                last_error = exc  # stop sending; what was sent may still be acknowledged
            # Acknowledgements come back in order; stop at the first failure.
            ack_deadline = time.monotonic() + self.ack_timeout
            failed = False
            try:
                for fut in futs:
                    try:
                        resp = await wait_for(fut, max(0.0, ack_deadline - time.monotonic()))
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        last_error = exc
                        failed = True
                        if isinstance(exc, nats.js.errors.NoStreamResponseError):
                            self._streams_ok = False
                        break
                    if resp.get("duplicate"):
                        self._counts["duplicates"] += 1
                    else:
                        stored += 1
                    i += 1
            finally:
                for fut in futs:
                    if not fut.done():
                        fut.cancel()
                    elif not fut.cancelled():
                        fut.exception()  # mark the refusals after the first failure as seen
            if failed or i < end:
                self._counts["publish_retries"] += 1
                log.info("publish stopped at event %d (%r); resending from there", events[i].seq, last_error)
                if not self._streams_ok:
                    try:
                        await self._ensure_streams()
                    except Unavailable as exc:
                        last_error = exc
                if not _is_chain_break(last_error):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            else:
                delay = 0.02
        self._counts["published"] += stored
        return stored



def _is_chain_break(exc: BaseException | None) -> bool:
    """The server refused a message because its predecessor is not the last one stored:
    resend at once from the first event not acknowledged, no backoff."""
    return isinstance(exc, nats.js.errors.APIError) and "last msg id" in str(exc.description or "").lower()
