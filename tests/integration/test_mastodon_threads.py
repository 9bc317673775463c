"""The Mastodon views of a conversation against an oracle of the records (hypothesis): any
sequence of replies, deletes, favourites, boosts and their undoing, by three users, and then
every live status's context (ancestors up to the first gone post, descendants depth first,
children by id), its counters and each reader's ``favourited``/``reblogged`` are what the
records say. In process, on a real SQLite file, through ``MastodonApi`` (what the routes call)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.domain.errors import NotFound
from homefeed.domain.mastodon.entities import Urls
from homefeed.service_layer.mastodon import MastodonApi

URLS = Urls("http://h:1")

reply = st.tuples(st.just("reply"), st.integers(0, 30), st.integers(0, 2))
op = st.one_of(
    reply, reply, reply, reply,  # threads need replies: most steps are one
    st.tuples(st.just("delete"), st.integers(0, 30), st.just(0)),
    st.tuples(st.just("fav"), st.integers(0, 30), st.integers(0, 2)),
    st.tuples(st.just("unfav"), st.integers(0, 30), st.integers(0, 2)),
    st.tuples(st.just("boost"), st.integers(0, 30), st.integers(0, 2)),
    st.tuples(st.just("unboost"), st.integers(0, 30), st.integers(0, 2)),
)


class World:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.mkdtemp(prefix="homefeed-threads-")
        self.hf: Any = self.run(open_homefeed(Settings(data_dir=Path(self.tmp))))
        self.api = MastodonApi(self.hf)
        self.users = [int(self.run(self.hf.register(f"t{i}"))["id"]) for i in range(3)]

    def run(self, aw: Any) -> Any:
        return self.loop.run_until_complete(aw)


_world: World | None = None


def world() -> World:
    global _world
    if _world is None:
        _world = World()
    return _world


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=40))
def test_threads_counters_and_flags_equal_the_records(ops: list[tuple[str, int, int]]) -> None:
    w = world()
    api, c, users = w.api, w.api.conversations, w.users
    root = w.run(w.hf.write_post(users[0], "root"))
    posts = [root.id]  # the thread, in creation order
    parent: dict[int, int | None] = {root.id: None}
    author = {root.id: users[0]}
    gone: set[int] = set()
    favs: set[tuple[int, int]] = set()  # (user, post)
    boosts: set[tuple[int, int]] = set()
    for kind, i, u in ops:
        target = posts[i % len(posts)]
        user = users[u]
        if kind == "reply":
            if target in gone:
                continue
            p = w.run(w.hf.write_post(user, "re", in_reply_to_id=target))
            posts.append(p.id)
            parent[p.id] = target
            author[p.id] = user
        elif kind == "delete":
            if target in gone:
                continue
            w.run(api.delete(URLS, author[target], target))
            gone.add(target)
            favs = {f for f in favs if f[1] != target}
            boosts = {b for b in boosts if b[1] != target}
        elif target in gone:
            try:
                w.run((c.favourite(URLS, user, target, True) if kind == "fav" else c.reblog(URLS, user, target, "public")))
            except NotFound:
                continue
            raise AssertionError(f"{kind} of a deleted status answered")
        elif kind in ("fav", "unfav"):
            got = json.loads(w.run(c.favourite(URLS, user, target, kind == "fav")))
            (favs.add if kind == "fav" else favs.discard)((user, target))
            assert got["favourited"] is (kind == "fav")
            assert got["favourites_count"] == sum(1 for f in favs if f[1] == target)
        else:
            if kind == "boost":
                got = json.loads(w.run(c.reblog(URLS, user, target, "public")))
                boosts.add((user, target))
                assert got["reblog"]["id"] == str(target) and got["reblog"]["reblogged"] is True
            else:
                got = json.loads(w.run(c.unreblog(URLS, user, target)))
                boosts.discard((user, target))
                assert got["id"] == str(target) and got["reblogged"] is False
    w.run(w.hf.drain())

    live = [p for p in posts if p not in gone]
    children = {p: sorted(q for q in live if parent[q] == p) for p in posts}

    def dfs(p: int) -> list[int]:
        out: list[int] = []
        for q in children[p]:
            out += [q, *dfs(q)]
        return out

    def chain(p: int) -> list[int]:
        out: list[int] = []
        q = parent[p]
        while q is not None and q not in gone:
            out.append(q)
            q = parent[q]
        return out[::-1]

    for p in live:
        ctx = json.loads(w.run(c.context(URLS, p, users[1])))
        assert [int(s["id"]) for s in ctx["ancestors"]] == chain(p)
        assert [int(s["id"]) for s in ctx["descendants"]] == dfs(p)
        post = w.run(api.get_post(p))
        for viewer in users:
            s = w.run(api.status(URLS, post, viewer))
            assert s["replies_count"] == len(children[p])
            assert s["favourites_count"] == sum(1 for f in favs if f[1] == p)
            assert s["reblogs_count"] == sum(1 for b in boosts if b[1] == p)
            assert s["favourited"] is ((viewer, p) in favs)
            assert s["reblogged"] is ((viewer, p) in boosts)
            assert s["in_reply_to_id"] == (None if parent[p] is None else str(parent[p]))
