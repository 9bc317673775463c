"""Webhooks against a real receiver (an HTTP server on 127.0.0.1), in process, on SQLite and
on PostgreSQL: what a receiver sees (every event, valid Standard Webhooks signatures checked
with the ``standardwebhooks`` library, one ``webhook-id`` per message however often it is
retried), the retry schedule and its dead letters, 410, and the SSRF refusals."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from homefeed.bootstrap import build, webhook_store
from homefeed.config import Settings
from homefeed.domain.errors import InvalidInput
from homefeed.domain.webhooks import EVENT_TYPES
from homefeed.service_layer import outside
from homefeed.service_layer.services import Homefeed
from homefeed.service_layer.webhooks import WebhookAdmin
from tests.backends import scratch_pg_database
from tests.webhook_kit import Receiver, verify

from homefeed.bootstrap import CONSUMERS


@pytest.fixture(params=["sqlite", "postgresql"])
def profile(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {"data_dir": tmp_path, "sqlite_synchronous": "NORMAL"}
    else:
        with scratch_pg_database() as url:
            yield {"data_dir": tmp_path, "database_url": url}


@contextlib.asynccontextmanager
async def running(profile: dict[str, Any], **settings: Any) -> AsyncIterator[Homefeed]:
    s = Settings(**{"webhooks_allow_private": True, "webhook_retry_schedule": "0.05s,0.05s,0.05s",
                    **profile, **settings})
    hf = build(s, node=0)
    await hf.start(consumers=CONSUMERS)
    try:
        yield hf
    finally:
        await hf.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_event_arrives_signed_once_per_webhook_id_despite_failures(profile: dict[str, Any]) -> None:
    """The receiver fails the first two attempts of every message: each still arrives, with
    a valid signature on every attempt and the same id and body each time; events committed
    before the subscription was added are not sent."""

    def answer(r: Any, attempt: int) -> int:
        return 500 if attempt <= 2 else 204

    with Receiver(answer) as rx:
        async def go() -> None:
            async with running(profile) as hf:
                before = await hf.register("early")
                await hf.create_post(int(before["id"]), "before the subscription")
                await hf.drain()
                sub = await WebhookAdmin(webhook_store(hf), True).add(rx.url, ",".join(EVENT_TYPES))
                assert set(sub) == {"id", "url", "events", "secret"} and sub["secret"].startswith("whsec_")

                alice = await hf.register("alice")
                bob = await hf.register("bob")
                a, b = int(alice["id"]), int(bob["id"])
                await hf.follow(b, "alice")
                post = await hf.create_post(a, "hello @bob #news")
                other = await hf.create_post(b, "just me")
                await hf.delete_post(b, int(other["id"]))
                await hf.unfollow(b, "alice")
                await hf.drain()
                expected = {
                    ("account.created", alice["id"]), ("account.created", bob["id"]),
                    ("follow.created", bob["id"]), ("status.created", post["id"]),
                    ("mention.created", post["id"]), ("status.created", other["id"]),
                    ("status.deleted", other["id"]), ("follow.deleted", bob["id"]),
                }

                def key(p: dict[str, Any]) -> tuple[str, str]:
                    d = p["data"]
                    if p["type"] == "account.created":
                        return (p["type"], d["id"])
                    if p["type"].startswith("follow."):
                        return (p["type"], d["account"]["id"])
                    if p["type"] == "mention.created":
                        return (p["type"], d["status"]["id"])
                    return (p["type"], d["id"])

                got = await asyncio.to_thread(
                    rx.wait_for, lambda reqs: len({r.msg_id for r in reqs if r.status == 204}) >= len(expected))
                by_id: dict[str, list[Any]] = {}
                for r in got:
                    payload = verify(sub["secret"], r)  # every attempt is signed
                    by_id.setdefault(r.msg_id, []).append((r.status, r.body, payload))
                payloads = {key(v[0][2]) for v in by_id.values()}
                assert payloads == expected
                for msg_id, attempts in by_id.items():
                    assert [s for s, _, _ in attempts] == [500, 500, 204], msg_id
                    assert len({body for _, body, _ in attempts}) == 1, "a retry sends the same body"

                first = {key(v[0][2]): v[0][2] for v in by_id.values()}
                created = first[("status.created", post["id"])]["data"]
                assert created["account"]["username"] == "alice" and "hello" in created["content"]
                assert [t["name"] for t in created["tags"]] == ["news"]
                mention = first[("mention.created", post["id"])]["data"]
                assert mention["account"]["username"] == "bob" and mention["status"]["id"] == post["id"]
                deleted = first[("status.deleted", other["id"])]["data"]
                assert "just me" in deleted["content"], "a deleted status is sent as it was"
                follow = first[("follow.created", bob["id"])]["data"]
                assert (follow["account"]["username"], follow["target_account"]["username"]) == ("bob", "alice")
                assert all(p["timestamp"].endswith("Z") for p in first.values())
                for _ in range(500):  # each outcome is stored right after its answer
                    counts = await webhook_store(hf).delivery_counts()
                    if counts == {"delivered": len(expected)}:
                        break
                    await asyncio.sleep(0.02)
                assert counts == {"delivered": len(expected)}

        run(go())


def test_a_410_disables_the_subscription_at_once(profile: dict[str, Any]) -> None:
    with Receiver(lambda r, n: 410) as rx:
        async def go() -> None:
            async with running(profile) as hf:
                admin = WebhookAdmin(webhook_store(hf), True)
                sub = await admin.add(rx.url, "account.created")
                await hf.register("first")
                await hf.drain()
                await asyncio.to_thread(rx.wait_for, lambda reqs: len(reqs) >= 1)
                for _ in range(1500):  # up to 30 s on a loaded machine  # the outcome is stored right after the answer
                    listed = await admin.list()
                    if not listed[0]["enabled"]:
                        break
                    await asyncio.sleep(0.02)
                assert listed[0]["enabled"] is False and "410" in listed[0]["disabled_reason"]
                await hf.register("second")
                await hf.drain()
                await asyncio.sleep(0.5)  # room for a (wrong) retry or a second delivery
                assert len(rx.snapshot()) == 1, "no retry after a 410, nothing to a disabled subscription"
                assert (await webhook_store(hf).delivery_counts()) == {"gone": 1}
                assert sub["id"] == listed[0]["id"]

        run(go())


def test_spent_schedule_dead_letters_and_retry_sends_again(profile: dict[str, Any]) -> None:
    """N delays mean N + 1 attempts; then a dead letter that ``dead-letters`` lists and
    hands back for a fresh schedule."""
    with Receiver(lambda r, n: 503) as rx:
        async def go() -> None:
            async with running(profile, webhook_retry_schedule="0.05s,0.1s") as hf:
                await WebhookAdmin(webhook_store(hf), True).add(rx.url, "account.created")
                await hf.register("someone")
                await hf.drain()
                await asyncio.to_thread(rx.wait_for, lambda reqs: len(reqs) >= 3)
                letters: list[Any] = []
                for _ in range(1500):
                    letters = await outside.dead_letters(hf)
                    if letters:
                        break
                    await asyncio.sleep(0.02)
                assert len(rx.snapshot()) == 3
                [dl] = letters
                assert dl.consumer == "webhooks" and dl.deliveries == 3 and "503" in dl.reason
                assert dl.id >= outside.DELIVERY_IDS
                await outside.retry(hf, dl.id)
                await asyncio.to_thread(rx.wait_for, lambda reqs: len(reqs) >= 6)
                assert len({r.msg_id for r in rx.snapshot()}) == 1

        run(go())


def test_private_targets_are_refused_when_added_and_when_delivering(tmp_path: Path) -> None:
    with Receiver() as rx:
        async def go() -> None:
            async with running({"data_dir": tmp_path}, webhooks_allow_private=False,
                               webhook_retry_schedule="0.05s") as hf:
                admin = WebhookAdmin(webhook_store(hf), allow_private=False)
                for url in (rx.url, "http://localhost:9/x", "http://10.1.2.3/x", "http://[::1]/x",
                            "http://169.254.169.254/latest/meta-data", "http://224.0.0.1/x",
                            "http://[::ffff:127.0.0.1]/x", "ftp://example.com/x", "http://u:p@example.com/"):
                    with pytest.raises(InvalidInput):
                        await admin.add(url, "account.created")
                assert await admin.list() == []
                # added while allowed (say, DNS pointed elsewhere then): refused at delivery
                await WebhookAdmin(webhook_store(hf), allow_private=True).add(rx.url, "account.created")
                await hf.register("someone")
                await hf.drain()
                letters: list[Any] = []
                for _ in range(1500):
                    letters = await outside.dead_letters(hf, "webhooks")
                    if letters:
                        break
                    await asyncio.sleep(0.02)
                assert letters and "refused" in letters[0].reason
                assert rx.snapshot() == [], "nothing reached the private address"

        run(go())


def test_a_dead_endpoint_does_not_hold_back_another_and_loses_nothing(tmp_path: Path) -> None:
    """Endpoint A refuses connections (its circuit opens); endpoint B gets everything; once
    A is back, A gets everything too: the breaker delayed its deliveries, dropped none."""
    import socket

    with socket.socket() as s:  # a port nobody listens on (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Receiver() as b:
        async def go() -> None:
            async with running({"data_dir": tmp_path}, webhook_retry_schedule=",".join(["0.05s"] * 40)) as hf:
                admin = WebhookAdmin(webhook_store(hf), True)
                await admin.add(f"http://127.0.0.1:{port}/a", "account.created")
                await admin.add(b.url, "account.created")
                for i in range(12):
                    await hf.register(f"user{i}")
                await hf.drain()
                await asyncio.to_thread(b.wait_for, lambda reqs: len({r.msg_id for r in reqs}) == 12)
                # A comes back on its port
                from http.server import ThreadingHTTPServer

                from tests import webhook_kit

                a = webhook_kit.Receiver()
                a.server.shutdown()
                a.server.server_close()
                a.server = ThreadingHTTPServer(("127.0.0.1", port), a.server.RequestHandlerClass)
                import threading

                threading.Thread(target=a.server.serve_forever, daemon=True).start()
                try:
                    got = await asyncio.to_thread(
                        a.wait_for, lambda reqs: len({r.msg_id for r in reqs}) == 12, 60.0, "A's deliveries")
                    assert all(r.path == "/a" for r in got)
                finally:
                    a.close()

        run(go())


def test_the_admin_route_manages_subscriptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from homefeed.bootstrap import Plan
    from homefeed.entrypoints.http import create_app

    monkeypatch.setenv("HOMEFEED_ADMIN_TOKEN", "s3cret")
    auth = {"Authorization": "Bearer s3cret"}

    async def go() -> None:
        async with running({"data_dir": tmp_path}) as hf:
            app = create_app(hf, Plan(), manage_lifecycle=False)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                assert (await c.post("/admin/webhooks-list", json={})).status_code == 401
                r = await c.post("/admin/webhooks-add", json={"url": "http://127.0.0.1:9/x",
                                                              "events": ["status.created"]}, headers=auth)
                assert r.status_code == 200 and set(r.json()) == {"id", "url", "events", "secret"}
                sid = r.json()["id"]
                bad = await c.post("/admin/webhooks-add", json={"url": "http://127.0.0.1:9/x", "events": "nope"},
                                   headers=auth)
                assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
                rotated = (await c.post("/admin/webhooks-rotate-secret", json={"id": sid}, headers=auth)).json()
                assert rotated["secret"] != r.json()["secret"] and rotated["previous_secret_until"] > 0
                listed = (await c.post("/admin/webhooks-list", json={}, headers=auth)).json()["subscriptions"]
                assert [s["id"] for s in listed] == [sid]
                assert (await c.post("/admin/webhooks-remove", json={"id": sid}, headers=auth)).status_code == 200
                assert (await c.post("/admin/webhooks-remove", json={"id": sid}, headers=auth)).status_code == 404
                assert (await c.post("/admin/webhooks-list", json={}, headers=auth)).json() == {"subscriptions": []}

    run(go())


def dispatcher_of(hf: Homefeed) -> Any:
    """The webhook dispatcher this process runs (its ``run`` is the consumer's companion)."""
    return hf.consumers.companions["webhooks"].__self__  # type: ignore[attr-defined]


def test_a_stop_cuts_attempts_still_sending_and_they_are_sent_again(profile: dict[str, Any]) -> None:
    """An endpoint that has not answered when a stop's grace runs out: its attempt is cut and
    counted, the delivery stays pending, and it is sent again (same webhook-id) once its
    lease ends: at least once, never lost."""
    import threading
    import time

    arrived = threading.Event()

    def answer(r: Any, n: int) -> int:
        if n == 1:
            arrived.set()
            time.sleep(2.0)  # answers after the stop has cut the attempt
        return 200

    with Receiver(answer) as rx:
        async def go() -> None:
            async with running(profile) as hf:
                dispatcher_of(hf).stop_grace = 0.2
                await WebhookAdmin(webhook_store(hf), True).add(rx.url, "account.created")
                await hf.register("someone")
                await hf.drain()
                assert await asyncio.to_thread(arrived.wait, 30.0)
            assert dispatcher_of(hf).counts["cut_at_stop"] == 1
            assert dispatcher_of(hf).counts["delivered"] == 0
            async with running(profile) as hf:
                # the embedded profile releases a dead process's leases at start; the
                # scale-out one waits them out (30 s): ended here instead of waited for
                if "database_url" in profile:
                    import psycopg

                    async with await psycopg.AsyncConnection.connect(profile["database_url"]) as c:
                        await c.execute("UPDATE webhook_deliveries SET lease_until = NULL")
                dispatcher_of(hf).wake()
                got = await asyncio.to_thread(
                    rx.wait_for, lambda reqs: any(200 <= q.status < 300 and n > 0 for n, q in enumerate(reqs)))
                assert len({q.msg_id for q in got}) == 1, "sent again under the same webhook-id"
                for _ in range(1500):
                    if await webhook_store(hf).delivery_counts() == {"delivered": 1}:
                        break
                    await asyncio.sleep(0.02)
                assert await webhook_store(hf).delivery_counts() == {"delivered": 1}

        run(go())


def test_a_stop_lets_an_answered_attempt_write_its_outcome(tmp_path: Path) -> None:
    """The receiver has answered 200 and the outcome's write waits (a row lock held by
    another session) when a stop's grace runs out: the stop waits for that write instead of
    cutting it, so the message is not sent a second time after the restart."""
    import threading

    import psycopg

    arrived, answer_now = threading.Event(), threading.Event()

    def answer(r: Any, n: int) -> int:
        arrived.set()
        answer_now.wait(30.0)
        return 200

    with scratch_pg_database() as url, Receiver(answer) as rx:
        profile = {"data_dir": tmp_path, "database_url": url}

        async def go() -> None:
            async with await psycopg.AsyncConnection.connect(url) as locker:
                async with running(profile) as hf:
                    dispatcher = dispatcher_of(hf)
                    dispatcher.stop_grace = 0.2
                    await WebhookAdmin(webhook_store(hf), True).add(rx.url, "account.created")
                    await hf.register("someone")
                    await hf.drain()
                    assert await asyncio.to_thread(arrived.wait, 30.0)
                    await locker.execute("SELECT id FROM webhook_deliveries FOR UPDATE")  # begins
                    answer_now.set()
                    await asyncio.to_thread(rx.wait_for, lambda reqs: len(reqs) >= 1)

                    async def unlock_later() -> None:
                        await asyncio.sleep(1.5)  # well past the stop's grace
                        await locker.rollback()

                    unlocking = asyncio.create_task(unlock_later())
                # closed: the stop waited for the write held up by the lock
                await unlocking
                assert dispatcher.counts["cut_at_stop"] == 0
                assert dispatcher.counts["delivered"] == 1
                async with running(profile) as hf:
                    assert await webhook_store(hf).delivery_counts() == {"delivered": 1}
                    # what a lease left behind would end by itself: ended here
                    await locker.execute("UPDATE webhook_deliveries SET lease_until = NULL")
                    await locker.commit()
                    dispatcher_of(hf).wake()
                    await asyncio.sleep(1.0)  # room for a (wrong) second sending
                    assert len(rx.snapshot()) == 1

        run(go())
