"""Webhooks, the rules that need no I/O: event names, the retry schedule and its jitter,
Standard Webhooks signatures and secrets, which targets may be reached (SSRF), and whether
an event was committed after a subscription was added.

Standard Webhooks (https://www.standardwebhooks.com): a POST whose headers are
``webhook-id`` (the same on every attempt: receivers deduplicate by it),
``webhook-timestamp`` (unix seconds of the attempt) and ``webhook-signature``: space-separated
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per secret in force (two for 24 h
after ``rotate-secret``). A secret is ``whsec_<base64 of the key bytes>``: the key is the
base64-decoded part, as the ``standardwebhooks`` library reads it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import re
import secrets
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import urlsplit

from homefeed.domain.errors import InvalidInput

#: The event types a subscription may ask for (the issue's names, exactly).
STATUS_CREATED = "status.created"
STATUS_DELETED = "status.deleted"
ACCOUNT_CREATED = "account.created"
FOLLOW_CREATED = "follow.created"
FOLLOW_DELETED = "follow.deleted"
FAVOURITE_CREATED = "favourite.created"
REBLOG_CREATED = "reblog.created"
MENTION_CREATED = "mention.created"
EVENT_TYPES = (STATUS_CREATED, STATUS_DELETED, ACCOUNT_CREATED, FOLLOW_CREATED, FOLLOW_DELETED,
               FAVOURITE_CREATED, REBLOG_CREATED, MENTION_CREATED)

DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
#: Largest share of a retry delay added or taken at random (so that retries of many
#: deliveries that failed together do not come back together).
JITTER = 0.10
#: Seconds one attempt may take, connection included.
ATTEMPT_TIMEOUT = 15.0
#: How long the previous secret keeps signing after ``rotate-secret``.
ROTATION_OVERLAP_SECONDS = 24 * 3600.0
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d)\s*$")


def parse_retry_schedule(text: str) -> tuple[float, ...]:
    """``"5s,5m,30m,2h"`` -> delays in seconds. Fractions are fine (``0.2s``). N delays mean
    N + 1 attempts. Raises ValueError naming the format."""
    out = []
    for part in text.split(","):
        m = _DELAY.match(part)
        if m is None:
            raise ValueError(f"{text!r} is not a retry schedule: expected comma-separated delays"
                             " such as \"5s,5m,30m,2h\" (units ms, s, m, h, d; fractions allowed)")
        out.append(float(m.group(1)) * _UNITS[m.group(2)])
    return tuple(out)


def retry_delay(schedule: Sequence[float], failed_attempts: int, rng: random.Random | None = None) -> float | None:
    """Seconds to wait after the ``failed_attempts``-th failure before the next attempt,
    jittered by at most ``JITTER``; None when the schedule is spent (dead-letter it)."""
    if failed_attempts > len(schedule):
        return None
    base = schedule[failed_attempts - 1]
    r = (rng or random).uniform(-JITTER, JITTER)
    return max(0.0, base * (1.0 + r))


# -- secrets and signatures --------------------------------------------------------------------
def new_secret() -> str:
    """``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64 part, decoded)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>``."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_header(secrets_in_force: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_in_force)


