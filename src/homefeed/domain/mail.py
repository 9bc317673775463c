"""Notification emails, the rules that need no I/O: what a notification to mail is, the
``Message-ID`` of a mail (derived from the events it carries, so that a mail sent again
after a crash is recognisably the same one), and the mail's text and HTML.

A mail carries one notification, or several bundled (``HOMEFEED_MAIL_BUNDLE_SECONDS``):
the first notification to a person goes out at once, those that come within the window
after a mail wait for its end and go out together."""

from __future__ import annotations

import html
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate

#: SMTP line endings, and headers folded only past 998 characters: a long unsubscribe URL
#: must stay one plain header value (folding would encode it, and break it for clients).
POLICY = policy.SMTP.clone(max_line_length=998)

FOLLOW, MENTION = "follow", "mention"
#: Characters of a mentioning post quoted in the mail.
EXCERPT = 280


@dataclass(frozen=True, slots=True)
class MailNotification:
    """Something to tell ``user_id`` by mail, keyed by its cause: ``follow:<event seq>`` or
    ``mention:<post id>`` (a redelivered event makes the same key: nothing new)."""

    user_id: int
    cause: str
    kind: str
    actor_id: int
    actor_handle: str
    post_id: int | None = None
    excerpt: str = ""


def message_id(user_id: int, causes: list[str], domain: str) -> str:
    """``<mention.123.u42@domain>``; a bundle: the first cause and how many follow it."""
    first = causes[0].replace(":", ".")
    more = f"+{len(causes) - 1}" if len(causes) > 1 else ""
    return f"<{first}{more}.u{user_id}@{domain}>"


def _line(n: MailNotification) -> str:
    if n.kind == FOLLOW:
        return f"@{n.actor_handle} followed you."
    return f"@{n.actor_handle} mentioned you: {n.excerpt}"


def subject(notes: list[MailNotification]) -> str:
    if len(notes) == 1:
        n = notes[0]
        return f"@{n.actor_handle} followed you" if n.kind == FOLLOW else f"@{n.actor_handle} mentioned you"
    names = sorted({n.actor_handle for n in notes})
    who = ", ".join(f"@{h}" for h in names[:3]) + (" and others" if len(names) > 3 else "")
    return f"{len(notes)} new notifications from {who}"


def compose(
    notes: list[MailNotification], *, to: str, sender: str, msg_id: str, base_url: str,
    unsubscribe_url: str, recipient_handle: str,
) -> EmailMessage:
    """The mail: multipart text and HTML, naming each actor's username, with a one-click
    unsubscribe (RFC 8058: ``List-Unsubscribe`` + ``List-Unsubscribe-Post``)."""
    m = EmailMessage(policy=POLICY)
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject(notes)
    m["Message-ID"] = msg_id
    m["Date"] = formatdate(usegmt=True)
    m["Auto-Submitted"] = "auto-generated"
    m["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    m["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    lines = [_line(n) for n in notes]
    text = (f"Hello @{recipient_handle},\n\n" + "\n".join(f"- {ln}" for ln in lines)
            + f"\n\nOpen homefeed: {base_url}/\n\nNo more of these emails: {unsubscribe_url}\n")
    m.set_content(text)
    items = "".join(f"<li>{html.escape(ln)}</li>" for ln in lines)
    page = (f"<!doctype html><html><body><p>Hello @{html.escape(recipient_handle)},</p><ul>{items}</ul>"
            f"<p><a href=\"{html.escape(base_url)}/\">Open homefeed</a></p>"
            f"<p style=\"font-size:small\"><a href=\"{html.escape(unsubscribe_url)}\">No more of these"
            " emails</a></p></body></html>")
    m.add_alternative(page, subtype="html")
    return m
