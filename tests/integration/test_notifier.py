"""The notifier consumer, on real record stores (SQLite; PostgreSQL when it runs here):
after it applies the events, each user's notifications equal the function of the records
(docs/conversations.md), computed apart in plain Python; redelivered or out-of-order events
change nothing; undoing a cause removes its notification; nobody is notified of their own
actions; the audit names a difference and ``rebuild notifications`` removes it.

Writes go to the record store (record + event in one transaction); the notifier is applied
by hand (``notify``), so a test chooses when, and in which order, it sees the events."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Awaitable, Iterator, TypeVar

import pytest

from homefeed.config import Settings
from homefeed.domain.model import Event, Notification
from homefeed.service_layer import batch
from homefeed.service_layer.audit import Auditor
from homefeed.service_layer.consumers import NOTIFIER
from homefeed.service_layer.services import Homefeed
from tests.backends import needs, scratch_pg_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "feed"))
import conversation_oracle as oracle  # noqa: E402

T = TypeVar("T")


class Notified:
    """A Homefeed over one record store, and the oracle's records of what was written."""

    def __init__(self, settings: Settings) -> None:
        from homefeed.bootstrap import build

        self.loop = asyncio.new_event_loop()
        self.hf: Homefeed = build(settings, node=0)
        self.run(self.hf.start(consumers=()))
        self.store = self.hf.store
        self.handles: dict[int, str] = {}
        self.posts: dict[int, oracle.P] = {}
        self.follows: dict[tuple[int, int], int] = {}
        self.favourites: dict[tuple[int, int], int] = {}
        self.seen: list[Notification] = []
        self.hf.consumers.on_notified = lambda got: self.seen.extend(got)

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def close(self) -> None:
        try:
            self.run(self.hf.close())
        finally:
            self.loop.close()

    # -- writes -------------------------------------------------------------------------------
    def users(self, n: int) -> list[int]:
        out = []
        for i in range(n):
            handle = f"n{len(self.handles)}_{random.randrange(10**9)}"
            uid = int(self.run(self.hf.register(handle))["id"])
            self.handles[uid] = handle
            out.append(uid)
        return out

    def follow(self, a: int, b: int) -> None:
        self.run(self.hf.follow(a, self.handles[b]))
        if (a, b) not in self.follows:
            fid = next(fid for fid, u in self.run(self.store.followers_page(b, None, 1000)) if u.id == a)
            self.follows[(a, b)] = fid

    def unfollow(self, a: int, b: int) -> None:
        self.run(self.hf.unfollow(a, self.handles[b]))
        self.follows.pop((a, b), None)

    def post(self, a: int, mentions: tuple[int, ...] = (), reply_to: int | None = None) -> int:
        text = "hi " + " ".join(f"@{self.handles[m]}" for m in mentions)
        p = self.run(self.store.create_post(a, self.handles[a], text, in_reply_to_id=reply_to,
                                            mention_ids=mentions))
        to = self.posts[reply_to].author if reply_to is not None else None
        self.posts[p.id] = oracle.P(p.id, a, reply_to_author=to, mentions=tuple(m for m in mentions if m != a))
        return p.id

    def boost(self, a: int, pid: int) -> int:
        b, original, _ = self.run(self.store.reblog(a, self.handles[a], pid, visibility="public"))
        self.posts[b.id] = oracle.P(b.id, a, reblog_of=original.id)
        return b.id

    def unboost(self, a: int, pid: int) -> None:
        gone, _ = self.run(self.store.unreblog(a, pid))
        if gone is not None:
            del self.posts[gone.id]

    def favourite(self, a: int, pid: int) -> None:
        changed, post = self.run(self.store.favourite(a, pid))
        if changed:
            fav = self.run(self.store.favourites_page(a, None, None, 1))[0]
            assert fav[1] == post.id
            self.favourites[(a, post.id)] = fav[0]

    def unfavourite(self, a: int, pid: int) -> None:
        self.run(self.store.unfavourite(a, pid))
        self.favourites.pop((a, pid), None)

    def delete(self, pid: int) -> None:
        self.run(self.store.delete_post(pid, self.posts[pid].author))
        del self.posts[pid]
        for b in [b for b in self.posts.values() if b.reblog_of == pid]:
            del self.posts[b.id]
        self.favourites = {k: v for k, v in self.favourites.items() if k[1] in self.posts}

    # -- the notifier ---------------------------------------------------------------------------
    def pending(self) -> list[Event]:
        """Every event the notifier has not acknowledged. PostgreSQL's outbox delivers an
        event once no older transaction in the cluster is still running (pg_outbox), so a
        busy server may hold one back for a moment: read until all that lag counts is here."""
        deadline = time.monotonic() + 30
        while True:
            lag = self.run(self.hf.stream.lag(NOTIFIER))
            events = self.run(self.hf.stream.fetch(NOTIFIER, 100_000, timeout=0 if lag == 0 else 0.5))
            if len(events) >= lag or time.monotonic() > deadline:
                return events

    def notify(self, events: list[Event] | None = None) -> list[Event]:
        if events is None:
            events = self.pending()
            if events:
                self.run(self.hf.stream.ack(NOTIFIER, events))
        if events:
            self.run(self.hf.consumers.notify(events))
        return events

    def table(self, uid: int) -> list[tuple[int, str, int, int | None]]:
        got = self.run(self.store.notifications_page(uid, limit=10_000))
        return [(n.id, n.type, n.from_user_id, n.post_id) for n in got]

    def want(self, uid: int) -> list[tuple[int, str, int, int | None]]:
        return oracle.notifications(uid, self.posts, self.follows, self.favourites)

    def check(self) -> None:
        for uid in self.handles:
            assert self.table(uid) == self.want(uid), uid


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs("postgresql"))])
def n(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Notified]:
    settings = Settings(data_dir=tmp_path, sqlite_synchronous="NORMAL")
    if request.param == "postgresql":
        with scratch_pg_database() as url:
            world = Notified(settings.replace(database_url=url))
            try:
                yield world
            finally:
                world.close()
    else:
        world = Notified(settings)
        try:
            yield world
        finally:
            world.close()


