"""Notification emails: the ``mailer`` consumer records what to tell whom, the mail loop
bundles and sends it over SMTP, and ``send_mail`` sends one message (the digest job's,
through ``DigestSender``).

As for webhooks (``service_layer.webhooks``) the consumer never talks to the outside
world: for a new follower or a mention of someone with an email who has not opted out, it
inserts a notification keyed by its cause (``follow:<event seq>``, ``mention:<post id>``),
so a redelivered event adds nothing and no mail goes out twice for it. The loop then
*composes* (the first notification to a person goes into a mail at once; those arriving
within ``HOMEFEED_MAIL_BUNDLE_SECONDS`` after a mail wait and go into one mail together)
and *sends* each due mail, retrying on the webhooks' schedule
(``HOMEFEED_WEBHOOK_RETRY_SCHEDULE``); a permanent 5xx refusal, or the schedule spent, makes
it a dead letter (``homefeed dead-letters``). A mail's ``Message-ID`` is derived from the
events it carries: sent again after a crash (at least once), it is recognisably the same.

Without ``HOMEFEED_SMTP_URL`` and ``HOMEFEED_MAIL_FROM`` no mail is ever attempted: the
consumer then records nothing (so configuring SMTP later does not mail old news).
Sign-up sends no mail: accounts work without confirming their email.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import EmailMessage
from html import escape
from typing import TYPE_CHECKING, Sequence

from homefeed.adapters.smtp_mail import MailError, PermanentMailError, SmtpMailer
from homefeed.domain import model
from homefeed.domain.mail import EXCERPT, FOLLOW, MENTION, POLICY, MailNotification, compose
from homefeed.domain.mastodon.content import extract_mentions
from homefeed.domain.model import Event
from homefeed.domain.webhooks import parse_retry_schedule, retry_delay
from homefeed.ports import MailStore
from homefeed.service_layer.consumers import MAILER, is_outage  # the consumer's name

if TYPE_CHECKING:
    from homefeed.config import Settings
    from homefeed.service_layer.jobs.digest import DigestMail
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.mailer")

#: How often the mail loop composes and looks for due mails when nothing woke it.
POLL_SECONDS = 1.0
#: A mail claimed for sending is another process's to send only after this.
LEASE_SECONDS = 90.0
#: Mails sent at once by one process.
CONCURRENCY = 4


class MailNotConfigured(Exception):
    """``HOMEFEED_SMTP_URL`` or ``HOMEFEED_MAIL_FROM`` is not set."""


def mail_configured(settings: Settings) -> bool:
    return bool(settings.smtp_url and settings.mail_from)


async def send_mail(
    settings: Settings, to: str, subject: str, text: str, html: str | None = None, *,
    message_id: str | None = None, headers: dict[str, str] | None = None,
) -> None:
    """Send ONE message now (the digest job's way to mail): multipart text (+ HTML) from
    ``HOMEFEED_MAIL_FROM`` through ``HOMEFEED_SMTP_URL``. Give a ``message_id`` derived
    from what the mail is about, so that a mail sent again is recognisably the same.
    Raises MailNotConfigured, PermanentMailError (5xx: do not retry) or MailError."""
    if not mail_configured(settings):
        raise MailNotConfigured("set HOMEFEED_SMTP_URL and HOMEFEED_MAIL_FROM to send email")
    m = EmailMessage(policy=POLICY)
    m["From"] = settings.mail_from
    m["To"] = to
    m["Subject"] = subject
    if message_id:
        m["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        m[name] = value
    m.set_content(text)
    if html is not None:
        m.add_alternative(html, subtype="html")
    await SmtpMailer(settings.smtp_url).send(m)


class DigestSender:
    """The digest job's ``MailSender`` (``jobs.digest``) when SMTP is configured: each
    ``DigestMail`` through ``send_mail``, with the one-click unsubscribe of notification
    mails (the same token and opt-out: one "no more email" for both). A person who opted
    out gets no digest (``send_mail`` answers False)."""

    def __init__(self, settings: Settings, store: MailStore) -> None:
        from homefeed.service_layer.webhooks import public_base_url

        self.settings = settings
        self.store = store
        self.base_url = public_base_url(settings)

    async def send_mail(self, mail: DigestMail) -> bool:
        headers = dict(mail.headers)
        text, html = mail.text, mail.html
        if mail.user_id is not None:
            token = await self.store.unsubscribe_token(mail.user_id)
            if token is None:
                log.info("mailer: no digest to user %s: opted out of email", mail.user_id)
                return False
            url = f"{self.base_url}/email/unsubscribe/{token}"
            headers.setdefault("List-Unsubscribe", f"<{url}>")
            headers.setdefault("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
            text = f"{text}\nNo more of these emails: {url}\n"
            link = f'<p style="font-size:small"><a href="{escape(url)}">No more of these emails</a></p>'
            html = html.replace("</body>", link + "</body>") if "</body>" in html else html + link
        headers.setdefault("Auto-Submitted", "auto-generated")
        await send_mail(self.settings, mail.to, mail.subject, text, html, message_id=mail.message_id,
                        headers=headers)
        return True


class MailerConsumer:
    """The ``mailer`` consumer's handler: follow and mention events -> notifications."""

    def __init__(self, hf: Homefeed, store: MailStore, loop: "MailLoop | None") -> None:
        self.hf = hf
        self.store = store
        self.loop = loop
        from homefeed.service_layer.webhooks import public_base_url

        self.domain = public_base_url(hf.settings).split("://", 1)[-1].split("/", 1)[0]

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.loop is None:  # no SMTP configured: no email is ever attempted
            return
        notes: list[MailNotification] = []
        for e in events:
            d = e.data
            if e.type == model.FOLLOWED:
                actor = await self.hf.store.user_by_id(d["follower_id"])
                if actor is not None:
                    notes.append(MailNotification(d["followee_id"], f"follow:{e.seq}", FOLLOW, actor.id, actor.handle))
            elif e.type == model.POST_CREATED and not d.get("reblog_of_id"):
                for uid in await self._mentioned(d):
                    notes.append(MailNotification(uid, f"mention:{d['post_id']}", MENTION, d["author_id"],
                                                  d.get("author_handle", ""), d["post_id"],
                                                  d.get("text", "")[:EXCERPT]))
        if not notes:
            return
        reachable = await self.store.recipients(sorted({n.user_id for n in notes}))
        notes = [n for n in notes if n.user_id in reachable]
        if notes and await self.store.add_notifications(notes, time.time()):
            self.loop.wake()

    async def _mentioned(self, d: dict) -> list[int]:
        if "mention_ids" in d:  # resolved by the record store when the post was written
            return [int(i) for i in d["mention_ids"] if int(i) != d["author_id"]]
        out: list[int] = []
        for name in extract_mentions(d.get("text", ""), self.domain):
            user = await self.hf.store.user_by_handle(name)
            if user is not None and user.id != d["author_id"] and user.id not in out:
                out.append(user.id)
        return out


class MailLoop:
    """Composes and sends mails; runs beside the ``mailer`` consumer."""

    def __init__(self, store: MailStore, settings: Settings, *, release_leases: bool = False,
                 sender: SmtpMailer | None = None, poll: float = POLL_SECONDS) -> None:
        from homefeed.service_layer.webhooks import public_base_url

        self.store = store
        self.settings = settings
        self.sender = sender or SmtpMailer(settings.smtp_url)
        self.schedule = parse_retry_schedule(settings.webhook_retry_schedule)
        self.base_url = public_base_url(settings)
        self.domain = self.base_url.split("://", 1)[-1].split("/", 1)[0].split(":")[0] or "homefeed"
        self.release_at_start = release_leases
        self.poll = poll
        self._wake = asyncio.Event()
        self.counts = {"sent": 0, "failed": 0, "dead": 0}

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        from homefeed.service_layer.webhooks import _sleep_or

        if self.release_at_start:
            try:
                await self.store.release_leases()
            except Exception:
                log.exception("mailer: could not release old leases (they end by themselves)")
        backoff = 0.1
        while not stopping.is_set():
            self._wake.clear()
            try:
                now = time.time()
                await self.store.compose(now, self.settings.mail_bundle_seconds, self.domain)
                claimed = await self.store.claim_mails(now, CONCURRENCY, LEASE_SECONDS)
                if claimed:
                    await asyncio.gather(*(self._send(*c) for c in claimed))
                    continue
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("mailer: cannot compose or claim mails (%s); retrying", exc)
                await _sleep_or(stopping, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            await _sleep_or(stopping, self.poll, self._wake)

    async def _send(self, mail_id: int, user_id: int, msg_id: str, attempts: int) -> None:
        try:
            got = await self.store.mail_contents(mail_id)
            now = time.time()
            if got is None:  # no email any more, or opted out since
                await self.store.mail_done(mail_id, now, "dropped", None, "no email or opted out")
                return
            to, handle, token, notes = got
            message = compose(notes, to=to, sender=self.settings.mail_from, msg_id=msg_id, base_url=self.base_url,
                              unsubscribe_url=f"{self.base_url}/email/unsubscribe/{token}", recipient_handle=handle)
            try:
                await self.sender.send(message)
            except PermanentMailError as exc:
                await self.store.mail_done(mail_id, time.time(), "dead", None, str(exc))
                self.counts["dead"] += 1
                log.error("mailer: mail %s to user %s refused for good: %s", msg_id, user_id, exc)
                return
            except MailError as exc:
                delay = retry_delay(self.schedule, attempts + 1)
                if delay is None:
                    await self.store.mail_done(mail_id, time.time(), "dead", None, str(exc))
                    self.counts["dead"] += 1
                    log.error("mailer: mail %s dead-lettered after %d attempts: %s", msg_id, attempts + 1, exc)
                else:
                    now = time.time()
                    await self.store.mail_done(mail_id, now, "pending", now + delay, str(exc))
                    self.counts["failed"] += 1
                return
            await self.store.mail_done(mail_id, time.time(), "sent", None, "")
            self.counts["sent"] += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # not recorded: the lease ends and it is sent again
            if is_outage(exc):  # the database is away: expected, and logged by the run loop too
                log.warning("mailer: mail %s: outcome not recorded (%s); sent again once its lease ends",
                            mail_id, exc)
            else:
                log.exception("mailer: mail %s: could not record its outcome", mail_id)


__all__ = ["MAILER", "MailerConsumer", "MailLoop", "DigestSender", "send_mail", "mail_configured",
           "MailNotConfigured"]
