"""``Idempotency-Key`` on every record-writing POST, against a real server: a retried request
with the same key gets the first answer (``Idempotent-Replayed: true``) and writes nothing;
the key survives a crash; another request under the same key, or a malformed key, is
refused and changes nothing; expired keys stop answering and are purged.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from .conftest import Api, Server, assert_error, bearer, unique_handle

REPLAYED = "idempotent-replayed"


def new_key() -> str:
    return str(uuid.uuid4())


def keyed(key: str | bytes, token: str | None = None) -> dict[str, Any]:
    headers: dict[str, Any] = {"Idempotency-Key": key}
    if token is not None:
        headers.update(bearer(token))
    return headers


def assert_first(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, resp.text
    assert REPLAYED not in resp.headers


def assert_replay_of(resp: httpx.Response, first: httpx.Response) -> None:
    """The same answer, byte for byte, marked as a replay."""
    assert (resp.status_code, resp.content) == (first.status_code, first.content)
    assert resp.headers.get(REPLAYED) == "true"
    assert resp.headers["content-type"].startswith("application/json")


# --------------------------------------------------------------------------------------------
# retries
# --------------------------------------------------------------------------------------------


def test_a_retried_post_returns_the_first_answer_and_posts_once(api: Api):
    me = api.register()
    key = new_key()
    first = api.post("/v1/posts", json={"text": "once only"}, headers=keyed(key, me["token"]))
    assert_first(first, 201)
    for _ in range(3):
        assert_replay_of(api.post("/v1/posts", json={"text": "once only"}, headers=keyed(key, me["token"])),
                         first)
    assert api.user_post_ids(me["handle"]) == [first.json()["id"]]
    assert api.counts(me["handle"])[2] == 1


def test_a_retried_registration_returns_the_same_token(api: Api):
    handle = unique_handle("reg")
    key = new_key()
    body = {"handle": handle, "display_name": "Reggie"}
    first = api.post("/v1/users", json=body, headers=keyed(key))
    assert_first(first, 201)
    again = api.post("/v1/users", json=body, headers=keyed(key))
    assert_replay_of(again, first)
    token = again.json()["token"]
    api.new_post(token, "the replayed token works")  # it is the registered user's token
    assert api.profile(handle)["id"] == first.json()["id"]
    # without the key the same request is a new registration of a taken handle
    assert_error(api.post("/v1/users", json=body), 409)


def test_a_retried_follow_answers_alike_and_follows_once(api: Api):
    me, them = api.register(), api.register()
    key = new_key()
    url = f"/v1/users/{them['handle']}/follow"
    first = api.post(url, headers=keyed(key, me["token"]))
    assert_first(first, 200)
    assert first.json() == {"following": True}
    assert_replay_of(api.post(url, headers=keyed(key, me["token"])), first)
    assert api.counts(them["handle"])[0] == 1
    # a replay writes nothing: after an unfollow, retrying the old request does not follow again
    api.unfollow(me["token"], them["handle"])
    assert_replay_of(api.post(url, headers=keyed(key, me["token"])), first)
    assert api.counts(them["handle"]) == (0, 0, 0)
    assert api.counts(me["handle"]) == (0, 0, 0)


def test_a_follow_that_changes_nothing_still_keeps_its_key(api: Api):
    me, them = api.register(), api.register()
    api.follow(me["token"], them["handle"])
    key = new_key()
    url = f"/v1/users/{them['handle']}/follow"
    first = api.post(url, headers=keyed(key, me["token"]))  # already following
    assert_first(first, 200)
    api.unfollow(me["token"], them["handle"])
    assert_replay_of(api.post(url, headers=keyed(key, me["token"])), first)
    assert api.counts(them["handle"])[0] == 0


def test_keys_are_scoped_to_their_caller(api: Api):
    a, b = api.register(), api.register()
    key = new_key()
    pa = api.post("/v1/posts", json={"text": "same words"}, headers=keyed(key, a["token"]))
    pb = api.post("/v1/posts", json={"text": "same words"}, headers=keyed(key, b["token"]))
    assert_first(pa, 201)
    assert_first(pb, 201)
    assert pa.json()["id"] != pb.json()["id"]
    assert pb.json()["author"]["handle"] == b["handle"]


def test_a_refused_request_is_not_remembered(api: Api):
    me = api.register()
    key = new_key()
    too_long = api.post("/v1/posts", json={"text": "x" * 501}, headers=keyed(key, me["token"]))
    assert_error(too_long, 422)
    # nothing was stored under the key: a corrected request under it is a new request
    fixed = api.post("/v1/posts", json={"text": "short now"}, headers=keyed(key, me["token"]))
    assert_first(fixed, 201)
    assert api.user_post_ids(me["handle"]) == [fixed.json()["id"]]

    taken = api.register()["handle"]
    reg_key = new_key()
    assert_error(api.post("/v1/users", json={"handle": taken}, headers=keyed(reg_key)), 409)
    free = unique_handle("free")
    assert_first(api.post("/v1/users", json={"handle": free}, headers=keyed(reg_key)), 201)


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------


def test_the_same_key_with_another_request_is_refused_and_writes_nothing(api: Api):
    me, them = api.register(), api.register()
    key = new_key()
    first = api.post("/v1/posts", json={"text": "original"}, headers=keyed(key, me["token"]))
    assert_first(first, 201)
    before = api.snapshot(me["handle"], them["handle"])
    other_body = api.post("/v1/posts", json={"text": "changed"}, headers=keyed(key, me["token"]))
    assert assert_error(other_body, 422)["code"] == "idempotency_key_reused"
    other_route = api.post(f"/v1/users/{them['handle']}/follow", headers=keyed(key, me["token"]))
    assert assert_error(other_route, 422)["code"] == "idempotency_key_reused"
    assert api.snapshot(me["handle"], them["handle"]) == before
    # the first request under the key still gets its answer
    assert_replay_of(api.post("/v1/posts", json={"text": "original"}, headers=keyed(key, me["token"])), first)


BAD_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("has space", id="space"),
    pytest.param("tab\there", id="tab"),
    pytest.param("k" * 256, id="too-long"),
    pytest.param("caf\u00e9".encode(), id="non-ascii"),
]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_a_malformed_key_is_400_and_writes_nothing(api: Api, bad: str | bytes):
    me, them = api.register(), api.register()
    before = api.snapshot(me["handle"], them["handle"])
    handle = unique_handle("bad")
    attempts = [
        api.post("/v1/posts", json={"text": "never"}, headers=keyed(bad, me["token"])),
        api.post(f"/v1/users/{them['handle']}/follow", headers=keyed(bad, me["token"])),
        api.post("/v1/users", json={"handle": handle}, headers=keyed(bad)),
    ]
    for resp in attempts:
        assert assert_error(resp, 400)["code"] == "invalid_idempotency_key"
    assert api.snapshot(me["handle"], them["handle"]) == before
    assert_error(api.get(f"/v1/users/{handle}"), 404)


def test_two_keys_on_one_request_are_400(api: Api):
    me = api.register()
    headers = [("Idempotency-Key", new_key()), ("Idempotency-Key", new_key())] + list(bearer(me["token"]).items())
    resp = api.http.post("/v1/posts", json={"text": "never"}, headers=headers)  # both headers sent
    assert assert_error(resp, 400)["code"] == "invalid_idempotency_key"
    assert api.user_post_ids(me["handle"]) == []


def test_the_longest_allowed_key_works(api: Api):
    me = api.register()
    key = "".join(chr(0x21 + i % 94) for i in range(255))  # every printable character
    first = api.post("/v1/posts", json={"text": "long key"}, headers=keyed(key, me["token"]))
    assert_first(first, 201)
    assert_replay_of(api.post("/v1/posts", json={"text": "long key"}, headers=keyed(key, me["token"])), first)


# --------------------------------------------------------------------------------------------
# concurrency, crashes, expiry
# --------------------------------------------------------------------------------------------


def _at_once(n: int, request) -> list[httpx.Response]:
    """``request(client)`` from ``n`` threads released together, each on its own connection."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def one(i: int) -> None:
        with httpx.Client(timeout=20.0) as client:
            barrier.wait()
            try:
                out[i] = request(client)
            except Exception as exc:  # reported below
                out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [x for x in out if isinstance(x, Exception)]
    assert not errors, errors
    return out


