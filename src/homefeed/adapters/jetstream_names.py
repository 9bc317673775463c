"""Names and wire constants of the JetStream event stream, and how a deployment's names are
derived (see the README's "Scale-out profile" for the layout on the server).

A deployment's stream, subjects and dead-letter stream are derived from its deployment id
(stored in the database by ``homefeed migrate``) so that two deployments on one NATS server
never share a stream, and so never a durable consumer: JetStream scopes a consumer name to
its stream, so ``fanout`` on one deployment's stream and ``fanout`` on another's are two
consumers. URL parameters override a derived name one by one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs

from homefeed.domain.deployment import Deployment
from homefeed.domain.errors import WrongDeployment

#: The names of a deployment without an id (tools and tests that build the adapter without
#: a database) and of a database upgraded while it had events (``legacy_bus_names``).
LEGACY_STREAM = "HOMEFEED"
LEGACY_SUBJECT_PREFIX = "homefeed.events"

#: A republished dead letter is meant for one consumer only; the others skip (ack) it.
TARGET_HEADER = "Homefeed-Consumer"
#: The deployment that published an event: a worker of another deployment never applies it.
DEPLOYMENT_HEADER = "Homefeed-Deployment"
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
ADVISORY_MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
#: The header of JetStream's status messages (the end of a pull: 404, 408).
STATUS_HEADER = "Status"

#: The events stream's description; its last word is the deployment that owns the stream.
#: (A description, not stream metadata: metadata needs nats-server >= 2.10.)
_DESCRIPTION = "homefeed outbox events, in commit order"
_OWNER = re.compile(r"; deployment ([0-9A-Za-z_-]+)$")

_BAD_TOKEN = re.compile(r"[\s.*>]")

#: The query parameters of HOMEFEED_BUS_URL and how each is read.
URL_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "stream": str,
    "subject_prefix": str,
    "replicas": int,
    "max_deliver": int,
    "ack_wait": float,
    "duplicate_window": float,
    "max_age": float,
}


def token(s: str) -> str:
    """A string usable as one subject token / consumer name."""
    return _BAD_TOKEN.sub("_", s) or "_"


def checked_name(consumer: str) -> str:
    if not consumer or _BAD_TOKEN.search(consumer):
        raise ValueError(f"invalid consumer name {consumer!r}: no spaces, '.', '*' or '>'")
    return consumer


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """``nats://h1:4222[,nats://h2:4222...][?k=v&...]`` as (servers, parameters). An unknown
    parameter is an error: a typo must not silently fall back to a default name."""
    base, _, query = url.partition("?")
    kw: dict[str, Any] = {}
    for key, values in parse_qs(query).items():
        if key not in URL_PARAMETERS:
            raise ValueError(
                f"unknown parameter {key!r} in the NATS URL; known: {', '.join(URL_PARAMETERS)}"
            )
        kw[key] = URL_PARAMETERS[key](values[-1])
    return base, kw


@dataclass(frozen=True)
class StreamNames:
    """Where one deployment's events live on the server."""

    stream: str
    subject_prefix: str
    dead_letter_prefix: str
    dead_letter_stream: str

    @classmethod
    def make(
        cls,
        stream: str,
        subject_prefix: str,
        dead_letter_prefix: str | None = None,
        dead_letter_stream: str | None = None,
    ) -> "StreamNames":
        subject_prefix = subject_prefix.rstrip(".")
        if dead_letter_prefix is None:
            head, _, _ = subject_prefix.rpartition(".")
            dead_letter_prefix = f"{head}.dead" if head else f"{subject_prefix}_dead"
        return cls(
            stream=stream,
            subject_prefix=subject_prefix,
            dead_letter_prefix=dead_letter_prefix.rstrip("."),
            dead_letter_stream=dead_letter_stream or f"{stream}_DEAD",
        )


def default_names(deployment: Deployment | None) -> tuple[str, str]:
    """(stream, subject prefix) of a deployment when the URL names neither:
    ``HOMEFEED_<ID>`` and ``homefeed.<id>.events``; the legacy names for no deployment or
    for a database upgraded while it had events."""
    if deployment is None or deployment.legacy_bus_names:
        return LEGACY_STREAM, LEGACY_SUBJECT_PREFIX
    d = token(deployment.id)
    return f"HOMEFEED_{d.upper()}", f"homefeed.{d}.events"


def names_for(deployment: Deployment | None, explicit: dict[str, str | None]) -> StreamNames:
    """The names to use: each explicit one (URL parameter or constructor argument, None
    when not given) wins, the rest derive from the deployment."""
    stream, prefix = default_names(deployment)
    return StreamNames.make(
        explicit.get("stream") or stream,
        explicit.get("subject_prefix") or prefix,
        explicit.get("dead_letter_prefix"),
        explicit.get("dead_letter_stream"),
    )


def description(deployment_id: str | None) -> str:
    """The events stream's description, claiming it for ``deployment_id``."""
    return f"{_DESCRIPTION}; deployment {deployment_id}" if deployment_id else _DESCRIPTION


def owner(stream_description: str | None) -> str | None:
    """The deployment that claimed a stream (None: unclaimed, e.g. created before ids)."""
    m = _OWNER.search(stream_description or "")
    return m.group(1) if m else None


__all__ = [
    "ADVISORY_MAX_DELIVERIES", "DEPLOYMENT_HEADER", "EXPECTED_LAST_MSG_ID", "LEGACY_STREAM",
    "LEGACY_SUBJECT_PREFIX", "MSG_ID", "STATUS_HEADER", "TARGET_HEADER", "URL_PARAMETERS",
    "StreamNames", "WrongDeployment", "checked_name", "default_names", "description",
    "names_for", "owner", "parse_url", "token",
]
