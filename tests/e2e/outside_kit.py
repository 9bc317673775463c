"""The outside world of the fault scenarios (issue 12): a webhook receiver subscribed to every
event and an SMTP server receiving the notification mails of accounts with an email, both
real and in the test process, and the final check that after the faults and the recovery
every delivery and mail that the outcomes make certain arrived.

The scenarios' outcomes are partly unknown (a request in flight at a kill may or may not have
happened), so the check is built from what is certain and what is allowed, as the crash kit's
oracle is (``crash_kit.check_everything``, whose read-back records it reuses):

- must arrive (at least once, each with a valid Standard Webhooks signature, checked with the
  ``standardwebhooks`` library): ``account.created`` of every user; ``follow.created`` of
  every fixed follow and of every churned follow that exists at the end; ``status.created``
  of every post that exists or was acknowledged, ``status.deleted`` of every acknowledged
  delete; ``mention.created`` of every existing post's mentions; ``favourite.created`` and
  ``reblog.created`` of every favourite and boost that exists at the end. And a mail for
  each mention of and each fixed follow of an account with an email;
- may arrive: only what some request could have made (no status, mention, favourite, boost
  or follow that no request asked for; no more follow messages or mails for a pair than
  follow requests were sent for it);
- one ``webhook-id`` per event: every request of an id carries the same body, a thing that
  happens once (an account, a post, its deletion, a mention) has one id, however often it
  was sent (a kill between the answer and its record sends it again, with the same id); a
  mail sent again has the same ``Message-ID``, and each cause has its own.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.e2e.crash_kit import BASE_FOLLOWS, CHURN, PYTHON, ROOT, Ledger, Outcome
from tests.mail_kit import MESSAGE_ID, SmtpServer, actor_of, by_message_id
from tests.webhook_kit import Received, Receiver, verify

MAIL_DOMAIN = "faults.test"
#: Users (by index in the crash kit's world) with an email address: one with many
#: followers (0), one whose followers churn (1), one more (3).
MAIL_USERS = (0, 1, 3)
#: Enough attempts to outlast any fault of the scenarios (a kill's restart, an outage).
RETRY_SCHEDULE = "0.2s," + ",".join(["1s"] * 30)
#: A hang guard for the deliveries and mails after the recovery (a delivery whose attempt
#: was cut by a PostgreSQL outage is sent again when its lease ends: 30 s).
ARRIVAL_TIMEOUT = 120.0


def flaky(r: Received, attempt: int) -> int:
    """A quarter of the messages: the first attempt answered 503 (overloaded: retried, and
    counted by the circuit breaker)."""
    return 503 if attempt == 1 and zlib.crc32(r.msg_id.encode()) % 4 == 0 else 200


@dataclass
class OutsideWorld:
    """``with OutsideWorld() as world:``, ``world.settings`` into the servers' environment,
    ``world.subscribe(env)`` before the first user, ``world.give_emails(...)`` before the
    first follow, and ``world.check(...)`` at the end."""

    rx: Receiver = field(default_factory=lambda: Receiver(flaky))
    smtp: SmtpServer = field(default_factory=SmtpServer)
    secret: str = ""
    emails: dict[str, str] = field(default_factory=dict)  # user id -> address

    @property
    def settings(self) -> dict[str, str]:
        return {"HOMEFEED_WEBHOOKS_ALLOW_PRIVATE": "1", "HOMEFEED_WEBHOOK_RETRY_SCHEDULE": RETRY_SCHEDULE,
                "HOMEFEED_SMTP_URL": self.smtp.url, "HOMEFEED_MAIL_FROM": f"homefeed@{MAIL_DOMAIN}",
                "HOMEFEED_MAIL_BUNDLE_SECONDS": "0", "HOMEFEED_PUBLIC_URL": f"http://{MAIL_DOMAIN}"}

    def __enter__(self) -> OutsideWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.rx.close()
        self.smtp.close()

    def subscribe(self, env: dict[str, str]) -> None:
        """``homefeed webhooks add`` (every event), as an operator runs it with the service's
        settings (``env``: its ``HOMEFEED_*`` variables)."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HOMEFEED_")}
        try:
            p = subprocess.run([PYTHON, "-m", "homefeed", "webhooks", "add", self.rx.url, "--events",
                                "status.created,status.deleted,account.created,follow.created,follow.deleted,"
                                "favourite.created,reblog.created,mention.created"],
                               cwd=str(ROOT), env={**clean, **env}, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"homefeed webhooks add hangs: {exc.stdout!r} {exc.stderr!r}") from None
        assert p.returncode == 0, p.stderr
        self.secret = json.loads(p.stdout)["secret"]

    def give_emails(self, users: list[dict[str, Any]], set_email: Callable[[int, str], None]) -> None:
        """``set_email(user id, address)`` (as an operator would, in the record store) for
        the ``MAIL_USERS``."""
        for i in MAIL_USERS:
            address = f"{users[i]['handle'].lower()}@mail.test"
            set_email(int(users[i]["id"]), address)
            self.emails[users[i]["id"]] = address

    # -- the final check ----------------------------------------------------------------------
    def check(self, users: list[dict[str, Any]], led: Ledger, outcome: Outcome, diag: str) -> dict[str, int]:
        """Wait (a hang guard) until everything certain arrived, then check it all (see the
        module doc). Returns figures: messages, webhook-ids sent more than once, mails."""
        ids = [u["id"] for u in users]
        index = {u["id"]: i for i, u in enumerate(users)}
        handles = {u["handle"].lower(): u["id"] for u in users}
        rec = outcome.records
        assert rec is not None, "check_everything kept no records"
        posts = {pid: (a, text) for pid, (a, text) in rec.present.items()}

        must: set[tuple[str, str, str]] = {("account.created", uid, "") for uid in ids}
        for fa, fbs in BASE_FOLLOWS.items():
            must |= {("follow.created", ids[fa], ids[fb]) for fb in fbs}
        must |= {("follow.created", ids[a], ids[b]) for a, b in rec.follows if (a, b) in CHURN}
        for pid in set(posts) | set(led.acked):
            must.add(("status.created", str(pid), ""))
        must |= {("status.deleted", str(pid), "") for pid in led.deleted}
        mentioned: dict[int, set[str]] = {}
        for pid, (author, text) in posts.items():
            mentioned[pid] = {handles[h.lower()] for h in re.findall(r"@(\w+)", text)
                              if h.lower() in handles and handles[h.lower()] != ids[author]}
            must |= {("mention.created", str(pid), uid) for uid in mentioned[pid]}
        must |= {("favourite.created", ids[u], str(p)) for u, p in rec.favourites}
        must |= {("reblog.created", ids[u], str(o)) for u, o in rec.boosts.values()}

        want_mails: set[str] = set()
        for pid, who in mentioned.items():
            want_mails |= {f"<mention.{pid}.u{uid}@{MAIL_DOMAIN}>" for uid in who if uid in self.emails}
        want_followers = {(ids[b], ids[a]) for a, bs in BASE_FOLLOWS.items() for b in bs if ids[b] in self.emails}

        def delivered_keys(reqs: list[Received]) -> set[tuple[str, str, str]]:
            return {_key(r.json) for r in reqs if 200 <= r.status < 300}

        def mail_arrived(messages: list[Any]) -> bool:
            got = by_message_id(messages)
            followers = {(_address_owner(self.emails, m["To"]), handles.get(actor_of(m)))
                         for _, m in messages if str(m["Subject"]).endswith("followed you")}
            return want_mails <= set(got) and want_followers <= followers

        reqs = self.rx.wait_for(lambda rs: must <= delivered_keys(rs), timeout=ARRIVAL_TIMEOUT,
                                what=f"the {len(must)} certain webhook messages")
        mails = self.smtp.inbox.wait_for(mail_arrived, timeout=ARRIVAL_TIMEOUT,
                                         what=f"{len(want_mails)} mention mails and {len(want_followers)} follower mails")
        time.sleep(1.0)  # what was on its way arrives too: checked below, not waited for
        reqs, mails = self.rx.snapshot(), self.smtp.inbox.snapshot()

        errors: list[str] = []
        by_id: dict[str, list[Received]] = {}
        for r in reqs:
            try:
                verify(self.secret, r)
            except Exception as exc:
                errors.append(f"webhook {r.msg_id}: signature refused ({exc})")
            by_id.setdefault(r.msg_id, []).append(r)
        per_key: Counter[tuple[str, str, str]] = Counter()
        for msg_id, attempts in by_id.items():
            if len({r.body for r in attempts}) != 1:
                errors.append(f"webhook-id {msg_id}: different bodies")
            per_key[_key(attempts[0].json)] += 1
        requested = _follow_requests(led)
        for (kind, a, b), count in per_key.items():
            if kind in ("account.created", "status.created", "status.deleted", "mention.created") and count > 1:
                errors.append(f"{kind} {a} {b}: under {count} webhook-ids (one event, one id)")
            if kind == "account.created" and a not in ids:
                errors.append(f"account.created of an unknown account {a}")
            elif kind in ("status.created", "mention.created") and not (int(a) in posts or int(a) in led.acked):
                errors.append(f"{kind} of post {a}: neither exists nor was acknowledged")
            elif kind == "status.deleted" and int(a) not in led.deleted | led.maybe_deleted:
                errors.append(f"status.deleted of post {a}: no delete was sent for it")
            elif kind in ("follow.created", "follow.deleted"):
                pair = (index.get(a), index.get(b))
                limit = (1 if pair in _base_pairs() and kind == "follow.created" else 0) + requested[
                    (pair, kind == "follow.created")]
                if count > limit:
                    errors.append(f"{kind} {pair}: {count} messages for {limit} requests")
            elif kind == "favourite.created" and not any(s for s, _ in led.fav_ops.get((index.get(a, -1), int(b)), [])):
                errors.append(f"favourite.created of {b} by {a}: nobody asked")
            elif kind == "reblog.created" and not any(s for s, _, _ in led.boost_ops.get((index.get(a, -1), int(b)), [])):
                errors.append(f"reblog.created of {b} by {a}: nobody asked")
        undelivered = [m for m, attempts in by_id.items() if not any(200 <= r.status < 300 for r in attempts)]
        if undelivered:  # still in retry: it must arrive (a hang guard)
            self.rx.wait_for(lambda rs: set(undelivered) <= {r.msg_id for r in rs if 200 <= r.status < 300},
                             timeout=ARRIVAL_TIMEOUT, what=f"{len(undelivered)} webhooks in retry")

        followers: Counter[tuple[str, str]] = Counter()
        for msg_id, copies in by_message_id(mails).items():
            parsed = MESSAGE_ID.fullmatch(msg_id)
            if not parsed or parsed.group(4) != MAIL_DOMAIN:
                errors.append(f"mail with Message-ID {msg_id!r}")
                continue
            kind, pid, uid = parsed.group(1), int(parsed.group(2)), parsed.group(3)
            first = copies[0][1]
            if any((rc, str(m["To"]), str(m["Subject"])) != ([self.emails.get(uid)], self.emails.get(uid),
                                                             str(first["Subject"])) for rc, m in copies):
                errors.append(f"mail {msg_id}: copies to {[rc for rc, _ in copies]} differ or go astray")
            actor = handles.get(actor_of(first))
            if kind == "mention":
                writer = posts.get(pid, led.acked.get(pid))
                if writer is None or ids[writer[0]] != actor:
                    errors.append(f"mention mail {msg_id}: post {pid} by {actor} neither exists nor was acknowledged")
            else:
                followers[(uid, str(actor))] += 1
        for (uid, actor), count in followers.items():
            pair = (index.get(actor), index.get(uid))
            limit = (1 if pair in _base_pairs() else 0) + requested[(pair, True)]
            if count > limit:
                errors.append(f"{count} mails 'followed you' for follower pair {pair}: {limit} follow requests")
        assert not errors, "\n".join(errors[:20]) + f"\n({len(errors)} problems)\n{diag}"
        return {"webhook messages": len(by_id), "webhooks sent again": sum(len(v) > 1 for v in by_id.values()),
                "mails": len(mails)}


