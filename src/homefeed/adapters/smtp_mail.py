"""Sending one email over SMTP: ``HOMEFEED_SMTP_URL=smtp://[user:pass@]host:port[?starttls=1|tls=1]``.

Why ``smtplib`` in a thread rather than aiosmtplib: notification mail is a trickle (at most
one mail per person per bundle window), the standard library's client is complete
(STARTTLS, implicit TLS, AUTH) and needs no new runtime dependency, and a thread per send
keeps the event loop free. One connection per mail: simple, and nothing to keep alive.

Outcomes: returns when the server accepted the message; ``PermanentMailError`` for a 5xx
answer (the server will never take it: dead-lettered at once), ``MailError`` for anything
else (no connection, timeout, 4xx: retried on the schedule)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

#: Seconds one SMTP conversation may take.
TIMEOUT = 30.0


class MailError(Exception):
    """The mail was not accepted this time (retry later)."""


class PermanentMailError(MailError):
    """The server refused the mail for good (5xx)."""


@dataclass(frozen=True)
class SmtpUrl:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    tls: bool = False


def _flag(q: dict[str, list[str]], name: str) -> bool:
    v = (q.get(name) or ["0"])[-1].strip().lower()
    if v not in ("0", "1", "true", "false", "yes", "no", ""):
        raise ValueError(f"{name}={v!r}: use 1 or 0")
    return v in ("1", "true", "yes")


def parse_smtp_url(url: str) -> SmtpUrl:
    """``smtp://[user:pass@]host:port[?starttls=1|tls=1]``; ValueError naming the form."""
    form = "expected smtp://[user:pass@]host:port[?starttls=1|tls=1]"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{exc}; {form}") from None
    if parts.scheme != "smtp" or not parts.hostname:
        raise ValueError(form)
    q = parse_qs(parts.query)
    unknown = set(q) - {"starttls", "tls"}
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))}; {form}")
    starttls, tls = _flag(q, "starttls"), _flag(q, "tls")
    if starttls and tls:
        raise ValueError("starttls=1 and tls=1 exclude each other")
    return SmtpUrl(
        host=parts.hostname, port=port or (465 if tls else 25),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        starttls=starttls, tls=tls,
    )


class SmtpMailer:
    """Sends one ``EmailMessage`` at a time (each in a thread)."""

    def __init__(self, url: str, timeout: float = TIMEOUT, ssl_context: ssl.SSLContext | None = None) -> None:
        self.url = parse_smtp_url(url)
        self.timeout = timeout
        self.ssl_context = ssl_context

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        u = self.url
        context = self.ssl_context or ssl.create_default_context()
        try:
            if u.tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(u.host, u.port, timeout=self.timeout, context=context)
            else:
                client = smtplib.SMTP(u.host, u.port, timeout=self.timeout)
            with client:
                if u.starttls:
                    client.starttls(context=context)
                if u.user:
                    client.login(u.user, u.password or "")
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if codes and all(c >= 500 for c in codes):
                raise PermanentMailError(f"recipient refused: {exc.recipients}") from None
            raise MailError(f"recipient refused for now: {exc.recipients}") from None
        except smtplib.SMTPAuthenticationError as exc:  # the configuration's fault, not the mail's
            raise MailError(f"SMTP log-in refused: {exc.smtp_code}") from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            if exc.smtp_code >= 500:
                raise PermanentMailError(f"{exc.smtp_code} {text}") from None
            raise MailError(f"{exc.smtp_code} {text}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}") from None
