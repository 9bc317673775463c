"""The hot routes' one layer (``entrypoints/hot.py``) answers exactly what the middleware
stack answers: same status, headers (in order) and body, the client's request id echoed,
the same rate-limit refusals, the same error shapes (``/v1``'s and Mastodon's), and the
request counted under the same (method, route template, status). Two apps over one
``Homefeed``: the real one, and the same with its hot path switched off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from homefeed.bootstrap import open_homefeed
from homefeed.config import Settings
from homefeed.entrypoints import metrics as obs
from homefeed.entrypoints.http import create_app
from homefeed.entrypoints.hot import HotPath

PATHS = ["/healthz", "/v1/timelines/home", "/api/v1/timelines/home"]
QUERIES = [b"", b"limit=5", b"limit=20", b"limit=0", b"limit=abc", b"limit=5&before=1", b"max_id=1", b"limit=99999"]
AUTH = ["alice", "bob", "garbage", "basic", "empty", "missing", "lower"]
REQUEST = st.tuples(st.sampled_from(PATHS), st.sampled_from(["GET", "GET", "HEAD"]), st.sampled_from(QUERIES),
                    st.sampled_from(AUTH), st.sampled_from([None, b"https://app.example"]),
                    st.sampled_from([None, b"trace-42", b"not ok\x01"]),
                    st.sampled_from([None, b"gzip, deflate, br", b"gzip;q=0", b"*"]))


def _headers(auth: str, tokens: dict[str, str], origin: bytes | None, rid: bytes | None,
             encodings: bytes | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"hf.example:8080"), (b"user-agent", b"test")]
    value = {"garbage": b"Bearer nope", "basic": b"Basic abc", "empty": b"Bearer ", "missing": None,
             "lower": b"bearer " + tokens.get("alice", "").encode()}.get(auth, b"Bearer " + tokens.get(auth, "").encode())
    if value is not None:
        headers.append((b"authorization", value))
    if origin is not None:
        headers.append((b"origin", origin))
    if rid is not None:
        headers.append((b"x-request-id", rid))
    if encodings is not None:
        headers.append((b"accept-encoding", encodings))
    return headers


async def _call(app: Any, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, list, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query, "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("hf.example", 8080)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], list(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def _counted() -> dict[tuple[str, str, int], int]:
    return {k: sum(h.counts) for k, h in obs.RECORDER.requests.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(REQUEST, min_size=1, max_size=12))
def test_the_hot_path_answers_what_the_stack_answers(tmp_path_factory: Any, requests: list[tuple]) -> None:
    data = tmp_path_factory.mktemp("hot")

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=Path(data), rate_limit_per_token="60/min burst 4"))
        try:
            alice, bob = await hf.register("alice"), await hf.register("bob")
            await hf.follow(int(alice["id"]), "bob")
            await hf.write_post(int(bob["id"]), "hello from bob")
            await hf.drain()
            tokens = {"alice": alice["token"], "bob": bob["token"]}
            hot, stack = create_app(hf, manage_lifecycle=False), create_app(hf, manage_lifecycle=False)
            stack.hot_path_factory = None
            for path, method, query, auth, origin, rid, encodings in requests:
                headers = _headers(auth, tokens, origin, rid, encodings)
                before = _counted()
                got = await _call(hot, method, path, query, headers)
                middle = _counted()
                want = await _call(stack, method, path, query, headers)
                after = _counted()
                assert isinstance(hot.hot, HotPath) and stack.hot is None
                assert got[0] == want[0] and got[2] == want[2], (path, query, auth, got, want)
                names = [k for k, _ in got[1]]
                assert names == [k for k, _ in want[1]], (got[1], want[1])
                same = [(k, v) for k, v in got[1] if k != b"x-request-id"]
                assert same == [(k, v) for k, v in want[1] if k != b"x-request-id"]
                if rid == b"trace-42":
                    assert (b"x-request-id", rid) in got[1] and (b"x-request-id", rid) in want[1]
                # each counted once, under the same (method, template, status)
                grew = {k for k in middle if middle[k] != before.get(k, 0)}
                assert len(grew) == 1 and {k for k in after if after[k] != middle.get(k, 0)} == grew
        finally:
            await hf.close()

    asyncio.run(main())


def test_the_mastodon_home_goes_gzip_compressed_to_clients_that_accept_it(tmp_path: Path) -> None:
    """A kept Mastodon home rendering is answered gzip-compressed to a client whose
    ``Accept-Encoding`` accepts gzip, identity otherwise; both say ``Vary: Accept-Encoding``,
    the compressed one ``Content-Encoding: gzip`` and its own length, and it decompresses to
    the identity answer's bytes (the rest of the headers equal)."""
    import gzip

    async def main() -> None:
        hf = await open_homefeed(Settings(data_dir=tmp_path))
        try:
            alice, bob = await hf.register("alice"), await hf.register("bob")
            await hf.follow(int(alice["id"]), "bob")
            for i in range(3):
                await hf.write_post(int(bob["id"]), f"hello {i} from bob " + "x" * 200)
            await hf.drain()
            app = create_app(hf, manage_lifecycle=False)
            tokens = {"alice": alice["token"]}
            answers = {}
            for encodings in (None, b"gzip, deflate, br", b"gzip;q=0, identity", b"br;q=1, *;q=0.5", b"identity"):
                for _ in range(2):  # rendered, then the kept rendering
                    got = await _call(app, "GET", "/api/v1/timelines/home", b"limit=20",
                                      _headers("alice", tokens, None, b"trace-42", encodings))
                    assert got[0] == 200
                    answers[encodings] = got
            plain = answers[None]
            for encodings, (_, headers, body) in answers.items():
                h = dict(headers)
                # (CORS's own ``Vary: Origin`` is a second field line: RFC 9110 5.3 joins them)
                assert b"Accept-Encoding" in [v for k, v in headers if k == b"vary"]
                assert int(h[b"content-length"]) == len(body)
                if encodings in (b"gzip, deflate, br", b"br;q=1, *;q=0.5"):
                    assert h[b"content-encoding"] == b"gzip"
                    assert gzip.decompress(body) == plain[2] and len(body) < len(plain[2])
                    assert [kv for kv in headers if kv[0] not in (b"content-length", b"content-encoding")] == \
                        [kv for kv in plain[1] if kv[0] != b"content-length"]
                else:
                    assert b"content-encoding" not in h and (headers, body) == (plain[1], plain[2])
            assert plain[2].count(b"hello") == 3
        finally:
            await hf.close()

    asyncio.run(main())