def test_each_cause_notifies_its_recipient_once_and_never_the_actor(n: Notified) -> None:
    a, b, c = n.users(3)
    n.follow(b, a)
    p = n.post(a)
    n.favourite(b, p)
    n.favourite(a, p)  # own: no notification
    n.boost(c, p)
    n.boost(a, p)  # own: no notification
    n.post(b, mentions=(a, b))  # mentions a; b is the author
    n.post(c, reply_to=p, mentions=(a,))
    events = n.notify()
    assert events
    n.check()
    types = sorted(t for _, t, _, _ in n.table(a))
    assert types == ["favourite", "follow", "mention", "mention", "reblog"]
    assert n.table(b) == [] and n.table(c) == []
    assert sorted(x.id for x in n.seen) == sorted(i for i, *_ in n.table(a))  # the hook saw each insert
    seen = len(n.seen)
    n.notify(events)  # redelivered: nothing new, nothing gone
    n.check()
    assert len(n.seen) == seen


def test_undoing_a_cause_removes_its_notification(n: Notified) -> None:
    a, b, c = n.users(3)
    n.follow(b, a)
    p = n.post(a)
    n.favourite(b, p)
    boost = n.boost(c, p)
    m = n.post(c, mentions=(a,))
    n.notify()
    assert len(n.table(a)) == 4
    n.unfollow(b, a)
    n.unfavourite(b, p)
    n.unboost(c, p)
    n.delete(m)
    n.notify()
    n.check()
    assert n.table(a) == []
    # deleting the original takes its favourites' and boosts' notifications with it
    n.favourite(b, p)
    n.boost(c, p)
    n.notify()
    assert len(n.table(a)) == 2
    n.delete(p)
    n.notify()
    n.check()
    assert n.table(a) == []
    assert boost not in n.posts


def test_late_and_out_of_order_events_change_nothing_wrong(n: Notified) -> None:
    a, b = n.users(2)
    p = n.post(a)
    n.favourite(b, p)
    first = n.notify()
    n.unfavourite(b, p)
    n.follow(b, a)
    n.unfollow(b, a)
    second = n.notify()
    n.check()
    assert n.table(a) == []
    n.notify(list(reversed(first + second)))  # an old favourite after its unfavourite
    n.notify(first)
    n.check()
    assert n.table(a) == []


@pytest.mark.parametrize("seed", range(3))
def test_random_histories_in_shuffled_batches_equal_the_oracle(n: Notified, seed: int) -> None:
    rng = random.Random(seed)
    us = n.users(4)
    history: list[Event] = []
    for step in range(60):
        a, b = rng.sample(us, 2)
        live = sorted(n.posts)
        what = rng.choice(["follow", "unfollow", "post", "mention", "reply", "boost", "unboost",
                           "favourite", "unfavourite", "delete"])
        pid = rng.choice(live) if live else None
        if what == "follow":
            n.follow(a, b)
        elif what == "unfollow":
            n.unfollow(a, b)
        elif what == "post" or pid is None:
            n.post(a)
        elif what == "mention":
            n.post(a, mentions=tuple(rng.sample(us, 2)))
        elif what == "reply":
            n.post(a, reply_to=pid, mentions=(b,))
        elif what == "boost":
            n.boost(a, pid)
        elif what == "unboost":
            n.unboost(a, pid)
        elif what == "favourite":
            n.favourite(a, pid)
        elif what == "unfavourite":
            n.unfavourite(a, n.posts[pid].reblog_of or pid)
        elif what == "delete":
            n.delete(pid)
        if rng.random() < 0.3:
            got = n.pending()
            if got:
                n.run(n.hf.stream.ack(NOTIFIER, got))
                rng.shuffle(got)  # workers sharing a consumer apply batches in any order
                n.notify(got)
                history += got
    history += n.notify()
    n.check()
    rng.shuffle(history)
    n.notify(history)  # every event again, in any order
    n.check()


def test_the_audit_names_a_wrong_table_and_the_rebuild_makes_it_right(n: Notified) -> None:
    a, b = n.users(2)
    n.follow(b, a)
    p = n.post(a)
    n.favourite(b, p)
    n.notify()
    # The notifier missed an event (say, a bug dropped it): the table lacks its notification.
    q = n.post(b, mentions=(a,))
    dropped = n.pending()
    n.run(n.hf.stream.ack(NOTIFIER, dropped))
    report = n.run(Auditor(n.hf, parts=("notifications",), settle_timeout=0.5, stall=0.2).run())
    assert [d.subject for d in report.differences if d.part == "notifications"]
    assert report.exit_code() == 1
    assert q in n.posts
    changed = n.run(batch.rebuild_notifications(n.hf))
    assert changed >= 1
    n.check()
    report = n.run(Auditor(n.hf, parts=("notifications",), settle_timeout=0.5, stall=0.2).run())
    assert report.exit_code() == 0, report.lines()
    assert report.checked.get("notification_lists", 0) >= 2
    assert n.run(batch.rebuild_notifications(n.hf)) == 0  # nothing left to change