def test_concurrent_duplicates_write_once_and_answer_alike(api: Api):
    me = api.register()
    key = new_key()
    url = api.base_url + "/v1/posts"
    answers = _at_once(8, lambda c: c.post(url, json={"text": "raced"}, headers=keyed(key, me["token"])))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.content for r in answers}) == 1
    assert sum(REPLAYED not in r.headers for r in answers) == 1  # one request wrote
    assert api.user_post_ids(me["handle"]) == [answers[0].json()["id"]]
    assert api.counts(me["handle"])[2] == 1

    handle = unique_handle("race")
    reg_key = new_key()
    regs = _at_once(6, lambda c: c.post(api.base_url + "/v1/users", json={"handle": handle},
                                        headers=keyed(reg_key)))
    assert {r.status_code for r in regs} == {201}, [r.text for r in regs]
    assert len({r.content for r in regs}) == 1  # one user, one token, told to every request


def test_a_key_survives_a_crash(server_factory):
    first = server_factory.start("idem-crash-1")
    api = Api(first)
    try:
        me = api.register()
        key = new_key()
        answer = api.post("/v1/posts", json={"text": "before the crash"}, headers=keyed(key, me["token"]))
        assert_first(answer, 201)
    finally:
        api.close()
    server_factory.stop(first, kill=True)

    second = server_factory.start("idem-crash-2", data_dir=first.data_dir)
    api = Api(second)
    try:
        retry = api.post("/v1/posts", json={"text": "before the crash"}, headers=keyed(key, me["token"]))
        assert_replay_of(retry, answer)
        assert api.user_post_ids(me["handle"]) == [answer.json()["id"]]
    finally:
        api.close()


def _stored_keys(server: Server) -> set[str]:
    """The keys the server's SQLite file holds (read-only; WAL readers do not block it)."""
    conn = sqlite3.connect(f"file:{server.data_dir / 'homefeed.db'}?mode=ro", uri=True, timeout=10)
    try:
        return {row[0] for row in conn.execute("SELECT scope_key FROM idempotency_keys")}
    finally:
        conn.close()


def test_expired_keys_answer_no_more_and_are_purged(server_factory):
    # keys expire after 1.8 s; the purge then runs every second
    server = server_factory.start("idem-expiry", idempotency_hours="0.0005")
    api = Api(server)
    try:
        me = api.register()
        key = new_key()
        first = api.post("/v1/posts", json={"text": "expiring"}, headers=keyed(key, me["token"]))
        assert_first(first, 201)
        scope_key = f"{first.json()['author']['id']}:{key}"
        assert scope_key in _stored_keys(server)

        deadline = time.monotonic() + 30
        while scope_key in _stored_keys(server):  # purged once expired
            assert time.monotonic() < deadline, "an expired key was never purged"
            time.sleep(0.2)

        later = api.post("/v1/posts", json={"text": "expiring"}, headers=keyed(key, me["token"]))
        assert_first(later, 201)  # a new request: the old answer is gone
        assert later.json()["id"] != first.json()["id"]
        assert api.user_post_ids(me["handle"]) == [later.json()["id"], first.json()["id"]]
    finally:
        api.close()
