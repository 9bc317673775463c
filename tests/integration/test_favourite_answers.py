"""The answer of ``POST /api/v1/statuses/:id/(un)favourite`` tells the truth about the write
it answers, while other writes run concurrently (the crash scenario's talkers found a
favourite answered ``favourited: false`` under load).

One client toggles favourite/unfavourite on one (user, post) pair, sequentially, while other
clients write at the same time on the same loop (as the server's requests do): favourites of
other users on the same post, boosts of it, replies to it, deletes of other posts, and, in the
second test, a delete of the very post being favourited. Each write goes through the writer
thread's group commit, so concurrent writes land in one batch: a write that commits in the
same batch as a delete of its post is answered after the delete is visible.

What a client may rely on: a favourite answered 200 says ``favourited: true`` (an unfavourite
``false``); when the post was deleted meanwhile, the answer is 404 (the post is gone), never
a status with the opposite flag. In process, on a real SQLite file, through the service the
route calls."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
from pathlib import Path
from typing import Any

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.domain.errors import NotFound
from homefeed.domain.mastodon.entities import Urls
from homefeed.service_layer.mastodon import MastodonApi

URLS = Urls("http://h:1")


async def _world(tmp: str) -> tuple[Any, MastodonApi, list[int]]:
    hf: Any = await open_homefeed(Settings(data_dir=Path(tmp)))
    api = MastodonApi(hf)
    users = [int((await hf.register(f"fa{i}"))["id"]) for i in range(5)]
    return hf, api, users


def test_each_answer_flag_is_the_requests_state_under_concurrent_writes() -> None:
    async def main() -> None:
        hf, api, users = await _world(tempfile.mkdtemp(prefix="homefeed-favans-"))
        c = api.conversations
        rng = random.Random(1)
        try:
            target = (await hf.write_post(users[1], "the post")).id
            others = [(await hf.write_post(users[2], f"other {i}")).id for i in range(60)]
            stop = asyncio.Event()
            wrong: list[str] = []

            async def toggler() -> None:
                state = False
                for _ in range(300):
                    state = not state
                    got = json.loads(await c.favourite(URLS, users[0], target, state))
                    if got["id"] != str(target) or got["favourited"] is not state:
                        wrong.append(f"{'favourite' if state else 'unfavourite'} answered "
                                     f"id {got['id']} favourited {got['favourited']}")
                    await asyncio.sleep(0)
                stop.set()

            async def noise(u: int) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    k = rng.random()
                    if k < 0.3:
                        await c.favourite(URLS, u, target, n % 2 == 1)
                    elif k < 0.5:
                        await (c.reblog(URLS, u, target, "public") if n % 2 else c.unreblog(URLS, u, target))
                    elif k < 0.7:
                        await hf.write_post(u, f"re {n}", in_reply_to_id=target)
                    elif others:
                        await api.delete(URLS, users[2], others.pop())
                    else:
                        await hf.write_post(u, f"more {n}")

            await asyncio.gather(toggler(), noise(users[2]), noise(users[3]), noise(users[4]))
            assert not wrong, wrong[:5]
        finally:
            await hf.close()

    asyncio.run(main())


def test_a_favourite_racing_a_delete_of_its_post_is_answered_true_or_404() -> None:
    """The delete and the favourite are sent together: both orders of their commits are
    possible (often the same group-commit batch). Either the favourite is answered
    ``favourited: true`` or 404 (the post is gone); ``favourited: false`` would tell the
    client its acknowledged favourite did not happen."""

    async def main() -> None:
        hf, api, users = await _world(tempfile.mkdtemp(prefix="homefeed-favdel-"))
        c = api.conversations
        outcomes: dict[str, int] = {}
        wrong: list[str] = []
        try:
            for i in range(150):
                pid = (await hf.write_post(users[1], f"doomed {i}")).id
                fav, _ = await asyncio.gather(
                    c.favourite(URLS, users[0], pid, True), api.delete(URLS, users[1], pid),
                    return_exceptions=True)
                if isinstance(fav, NotFound):
                    outcomes["404"] = outcomes.get("404", 0) + 1
                elif isinstance(fav, BaseException):
                    raise fav
                else:
                    got = json.loads(fav)
                    key = f"200 favourited {got['favourited']}"
                    outcomes[key] = outcomes.get(key, 0) + 1
                    if got["favourited"] is not True:
                        wrong.append(f"favourite of {pid} answered {key}")
            assert not wrong, f"{wrong[:3]}; outcomes {outcomes}"
            # both writes queued in one loop tick share a group commit: the race is real here
            assert outcomes.get("404", 0) > 0, f"the race was never exercised: {outcomes}"
        finally:
            await hf.close()

    asyncio.run(main())
