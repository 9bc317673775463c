"""World making (homefeed.bench.world): what is loaded is the graph asked for, users can act
with their tokens, ids sit below what the service makes next, and edge lists load too."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from homefeed.bench.graph import write_edge_list, power_law_graph
from homefeed.bench.world import WorldSpec, make_graph, make_world, read_tokens, read_world
from homefeed.config import Settings


def _db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / "homefeed.db")


def test_power_law_world_is_loaded_as_generated(tmp_path: Path) -> None:
    spec = WorldSpec(users=400, mean_following=12, posts=900, seed=5)
    world = make_world(Settings(data_dir=tmp_path), spec, quiet=True)
    graph = make_graph(spec)
    assert (world.users, world.follows, world.posts) == (400, len(graph), 900)
    with _db(tmp_path) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 400
        assert conn.execute("SELECT count(*) FROM follows").fetchone()[0] == len(graph)
        assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == 900
        # counters are recomputed from the records and match the graph's in-degrees
        got = sorted(r[0] for r in conn.execute("SELECT followers_count FROM users"))
        assert got == sorted(graph.follower_counts().tolist())
        assert conn.execute("SELECT count(*) FROM post_search").fetchone()[0] == 900
        # user ids follow handle order (u0, u1, ...): the user with the most followers in the
        # graph is the one with the most in the store
        top = int(np.argmax(graph.follower_counts()))
        row = conn.execute("SELECT handle FROM users ORDER BY followers_count DESC LIMIT 1").fetchone()
        assert row[0] == f"u{top}"
    meta = read_world(tmp_path)
    assert meta["users"] == 400 and meta["spec"]["seed"] == 5
    assert len(read_tokens(tmp_path / "tokens.tsv")) == 400


def test_tokens_act_as_their_users_and_new_ids_sort_after_the_world(tmp_path: Path) -> None:
    from homefeed.bootstrap import build

    settings = Settings(data_dir=tmp_path)
    make_world(settings, WorldSpec(users=200, mean_following=8, posts=300, seed=2), quiet=True)
    handle, token = read_tokens(tmp_path / "tokens.tsv")[17]

    async def check() -> None:
        hf = build(settings)
        await hf.start(run_consumers=False)
        try:
            uid = await hf.authenticate(token)
            assert (await hf.store.user_by_id(uid)).handle == handle
            newest = await hf.store.max_post_id()
            post = await hf.create_post(uid, "a new post after the world was loaded")
            assert int(post["id"]) > newest
            page = await hf.user_posts(handle, 5)
            assert page["posts"][0]["id"] == post["id"]
        finally:
            await hf.close()

    asyncio.run(check())


def test_a_store_that_holds_users_is_refused_without_reset(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    make_world(settings, WorldSpec(users=50, mean_following=3, posts=10), quiet=True)
    with pytest.raises(SystemExit, match="already holds users"):
        make_world(settings, WorldSpec(users=50, mean_following=3, posts=10), reset=False, quiet=True)


def test_star_account_gets_the_asked_followers() -> None:
    g = make_graph(WorldSpec(users=3_000, mean_following=5, star_followers=2_500, seed=3))
    counts = g.follower_counts()
    assert counts[0] >= 2_500
    keys = g.edges[:, 1] * g.n_users + g.edges[:, 0]
    assert len(np.unique(keys)) == len(keys)  # no duplicate follows
    assert not np.any(g.edges[:, 0] == g.edges[:, 1])


def test_edge_list_world_undirected(tmp_path: Path) -> None:
    edges = tmp_path / "edges.txt"
    edges.write_text("# a tiny SNAP file\n0 1\n1 2\n2 0\n3 0\n")
    spec = WorldSpec(edge_list=str(edges), undirected=True, posts=20)
    world = make_world(Settings(data_dir=tmp_path / "w"), spec, quiet=True)
    assert world.users == 4 and world.follows == 8


def test_edge_list_world_rejects_a_malformed_file_with_its_line(tmp_path: Path) -> None:
    edges = tmp_path / "bad.txt"
    edges.write_text("0 1\n1 two\n")
    with pytest.raises(ValueError, match="line 2"):
        make_world(Settings(data_dir=tmp_path / "w"), WorldSpec(edge_list=str(edges)), quiet=True)


def test_generated_world_round_trips_through_an_edge_list(tmp_path: Path) -> None:
    g = power_law_graph(300, mean_following=6, seed=9)
    write_edge_list(g, tmp_path / "g.txt")
    h = make_graph(WorldSpec(edge_list=str(tmp_path / "g.txt")))
    assert np.array_equal(np.sort(g.follower_counts()), np.sort(h.follower_counts()))
