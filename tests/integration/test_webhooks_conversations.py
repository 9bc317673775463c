"""The conversation events as webhooks (issue 11's records): ``mention.created`` (from the
``mention_ids`` the record store resolved), ``reblog.created``, ``favourite.created``, and a
deleted status sent as it was, against a real receiver, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from homefeed.bootstrap import webhook_store
from homefeed.service_layer.webhooks import WebhookAdmin
from tests.integration.test_webhooks import profile, running  # noqa: F401  (fixture)
from tests.webhook_kit import Receiver, verify


def test_mentions_boosts_and_favourites_arrive_as_their_entities(profile: dict[str, Any]) -> None:  # noqa: F811
    with Receiver() as rx:
        async def go() -> None:
            async with running(profile) as hf:
                sub = await WebhookAdmin(webhook_store(hf), True).add(
                    rx.url, "mention.created,reblog.created,favourite.created,status.deleted")
                a = int((await hf.register("alice"))["id"])
                b = int((await hf.register("bob"))["id"])
                c = int((await hf.register("carol"))["id"])
                post = await hf.store.create_post(a, "alice", "hi @bob and @carol", mention_ids=[b, c])
                boost, _, _ = await hf.store.reblog(b, "bob", post.id)
                await hf.store.favourite(c, post.id)
                await hf.drain()  # (a favourite of a post deleted before it is rendered is not sent)
                await hf.store.delete_post(post.id, a)  # and its boost, each its own event
                await hf.drain()
                got = await asyncio.to_thread(rx.wait_for, lambda reqs: len(reqs) >= 5)
                payloads = [verify(sub["secret"], r) for r in got]
                kinds = sorted(p["type"] for p in payloads)
                assert kinds == ["favourite.created", "mention.created", "mention.created", "reblog.created",
                                 "status.deleted"], kinds
                by = {(p["type"], p["data"].get("account", {}).get("username")): p["data"] for p in payloads}
                for who in ("bob", "carol"):
                    m = by[("mention.created", who)]
                    assert m["status"]["id"] == str(post.id) and m["status"]["account"]["username"] == "alice"
                r = by[("reblog.created", "bob")]
                assert r["status"]["id"] == str(post.id)
                f = by[("favourite.created", "carol")]
                assert f["status"]["id"] == str(post.id)
                [deleted] = [p["data"] for p in payloads if p["type"] == "status.deleted"]
                assert deleted["id"] == str(post.id) and "hi" in deleted["content"]
                assert deleted["account"]["username"] == "alice"
                assert len({r.msg_id for r in got}) == len(got)
                assert boost.reblog_of_id == post.id

        asyncio.run(go())
