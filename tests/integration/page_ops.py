"""The writes the kept-page tests draw (``test_home_pages`` for the embedded profile,
``test_view_pages`` for the scale-out one), in one vocabulary: five users, each op a
``(name, a, b)`` triple, applied through the services the routes call."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from homefeed.domain.errors import HomefeedError
from homefeed.domain.mastodon.entities import Urls
from homefeed.service_layer.mastodon import MastodonApi

USERS = 5
LIMIT = 4
URLS = Urls("http://h:1")

user = st.integers(0, USERS - 1)
post_ix = st.integers(0, 40)
#: Writes both tests draw; each adds its own (favourites; evictions and flushes).
WRITES = [
    st.tuples(st.just("post"), user, st.booleans()),
    st.tuples(st.just("reply"), user, post_ix),
    st.tuples(st.just("boost"), user, post_ix),
    st.tuples(st.just("unboost"), user, post_ix),
    st.tuples(st.just("delete"), post_ix, st.booleans()),
    st.tuples(st.just("follow"), user, user),
    st.tuples(st.just("unfollow"), user, user),
    st.tuples(st.just("drain"), st.just(0), st.just(0)),
    st.tuples(st.just("consume"), st.integers(0, 3), st.integers(1, 4)),
]

#: Writes that change what a Mastodon rendering shows without changing the page's posts:
#: favourites, and a profile changed behind the API's back (as another process would: no
#: ``forget_account``). The Mastodon kept-rendering tests draw them beside ``WRITES``.
RENDERING_WRITES = [
    st.tuples(st.just("fav"), user, post_ix),
    st.tuples(st.just("profile"), user, st.integers(0, 3)),
]


async def users_following(hf: Any) -> list[int]:
    """Register ``USERS`` users u0..u4, u0 following all the others; their ids."""
    ids = [int((await hf.register(f"u{i}"))["id"]) for i in range(USERS)]
    for i in range(1, USERS):
        await hf.follow(ids[0], f"u{i}")
    return ids


async def apply(hf: Any, api: MastodonApi, ids: list[int], posts: list[tuple[int, int]],
                name: str, a: int, b: int, *, consume: bool = True) -> bool:
    """Apply one op; ``posts`` collects (post id, author id) of every post made, deleted
    ones included. A write the service refuses (a boost of a deleted post) changes nothing.
    False for an op this vocabulary does not know (the caller's own)."""
    try:
        if name == "post":
            p = await hf.write_post(ids[a], f"hello from u{a}", "public" if b else "unlisted")
            posts.append((p.id, ids[a]))
        elif name == "reply":
            if posts:
                p = await hf.write_post(ids[a], "a reply", in_reply_to_id=posts[b % len(posts)][0])
                posts.append((p.id, ids[a]))
        elif name in ("boost", "unboost", "fav", "unfav"):
            if posts:
                target = posts[b % len(posts)][0]
                c = api.conversations
                if name == "boost":
                    await c.reblog(URLS, ids[a], target, "public")
                elif name == "unboost":
                    await c.unreblog(URLS, ids[a], target)
                else:
                    await c.favourite(URLS, ids[a], target, name == "fav")
        elif name == "delete":
            if posts:
                pid, author = posts[a % len(posts)]
                await (api.delete(URLS, author, pid) if b else hf.delete_post(author, pid))
        elif name in ("follow", "unfollow"):
            if a != b:
                await (hf.follow if name == "follow" else hf.unfollow)(ids[a], f"u{b}")
        elif name == "profile":
            await hf.store.update_profile(ids[a], f"name {b}", f"note {b}")
        elif name == "drain":
            await hf.drain()
        elif name == "consume":  # the next events of one consumer
            if consume:
                names = sorted(hf.consumers.handlers)
                await hf.consumers.run_once(names[a % len(names)], b)
        else:
            return False
    except HomefeedError:
        pass  # e.g. a favourite of a deleted post: refused, nothing changed
    return True
