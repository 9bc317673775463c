"""EventStream of the scale-out profile: a NATS JetStream stream with durable pull consumers.

One class assembled from one module per job (each a subclass of the one before):

- ``jetstream_names``: the names on the server, derived from the deployment id; URL parameters
- ``jetstream_connection``: connection, reconnects, stream and consumer setup
- ``jetstream_publish``: publishing in commit order (the outbox relay's side)
- ``jetstream_dead_letters``: dead letters and their retry
- ``jetstream_consume``: fetch, ack, nak, in-progress, the hand-back at stop
- ``jetstream_admin``: lag, counters, stream state, rewind (replay)

The layout on the server, the URL parameters and the scaling notes are in the README
("Scale-out profile").
"""

from __future__ import annotations

from typing import Any

from homefeed.adapters.jetstream_admin import JetStreamAdmin
from homefeed.adapters.jetstream_names import (
    DEPLOYMENT_HEADER,
    TARGET_HEADER,
    WrongDeployment,
    parse_url,
)

__all__ = ["DEPLOYMENT_HEADER", "TARGET_HEADER", "JetStreamEventStream", "WrongDeployment"]


class JetStreamEventStream(JetStreamAdmin):
    """EventStream port on NATS JetStream, plus ``publish`` (used by the outbox relay),
    ``nak``, ``dead_letter`` and the dead-letter administration."""

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> "JetStreamEventStream":
        """Build from ``HOMEFEED_BUS_URL``: ``nats://h1:4222[,nats://h2:4222...]`` with
        optional query parameters (``jetstream_names.URL_PARAMETERS``), e.g.
        ``nats://a:4222,nats://b:4222,nats://c:4222?replicas=3``. ``overrides`` are
        constructor arguments, such as ``deployment``."""
        base, kw = parse_url(url)
        kw.update(overrides)
        return cls(base, **kw)
