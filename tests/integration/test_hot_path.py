"""A home-timeline read that hits the caches touches no SQL (the embedded profile's promise):
every statement the record store's read connection runs is traced while reading."""

from __future__ import annotations

import asyncio
from pathlib import Path

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings


def test_warm_home_read_runs_no_sql(tmp_path: Path) -> None:
    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path, celebrity_threshold=2, timeline_cap=50))
        try:
            users = [await hf.register(f"u{i}") for i in range(4)]
            ids = [int(u["id"]) for u in users]
            # u0 follows everyone; u1 becomes a celebrity (pulled at read), u2/u3 are pushed.
            for h in ("u1", "u2", "u3"):
                await hf.follow(ids[0], h)
            await hf.follow(ids[2], "u1")
            await hf.follow(ids[3], "u1")
            first = await hf.home_timeline(ids[0], limit=10)  # cold: builds the caches
            for uid in ids:
                await hf.create_post(uid, f"hello from {uid}")
            await hf.drain()

            statements: list[str] = []
            reader = hf.store.db.reader  # type: ignore[attr-defined]
            reader.set_trace_callback(statements.append)
            try:
                page = await hf.home_timeline(ids[0], limit=10)
            finally:
                reader.set_trace_callback(None)
            assert first["posts"] == []
            assert [p["author"]["handle"] for p in page["posts"]] == ["u3", "u2", "u1", "u0"]
            assert statements == [], statements
        finally:
            await hf.close()

    asyncio.run(main())


def test_warm_mastodon_home_and_public_reads_run_no_sql(tmp_path: Path) -> None:
    """The Mastodon home timeline (statuses with their accounts, spliced from cached parts)
    and the public timeline (a cached list, not a scan) run NO statement once warm. The
    public one keeps each status's ``post_stats`` row (the counters and the reader's flags)
    until a commit changes it: after a favourite it reads that post's row alone. The home
    one: its first page is kept rendered while nothing it shows changes (the store reports
    what this process's commits change; another process's commit moves SQLite's wal-index
    header, read without SQL); after a favourite it runs ``post_stats`` again and shows it. The /v1 warm read runs none either (``test_warm_home_read_runs_no_sql``)."""
    from homefeed.domain.mastodon.entities import Urls
    from homefeed.domain.mastodon.pagination import Page
    from homefeed.service_layer.mastodon import MastodonApi

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path, celebrity_threshold=2, timeline_cap=50))
        try:
            users = [await hf.register(f"u{i}") for i in range(4)]
            ids = [int(u["id"]) for u in users]
            for h in ("u1", "u2", "u3"):
                await hf.follow(ids[0], h)
            await hf.follow(ids[2], "u1")
            await hf.follow(ids[3], "u1")
            api = MastodonApi(hf)
            urls = Urls("http://h:1")
            posts = [await hf.write_post(uid, f"hello #tag from @u0 {uid}") for uid in ids]
            await hf.write_post(ids[1], "an unlisted one", "unlisted")
            await hf.write_post(ids[2], "a reply", in_reply_to_id=posts[1].id)
            stranger = int((await hf.register("u4"))["id"])  # nobody follows u4: u3 boosts it
            boosted = await hf.write_post(stranger, "worth a boost")
            await hf.store.favourite(ids[0], posts[3].id)  # type: ignore[attr-defined]
            await hf.store.reblog(ids[3], "u3", boosted.id)  # type: ignore[attr-defined]
            await hf.drain()

            async def read(home: bool) -> tuple[bytes, list[int]]:
                if home:
                    return await api.home_body(urls, ids[0], Page(limit=20))
                got = await api.public(Page(limit=20))
                return await api.statuses_bytes(urls, got, None), [p.id for p in got]

            for home in (True, False):
                await read(home)  # warm: caches the lists, the statuses' parts and the accounts
                await read(home)  # (the home's first page is kept by a read that rebuilt nothing)
                statements: list[str] = []
                reader = hf.store.db.reader  # type: ignore[attr-defined]
                reader.set_trace_callback(statements.append)
                try:
                    body, page_ids = await read(home)
                finally:
                    reader.set_trace_callback(None)
                if home:
                    assert statements == [], statements
                    assert body.count(b'"visibility":"unlisted"') == 1  # in u0's home, not in public
                    assert body.count(b'"reblog":{') == 1 and body.count(b'"favourited":true') == 1
                    assert b'"in_reply_to_id":"%d"' % posts[1].id in body
                    await hf.store.favourite(ids[0], posts[2].id)  # type: ignore[attr-defined]
                    statements.clear()
                    reader.set_trace_callback(statements.append)
                    try:
                        body, _ = await read(home)  # a commit: rendered again, with the favourite
                    finally:
                        reader.set_trace_callback(None)
                    assert any("favourite" in s.lower() for s in statements), statements
                    assert body.count(b'"favourited":true') == 2
                else:
                    # the counters were read once and are kept until a commit changes them
                    assert statements == [], statements
                    assert len(page_ids) == 5 and b'"favourited"' not in body  # anonymous
                    before = body.count(b'"favourites_count":1')
                    await api.conversations.favourite(urls, ids[1], posts[0].id, True)
                    statements.clear()
                    reader.set_trace_callback(statements.append)
                    try:
                        body, _ = await read(home)  # the favourited post's counters alone are read
                    finally:
                        reader.set_trace_callback(None)
                    assert len(statements) == 1 and "favourite" in statements[0].lower(), statements
                    assert body.count(b'"favourites_count":1') == before + 1
        finally:
            await hf.close()

    asyncio.run(main())
