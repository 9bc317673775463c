"""Notification emails against a real SMTP server (aiosmtpd, in this process on its own
thread), on SQLite and PostgreSQL: who gets mail for what, the bundle window, the headers
a mail client relies on (Message-ID, one-click List-Unsubscribe, multipart text and HTML),
no mail twice across a redelivery, opt-out, a permanent 5xx as a dead letter, and no mail
at all without SMTP settings."""

from __future__ import annotations

import asyncio
import contextlib
from email.message import Message
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import httpx
import pytest

from homefeed.bootstrap import CONSUMERS, build, mail_store
from homefeed.config import Settings
from homefeed.entrypoints.admin import replay_in_process
from homefeed.service_layer import outside
from homefeed.service_layer.mailer import send_mail
from homefeed.service_layer.services import Homefeed
from tests.backends import scratch_pg_database
from tests.mail_kit import Inbox, SmtpServer


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with SmtpServer() as server:
        yield server.inbox, server.port


@pytest.fixture(params=["sqlite", "postgresql"])
def profile(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {"data_dir": tmp_path, "sqlite_synchronous": "NORMAL"}
    else:
        with scratch_pg_database() as url:
            yield {"data_dir": tmp_path, "database_url": url}


@contextlib.asynccontextmanager
async def running(profile: dict[str, Any], port: int | None, **settings: Any) -> AsyncIterator[Homefeed]:
    mail = {"smtp_url": f"smtp://127.0.0.1:{port}", "mail_from": "homefeed@example.test"} if port else {}
    s = Settings(**{"webhook_retry_schedule": "0.05s,0.05s", "mail_bundle_seconds": 1.0,
                    "public_url": "http://social.example.test", **mail, **profile, **settings})
    hf = build(s, node=0)
    await hf.start(consumers=CONSUMERS)
    try:
        yield hf
    finally:
        await hf.close()


async def person(hf: Homefeed, handle: str, email_address: str | None) -> int:
    uid = int((await hf.register(handle))["id"])
    if email_address:
        await hf.store.set_password(uid, "x", email=email_address)
    return uid


async def settled(hf: Homefeed) -> dict[str, int]:
    """Drain, then wait until no notification waits for a mail and no mail is pending."""
    await hf.drain()
    for _ in range(1000):
        # In this order: a notification seen assigned is then in a mail counted below. Read
        # the other way round, the mail loop can compose between the readings, and a mail
        # made after the counts were read goes unseen.
        unsent = await _unassigned(hf)
        counts = await mail_store(hf).mail_counts()
        if not counts.get("pending") and not unsent:
            return counts
        await asyncio.sleep(0.02)
    raise AssertionError(f"mails still pending: {counts}, {unsent} notifications without a mail")


async def _unassigned(hf: Homefeed) -> int:
    sql = "SELECT count(*) FROM mail_notifications WHERE mail_id IS NULL"
    if hf.store.backend == "sqlite":
        return int(hf.store.db.query_value(sql))  # type: ignore[attr-defined]
    row = await hf.store.db.fetchone(sql)  # type: ignore[attr-defined]
    return int(row[0])


def parts(m: Message) -> dict[str, str]:
    return {p.get_content_type(): p.get_payload(decode=True).decode() for p in m.walk()
            if not p.is_multipart()}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_follow_and_mention_mails_bundle_and_never_twice(profile: dict[str, Any], smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def go() -> None:
        # a window long enough that the two notifications written right after the first
        # mail surely fall in it, even on a loaded machine
        async with running(profile, port, mail_bundle_seconds=10.0) as hf:
            alice = await person(hf, "alice", "alice@example.test")
            await person(hf, "bob", "bob@example.test")
            await person(hf, "carol", None)
            dave = await person(hf, "dave", "dave@example.test")
            await hf.follow(dave, "alice")  # the first mail to alice goes out at once
            await settled(hf)
            [(to, first)] = inbox.snapshot()
            assert to == ["alice@example.test"]
            assert first["Subject"] == "@dave followed you"
            assert first["Message-ID"].startswith("<follow.") and first["Message-ID"].endswith("@social.example.test>")
            assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            link = first["List-Unsubscribe"].strip("<>")
            assert link.startswith("http://social.example.test/email/unsubscribe/")
            body = parts(first)
            assert set(body) == {"text/plain", "text/html"} and "@dave" in body["text/plain"] and "@dave" in body["text/html"]

            # within the bundle window: a mention by bob and a follow by bob, one mail
            bob = (await hf.user("bob")).id
            await hf.create_post(bob, "hello @alice and @carol, and @bob himself")
            await hf.follow(bob, "alice")
            await settled(hf)
            got = inbox.snapshot()
            assert len(got) == 2, [m["Subject"] for _, m in got]
            to, bundle = got[1]
            assert to == ["alice@example.test"]
            text = parts(bundle)["text/plain"]
            assert "@bob mentioned you: hello @alice" in text and "@bob followed you" in text
            assert bundle["Message-ID"] != first["Message-ID"]

            # a redelivery of every event to the mailer: no mail again
            before = await mail_store(hf).mail_counts()
            await replay_in_process(hf, "mailer", 0)
            assert await settled(hf) == before
            assert len(inbox.snapshot()) == 2

            # one-click unsubscribe through the route, as a mail client does it
            from homefeed.bootstrap import Plan
            from homefeed.entrypoints.http import create_app

            app = create_app(hf, Plan(), manage_lifecycle=False)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                path = link.removeprefix("http://social.example.test")
                assert (await c.get(path)).status_code == 200  # a page; a fetch changes nothing
                r = await c.post(path, content=b"List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert r.status_code == 200
                assert (await c.post("/email/unsubscribe/nosuchtoken")).status_code == 404
            carol = (await hf.user("carol")).id
            await hf.follow(carol, "alice")
            await hf.follow(alice, "dave")  # dave still gets mail
            await settled(hf)
            got = inbox.snapshot()
            assert [to for to, _ in got] == [["alice@example.test"]] * 2 + [["dave@example.test"]]
            assert got[2][1]["Subject"] == "@alice followed you"

    run(go())


def test_bundling_off_sends_one_mail_per_notification(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp

    async def go() -> None:
        async with running({"data_dir": tmp_path}, port, mail_bundle_seconds=0) as hf:
            await person(hf, "alice", "alice@example.test")
            for name in ("b1", "b2", "b3"):
                await hf.follow(await person(hf, name, None), "alice")
            await settled(hf)
            assert sorted(m["Subject"] for _, m in inbox.snapshot()) == [
                "@b1 followed you", "@b2 followed you", "@b3 followed you"]
            assert len({m["Message-ID"] for _, m in inbox.snapshot()}) == 3

    run(go())


def test_a_permanent_refusal_is_a_dead_letter(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.refuse.add("gone@example.test")

    async def go() -> None:
        async with running({"data_dir": tmp_path}, port) as hf:
            await person(hf, "alice", "gone@example.test")
            await hf.follow(await person(hf, "bob", None), "alice")
            counts = await settled(hf)
            assert counts == {"dead": 1} and inbox.snapshot() == []
            [dl] = await outside.dead_letters(hf, "mailer")
            assert dl.id >= outside.MAIL_IDS and "550" in dl.reason and dl.deliveries == 1

    run(go())


def test_no_smtp_settings_no_mail_attempted(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp

    async def go() -> None:
        async with running({"data_dir": tmp_path}, None) as hf:
            await person(hf, "alice", "alice@example.test")
            await hf.follow(await person(hf, "bob", None), "alice")
            await hf.drain()
            assert await mail_store(hf).mail_counts() == {} and await _unassigned(hf) == 0
        with pytest.raises(Exception, match="HOMEFEED_SMTP_URL"):
            await send_mail(Settings(data_dir=tmp_path), "x@example.test", "s", "t")
    run(go())
    assert inbox.snapshot() == []


def test_send_mail_sends_one_message(tmp_path: Path, smtp: tuple[Inbox, int]) -> None:
    """The digest job's way to mail: one message, text and HTML."""
    inbox, port = smtp
    s = Settings(data_dir=tmp_path, smtp_url=f"smtp://127.0.0.1:{port}", mail_from="homefeed@example.test")
    run(send_mail(s, "someone@example.test", "Your digest", "plain", "<p>html</p>",
                  message_id="<digest.1.u2@example.test>"))
    [(to, m)] = inbox.snapshot()
    assert to == ["someone@example.test"] and m["Message-ID"] == "<digest.1.u2@example.test>"
    assert {k: v.strip() for k, v in parts(m).items()} == {"text/plain": "plain", "text/html": "<p>html</p>"}


def test_digest_job_mails_through_smtp_with_the_one_click_unsubscribe(
    profile: dict[str, Any], smtp: tuple[Inbox, int]
) -> None:
    """The scheduled digest job, wired by bootstrap to the mailer's SMTP sender: the mail
    reaches the server with the notification mails' one-click unsubscribe (same token, same
    opt-out), and a person who opted out gets no digest."""
    import time

    from homefeed.service_layer.jobs.catalog import default_jobs
    from homefeed.service_layer.scheduler import Scheduler

    inbox, port = smtp

    async def go() -> None:
        async with running(profile, port, inactive_days=14) as hf:
            assert hf.mail_sender is not None and hf.job_store is not None
            away = await person(hf, "away", "away@example.test")
            quiet = await person(hf, "quiet", "quiet@example.test")
            alice = await person(hf, "alice", None)
            for reader in (away, quiet):
                await hf.follow(reader, "alice")
            await hf.create_post(alice, "news while you were away")
            now = time.time()
            await hf.job_store.add_reads({}, {away: now - 20 * 86400, quiet: now - 20 * 86400})
            mails = mail_store(hf)
            token = await mails.unsubscribe_token(quiet)
            assert token is not None and await mails.opt_out(token)
            assert await mails.unsubscribe_token(quiet) is None
            await settled(hf)  # alice has no email: the follows mail nobody

            scheduler = Scheduler(hf, default_jobs(hf), hf.job_store)
            done = await scheduler.run_now("digest")
            assert (done.outcome, done.detail) == ("ok", "1 digest(s) sent, 0 failed, 1 opted out")
            [(to, m)] = inbox.snapshot()
            assert to == ["away@example.test"]
            assert m["Subject"] == "1 post you missed on homefeed"
            assert m["Message-ID"].startswith("<digest.") and m["Message-ID"].endswith("@social.example.test>")
            assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            link = m["List-Unsubscribe"].strip("<>")
            assert link.startswith("http://social.example.test/email/unsubscribe/")
            body = parts(m)
            assert "@alice: news while you were away" in body["text/plain"] and link in body["text/plain"]
            assert "news while you were away" in body["text/html"] and link in body["text/html"]
            assert "http://social.example.test/@alice/" in body["text/plain"]

            # the link is the notification mails' opt-out: after it, no mail of either kind
            from homefeed.bootstrap import Plan
            from homefeed.entrypoints.http import create_app

            app = create_app(hf, Plan(), manage_lifecycle=False)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                r = await c.post(link.removeprefix("http://social.example.test"),
                                 content=b"List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
                assert r.status_code == 200
            assert await mails.recipients([away]) == {}
            await hf.follow(alice, "away")
            await settled(hf)
            # once per absence: the next run writes to nobody
            again = await scheduler.run_now("digest")
            assert (again.outcome, again.detail) == ("ok", "0 digest(s) sent, 0 failed")
            assert len(inbox.snapshot()) == 1

    run(go())
