"""RecordStore contract: the system of record (``homefeed.ports.RecordStore``).

Every write is one transaction holding the record and its outbox event; reads page with
``before`` cursors; everything acknowledged survives a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import os

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.domain import model
from homefeed.domain.errors import Conflict, Forbidden, NotFound
from homefeed.domain.model import Post, User
from homefeed.ports import IdempotencyKeyTaken, IdempotencyRecord

from .conftest import Records, run, wait_for_events

_handles = itertools.count(1)


def token() -> bytes:
    return os.urandom(32)


def handle(prefix: str = "u") -> str:
    return f"{prefix}{next(_handles)}"


async def new_user(store, prefix: str = "u") -> User:
    h = handle(prefix)
    return await store.create_user(h, h.upper(), token())


async def events_until(r: Records, consumer: str, pred) -> list[model.Event]:
    return await wait_for_events(r.stream, consumer, pred, r.delivery_timeout)


def has_type_with(type_: str, **data):
    def pred(events):
        return any(
            e.type == type_ and all(e.data.get(k) == v for k, v in data.items()) for e in events
        )

    return pred


# --------------------------------------------------------------------------------------------
# users
# --------------------------------------------------------------------------------------------


def test_create_user_then_every_lookup_finds_it(records):
    async def main():
        async with records() as r:
            tok = token()
            u = await r.store.create_user("Alice_1", "Alice Liddell", tok)
            assert u.id > 0 and u.handle == "Alice_1" and u.display_name == "Alice Liddell"
            assert (u.followers_count, u.following_count, u.posts_count) == (0, 0, 0)
            assert await r.store.user_by_id(u.id) == u
            for spelling in ("Alice_1", "alice_1", "ALICE_1"):
                assert await r.store.user_by_handle(spelling) == u
            assert await r.store.user_id_by_token_hash(tok) == u.id
            assert await r.store.user_by_id(u.id + 1) is None
            assert await r.store.user_by_handle("nobody") is None
            assert await r.store.user_id_by_token_hash(token()) is None

    run(main())


def test_handle_unique_ignoring_case_conflict_changes_nothing(records):
    async def main():
        async with records() as r:
            first = await r.store.create_user("Carol", "first", token())
            for taken in ("Carol", "carol", "CAROL", "cArOl"):
                with pytest.raises(Conflict):
                    await r.store.create_user(taken, "second", token())
            assert await r.store.user_by_handle("carol") == first
            sentinel = await new_user(r.store)
            events = await events_until(r, "c", has_type_with(model.USER_REGISTERED, user_id=sentinel.id))
            assert [e.data["user_id"] for e in events if e.type == model.USER_REGISTERED] == [
                first.id,
                sentinel.id,
            ]

    run(main())


def test_concurrent_creates_of_one_handle_only_one_wins(records):
    async def main():
        async with records() as r:
            spellings = ["dave", "Dave", "DAVE", "daVe", "dAVE", "DaVe"]
            results = await asyncio.gather(
                *(r.store.create_user(h, h, token()) for h in spellings), return_exceptions=True
            )
            winners = [x for x in results if isinstance(x, User)]
            assert len(winners) == 1
            assert all(isinstance(x, Conflict) for x in results if not isinstance(x, User))
            assert await r.store.user_by_handle("DAVE") == winners[0]

    run(main())


# --------------------------------------------------------------------------------------------
# each write + its outbox event in one transaction
# --------------------------------------------------------------------------------------------


def test_every_write_appends_its_event_in_commit_order(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await s.create_user("ann", "Ann", token())
            b = await s.create_user("bob", "Bob", token())
            assert await s.follow(a.id, b.id) == (True, 1)
            p = await s.create_post(b.id, "bob", "hello")
            deleted = await s.delete_post(p.id, b.id)
            assert deleted == p
            assert await s.unfollow(a.id, b.id) == (True, 0)

            events = await events_until(r, "x", lambda ev: len(ev) >= 6)
            assert [e.type for e in events] == [
                model.USER_REGISTERED,
                model.USER_REGISTERED,
                model.FOLLOWED,
                model.POST_CREATED,
                model.POST_DELETED,
                model.UNFOLLOWED,
            ]
            seqs = [e.seq for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == 6
            reg_a, reg_b, fol, created, gone, unf = (e.data for e in events)
            assert (reg_a["user_id"], reg_b["user_id"]) == (a.id, b.id)
            assert (fol["follower_id"], fol["followee_id"]) == (a.id, b.id)
            assert (created["post_id"], created["author_id"], created["text"]) == (p.id, b.id, "hello")
            assert (gone["post_id"], gone["author_id"]) == (p.id, b.id)
            assert (unf["follower_id"], unf["followee_id"]) == (a.id, b.id)

    run(main())


def test_failed_and_unchanged_writes_append_no_event(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await new_user(s)
            b = await new_user(s)
            p = await s.create_post(a.id, a.handle, "mine")
            assert (await s.follow(a.id, b.id))[0] is True
            before = await events_until(r, "y", lambda ev: len(ev) >= 4)
            assert len(before) == 4

            assert (await s.follow(a.id, b.id))[0] is False  # already following
            assert (await s.unfollow(b.id, a.id))[0] is False  # never followed
            with pytest.raises(Conflict):
                await s.create_user(a.handle.upper(), "x", token())
            with pytest.raises(NotFound):
                await s.delete_post(p.id + 10_000, a.id)
            with pytest.raises(Forbidden):
                await s.delete_post(p.id, b.id)

            sentinel = await new_user(s)
            after = await events_until(r, "y", has_type_with(model.USER_REGISTERED, user_id=sentinel.id))
            assert [e.seq for e in after[:4]] == [e.seq for e in before]
            assert len(after) == 5, [e.type for e in after]

    run(main())


def test_after_create_post_returns_both_the_post_and_its_event_are_readable(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            for i in range(5):
                p = await r.store.create_post(u.id, u.handle, f"post {i}")
                assert await r.store.posts_by_ids([p.id]) == [p]
                events = await events_until(r, "reader", has_type_with(model.POST_CREATED, post_id=p.id))
                assert has_type_with(model.POST_CREATED, post_id=p.id, author_id=u.id)(events)

    run(main())


def test_concurrent_writes_each_get_exactly_one_event(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            posts = await asyncio.gather(
                *(r.store.create_post(u.id, u.handle, f"n{i}") for i in range(40))
            )
            ids = {p.id for p in posts}
            assert len(ids) == 40
            events = await events_until(
                r, "z", lambda ev: sum(e.type == model.POST_CREATED for e in ev) >= 40
            )
            created = [e.data["post_id"] for e in events if e.type == model.POST_CREATED]
            assert sorted(created) == sorted(ids) and len(created) == 40
            assert (await r.store.user_by_id(u.id)).posts_count == 40

    run(main())


# --------------------------------------------------------------------------------------------
# follows
# --------------------------------------------------------------------------------------------


def test_follow_and_unfollow_are_idempotent_and_keep_counters(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b, c = [await new_user(s) for _ in range(3)]
            assert await s.follow(a.id, b.id) == (True, 1)
            assert await s.follow(a.id, b.id) == (False, 1)
            assert await s.follow(c.id, b.id) == (True, 2)
            assert await s.followers_count(b.id) == 2
            assert sorted(await s.follower_ids(b.id)) == sorted([a.id, c.id])
            assert await s.following_ids(a.id) == [b.id]
            ua, ub = await s.user_by_id(a.id), await s.user_by_id(b.id)
            assert (ua.following_count, ua.followers_count) == (1, 0)
            assert (ub.following_count, ub.followers_count) == (0, 2)

            assert await s.unfollow(a.id, b.id) == (True, 1)
            assert await s.unfollow(a.id, b.id) == (False, 1)
            assert await s.follower_ids(b.id) == [c.id]
            assert await s.following_ids(a.id) == []
            assert (await s.user_by_id(a.id)).following_count == 0
            assert (await s.user_by_id(b.id)).followers_count == 1
            # follow again after unfollow
            assert await s.follow(a.id, b.id) == (True, 2)

    run(main())


def test_followers_among_is_the_candidates_who_follow(records):
    """``followers_among``: the candidates following the user, each once, whatever else
    the candidates hold (non-followers, the user, unknown ids, repeats)."""
    async def main():
        async with records() as r:
            s = r.store
            star, other = await new_user(s), await new_user(s)
            fans = [await new_user(s) for _ in range(6)]
            for f in fans[:4]:
                await s.follow(f.id, star.id)
            await s.follow(fans[4].id, other.id)  # follows someone else
            await s.follow(star.id, fans[0].id)  # the other way round
            assert await s.followers_among(star.id, []) == []
            cands = [fans[1].id, fans[4].id, fans[5].id, star.id, 10**15, fans[1].id, fans[3].id, fans[0].id]
            assert sorted(await s.followers_among(star.id, cands)) == sorted([fans[0].id, fans[1].id, fans[3].id])
            assert await s.followers_among(other.id, cands) == [fans[4].id]
            assert await s.followers_among(10**15, cands) == []
            await s.unfollow(fans[1].id, star.id)
            assert sorted(await s.followers_among(star.id, cands)) == sorted([fans[0].id, fans[3].id])
            # many candidates (more than one statement's worth of parameters on some stores)
            many = list(range(10**12, 10**12 + 40_000)) + [fans[3].id]
            assert await s.followers_among(star.id, many) == [fans[3].id]

    run(main())


def test_concurrent_follows_count_exactly(records):
    async def main():
        async with records() as r:
            s = r.store
            star = await new_user(s)
            fans = [await new_user(s) for _ in range(15)]
            # every fan follows three times at once: exactly one of each changes anything
            results = await asyncio.gather(*(s.follow(f.id, star.id) for f in fans for _ in range(3)))
            assert sum(changed for changed, _ in results) == 15
            assert await s.followers_count(star.id) == 15
            assert max(n for changed, n in results if changed) == 15
            results = await asyncio.gather(*(s.unfollow(f.id, star.id) for f in fans[:10] for _ in range(2)))
            assert sum(changed for changed, _ in results) == 10
            assert await s.followers_count(star.id) == 5
            assert sorted(await s.follower_ids(star.id)) == sorted(f.id for f in fans[10:])

    run(main())


def test_celebrity_ids_and_followers_count(records):
    async def main():
        async with records() as r:
            s = r.store
            users = [await new_user(s) for _ in range(6)]
            big, mid, small = users[0], users[1], users[2]
            for f in users[1:]:
                await s.follow(f.id, big.id)  # 5 followers
            for f in users[3:]:
                await s.follow(f.id, mid.id)  # 3 followers
            await s.follow(users[3].id, small.id)  # 1 follower
            assert set(await s.celebrity_ids(5)) == {big.id}
            assert set(await s.celebrity_ids(3)) == {big.id, mid.id}
            assert set(await s.celebrity_ids(4)) == {big.id}
            assert await s.followers_count(mid.id) == 3
            assert await s.followers_count(10**15) == 0
            await s.unfollow(users[1].id, big.id)
            assert set(await s.celebrity_ids(5)) == set()

    run(main())


def test_followers_and_following_pages_walk_everything_once_newest_first(records):
    async def main():
        async with records() as r:
            s = r.store
            star = await new_user(s)
            fans = [await new_user(s) for _ in range(7)]
            for f in fans:
                await s.follow(f.id, star.id)
            fan = fans[0]
            for other in fans[1:]:
                await s.follow(fan.id, other.id)

            async def walk(page, user_id, size):
                out, before = [], None
                while True:
                    got = await page(user_id, before, size)
                    assert len(got) <= size
                    out.extend(got)
                    if len(got) < size:
                        return out
                    before = got[-1][0]

            for size in (1, 3, 7, 50):
                got = await walk(s.followers_page, star.id, size)
                cursors = [c for c, _ in got]
                assert cursors == sorted(cursors, reverse=True) and len(set(cursors)) == 7
                assert [u.id for _, u in got] == [f.id for f in reversed(fans)]  # newest follow first
                assert all(isinstance(u, User) for _, u in got)

                got = await walk(s.following_page, fan.id, size)
                assert [u.id for _, u in got] == [f.id for f in reversed(fans[1:])] + [star.id]

            # a cursor excludes itself and everything newer
            page = await s.followers_page(star.id, None, 7)
            third = page[2][0]
            assert [c for c, _ in await s.followers_page(star.id, third, 100)] == [c for c, _ in page[3:]]
            assert await s.followers_page(fan.id, None, 10) == []  # nobody follows fans[0]

    run(main())


# --------------------------------------------------------------------------------------------
# posts
# --------------------------------------------------------------------------------------------


def test_post_text_round_trips_unchanged(records):
    texts = [
        "plain",
        "emoji 👩🏽‍💻 and flags 🇫🇷 and ZWJ 👨‍👩‍👧",
        "RTL: שלום עולם and مرحبا بالعالم",
        "combining e\u0301 vs é, Devanagari हिन्दी",
        "tabs\tand\nnewlines\r\n kept  ",
        "quotes ' \" ; -- DROP TABLE posts; \\ %",
        "x" * 500,
    ]

    async def main():
        async with records() as r:
            u = await new_user(r.store)
            made = [await r.store.create_post(u.id, u.handle, t) for t in texts]
            assert [p.text for p in made] == texts
            got = {p.id: p for p in await r.store.posts_by_ids([p.id for p in made])}
            assert [got[p.id].text for p in made] == texts
            assert [p.text for p in reversed(await r.store.user_posts(u.id, None, 100))] == texts

    run(main())


def test_create_post_returns_the_post_and_counts_it(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            p = await r.store.create_post(u.id, u.handle, "hi")
            assert p == Post(p.id, u.id, u.handle, "hi")
            assert (await r.store.user_by_id(u.id)).posts_count == 1
            assert await r.store.posts_by_ids([p.id]) == [p]
            assert await r.store.max_post_id() == p.id

    run(main())


def test_post_ids_are_time_ordered(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            v = await new_user(r.store)
            ids = []
            for i in range(30):
                who = u if i % 2 else v
                ids.append((await r.store.create_post(who.id, who.handle, str(i))).id)
            assert ids == sorted(ids) and len(set(ids)) == 30
            assert ids[0] > v.id  # created after the user

    run(main())


def test_delete_post_removes_it_everywhere_in_the_records(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await new_user(s)
            b = await new_user(s)
            await s.follow(b.id, a.id)
            keep = await s.create_post(a.id, a.handle, "keep")
            gone = await s.create_post(a.id, a.handle, "gone")
            assert await s.delete_post(gone.id, a.id) == gone
            assert await s.posts_by_ids([gone.id, keep.id]) == [keep]
            assert await s.author_post_ids(a.id, None, 10) == [keep.id]
            assert await s.home_post_ids(b.id, None, 10) == [keep.id]
            assert [p.id for p in await s.user_posts(a.id, None, 10)] == [keep.id]
            assert (await s.user_by_id(a.id)).posts_count == 1
            assert await s.max_post_id() == keep.id
            with pytest.raises(NotFound):
                await s.delete_post(gone.id, a.id)  # twice: no such post any more

    run(main())


def test_delete_post_not_found_or_forbidden_changes_nothing(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await new_user(s)
            b = await new_user(s)
            p = await s.create_post(a.id, a.handle, "precious")
            with pytest.raises(NotFound):
                await s.delete_post(p.id + 1, a.id)
            with pytest.raises(NotFound):
                await s.delete_post(p.id + 1, b.id)
            with pytest.raises(Forbidden):
                await s.delete_post(p.id, b.id)
            assert await s.posts_by_ids([p.id]) == [p]
            assert (await s.user_by_id(a.id)).posts_count == 1
            assert (await s.user_by_id(b.id)).posts_count == 0
            assert await s.author_post_ids(a.id, None, 10) == [p.id]

    run(main())


def test_author_post_ids_and_user_posts_page_newest_first(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await new_user(s)
            other = await new_user(s)
            mine = []
            for i in range(11):
                mine.append((await s.create_post(a.id, a.handle, f"a{i}")).id)
                await s.create_post(other.id, other.handle, f"o{i}")
            newest_first = list(reversed(mine))
            assert await s.author_post_ids(a.id, None, 100) == newest_first
            assert await s.author_post_ids(a.id, None, 4) == newest_first[:4]
            assert await s.author_post_ids(a.id, newest_first[3], 4) == newest_first[4:8]
            assert await s.author_post_ids(a.id, newest_first[-1], 4) == []
            # paging user_posts by the last id walks every post exactly once
            seen, before = [], None
            while True:
                page = await s.user_posts(a.id, before, 3)
                seen.extend(p.id for p in page)
                assert all(p.author_id == a.id and p.author_handle == a.handle for p in page)
                if len(page) < 3:
                    break
                before = page[-1].id
            assert seen == newest_first

    run(main())


def test_home_post_ids_is_self_and_followees_newest_first(records):
    async def main():
        async with records() as r:
            s = r.store
            me, f1, f2, stranger = [await new_user(s) for _ in range(4)]
            await s.follow(me.id, f1.id)
            await s.follow(me.id, f2.id)
            await s.follow(f1.id, stranger.id)  # not mine to see
            by_author: dict[int, list[int]] = {u.id: [] for u in (me, f1, f2, stranger)}
            for i in range(24):
                who = (me, f1, f2, stranger)[i % 4]
                by_author[who.id].append((await s.create_post(who.id, who.handle, str(i))).id)
            expected = sorted(by_author[me.id] + by_author[f1.id] + by_author[f2.id], reverse=True)
            assert await s.home_post_ids(me.id, None, 100) == expected
            assert await s.home_post_ids(me.id, None, 5) == expected[:5]
            assert await s.home_post_ids(me.id, expected[4], 5) == expected[5:10]
            # a user who follows nobody sees only their own posts
            assert await s.home_post_ids(f2.id, None, 100) == sorted(by_author[f2.id], reverse=True)

            await s.unfollow(me.id, f2.id)
            expected = sorted(by_author[me.id] + by_author[f1.id], reverse=True)
            assert await s.home_post_ids(me.id, None, 100) == expected

    run(main())


def test_posts_by_ids_many_and_unknown(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            # More ids than one SQLite statement takes (_IN_CHUNK); written 50 at a time, not all
            # 1,100 at once: a PostgreSQL pool's 2 s wait for a connection is not the subject.
            posts = []
            for c in range(0, 1100, 50):
                posts += await asyncio.gather(*(r.store.create_post(u.id, u.handle, f"p{i}")
                                                for i in range(c, c + 50)))
            ids = [p.id for p in posts]
            got = await r.store.posts_by_ids(ids + [max(ids) + 1, 12345])
            assert sorted(p.id for p in got) == sorted(ids)
            assert {p.id: p for p in got} == {p.id: p for p in posts}
            assert await r.store.posts_by_ids([]) == []

    run(main())


def test_posts_after_walks_every_post_ascending_and_max_post_id(records):
    async def main():
        async with records() as r:
            s = r.store
            assert await s.max_post_id() == 0
            assert await s.posts_after(0, 10) == []
            a, b = await new_user(s), await new_user(s)
            made = [await s.create_post((a, b)[i % 2].id, (a, b)[i % 2].handle, str(i)) for i in range(13)]
            await s.delete_post(made[5].id, made[5].author_id)
            alive = [p for i, p in enumerate(made) if i != 5]
            walked, after = [], 0
            while True:
                page = await s.posts_after(after, 4)
                walked.extend(page)
                if len(page) < 4:
                    break
                after = page[-1].id
            assert walked == alive
            assert await s.max_post_id() == made[-1].id

    run(main())


# --------------------------------------------------------------------------------------------
# durability
# --------------------------------------------------------------------------------------------


def test_everything_acknowledged_survives_close_and_reopen(records):
    async def main():
        toks = [token() for _ in range(3)]
        async with records() as r:
            s = r.store
            a = await s.create_user("Anna", "Anna A", toks[0])
            b = await s.create_user("Ben", "Ben B", toks[1])
            c = await s.create_user("Cleo", "Cleo C", toks[2])
            await s.follow(a.id, b.id)
            await s.follow(c.id, b.id)
            await s.follow(a.id, c.id)
            await s.unfollow(c.id, b.id)
            posts = await asyncio.gather(*(s.create_post(b.id, "Ben", f"b{i}") for i in range(20)))
            doomed = posts[3]
            await s.delete_post(doomed.id, b.id)
            last = await s.create_post(c.id, "Cleo", "last words ✓")
            users_before = [await s.user_by_id(u.id) for u in (a, b, c)]
            home_before = await s.home_post_ids(a.id, None, 100)

        async with records() as r:
            s = r.store
            assert [await s.user_by_id(u.id) for u in (a, b, c)] == users_before
            assert [await s.user_id_by_token_hash(t) for t in toks] == [a.id, b.id, c.id]
            assert await s.user_by_handle("anna") == users_before[0]
            with pytest.raises(Conflict):
                await s.create_user("ANNA", "again", token())
            assert sorted(await s.following_ids(a.id)) == sorted([b.id, c.id])
            assert await s.follower_ids(b.id) == [a.id]
            assert users_before[1].followers_count == 1 and users_before[1].posts_count == 19
            assert await s.home_post_ids(a.id, None, 100) == home_before
            alive = sorted([p.id for p in posts if p.id != doomed.id] + [last.id])
            assert sorted(p.id for p in await s.posts_by_ids(alive + [doomed.id])) == alive
            assert (await s.posts_by_ids([last.id]))[0].text == "last words ✓"
            assert await s.max_post_id() == last.id
            # new ids keep increasing after a restart
            again = await s.create_post(a.id, "Anna", "after restart")
            assert again.id > last.id
            newcomer = await s.create_user("Dora", "Dora", token())
            assert newcomer.id > again.id

    run(main())


def test_writes_in_flight_at_close_are_either_durable_or_refused(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            tasks = [asyncio.create_task(r.store.create_post(u.id, u.handle, f"t{i}")) for i in range(30)]
            await asyncio.sleep(0)  # let them reach the store
            await r.store.close()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            more = await asyncio.gather(
                r.store.create_post(u.id, u.handle, "late"), return_exceptions=True
            )
        acknowledged = [p for p in outcomes + more if isinstance(p, Post)]
        assert all(isinstance(x, (Post, Exception)) for x in outcomes + more)
        async with records() as r:
            stored = await r.store.author_post_ids(u.id, None, 100)
            assert set(p.id for p in acknowledged) <= set(stored)
            assert (await r.store.user_by_id(u.id)).posts_count == len(stored)

    run(main())


# --------------------------------------------------------------------------------------------
# model-based: random writes, every read agrees with a simple model
# --------------------------------------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("post"), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 3), st.integers(0, 30)),
        st.tuples(st.just("follow"), st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.just("unfollow"), st.integers(0, 3), st.integers(0, 3)),
    ),
    max_size=30,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS, page=st.integers(1, 5))
def test_random_writes_reads_agree_with_a_model(records, ops, page):
    # Examples share the storage, so each one makes its own users: every read below is
    # about those users only.
    async def main():
        async with records() as r:
            s = r.store
            users = [await new_user(s) for _ in range(4)]
            uid = [u.id for u in users]
            posts: dict[int, int] = {}  # post id -> author index
            follows: set[tuple[int, int]] = set()
            deleted: list[int] = []
            for op in ops:
                if op[0] == "post":
                    p = await s.create_post(uid[op[1]], users[op[1]].handle, "x")
                    posts[p.id] = op[1]
                elif op[0] == "delete":
                    ids = sorted(posts)
                    if not ids:
                        continue
                    pid = ids[op[2] % len(ids)]
                    if posts[pid] == op[1]:
                        await s.delete_post(pid, uid[op[1]])
                        del posts[pid]
                        deleted.append(pid)
                    else:
                        with pytest.raises(Forbidden):
                            await s.delete_post(pid, uid[op[1]])
                elif op[0] == "follow":
                    pair = (op[1], op[2])
                    changed, n = await s.follow(uid[op[1]], uid[op[2]])
                    assert changed == (pair not in follows)
                    follows.add(pair)
                    assert n == sum(1 for _, e in follows if e == op[2])
                else:
                    pair = (op[1], op[2])
                    changed, n = await s.unfollow(uid[op[1]], uid[op[2]])
                    assert changed == (pair in follows)
                    follows.discard(pair)
                    assert n == sum(1 for _, e in follows if e == op[2])

            everyone = [p.id for u in uid for p in await s.user_posts(u, None, 1000)]
            assert await s.present_post_ids([*everyone, *deleted, 1]) == set(posts)
            of = await s.follower_ids_of([*uid, uid[0]])  # a repeated id is answered once
            for i, u in enumerate(users):
                assert sorted(of.get(u.id, [])) == sorted(uid[f] for f, e in follows if e == i)
                assert sorted(await s.follower_ids(u.id)) == sorted(of.get(u.id, []))
                got = await s.user_by_id(u.id)
                assert got.posts_count == sum(1 for a in posts.values() if a == i)
                assert got.followers_count == sum(1 for _, e in follows if e == i)
                assert got.following_count == sum(1 for f, _ in follows if f == i)
                authors = {i} | {e for f, e in follows if f == i}
                want = sorted((p for p, a in posts.items() if a in authors), reverse=True)
                walked, before = [], None
                while True:
                    ids = await s.home_post_ids(u.id, before, page)
                    walked.extend(ids)
                    if len(ids) < page:
                        break
                    before = ids[-1]
                assert walked == want
                own = sorted((p for p, a in posts.items() if a == i), reverse=True)
                assert await s.author_post_ids(u.id, None, 100) == own

    run(main())


# --------------------------------------------------------------------------------------------
# idempotency keys: stored by the write they answer, in its transaction
# --------------------------------------------------------------------------------------------

DAY = 86400.0


def keyed(scope_key: str, fingerprint: bytes = b"fp", status: int = 201) -> IdempotencyRecord:
    """A record whose answer names what the write created (so a test sees which write's
    answer is stored)."""

    def render(created) -> bytes:
        return repr(created).encode() if created is not None else b"none"

    return IdempotencyRecord(scope_key, fingerprint, status, render)


def test_keyed_writes_store_their_answer_with_the_write(records):
    async def main():
        async with records() as r:
            s = r.store
            a = await s.create_user("keyed_a", "A", token(), idempotency=keyed("anon:k1", b"f1"))
            assert await s.idempotent_reply("anon:k1", DAY) == (b"f1", 201, repr(a).encode())
            b = await new_user(s)
            p = await s.create_post(a.id, a.handle, "hi", idempotency=keyed(f"{a.id}:k1", b"f2"))
            assert await s.idempotent_reply(f"{a.id}:k1", DAY) == (b"f2", 201, repr(p).encode())
            assert await s.follow(a.id, b.id, idempotency=keyed(f"{a.id}:k2", b"f3", 200)) == (True, 1)
            assert await s.idempotent_reply(f"{a.id}:k2", DAY) == (b"f3", 200, b"none")
            # the writes themselves happened, each once
            assert await s.user_by_handle("KEYED_A") == User(a.id, "keyed_a", "A", 0, 1, 1)
            assert await s.posts_by_ids([p.id]) == [p]
            assert await s.follower_ids(b.id) == [a.id]
            assert await s.idempotent_reply("anon:unknown", DAY) is None
            assert await s.idempotent_reply(f"{b.id}:k1", DAY) is None  # another scope

    run(main())


def test_a_follow_that_changes_nothing_still_stores_its_key(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b = await new_user(s), await new_user(s)
            await s.follow(a.id, b.id)
            assert await s.follow(a.id, b.id, idempotency=keyed(f"{a.id}:again", status=200)) == (False, 1)
            assert await s.idempotent_reply(f"{a.id}:again", DAY) == (b"fp", 200, b"none")

    run(main())


def test_a_write_whose_key_is_taken_changes_nothing(records):
    async def main():
        async with records() as r:
            s = r.store
            a, b = await new_user(s), await new_user(s)
            first = await s.create_post(a.id, a.handle, "first", idempotency=keyed(f"{a.id}:p"))
            await s.create_user("taken_key", "T", token(), idempotency=keyed("anon:u"))
            await s.follow(b.id, a.id, idempotency=keyed(f"{b.id}:f"))
            seen = await events_until(r, "k", lambda ev: len(ev) >= 5)
            answers = [await s.idempotent_reply(k, DAY) for k in (f"{a.id}:p", "anon:u", f"{b.id}:f")]

            with pytest.raises(IdempotencyKeyTaken):
                await s.create_post(a.id, a.handle, "second", idempotency=keyed(f"{a.id}:p", b"other"))
            tok = token()
            with pytest.raises(IdempotencyKeyTaken):
                await s.create_user("fresh_handle", "F", tok, idempotency=keyed("anon:u"))
            with pytest.raises(IdempotencyKeyTaken):
                await s.follow(a.id, b.id, idempotency=keyed(f"{b.id}:f"))  # same scope_key

            assert await s.author_post_ids(a.id, None, 10) == [first.id]
            assert await s.user_by_handle("fresh_handle") is None
            assert await s.user_id_by_token_hash(tok) is None
            assert await s.follower_ids(b.id) == []
            assert await s.user_by_id(a.id) == User(a.id, a.handle, a.display_name, 1, 0, 1)
            assert [await s.idempotent_reply(k, DAY) for k in (f"{a.id}:p", "anon:u", f"{b.id}:f")] == answers
            sentinel = await new_user(s)
            after = await events_until(r, "k", has_type_with(model.USER_REGISTERED, user_id=sentinel.id))
            assert [e.seq for e in after[: len(seen)]] == [e.seq for e in seen]
            assert len(after) == len(seen) + 1, [e.type for e in after]
            # the handle is still free: the rolled-back registration did not take it
            assert (await s.create_user("fresh_handle", "F", tok)).handle == "fresh_handle"

    run(main())


def test_a_write_that_fails_stores_no_key(records):
    async def main():
        async with records() as r:
            s = r.store
            await s.create_user("Occupied", "O", token())
            with pytest.raises(Conflict):
                await s.create_user("occupied", "x", token(), idempotency=keyed("anon:retry-me"))
            assert await s.idempotent_reply("anon:retry-me", DAY) is None
            # the key is free for the retry that succeeds
            u = await s.create_user("vacant", "V", token(), idempotency=keyed("anon:retry-me"))
            assert await s.idempotent_reply("anon:retry-me", DAY) == (b"fp", 201, repr(u).encode())

    run(main())


def test_concurrent_writes_with_one_key_exactly_one_happens(records):
    async def main():
        async with records() as r:
            s = r.store
            u = await new_user(s)
            results = await asyncio.gather(
                *(s.create_post(u.id, u.handle, f"dup {i}", idempotency=keyed(f"{u.id}:same"))
                  for i in range(12)),
                return_exceptions=True,
            )
            winners = [x for x in results if isinstance(x, Post)]
            assert len(winners) == 1, results
            assert all(isinstance(x, IdempotencyKeyTaken) for x in results if not isinstance(x, Post))
            assert await s.author_post_ids(u.id, None, 100) == [winners[0].id]
            assert (await s.user_by_id(u.id)).posts_count == 1
            assert await s.idempotent_reply(f"{u.id}:same", DAY) == (b"fp", 201, repr(winners[0]).encode())
            handles = await asyncio.gather(
                *(s.create_user(f"racer{i}", "R", token(), idempotency=keyed("anon:race"))
                  for i in range(6)),
                return_exceptions=True,
            )
            assert sum(isinstance(x, User) for x in handles) == 1, handles
            assert sum([await s.user_by_handle(f"racer{i}") is not None for i in range(6)]) == 1

    run(main())


def test_keys_survive_close_and_reopen(records):
    async def main():
        async with records() as r:
            u = await new_user(r.store)
            p = await r.store.create_post(u.id, u.handle, "durable", idempotency=keyed(f"{u.id}:d"))
        async with records() as r:
            assert await r.store.idempotent_reply(f"{u.id}:d", DAY) == (b"fp", 201, repr(p).encode())
            with pytest.raises(IdempotencyKeyTaken):
                await r.store.create_post(u.id, u.handle, "durable", idempotency=keyed(f"{u.id}:d"))
            assert await r.store.author_post_ids(u.id, None, 10) == [p.id]

    run(main())


def test_expired_keys_are_ignored_by_lookups_and_purged(records):
    async def main():
        async with records() as r:
            s = r.store
            u = await new_user(s)
            await s.create_post(u.id, u.handle, "old", idempotency=keyed(f"{u.id}:old"))
            await asyncio.sleep(2.0)  # ages measured by the store's clock, not asserted on
            await s.create_post(u.id, u.handle, "new", idempotency=keyed(f"{u.id}:new"))
            assert await s.idempotent_reply(f"{u.id}:old", 1.0) is None  # expired: ignored
            assert await s.idempotent_reply(f"{u.id}:old", DAY) is not None  # not purged yet
            # an expired key not purged yet still blocks its write (the service purges)
            with pytest.raises(IdempotencyKeyTaken):
                await s.create_post(u.id, u.handle, "again", idempotency=keyed(f"{u.id}:old"))
            assert await s.purge_idempotency_keys(DAY) == 0
            assert await s.purge_idempotency_keys(1.0) == 1
            assert await s.idempotent_reply(f"{u.id}:old", DAY) is None
            assert await s.idempotent_reply(f"{u.id}:new", DAY) is not None
            again = await s.create_post(u.id, u.handle, "again", idempotency=keyed(f"{u.id}:old"))
            assert await s.idempotent_reply(f"{u.id}:old", DAY) == (b"fp", 201, repr(again).encode())
            assert await s.purge_idempotency_keys(DAY) == 0

    run(main())


# The service's runner over each store, against a dict of first answers: a key answers its
# first request forever (within retention), another request under it is refused, and each
# key writes exactly one post.
KEYED_OPS = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from(["k1", "k2", "k3"]), st.sampled_from(["a", "b"])),
    max_size=15,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=KEYED_OPS)
def test_keyed_posts_agree_with_a_model(records, ops):
    from homefeed.service_layer.idempotency import (
        IdempotencyKeyReused,
        IdempotentRequest,
        IdempotentWrites,
        Reply,
    )

    async def main():
        async with records() as r:
            s = r.store
            users = [await new_user(s) for _ in range(2)]
            writes = IdempotentWrites(s, DAY)
            first: dict[tuple[int, str], tuple[str, bytes]] = {}  # (user, key) -> (text, answer)
            for who, key, text in ops:
                u = users[who]
                req = IdempotentRequest.of(str(u.id), key, "POST", "/v1/posts", text.encode(), 201)

                async def write(keyed_req, u=u, text=text):
                    post = await s.create_post(u.id, u.handle, text, idempotency=keyed_req.record(Post.public))
                    return post.public()

                if (who, key) in first and first[(who, key)][0] != text:
                    with pytest.raises(IdempotencyKeyReused):
                        await writes.run(req, write)
                    continue
                reply = await writes.run(req, write)
                if (who, key) in first:
                    assert reply == Reply(201, first[(who, key)][1], replayed=True)
                else:
                    assert reply.status == 201 and not reply.replayed
                    assert orjson.loads(reply.body)["text"] == text
                    first[(who, key)] = (text, reply.body)
            for i, u in enumerate(users):
                want = sorted((int(orjson.loads(b)["id"]) for (w, _), (_, b) in first.items() if w == i),
                              reverse=True)
                assert await s.author_post_ids(u.id, None, 100) == want

    run(main())


def test_an_expired_key_not_yet_purged_answers_no_more(records):
    """The service's runner over each store: once its key expired, a request is new (it
    writes, and its answer replaces the old one) even before the periodic purge ran."""
    from homefeed.service_layer.idempotency import IdempotentRequest, IdempotentWrites, Reply

    async def main():
        async with records() as r:
            s = r.store
            u = await new_user(s)
            writes = IdempotentWrites(s, 1.0)
            req = IdempotentRequest.of(str(u.id), "k", "POST", "/v1/posts", b"same", 201)

            async def write(keyed_req):
                post = await s.create_post(u.id, u.handle, "same", idempotency=keyed_req.record(Post.public))
                return post.public()

            first = await writes.run(req, write)
            assert await writes.run(req, write) == Reply(first.status, first.body, replayed=True)
            await asyncio.sleep(2.0)  # the key expires (store clock); no purge runs here
            later = await writes.run(req, write)
            assert not later.replayed and later.body != first.body
            assert len(await s.author_post_ids(u.id, None, 10)) == 2
            assert (await writes.run(req, write)).body == later.body

    run(main())


def test_concurrent_duplicate_registrations_all_get_the_first_answer(records):
    """The service's runner over each store: duplicates of one registration race; the losers
    find the handle taken (409) by the winner, and answer with the winner's answer instead."""
    from homefeed.service_layer.idempotency import IdempotentRequest, IdempotentWrites

    async def main():
        async with records() as r:
            s = r.store
            writes = IdempotentWrites(s, DAY)
            req = IdempotentRequest.of("anon", "reg", "POST", "/v1/users", b'{"handle":"twin"}', 201)

            async def write(keyed_req):
                tok = token()

                def answer(user: User) -> dict:
                    return {"id": str(user.id), "token": tok.hex()}

                return answer(await s.create_user("twin", "Twin", tok, idempotency=keyed_req.record(answer)))

            replies = await asyncio.gather(*(writes.run(req, write) for _ in range(6)))
            assert len({reply.body for reply in replies}) == 1
            assert sum(not reply.replayed for reply in replies) == 1
            twin = await s.user_by_handle("twin")
            assert orjson.loads(replies[0].body)["id"] == str(twin.id)
            assert await s.user_id_by_token_hash(bytes.fromhex(orjson.loads(replies[0].body)["token"])) == twin.id

    run(main())


def test_visibility_is_stored_and_only_public_posts_are_public_ids(records):
    async def main():
        async with records() as r:
            u = await r.store.create_user("Vis", "Vis", token())
            pub = await r.store.create_post(u.id, "Vis", "seen everywhere")
            unl = await r.store.create_post(u.id, "Vis", "followers and profile", visibility="unlisted")
            assert (pub.visibility, unl.visibility) == ("public", "unlisted")
            got = {p.id: p.visibility for p in await r.store.posts_by_ids([pub.id, unl.id])}
            assert got == {pub.id: "public", unl.id: "unlisted"}
            assert [p.visibility for p in await r.store.user_posts(u.id, None, 10)] == ["unlisted", "public"]
            public = await r.store.public_post_ids(None, 100)
            assert pub.id in public and unl.id not in public
            assert await r.store.public_post_ids(pub.id, 100) == [i for i in public if i < pub.id]
            assert await r.store.author_post_ids(u.id, None, 10) == [unl.id, pub.id]
            gone = await r.store.delete_post(unl.id, u.id)
            assert gone.visibility == "unlisted"

    run(main())
