"""The ``digest`` job: a daily email to accounts that stopped reading, with the most
favourited and boosted posts of their home timeline since they left. It is the batch
counterpart of the fan-out that skipped them: the fan-out pushes nothing into a timeline
unread for ``inactive_days``, and this job pulls the best of what they missed, once.

Who: accounts with an email whose last home read (``account_activity``, the durable read
counter; an account never seen reading counts from its creation) is more than
``HOMEFEED_INACTIVE_DAYS`` ago, and who got no digest since. What: the public, original
posts of the accounts they follow, since they left, ranked by favourites + boosts (issue
11's ``posts.favourites_count`` and ``reblogs_count``; before those columns exist, newest
first).

The mail goes through a ``MailSender`` (the mailer's SMTP sender, see issue 12's email
part). Without SMTP configuration there is no sender, and no email is attempted: the run
says how many digests it would have sent, and marks nobody as sent.
"""

from __future__ import annotations

import hashlib
import html
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

from homefeed.service_layer.jobs.trends import id_at

if TYPE_CHECKING:
    from homefeed.domain.model import Post
    from homefeed.service_layer.jobs.records import Account
    from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.jobs")

NAME = "digest"
#: Posts per digest.
TOP_POSTS = 10
#: Accounts written to per run at most (the next day's run takes the rest).
MAX_ACCOUNTS = 5000


@dataclass(frozen=True)
class DigestMail:
    """One digest, ready to send: multipart text and HTML."""

    to: str
    subject: str
    text: str
    html: str
    #: Derived from the account and the day: a run retried after a crash sends a mail the
    #: receiver recognises as the same one.
    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
    #: The account it is for: the sender honours its email opt-out and links its
    #: unsubscribe page (None: nobody's in particular).
    user_id: int | None = None


class MailSender(Protocol):
    async def send_mail(self, mail: DigestMail) -> bool | None:
        """Send one mail; raises when it could not be handed to the SMTP server. False: not
        sent on purpose (the person opted out of email), nothing to retry."""
        ...


@dataclass(frozen=True)
class DigestItem:
    post: "Post"
    favourites: int
    reblogs: int


def compose(account: "Account", items: Sequence[DigestItem], base_url: str, day: int,
            domain: str = "homefeed.local") -> DigestMail:
    """The mail for ``account``: the posts, each with its author, counts and link."""
    n = len(items)
    subject = f"{n} post{'s' if n != 1 else ''} you missed on homefeed"
    lines = [f"Hello @{account.handle},", "",
             "While you were away, these were the most favourited and boosted posts of your home timeline:", ""]
    rows = []
    for it in items:
        p = it.post
        link = f"{base_url}/@{p.author_handle}/{p.id}"
        lines += [f"@{p.author_handle}: {p.text}",
                  f"  {it.favourites} favourites, {it.reblogs} boosts  {link}", ""]
        rows.append(
            f"<li><p><strong>@{html.escape(p.author_handle)}</strong>: {html.escape(p.text)}</p>"
            f"<p><small>{it.favourites} favourites, {it.reblogs} boosts &middot; "
            f"<a href=\"{html.escape(link)}\">open</a></small></p></li>")
    lines += [f"Read your home timeline: {base_url}/", ""]
    body_html = (f"<html><body><p>Hello @{html.escape(account.handle)},</p>"
                 "<p>While you were away, these were the most favourited and boosted posts of your"
                 f" home timeline:</p><ol>{''.join(rows)}</ol>"
                 f"<p><a href=\"{html.escape(base_url)}/\">Read your home timeline</a></p></body></html>")
    digest = hashlib.sha256(f"digest:{account.id}:{day}".encode()).hexdigest()[:24]
    return DigestMail(to=account.email, subject=subject, text="\n".join(lines), html=body_html,
                      message_id=f"<digest.{digest}@{domain}>", user_id=account.id)


async def select(hf: "Homefeed", now: float) -> list[tuple["Account", list[DigestItem]]]:
    """Who gets a digest now, and with which posts (accounts with nothing to show are left
    out)."""
    store = hf.job_store
    assert store is not None
    cutoff = now - hf.settings.inactive_days * 86400
    out = []
    for account in await store.digest_candidates(cutoff, id_at(cutoff), MAX_ACCOUNTS):
        left = account.last_read_at if account.last_read_at else None
        since_id = id_at(left) if left else 0
        top = await store.top_home_posts(account.id, since_id, TOP_POSTS)
        if not top:
            continue
        posts = await hf.feed.hydrate([p for p, _, _ in top])
        items = [DigestItem(posts[p], f, r) for p, f, r in top if p in posts]
        if items:
            out.append((account, items))
    return out


async def run(hf: "Homefeed", sender: MailSender | None, now: float | None = None) -> str:
    now = time.time() if now is None else now
    store = hf.job_store
    assert store is not None
    chosen = await select(hf, now)
    if sender is None:
        return (f"{len(chosen)} digest(s) due; no email attempted: no SMTP configured"
                " (HOMEFEED_SMTP_URL, HOMEFEED_MAIL_FROM)")
    from homefeed.service_layer.webhooks import public_base_url

    base = public_base_url(hf.settings)  # HOMEFEED_PUBLIC_URL, as in notification mails
    domain = base.split("://", 1)[-1].split("/", 1)[0].split(":")[0] or "homefeed.local"
    day = int(now // 86400)
    sent: list[int] = []
    done: list[int] = []  # sent, or declined (opted out): not again in this absence
    failed = 0
    for account, items in chosen:
        try:
            outcome = await sender.send_mail(compose(account, items, base, day, domain))
        except Exception as exc:  # one refused address does not stop the others
            failed += 1
            log.warning("digest to account %d failed: %s", account.id, exc)
            continue
        done.append(account.id)
        if outcome is not False:
            sent.append(account.id)
    await store.mark_digest_sent(done, now)
    if failed and not done:
        raise RuntimeError(f"every digest failed ({failed})")
    skipped = len(done) - len(sent)
    return f"{len(sent)} digest(s) sent, {failed} failed" + (f", {skipped} opted out" if skipped else "")