def _key(payload: dict[str, Any]) -> tuple[str, str, str]:
    t, d = payload["type"], payload["data"]
    if t in ("account.created", "status.created", "status.deleted"):
        return (t, str(d["id"]), "")
    if t == "mention.created":
        return (t, str(d["status"]["id"]), str(d["account"]["id"]))
    if t in ("follow.created", "follow.deleted"):
        return (t, str(d["account"]["id"]), str(d["target_account"]["id"]))
    return (t, str(d["account"]["id"]), str(d["status"]["id"]))


def _base_pairs() -> set[tuple[int, int]]:
    return {(a, b) for a, bs in BASE_FOLLOWS.items() for b in bs}


def _follow_requests(led: Ledger) -> Counter[tuple[tuple[int | None, int | None], bool]]:
    """((follower, followee), follow?) -> how many such requests were sent (any outcome)."""
    out: Counter[tuple[tuple[int | None, int | None], bool]] = Counter()
    for pair, ops in led.follow_ops.items():
        for state, _ in ops:
            out[(pair, state)] += 1
    return out


def _address_owner(emails: dict[str, str], to: Any) -> str | None:
    return next((uid for uid, a in emails.items() if a == str(to)), None)


def sqlite_set_email(data_dir: Path) -> Callable[[int, str], None]:
    """An operator's way to give a user of the embedded profile an email address."""
    def set_email(uid: int, address: str) -> None:
        with sqlite3.connect(data_dir / "homefeed.db", timeout=30) as conn:
            assert conn.execute("UPDATE users SET email = ?, email_key = ? WHERE id = ?",
                                (address, address.lower(), uid)).rowcount == 1
    return set_email