# -- targets (SSRF) --------------------------------------------------------------------------------
def address_allowed(ip: str) -> bool:
    """Whether a webhook may connect to ``ip``: a public unicast address. Loopback, private
    (RFC 1918, ULA), link-local, multicast, unspecified, reserved, shared (CGNAT) and
    IPv4-mapped forms of those are refused."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if (addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_multicast
            or addr.is_unspecified or addr.is_reserved):
        return False
    if isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.ip_network("100.64.0.0/10"):
        return False
    return addr.is_global


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart: where to connect and what to ask for."""

    scheme: str
    host: str  # without brackets
    port: int
    path: str  # path and query, at least "/"

    @property
    def host_header(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return h if self.port == default else f"{h}:{self.port}"

    @property
    def origin(self) -> str:
        """The endpoint the concurrency limit and the circuit breaker count by."""
        return f"{self.scheme}://{self.host_header}"


def parse_target(url: str) -> Target:
    """A webhook URL: ``http``/``https``, a host, no credentials, no fragment. Raises
    InvalidInput (a 4xx) otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"the webhook URL must be a string of 1-{MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput("the webhook URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"the webhook URL is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("the webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise InvalidInput("the webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("the webhook URL must not carry credentials (user:password@)")
    if parts.fragment:
        raise InvalidInput("the webhook URL must not have a #fragment")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def parse_events(raw: str | Sequence[str]) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` -> the event types, deduplicated in order. InvalidInput
    names the known ones."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput("events must be strings")
        name = item.strip()
        if not name:
            continue
        if name not in EVENT_TYPES:
            raise InvalidInput(f"unknown webhook event {name!r}; events: {', '.join(EVENT_TYPES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise InvalidInput(f"give at least one event: {', '.join(EVENT_TYPES)}")
    return tuple(out)


# -- "takes effect for events committed after it returns" ------------------------------------------
def committed_after(marker: str, event_seq: int) -> bool:
    """Whether the event ``event_seq`` was committed after the subscription whose creation
    ``marker`` this is. Markers: ``seq:N`` (SQLite: the newest outbox seq when it was added;
    seq is commit order) or ``snap:xmin:xmax:xip,...`` (PostgreSQL: the snapshot of the
    adding transaction; an event whose transaction (``Event.seq >> 16``) that snapshot sees
    committed before it)."""
    kind, _, rest = marker.partition(":")
    if kind == "seq":
        return event_seq > int(rest)
    if kind == "snap":
        xmin_s, xmax_s, xip_s = (rest.split(":") + ["", "", ""])[:3]
        xid = event_seq >> 16
        xmin, xmax = int(xmin_s), int(xmax_s)
        in_progress = {int(x) for x in xip_s.split(",") if x}
        visible = xid < xmin or (xid < xmax and xid not in in_progress)
        return not visible
    return True


def webhook_id(subscription_id: int, event_seq: int, part: int = 0) -> str:
    """The ``webhook-id`` of one message: the same on every attempt, after any crash and any
    redelivery of its event (derived from the event and the subscription only)."""
    return f"msg_{subscription_id}_{event_seq}" + (f"_{part}" if part else "")


# -- records ------------------------------------------------------------------------------------
#: Delivery states: ``pending`` (waiting for its next attempt), ``delivered`` (a 2xx),
#: ``dead`` (the schedule is spent: a dead letter, ``homefeed dead-letters retry`` hands it
#: back), ``gone`` (the endpoint answered 410: the subscription is disabled).
PENDING, DELIVERED, DEAD, GONE = "pending", "delivered", "dead", "gone"


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: float
    #: Where the outbox stood when it was added (``committed_after``).
    after: str = "seq:0"
    #: The secret before the last rotation, and until when it still signs.
    previous_secret: str | None = None
    previous_until: float | None = None
    enabled: bool = True
    disabled_reason: str | None = None

    def secrets_in_force(self, now: float) -> list[str]:
        out = [self.secret]
        if self.previous_secret and self.previous_until is not None and now < self.previous_until:
            out.append(self.previous_secret)
        return out

    def public(self, with_secret: bool = False) -> dict:
        """What ``webhooks list`` prints (the secret only when just made: ``add``)."""
        d: dict = {"id": str(self.id), "url": self.url, "events": list(self.events)}
        if with_secret:
            d["secret"] = self.secret
            return d
        d["enabled"] = self.enabled
        if self.disabled_reason:
            d["disabled_reason"] = self.disabled_reason
        d["created_at"] = self.created_at
        if self.previous_until is not None:
            d["previous_secret_until"] = self.previous_until
        return d


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One message to one subscription, made by the ``webhooks`` consumer from one event."""

    subscription_id: int
    event_seq: int
    #: Distinguishes several messages of one event to one subscription (a post mentioning
    #: several accounts: one ``mention.created`` each, by the mentioned account's id); 0 else.
    part: int
    type: str
    body: bytes

    @property
    def msg_id(self) -> str:
        return webhook_id(self.subscription_id, self.event_seq, self.part)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery claimed for an attempt, with what the attempt needs."""

    id: int
    subscription_id: int
    msg_id: str
    type: str
    body: bytes
    #: Attempts made before this one.
    attempts: int
    url: str
    secrets: tuple[str, ...]
