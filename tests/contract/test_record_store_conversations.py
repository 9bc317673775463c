"""Contract: the conversation records of the RecordStore (docs/conversations.md), on every
adapter (SQLite, PostgreSQL): replies and their counters, mentions, boosts (idempotent, a
boost of a boost boosts the original, deleted with the original), favourites (idempotent,
exact counters under concurrency), the reads statuses need, notifications as a function of
the records (checked against a Python oracle with hypothesis), post counters, markers, and
the migration of a database written before all this."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from homefeed.domain import model
from homefeed.domain.errors import Forbidden, NotFound
from homefeed.domain.model import Notification, Post, PostStats

from tests.backends import needs, scratch_pg_database

from .conftest import run, wait_for_events
from .test_record_store import new_user

CONSUMER = "conv-test"


async def events_of(r, pred):
    return await wait_for_events(r.stream, CONSUMER, pred, r.delivery_timeout)


def count_of(type_: str, n: int, **data):
    def pred(events):
        return sum(
            1 for e in events if e.type == type_ and all(e.data.get(k) == v for k, v in data.items())
        ) >= n

    return pred


def matching(events, type_: str, **data):
    return [e for e in events if e.type == type_ and all(e.data.get(k) == v for k, v in data.items())]


async def stats(store, post_id: int, viewer: int | None = None) -> PostStats:
    return (await store.post_stats([post_id], viewer))[post_id]


async def corrupt(store, sql: str, params: tuple) -> None:
    """Write behind the store's back (the audit's reason to exist): ``sql`` with ``?``."""
    if store.backend == "sqlite":
        await store.db.write(lambda conn: conn.execute(sql, params))
    else:
        await store.db.write(sql.replace("?", "%s"), params, outbox=False)


# --------------------------------------------------------------------------------------------
# replies and mentions
# --------------------------------------------------------------------------------------------


def test_a_reply_links_its_parent_counts_and_survives_the_parents_delete(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b = await new_user(s), await new_user(s)
            parent = await s.create_post(a.id, a.handle, "root")
            assert (parent.in_reply_to_id, parent.in_reply_to_account_id, parent.reblog_of_id) == (None, None, None)
            reply = await s.create_post(b.id, b.handle, "re", in_reply_to_id=parent.id)
            assert (reply.in_reply_to_id, reply.in_reply_to_account_id) == (parent.id, a.id)
            self_reply = await s.create_post(a.id, a.handle, "thread", in_reply_to_id=parent.id)
            assert self_reply.in_reply_to_account_id == a.id
            assert (await stats(s, parent.id)).replies_count == 2
            assert await s.reply_ids([parent.id, reply.id]) == {parent.id: [reply.id, self_reply.id], reply.id: []}
            got = {p.id: p for p in await s.posts_by_ids([reply.id, parent.id])}
            assert got[reply.id] == reply and got[parent.id] == parent
            assert (await s.user_posts(b.id, None, 10)) == [reply]
            assert [p for p in await s.posts_after(0, 1000) if p.id == reply.id] == [reply]
            events = await events_of(r, count_of(model.POST_CREATED, 1, post_id=reply.id))
            (ev,) = matching(events, model.POST_CREATED, post_id=reply.id)
            assert ev.data["in_reply_to_id"] == parent.id and ev.data["in_reply_to_account_id"] == a.id
            assert ev.data["reblog_of_id"] is None and ev.data["mention_ids"] == []

            # a reply to nothing: NotFound, nothing written
            before = await s.user_by_id(b.id)
            with pytest.raises(NotFound):
                await s.create_post(b.id, b.handle, "lost", in_reply_to_id=parent.id + 12345)
            assert (await s.user_by_id(b.id)).posts_count == before.posts_count
            assert len(await s.author_post_ids(b.id, None, 10)) == 1

            # deleting a reply takes it out of its parent's count
            await s.delete_post(self_reply.id, a.id)
            assert (await stats(s, parent.id)).replies_count == 1
            # deleting the parent keeps the reply, still pointing at it
            await s.delete_post(parent.id, a.id)
            (kept,) = await s.posts_by_ids([reply.id])
            assert kept == reply
            assert await s.reply_ids([parent.id]) == {parent.id: [reply.id]}
            events = await events_of(r, count_of(model.POST_DELETED, 1, post_id=parent.id))
            (ev,) = matching(events, model.POST_DELETED, post_id=self_reply.id)
            assert ev.data["in_reply_to_id"] == parent.id and ev.data["reblog_of_id"] is None
            assert ev.data["visibility"] == "public"
            # and a reply to the gone post is refused
            with pytest.raises(NotFound):
                await s.create_post(b.id, b.handle, "late", in_reply_to_id=parent.id)

    run(main())


def test_mentions_are_stored_once_for_existing_users_other_than_the_author(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = await new_user(s), await new_user(s), await new_user(s)
            ghost = c.id + 999_999
            p = await s.create_post(a.id, a.handle, "hi", mention_ids=[c.id, b.id, b.id, a.id, ghost])
            q = await s.create_post(a.id, a.handle, "nobody")
            assert await s.mention_ids([p.id, q.id]) == {p.id: sorted([b.id, c.id]), q.id: []}
            events = await events_of(r, count_of(model.POST_CREATED, 1, post_id=p.id))
            (ev,) = matching(events, model.POST_CREATED, post_id=p.id)
            assert ev.data["mention_ids"] == sorted([b.id, c.id])

    run(main())


# --------------------------------------------------------------------------------------------
# boosts
# --------------------------------------------------------------------------------------------


def test_boosts_are_idempotent_and_a_boost_of_a_boost_boosts_the_original(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = await new_user(s), await new_user(s), await new_user(s)
            original = await s.create_post(a.id, a.handle, "boost me")
            boost, orig, created = await s.reblog(b.id, b.handle, original.id)
            assert created and orig == original
            assert boost == Post(boost.id, b.id, b.handle, "", "public", reblog_of_id=original.id)
            assert boost.id > original.id
            again, orig2, created2 = await s.reblog(b.id, b.handle, original.id)
            assert (again, orig2, created2) == (boost, original, False)
            via_boost, orig3, created3 = await s.reblog(b.id, b.handle, boost.id)
            assert (via_boost, orig3, created3) == (boost, original, False)
            cboost, orig4, created4 = await s.reblog(c.id, c.handle, boost.id, visibility="unlisted")
            assert created4 and orig4 == original and cboost.reblog_of_id == original.id
            assert cboost.visibility == "unlisted"
            assert (await stats(s, original.id)).reblogs_count == 2
            assert (await s.user_by_id(b.id)).posts_count == 1
            assert await s.author_post_ids(b.id, None, 10) == [boost.id]
            assert [p.id for p in await s.posts_by_ids([boost.id])] == [boost.id]
            assert [(i, u.id) for i, u in await s.reblogged_by(original.id, None, 10)] == [
                (cboost.id, c.id), (boost.id, b.id)]
            assert [u.id for _, u in await s.reblogged_by(original.id, cboost.id, 10)] == [b.id]
            events = await events_of(r, count_of(model.POST_CREATED, 1, post_id=cboost.id))
            boosts = [e for e in events if e.type == model.POST_CREATED and e.data["reblog_of_id"] == original.id]
            assert [e.data["post_id"] for e in boosts] == [boost.id, cboost.id]  # one event each
            assert boosts[0].data["author_id"] == b.id and boosts[0].data["text"] == ""
            with pytest.raises(NotFound):
                await s.reblog(b.id, b.handle, original.id + 777_777)

            # unreblog by the boost's id or the original's; again: nothing to undo
            gone, orig5 = await s.unreblog(b.id, boost.id)
            assert gone == boost and orig5 == original
            assert await s.unreblog(b.id, original.id) == (None, original)
            assert await s.posts_by_ids([boost.id]) == []
            assert (await stats(s, original.id)).reblogs_count == 1
            assert (await s.user_by_id(b.id)).posts_count == 0
            events = await events_of(r, count_of(model.POST_DELETED, 1, post_id=boost.id))
            (ev,) = matching(events, model.POST_DELETED, post_id=boost.id)
            assert ev.data["reblog_of_id"] == original.id and ev.data["author_id"] == b.id
            assert ev.data["author_handle"] == b.handle and ev.data["text"] == ""
            with pytest.raises(NotFound):
                await s.unreblog(b.id, original.id + 777_777)
            # boosting again after an unboost makes a new boost
            boost2, _, created5 = await s.reblog(b.id, b.handle, original.id)
            assert created5 and boost2.id != boost.id

    run(main())


def test_deleting_an_original_deletes_its_boosts_favourites_and_mentions_but_not_replies(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = await new_user(s), await new_user(s), await new_user(s)
            original = await s.create_post(a.id, a.handle, "doomed", mention_ids=[b.id])
            bb, _, _ = await s.reblog(b.id, b.handle, original.id)
            cb, _, _ = await s.reblog(c.id, c.handle, original.id)
            await s.favourite(b.id, original.id)
            await s.favourite(c.id, original.id)
            reply = await s.create_post(c.id, c.handle, "re", in_reply_to_id=original.id)
            with pytest.raises(Forbidden):
                await s.delete_post(original.id, b.id)
            deleted = await s.delete_post(original.id, a.id)
            assert deleted == original
            assert await s.posts_by_ids([original.id, bb.id, cb.id]) == []
            assert [p.id for p in await s.posts_by_ids([reply.id])] == [reply.id]
            assert (await s.user_by_id(b.id)).posts_count == 0
            assert (await s.user_by_id(c.id)).posts_count == 1  # the reply
            assert await s.favourites_page(b.id, None, None, 10) == []
            assert await s.favourited_by(original.id, None, 10) == []
            assert await s.reblogged_by(original.id, None, 10) == []
            assert await s.mention_ids([original.id]) == {original.id: []}
            events = await events_of(r, count_of(model.POST_DELETED, 1, post_id=original.id))
            gone = {e.data["post_id"]: e.data for e in events if e.type == model.POST_DELETED}
            assert set(gone) == {original.id, bb.id, cb.id}
            assert gone[bb.id]["author_id"] == b.id and gone[bb.id]["reblog_of_id"] == original.id
            assert gone[original.id]["reblog_of_id"] is None
            # each delete carries the post as it was (webhooks' status.deleted renders it)
            assert {p: (d["author_handle"], d["text"], d["visibility"]) for p, d in gone.items()} == {
                original.id: (a.handle, "doomed", "public"), bb.id: (b.handle, "", "public"),
                cb.id: (c.handle, "", "public")}
            with pytest.raises(NotFound):
                await s.reblog(b.id, b.handle, original.id)
            with pytest.raises(NotFound):
                await s.favourite(b.id, original.id)

    run(main())


# --------------------------------------------------------------------------------------------
# favourites
# --------------------------------------------------------------------------------------------


def test_favourites_are_idempotent_counted_paged_and_evented(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = await new_user(s), await new_user(s), await new_user(s)
            posts = [await s.create_post(a.id, a.handle, f"p{i}") for i in range(5)]
            assert await s.favourite(b.id, posts[0].id) == (True, posts[0])
            assert await s.favourite(b.id, posts[0].id) == (False, posts[0])
            for p in posts[1:]:
                assert (await s.favourite(b.id, p.id))[0]
            await s.favourite(c.id, posts[0].id)
            assert (await stats(s, posts[0].id)).favourites_count == 2
            page = await s.favourites_page(b.id, None, None, 10)
            assert [pid for _, pid in page] == [p.id for p in reversed(posts)]
            fav_ids = [fid for fid, _ in page]
            assert fav_ids == sorted(fav_ids, reverse=True)
            assert await s.favourites_page(b.id, fav_ids[1], None, 2) == page[2:4]
            assert await s.favourites_page(b.id, None, fav_ids[2], 10) == page[:2]
            assert await s.favourites_page(b.id, None, fav_ids[3], 1, oldest_first=True) == [page[2]]
            assert await s.favourites_page(b.id, fav_ids[0], fav_ids[4], 10, oldest_first=True) == page[3:0:-1]
            by = await s.favourited_by(posts[0].id, None, 10)
            assert [u.id for _, u in by] == [c.id, b.id]
            assert [u.id for _, u in await s.favourited_by(posts[0].id, by[0][0], 10)] == [b.id]

            # a boost's id favourites its original
            boost, _, _ = await s.reblog(c.id, c.handle, posts[1].id)
            assert await s.favourite(c.id, boost.id) == (True, posts[1])
            assert await s.unfavourite(c.id, boost.id) == (True, posts[1])

            assert await s.unfavourite(b.id, posts[0].id) == (True, posts[0])
            assert await s.unfavourite(b.id, posts[0].id) == (False, posts[0])
            assert (await stats(s, posts[0].id)).favourites_count == 1
            with pytest.raises(NotFound):
                await s.favourite(b.id, posts[-1].id + 999_999)
            with pytest.raises(NotFound):
                await s.unfavourite(b.id, posts[-1].id + 999_999)

            events = await events_of(r, count_of(model.UNFAVOURITED, 2))
            favs = matching(events, model.FAVOURITED, post_id=posts[0].id)
            assert [e.data["user_id"] for e in favs] == [b.id, c.id]  # none for the repeat
            assert favs[0].data == {"favourite_id": fav_ids[-1], "user_id": b.id,
                                    "post_id": posts[0].id, "author_id": a.id}
            (unfav,) = matching(events, model.UNFAVOURITED, post_id=posts[0].id)
            assert unfav.data == favs[0].data

    run(main())


def test_concurrent_favourites_and_unfavourites_keep_exact_counts(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await new_user(s)
            fans = [await new_user(s) for _ in range(12)]
            post = await s.create_post(a.id, a.handle, "popular")
            rng = random.Random(7)
            for _ in range(4):
                calls = []
                for f in fans:
                    for _ in range(3):
                        op = s.favourite if rng.random() < 0.6 else s.unfavourite
                        calls.append(op(f.id, post.id))
                rng.shuffle(calls)
                results = await asyncio.gather(*calls)
                assert all(p == post for _, p in results)
                (stored, actual), = (await s.post_counters([post.id])).values()
                assert stored == actual
                assert stored[2] == len(await s.favourited_by(post.id, None, 100))
            # every change produced one event: favourited minus unfavourited = the count
            count = (await stats(s, post.id)).favourites_count
            evs = await wait_for_events(r.stream, CONSUMER, lambda e: False, 1.0)
            plus = len(matching(evs, model.FAVOURITED, post_id=post.id))
            minus = len(matching(evs, model.UNFAVOURITED, post_id=post.id))
            assert plus - minus == count

    run(main())


def test_favourites_boosts_and_replies_racing_a_delete_leave_nothing_dangling(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await new_user(s)
            fans = [await new_user(s) for _ in range(8)]
            for _ in range(3):
                p = await s.create_post(a.id, a.handle, "short-lived")
                calls = [s.delete_post(p.id, a.id)]
                for f in fans:
                    calls += [s.favourite(f.id, p.id), s.reblog(f.id, f.handle, p.id),
                              s.create_post(f.id, f.handle, "re", in_reply_to_id=p.id)]
                random.Random(p.id).shuffle(calls)
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
                assert all(not isinstance(o, Exception) or isinstance(o, NotFound) for o in outcomes), [
                    repr(o) for o in outcomes if isinstance(o, Exception)]
                assert await s.posts_by_ids([p.id]) == []
                assert await s.favourited_by(p.id, None, 100) == []
                assert await s.reblogged_by(p.id, None, 100) == []
                for f in fans:
                    user = await s.user_by_id(f.id)
                    assert user.posts_count == len(await s.author_post_ids(f.id, None, 100))
                    assert all(q.reblog_of_id is None for q in await s.user_posts(f.id, None, 100))
                replies = (await s.reply_ids([p.id]))[p.id]
                assert len(replies) == sum(isinstance(o, Post) and o.in_reply_to_id == p.id for o in outcomes)

    run(main())


def test_post_stats_carry_the_viewers_flags(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = await new_user(s), await new_user(s), await new_user(s)
            p = await s.create_post(a.id, a.handle, "x")
            q = await s.create_post(a.id, a.handle, "y", in_reply_to_id=p.id)
            await s.favourite(b.id, p.id)
            await s.reblog(b.id, b.handle, p.id)
            await s.favourite(c.id, q.id)
            missing = q.id + 999_999
            got = await s.post_stats([p.id, q.id, missing], b.id)
            assert got == {p.id: PostStats(1, 1, 1, True, True), q.id: PostStats(0, 0, 1, False, False)}
            assert await s.post_stats([p.id], c.id) == {p.id: PostStats(1, 1, 1, False, False)}
            assert await s.post_stats([p.id, q.id], None) == {
                p.id: PostStats(1, 1, 1, False, False), q.id: PostStats(0, 0, 1, False, False)}
            assert await s.post_stats([], b.id) == {}

    run(main())


def test_public_ids_leave_out_boosts_and_replies_to_others(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b = await new_user(s), await new_user(s)
            p = await s.create_post(a.id, a.handle, "public")
            thread = await s.create_post(a.id, a.handle, "self reply", in_reply_to_id=p.id)
            other = await s.create_post(b.id, b.handle, "reply to a", in_reply_to_id=p.id)
            boost, _, _ = await s.reblog(b.id, b.handle, p.id)
            unlisted = await s.create_post(b.id, b.handle, "quiet", visibility="unlisted")
            public = await s.public_post_ids(None, 1000)
            assert thread.id in public and p.id in public
            assert other.id not in public and boost.id not in public and unlisted.id not in public
            # author and home lists hold everything
            assert await s.author_post_ids(b.id, None, 10) == [unlisted.id, boost.id, other.id]
            await s.follow(a.id, b.id)
            assert await s.home_post_ids(a.id, None, 10) == [unlisted.id, boost.id, other.id, thread.id, p.id]

    run(main())


# --------------------------------------------------------------------------------------------
# notifications
# --------------------------------------------------------------------------------------------


def test_a_bulk_loaded_world_has_the_notifications_its_follows_make(records):
    """``bulk_load`` bypasses the outbox, so the notifier never sees its follows: the load
    itself writes what the records say (each follow notifies its followee; a self-follow
    does not), and the audit's diff is empty (the demo world's audit named every follow)."""
    async def main():
        async with records() as r:
            s = r.store
            base = random.randrange(1 << 40, 1 << 50) << 8
            n = 12
            uids = [base + i for i in range(n)]
            users_ = [(u, f"bl{u}", f"bulk {i}", f"blt{u}".encode()) for i, u in enumerate(uids)]
            follows = [(uids[i], uids[j], base + 1000 + i * n + j)
                       for i in range(n) for j in range(n) if (i + j) % 3 == 0]  # self-follows too
            posts = [(base + 5000 + i, uids[i % n], f"bulk post {i}") for i in range(30)]
            await s.bulk_load(users_, follows + follows[:5], posts)  # duplicates ignored
            assert await s.notification_diff(uids) == {}
            for j, followee in enumerate(uids):
                got = {(x.type, x.from_user_id, x.id) for x in await s.notifications_page(followee, limit=40)}
                want = {("follow", f, i) for f, e, i in follows if e == followee and f != followee}
                assert got == want, (j, got ^ want)

    run(main())


def test_notifications_follow_the_records_and_pages_filter(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = await new_user(s), await new_user(s), await new_user(s)
            await s.follow(b.id, a.id)
            p = await s.create_post(a.id, a.handle, "hello")
            m = await s.create_post(b.id, b.handle, "hey @a", mention_ids=[a.id])
            await s.favourite(b.id, p.id)
            await s.favourite(a.id, p.id)  # one's own: no notification
            boost, _, _ = await s.reblog(c.id, c.handle, p.id)
            await s.reblog(a.id, a.handle, p.id)  # one's own: none either
            new = await s.sync_notifications(
                post_ids=[p.id, m.id, boost.id], favourites=[(b.id, p.id), (a.id, p.id)],
                follows=[(b.id, a.id)])
            assert {n.type for n in new} == {"follow", "mention", "favourite", "reblog"}
            assert await s.sync_notifications(post_ids=[m.id, boost.id], follows=[(b.id, a.id)]) == []
            page = await s.notifications_page(a.id)
            assert [n.id for n in page] == sorted((n.id for n in new), reverse=True)
            kinds = {n.type: n for n in page}
            assert kinds["mention"] == Notification(m.id, a.id, "mention", b.id, m.id)
            assert kinds["reblog"] == Notification(boost.id, a.id, "reblog", c.id, p.id)
            assert kinds["favourite"].post_id == p.id and kinds["favourite"].from_user_id == b.id
            assert kinds["follow"].post_id is None and kinds["follow"].from_user_id == b.id
            assert await s.notification(a.id, m.id) == kinds["mention"]
            assert await s.notification(b.id, m.id) is None
            assert [n.type for n in await s.notifications_page(a.id, types=["mention", "reblog"])] == [
                "reblog", "mention"]
            assert await s.notifications_page(a.id, types=[]) == []
            assert {n.type for n in await s.notifications_page(a.id, exclude_types=["follow"])} == {
                "mention", "favourite", "reblog"}
            assert {n.type for n in await s.notifications_page(a.id, from_user_id=b.id)} == {
                "follow", "mention", "favourite"}
            ids = [n.id for n in page]
            assert [n.id for n in await s.notifications_page(a.id, max_id=ids[0], limit=2)] == ids[1:3]
            assert [n.id for n in await s.notifications_page(a.id, min_id=ids[2])] == ids[:2]
            assert [n.id for n in await s.notifications_page(a.id, min_id=ids[3], limit=2, oldest_first=True)] == [
                ids[2], ids[1]]
            assert await s.notification_diff([a.id, b.id, c.id]) == {}

            # undoing the causes takes them away
            await s.unfavourite(b.id, p.id)
            await s.unfollow(b.id, a.id)
            await s.unreblog(c.id, p.id)
            assert await s.notification_diff([a.id]) == {a.id: (0, 3)}
            assert await s.sync_notifications(post_ids=[boost.id], favourites=[(b.id, p.id)],
                                              follows=[(b.id, a.id)]) == []
            assert [n.type for n in await s.notifications_page(a.id)] == ["mention"]
            # deleting the mentioning post takes the mention away
            await s.delete_post(m.id, b.id)
            await s.sync_notifications(post_ids=[m.id])
            assert await s.notifications_page(a.id) == []

    run(main())


def test_posts_synced_alone_make_exactly_their_notifications(records):
    """What the notifier asks for almost every batch: posts alone. Plain posts, a mention of
    oneself and a boost of one's own post make nothing; a mention of another, a boost of
    another's post make theirs, alone or among plain posts, once; a post deleted or a boost
    undone takes its notification away."""
    async def main():
        async with records() as r:
            s = r.store
            a, b = await new_user(s), await new_user(s)
            plain = [await s.create_post(a.id, a.handle, f"plain {i}") for i in range(3)]
            own = await s.create_post(a.id, a.handle, "me @a", mention_ids=[a.id])
            own_boost, _, _ = await s.reblog(a.id, a.handle, plain[0].id)
            quiet = [p.id for p in plain] + [own.id, own_boost.id]
            assert await s.sync_notifications(post_ids=quiet) == []
            assert await s.notifications_page(a.id) == [] and await s.notifications_page(b.id) == []

            m = await s.create_post(a.id, a.handle, "hey @b", mention_ids=[b.id])
            assert await s.sync_notifications(post_ids=[m.id]) == [
                Notification(m.id, b.id, "mention", a.id, m.id)]
            boost, _, _ = await s.reblog(b.id, b.handle, plain[1].id)
            assert await s.sync_notifications(post_ids=[*quiet, boost.id]) == [
                Notification(boost.id, a.id, "reblog", b.id, plain[1].id)]
            assert await s.sync_notifications(post_ids=[*quiet, m.id, boost.id]) == []  # again: nothing

            await s.delete_post(m.id, a.id)
            assert await s.sync_notifications(post_ids=[*quiet, m.id]) == []
            assert await s.notifications_page(b.id) == []
            assert [n.id for n in await s.notifications_page(a.id)] == [boost.id]

            assert await s.notification_diff([a.id, b.id]) == {}
            await s.unreblog(b.id, plain[1].id)  # its own event would say so; a redelivered
            assert await s.sync_notifications(post_ids=[boost.id]) == []  # post event does too
            assert await s.notifications_page(a.id) == []

    run(main())


def test_dismissed_and_cleared_notifications_never_come_back(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = await new_user(s), await new_user(s), await new_user(s)
            p = await s.create_post(a.id, a.handle, "x")
            await s.favourite(b.id, p.id)
            await s.favourite(c.id, p.id)
            await s.sync_notifications(favourites=[(b.id, p.id), (c.id, p.id)])
            first, second = await s.notifications_page(a.id, oldest_first=True)
            assert await s.dismiss_notification(a.id, first.id)
            assert not await s.dismiss_notification(a.id, first.id)
            assert not await s.dismiss_notification(b.id, second.id)  # not b's
            assert await s.sync_notifications(favourites=[(b.id, p.id)]) == []
            assert await s.rebuild_notifications([a.id]) == 0
            assert await s.notifications_page(a.id) == [second]
            assert await s.notification_diff([a.id]) == {}

            assert await s.clear_notifications(a.id) == 1
            assert await s.notifications_page(a.id) == []
            assert await s.sync_notifications(favourites=[(c.id, p.id)]) == []
            assert await s.rebuild_notifications([a.id]) == 0
            assert await s.notification_diff([a.id]) == {}
            # a newer cause is notified again
            await s.follow(c.id, a.id)
            (n,) = await s.sync_notifications(follows=[(c.id, a.id)])
            assert n.type == "follow" and await s.notifications_page(a.id) == [n]
            # the audit sees writes behind the store's back, the rebuild repairs them
            await corrupt(s, "DELETE FROM notifications WHERE user_id = ?", (a.id,))
            await corrupt(s, "INSERT INTO notifications (user_id, id, type, from_user_id, post_id)"
                             " VALUES (?, ?, 'mention', ?, ?)", (b.id, p.id, a.id, p.id))
            assert await s.notification_diff([a.id, b.id, c.id]) == {a.id: (1, 0), b.id: (0, 1)}
            assert await s.rebuild_notifications([a.id, b.id, c.id]) == 2
            assert await s.notification_diff([a.id, b.id, c.id]) == {}
            assert await s.notifications_page(a.id) == [n]

    run(main())


def test_dismissals_racing_syncs_are_never_undone(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await new_user(s)
            fans = [await new_user(s) for _ in range(10)]
            posts = [await s.create_post(a.id, a.handle, f"p{i}") for i in range(3)]
            causes = [(f.id, p.id) for f in fans for p in posts]
            for f, p in causes:
                await s.favourite(f, p)
            await s.sync_notifications(favourites=causes)
            shown = await s.notifications_page(a.id, limit=100)
            assert len(shown) == len(causes)
            rng = random.Random(3)
            gone = rng.sample(shown, 12)
            calls = [s.dismiss_notification(a.id, n.id) for n in gone]
            calls += [s.sync_notifications(favourites=rng.sample(causes, 10)) for _ in range(12)]
            rng.shuffle(calls)
            await asyncio.gather(*calls)
            await s.sync_notifications(favourites=causes)
            left = await s.notifications_page(a.id, limit=100)
            assert {n.id for n in left} == {n.id for n in shown} - {n.id for n in gone}
            assert await s.notification_diff([a.id]) == {}
            # a dismissed row written back behind the store's back: the next sync of its
            # cause takes it away again
            n = gone[0]
            await corrupt(s, "INSERT INTO notifications (user_id, id, type, from_user_id, post_id)"
                             " VALUES (?, ?, ?, ?, ?)", (a.id, n.id, n.type, n.from_user_id, n.post_id))
            assert await s.notification_diff([a.id]) == {a.id: (0, 1)}
            await s.sync_notifications(favourites=[(n.from_user_id, n.post_id)])
            assert await s.notification_diff([a.id]) == {}

    run(main())


# The hypothesis oracle: random records (follows, posts with mentions and replies, boosts,
# favourites, deletes) and reader actions (dismiss, clear), with the notifier's syncs
# interleaved at random, late, duplicated and out of order. After a final sync of every cause
# touched (shuffled, duplicated), the table equals the notification function computed here.
N_USERS = 4
NOTIF_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("follow"), st.integers(0, N_USERS - 1), st.integers(0, N_USERS - 1)),
        st.tuples(st.just("unfollow"), st.integers(0, N_USERS - 1), st.integers(0, N_USERS - 1)),
        st.tuples(st.just("post"), st.integers(0, N_USERS - 1), st.sets(st.integers(0, N_USERS - 1), max_size=3),
                  st.integers(-1, 20)),
        st.tuples(st.just("delete"), st.integers(0, 40)),
        st.tuples(st.just("reblog"), st.integers(0, N_USERS - 1), st.integers(0, 40)),
        st.tuples(st.just("unreblog"), st.integers(0, N_USERS - 1), st.integers(0, 40)),
        st.tuples(st.just("fav"), st.integers(0, N_USERS - 1), st.integers(0, 40)),
        st.tuples(st.just("unfav"), st.integers(0, N_USERS - 1), st.integers(0, 40)),
        st.tuples(st.just("dismiss"), st.integers(0, N_USERS - 1), st.integers(0, 40)),
        st.tuples(st.just("clear"), st.integers(0, N_USERS - 1)),
        st.tuples(st.just("sync"), st.integers(0, 1000)),
        st.tuples(st.just("sync"), st.integers(0, 1000)),
    ),
    min_size=10,
    max_size=60,
)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=NOTIF_OPS, seed=st.integers(0, 2**32 - 1))
def test_sync_notifications_makes_the_table_the_function_of_the_records(records, ops, seed):
    async def main():
        rng = random.Random(seed)
        async with records() as r:
            s = r.store
            users = [await new_user(s, "n") for _ in range(N_USERS)]
            uid = [u.id for u in users]
            # the records, as this model sees them
            follows: dict[tuple[int, int], int] = {}          # (follower, followee) -> follow id
            posts: dict[int, tuple[int, int | None, frozenset[int]]] = {}  # id -> (author, reblog_of, mentions)
            favs: dict[tuple[int, int], int] = {}             # (user, post) -> favourite id
            dismissed: set[tuple[int, int]] = set()
            cleared = {u: 0 for u in uid}
            causes: list[tuple[str, object]] = []             # every cause touched

            async def follow_id(a: int, b: int) -> int:
                for fid, u in await s.followers_page(b, None, 100):
                    if u.id == a:
                        return fid
                raise AssertionError("follow not found")

            def pick(i: int) -> int | None:
                ids = sorted(posts)
                return ids[i % len(ids)] if ids else None

            for op in ops:
                kind = op[0]
                if kind in ("follow", "unfollow"):
                    a, b = uid[op[1]], uid[op[2]]
                    if kind == "follow":
                        changed, _ = await s.follow(a, b)
                        if changed:
                            follows[(a, b)] = await follow_id(a, b)
                    else:
                        await s.unfollow(a, b)
                        follows.pop((a, b), None)
                    causes.append(("follow", (a, b)))
                elif kind == "post":
                    author = uid[op[1]]
                    parent = pick(op[3]) if op[3] >= 0 else None
                    mentions = [uid[i] for i in op[2]]
                    p = await s.create_post(author, users[op[1]].handle, "t", in_reply_to_id=parent,
                                            mention_ids=mentions)
                    posts[p.id] = (author, None, frozenset(m for m in mentions if m != author))
                    causes.append(("post", p.id))
                elif kind == "delete":
                    pid = pick(op[1])
                    if pid is None:
                        continue
                    await s.delete_post(pid, posts[pid][0])
                    gone = [pid] + [b for b, (_, o, _) in posts.items() if o == pid]
                    for g in gone:
                        posts.pop(g)
                    for key in [k for k in favs if k[1] == pid]:
                        favs.pop(key)
                    causes.extend(("post", g) for g in gone)
                elif kind in ("reblog", "unreblog"):
                    pid = pick(op[2])
                    if pid is None:
                        continue
                    user = uid[op[1]]
                    if kind == "reblog":
                        boost, orig, created = await s.reblog(user, users[op[1]].handle, pid)
                        if created:
                            posts[boost.id] = (user, orig.id, frozenset())
                    else:
                        boost, orig = await s.unreblog(user, pid)
                        if boost is not None:
                            posts.pop(boost.id)
                    if boost is not None:
                        causes.append(("post", boost.id))
                elif kind in ("fav", "unfav"):
                    pid = pick(op[2])
                    if pid is None:
                        continue
                    user = uid[op[1]]
                    target = posts[pid][1] or pid
                    if kind == "fav":
                        changed, _ = await s.favourite(user, pid)
                        if changed:
                            page = await s.favourites_page(user, None, None, 1)
                            assert page[0][1] == target
                            favs[(user, target)] = page[0][0]
                    else:
                        await s.unfavourite(user, pid)
                        favs.pop((user, target), None)
                    causes.append(("fav", (user, target)))
                elif kind == "dismiss":
                    user = uid[op[1]]
                    have = await s.notifications_page(user, limit=100)
                    if have:
                        n = have[op[2] % len(have)]
                        assert await s.dismiss_notification(user, n.id)
                        dismissed.add((user, n.id))
                        event("dismissed one")
                elif kind == "clear":
                    user = uid[op[1]]
                    have = await s.notifications_page(user, limit=100)
                    assert await s.clear_notifications(user) == len(have)
                    if have:
                        cleared[user] = max(cleared[user], max(n.id for n in have))
                        event("cleared some")
                else:  # the notifier, late and out of order: some causes touched so far
                    n = len(causes) if op[1] % 3 == 0 else min(len(causes), 1 + op[1] % 12)
                    await sync(s, rng.sample(causes, n))

            def oracle() -> set[Notification]:
                out = set()
                for (a, b), fid in follows.items():
                    if a != b:
                        out.add(Notification(fid, b, "follow", a, None))
                for (u, p), fid in favs.items():
                    if posts[p][0] != u:
                        out.add(Notification(fid, posts[p][0], "favourite", u, p))
                for pid, (author, orig, mentions) in posts.items():
                    if orig is not None and posts[orig][0] != author:
                        out.add(Notification(pid, posts[orig][0], "reblog", author, orig))
                    if orig is None:
                        out.update(Notification(pid, m, "mention", author, pid) for m in mentions)
                return {n for n in out if (n.user_id, n.id) not in dismissed and n.id > cleared[n.user_id]}

            final = causes * 2
            rng.shuffle(final)
            for i in range(0, len(final), 7):
                await sync(s, final[i : i + 7])
            assert await s.notification_diff(uid) == {}
            table = set()
            for u in uid:
                table.update(await s.notifications_page(u, limit=1000))
            assert table == oracle()
            assert await s.rebuild_notifications(uid) == 0
            # the counters agree with the records too
            assert all(st_ == ac for st_, ac in (await s.post_counters(list(posts))).values())

    run(main())


async def sync(store, causes) -> None:
    await store.sync_notifications(
        post_ids=[c for k, c in causes if k == "post"],
        favourites=[c for k, c in causes if k == "fav"],
        follows=[c for k, c in causes if k == "follow"],
    )


# --------------------------------------------------------------------------------------------
# counters, markers
# --------------------------------------------------------------------------------------------


def test_post_counters_audit_and_fix(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b = await new_user(s), await new_user(s)
            p = await s.create_post(a.id, a.handle, "x")
            await s.create_post(b.id, b.handle, "re", in_reply_to_id=p.id)
            await s.reblog(b.id, b.handle, p.id)
            await s.favourite(b.id, p.id)
            assert await s.post_counters([p.id]) == {p.id: ((1, 1, 1), (1, 1, 1))}
            await corrupt(s, "UPDATE posts SET replies_count = 7, favourites_count = 0 WHERE id = ?", (p.id,))
            assert await s.post_counters([p.id, p.id + 999_999]) == {p.id: ((7, 1, 0), (1, 1, 1))}
            assert await s.fix_post_counters([p.id]) == 1
            assert await s.fix_post_counters([p.id]) == 0
            assert (await stats(s, p.id)) == PostStats(1, 1, 1)

    run(main())


def test_markers_keep_a_version_per_timeline(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b = await new_user(s), await new_user(s)
            assert await s.markers(a.id, ["home", "notifications"]) == {}
            # versions as Mastodon's (Rails' lock_version): 0 when first saved, +1 per move
            m1 = await s.set_marker(a.id, "home", "123")
            assert (m1.timeline, m1.last_read_id, m1.version) == ("home", "123", 0) and m1.updated_at > 0
            m2 = await s.set_marker(a.id, "home", "456")
            assert (m2.last_read_id, m2.version) == ("456", 1) and m2.updated_at >= m1.updated_at
            assert await s.set_marker(a.id, "home", "456") == m2  # saved again where it is: unchanged
            n1 = await s.set_marker(a.id, "notifications", "9")
            assert n1.version == 0
            assert await s.markers(a.id, ["home", "notifications"]) == {"home": m2, "notifications": n1}
            assert await s.markers(a.id, ["home"]) == {"home": m2}
            assert await s.markers(b.id, ["home", "notifications"]) == {}
        async with records() as r:  # durable
            assert await r.store.markers(a.id, ["home"]) == {"home": m2}

    run(main())


# --------------------------------------------------------------------------------------------
# migration: a database written before conversations upgrades in place
# --------------------------------------------------------------------------------------------


def _old_sqlite(path) -> None:
    """The schema of the release before conversations (7 migrations) with a world in it."""
    from homefeed.adapters import sqlite_db

    conn = sqlite_db.connect(path)
    for target, script in enumerate(sqlite_db.MIGRATIONS[:7], start=1):
        for statement in sqlite_db._split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")
    conn.execute("INSERT INTO users(id, handle, handle_key, display_name, token_hash, posts_count)"
                 " VALUES (100, 'Old', 'old', 'Old', x'01', 2), (101, 'Older', 'older', 'O', x'02', 0)")
    conn.execute("INSERT INTO posts(id, author_id, text) VALUES (1000, 100, 'first'), (1001, 100, 'second')")
    conn.execute("INSERT INTO follows(follower_id, followee_id, id) VALUES (101, 100, 500)")
    conn.close()


async def _old_postgres(url: str) -> None:
    import psycopg

    from homefeed.adapters import pg_schema

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE homefeed_schema (one boolean PRIMARY KEY DEFAULT true"
                           " CHECK (one), version integer NOT NULL)")
        for script in pg_schema.MIGRATIONS[:8]:
            await conn.execute(script, prepare=False)  # type: ignore[arg-type]
        await conn.execute("INSERT INTO homefeed_schema(version) VALUES (8)")
        await conn.execute("INSERT INTO users(id, handle, handle_key, display_name, token_hash, posts_count)"
                           " VALUES (100, 'Old', 'old', 'Old', '\\x01', 2), (101, 'Older', 'older', 'O', '\\x02', 0)")
        await conn.execute("INSERT INTO posts(id, author_id, text) VALUES (1000, 100, 'first'), (1001, 100, 'second')")
        await conn.execute("INSERT INTO follows(follower_id, followee_id, id) VALUES (101, 100, 500)")


async def _check_upgraded(store) -> None:
    """Old rows read with the defaults, and the new records work on them."""
    assert await store.posts_by_ids([1000]) == [Post(1000, 100, "Old", "first", "public", None, None, None)]
    assert await store.post_stats([1000, 1001], None) == {1000: PostStats(), 1001: PostStats()}
    assert await store.notifications_page(100) == []
    assert await store.notification_diff([100, 101]) == {100: (1, 0)}  # the old follow
    assert await store.rebuild_notifications([100, 101]) == 1
    (n,) = await store.notifications_page(100)
    assert (n.type, n.id, n.from_user_id) == ("follow", 500, 101)
    reply = await store.create_post(101, "Older", "late reply", in_reply_to_id=1000, mention_ids=[100])
    assert reply.in_reply_to_account_id == 100 and reply.id > 1001
    await store.favourite(101, 1001)
    boost, _, _ = await store.reblog(101, "Older", 1001)
    assert await store.post_stats([1000, 1001], 101) == {
        1000: PostStats(1, 0, 0), 1001: PostStats(0, 1, 1, True, True)}
    assert await store.post_counters([1000, 1001]) == {1000: ((1, 0, 0), (1, 0, 0)), 1001: ((0, 1, 1), (0, 1, 1))}
    assert await store.public_post_ids(None, 10) == [1001, 1000]
    assert (await store.set_marker(100, "home", "1000")).version == 0


def test_a_sqlite_database_from_before_conversations_upgrades_in_place(tmp_path):
    from homefeed.adapters.sqlite_db import MIGRATIONS, SqliteDatabase
    from homefeed.adapters.sqlite_store import SqliteRecordStore

    path = tmp_path / "old.db"
    _old_sqlite(path)

    async def main():
        store = SqliteRecordStore(SqliteDatabase(path))
        await store.open()
        try:
            assert store.db.query_value("PRAGMA user_version") == len(MIGRATIONS)
            await _check_upgraded(store)
        finally:
            await store.close()

    run(main())


@needs("postgresql")
def test_a_postgres_database_from_before_conversations_upgrades_in_place():
    from homefeed.adapters.pg_db import PgDatabase
    from homefeed.adapters.pg_store import PgRecordStore

    async def main(url: str):
        await _old_postgres(url)
        store = PgRecordStore(PgDatabase(url))
        await store.open()
        try:
            await _check_upgraded(store)
        finally:
            await store.close()

    with scratch_pg_database() as url:
        run(main(url))
