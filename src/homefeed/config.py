"""Settings: one dataclass, filled from defaults, then ``HOMEFEED_*`` variables, then flags.

Every knob a deployment may turn lives here, so the README's configuration table and this
file can be compared line by line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "HOMEFEED_"


@dataclass(frozen=True)
class Settings:
    #: Where the embedded profile keeps its SQLite file.
    data_dir: Path = Path("./data")
    #: ``postgresql://...``: system of record and search index on PostgreSQL (scale-out).
    #: Unset: SQLite in ``data_dir``.
    database_url: str = ""
    #: ``redis://...``: timeline cache and post cache on Redis. Unset: in process memory.
    cache_url: str = ""
    #: ``nats://...``: event stream on NATS JetStream. Unset: the outbox, read in-process.
    bus_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    #: Authors with at least this many followers are not fanned out; their posts are pulled
    #: and merged when a follower reads.
    celebrity_threshold: int = 10_000
    #: ``hybrid`` (push to followers, pull celebrities), ``push`` (fan out every post: no
    #: celebrities) or ``pull`` (no fan-out: every read merges the followees' posts from the
    #: record store, Twitter's approach 1). For comparing strategies; keep ``hybrid``.
    feed_strategy: str = "hybrid"
    #: Followers whose timeline has not been read for this many days are skipped by fan-out
    #: (their cached timeline is dropped) and rebuilt from the record store on the next read.
    inactive_days: float = 14.0
    #: Cached home timelines keep at most this many newest post ids.
    timeline_cap: int = 800
    #: Maximum post length in Unicode code points.
    max_post_length: int = 500
    #: Largest accepted request body in bytes.
    max_body_bytes: int = 64 * 1024
    #: How many home timelines the in-process cache keeps before evicting the least recently
    #: read (an evicted timeline is rebuilt on its next read).
    cache_max_timelines: int = 100_000
    #: How many hydrated posts the in-process post cache keeps.
    cache_max_posts: int = 200_000
    #: SQLite ``synchronous`` pragma: FULL survives power loss, NORMAL survives process crash.
    sqlite_synchronous: str = "FULL"
    #: Most writes one group commit may hold.
    group_commit_max: int = 512
    #: Hours a POST's ``Idempotency-Key`` and its first answer are kept: a retry with the
    #: same key within this time gets that answer and writes nothing.
    idempotency_hours: float = 24.0
    #: Log level for the ``homefeed`` logger.
    log_level: str = "INFO"
    #: Requests per bearer token on ``/v1/...``: ``"100/s"``, ``"6000/min"``, ``"100/s burst
    #: 200"`` (see ``parse_rate_limit``); ``""`` or ``"0"``: no limit. Off by default: see
    #: the README's "Rate limits" for why, and the values to set in production.
    rate_limit_per_token: str = ""
    #: The same per client address (an IPv6 address counts by its /64). Behind a proxy, set
    #: ``forwarded_allow_ips`` too, or every client is the proxy's one address.
    rate_limit_per_address: str = ""
    #: Proxies whose ``X-Forwarded-For`` gives the client address (comma-separated IPs or
    #: networks, ``*`` for any): uvicorn's ``forwarded_allow_ips``, with its default.
    forwarded_allow_ips: str = "127.0.0.1,::1"
    #: ``open``: anyone may sign up through ``POST /api/v1/accounts``; ``closed``: nobody
    #: (``POST /v1/users`` is the operator's own door and stays open).
    registrations: str = "open"
    #: The OAuth ``password`` grant (Mastodon.py's and toot's log-in); ``0`` turns it off.
    oauth_password_grant: bool = True
    #: Failed log-ins allowed per account and per address before each further try waits:
    #: ``"5/min burst 10"`` (the rate-limit syntax). Always on: a guess must never be cheap.
    login_limit: str = "10/min burst 10"
    #: Sign-ups (``POST /api/v1/accounts``) per client address, applied when a rate limit is
    #: configured (``rate_limit_per_address`` or ``rate_limit_per_token``).
    signup_limit: str = "20/hour burst 20"
    #: Origins allowed to call ``/api/*``, ``/oauth/token`` and ``/oauth/revoke`` from a
    #: browser (CORS): ``*`` (any, as Mastodon) or a comma-separated list of origins.
    cors_origins: str = "*"
    #: Seconds between heartbeat comments (``:thump``) on an idle streaming connection (SSE),
    #: and between WebSocket pings (a client that has not answered one by the next is
    #: closed); Mastodon's clients expect one at least every 15 s.
    stream_heartbeat_seconds: float = 10.0
    #: Live events queued for one streaming connection before it counts as too far behind
    #: and is disconnected (a slow client never slows the others, nor grows without limit).
    stream_queue: int = 200
    #: Run the scheduled jobs (trends, digest, audit, purge, load report) in this process;
    #: ``0`` turns them off here (another process still runs each slot once).
    scheduler: bool = True
    #: The address people and receivers reach this service at (``https://social.example``):
    #: the URLs in webhook payloads and the unsubscribe link of emails. Unset: the address
    #: it listens on (``http://HOST:PORT``).
    public_url: str = ""
    #: Delays between the attempts of a webhook delivery (N delays: N + 1 attempts), each
    #: jittered by up to 10%; fractions allowed (``0.2s``). After the last: a dead letter.
    webhook_retry_schedule: str = "5s,5m,30m,2h,5h,10h,10h"
    #: Let webhooks reach loopback, private, link-local and multicast addresses (tests, a
    #: receiver on the same private network). Off: such targets are refused, at ``add`` and
    #: at every delivery after DNS resolution.
    webhooks_allow_private: bool = False
    #: ``smtp://[user:pass@]host:port[?starttls=1|tls=1]``: where notification emails go.
    #: Unset (or no ``mail_from``): no email is ever attempted.
    smtp_url: str = ""
    #: The From address of notification emails.
    mail_from: str = ""
    #: After a notification email to someone, further notifications within this many
    #: seconds go out together in one email; 0: one email each.
    mail_bundle_seconds: float = 300.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def database_path(self) -> Path:
        return Path(self.data_dir) / "homefeed.db"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, overridden by ``HOMEFEED_<FIELD>`` variables, overridden by ``overrides``
        (the command-line flags). ``None`` overrides are ignored so unset flags fall through."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        for k, v in overrides.items():
            if v is not None:
                values[k] = v
        s = cls(**values)
        s.validate()
        return s

    def validate(self) -> None:
        problems = []
        if self.celebrity_threshold < 1:
            problems.append("celebrity_threshold must be >= 1")
        if self.timeline_cap < 1:
            problems.append("timeline_cap must be >= 1")
        if self.max_post_length < 1:
            problems.append("max_post_length must be >= 1")
        if not self.inactive_days > 0 or self.inactive_days == float("inf"):
            problems.append("inactive_days must be a finite number > 0")
        if not self.idempotency_hours > 0 or self.idempotency_hours == float("inf"):
            problems.append("idempotency_hours must be a finite number > 0")
        if not 0 <= self.port <= 65535:
            problems.append("port must be in 0..65535")
        if not 0 < self.stream_heartbeat_seconds <= 3600:
            problems.append("stream_heartbeat_seconds must be a number of seconds in (0, 3600]")
        for name in ("max_body_bytes", "cache_max_timelines", "cache_max_posts", "group_commit_max",
                     "stream_queue"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.registrations not in ("open", "closed"):
            problems.append("registrations must be open or closed")
        if self.feed_strategy not in ("hybrid", "push", "pull"):
            problems.append("feed_strategy must be hybrid, push or pull")
        if self.sqlite_synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            problems.append("sqlite_synchronous must be FULL, NORMAL or EXTRA")
        problems += _rate_limit_problems(self)
        problems += _outside_world_problems(self)
        if problems:
            raise ValueError("invalid configuration: " + "; ".join(problems))

    @property
    def login_rate(self) -> "RateLimit":
        limit = parse_rate_limit(self.login_limit)
        return limit if limit is not None else RateLimit(10, 60, 10, "10/min")

    @property
    def token_limit(self) -> "RateLimit | None":
        return parse_rate_limit(self.rate_limit_per_token)

    @property
    def address_limit(self) -> "RateLimit | None":
        return parse_rate_limit(self.rate_limit_per_address)


def _coerce(name: str, type_: Any, raw: str) -> Any:
    t = str(type_)
    try:
        if t == "bool":
            return raw.strip().lower() not in ("0", "false", "no", "off")
        if "int" in t and "float" not in t:
            return int(raw)
        if "float" in t:
            return float(raw)
        if "Path" in t:
            return Path(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: {exc}") from None


# ------------------------------------------------------------------------------------------
# rate limits
# ------------------------------------------------------------------------------------------
_PERIODS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}
_RATE_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*(?:burst\s+(\d+)\s*)?$")
RATE_LIMIT_FORMAT = '"<count>/<s|min|h|day> [burst <n>]", e.g. "100/s", "6000/min burst 500"; "" or "0": off'


@dataclass(frozen=True)
class RateLimit:
    """``count`` requests per ``period`` seconds, of which ``burst`` may come at once."""

    count: int
    period: int
    burst: int
    #: As written in the settings, for messages.
    text: str

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.count / self.period


def parse_rate_limit(text: str) -> RateLimit | None:
    """``"100/s"``, ``"6000/min"``, ``"100/s burst 200"`` (the burst defaults to the count
    per period: a client idle for a period may send a period's worth at once); ``""`` or
    ``"0"``: None (no limit). Raises ValueError naming the format."""
    raw = text.strip().lower()
    if raw in ("", "0", "off"):
        return None
    m = _RATE_LIMIT.match(raw)
    if m is None or m.group(2) not in _PERIODS:
        raise ValueError(f"{text!r} is not a rate limit; expected {RATE_LIMIT_FORMAT}")
    count, period = int(m.group(1)), _PERIODS[m.group(2)]
    burst = int(m.group(3)) if m.group(3) is not None else count
    if count < 1:
        raise ValueError(f"{text!r}: the count must be >= 1 (or the whole value \"0\" for no limit)")
    if burst < 1:
        raise ValueError(f"{text!r}: the burst must be >= 1")
    if count / period > 1_000_000:
        raise ValueError(f"{text!r}: more than 1,000,000 requests per second is no limit; use \"0\"")
    return RateLimit(count, period, burst, " ".join(text.split()))


def _rate_limit_problems(s: "Settings") -> list[str]:
    problems = []
    for name in ("rate_limit_per_token", "rate_limit_per_address"):
        try:
            parse_rate_limit(getattr(s, name))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    for item in s.forwarded_allow_ips.split(","):
        item = item.strip()
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            problems.append(f"forwarded_allow_ips: {item!r} is not an IP address or network "
                            "(comma-separated, e.g. \"127.0.0.1,10.0.0.0/8\", or \"*\")")
    return problems


def _outside_world_problems(s: "Settings") -> list[str]:
    """Webhooks and email settings (issue 12)."""
    from homefeed.domain.webhooks import parse_retry_schedule

    problems = []
    try:
        parse_retry_schedule(s.webhook_retry_schedule)
    except ValueError as exc:
        problems.append(f"webhook_retry_schedule: {exc}")
    if s.public_url and not re.match(r"^https?://[^/\s]+", s.public_url):
        problems.append("public_url must be an http:// or https:// URL")
    if not s.mail_bundle_seconds >= 0 or s.mail_bundle_seconds == float("inf"):
        problems.append("mail_bundle_seconds must be a finite number >= 0")
    if s.smtp_url:
        from homefeed.adapters.smtp_mail import parse_smtp_url

        try:
            parse_smtp_url(s.smtp_url)
        except ValueError as exc:
            problems.append(f"smtp_url: {exc}")
    return problems
