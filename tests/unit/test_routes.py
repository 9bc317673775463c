"""Handlers are module-level functions that can be tested alone: here over a stub service,
without a server, a database or the app's middleware; and the shared request decoding of
``routes/_request.py`` on its own."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.requests import Request

from homefeed.domain.errors import BadJson, InvalidInput, NotFound, PayloadTooLarge, Unauthorized
from homefeed.entrypoints.routes import _request, posts, search, timelines, users
from homefeed.entrypoints.routes._request import HomefeedApp, list_params, parse_json


class StubService:
    """Just what the handlers under test call; records the calls."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(max_body_bytes=64)
        self.calls: list[tuple[Any, ...]] = []

    async def authenticate(self, token: str, scope: str | None = None) -> int:
        if token != "good":
            raise Unauthorized("bad token")
        return 7

    async def profile(self, handle: str) -> dict[str, Any]:
        self.calls.append(("profile", handle))
        return {"handle": handle}

    async def home_timeline(self, uid: int, limit: int | None, before: int | None) -> dict[str, Any]:
        self.calls.append(("home", uid, limit, before))
        return {"posts": [], "next": None}

    async def search(self, q: str, limit: int | None, before: int | None) -> dict[str, Any]:
        self.calls.append(("search", q, limit, before))
        return {"posts": [], "next": None}

    async def create_post(self, uid: int, text: Any, in_reply_to_id: int | None = None) -> dict[str, Any]:
        self.calls.append(("post", uid, text) if in_reply_to_id is None else ("reply", uid, text, in_reply_to_id))
        return {"id": "1", "text": text}

    async def get_post(self, post_id: int) -> dict[str, Any]:
        self.calls.append(("get_post", post_id))
        return {"id": str(post_id)}


def request(stub: StubService, method: str = "GET", path: str = "/", *, query: bytes = b"",
            headers: dict[str, str] | None = None, body: bytes = b"",
            path_params: dict[str, str] | None = None) -> Request:
    app = HomefeedApp()
    app.homefeed = stub  # type: ignore[assignment]
    sent = [False]

    async def receive() -> dict[str, Any]:
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "app": app,
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "path_params": path_params or {}}
    return Request(scope, receive)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_profile_handler_alone():
    stub = StubService()
    r = run(users.get_user(request(stub, path_params={"handle": "ana"})))
    assert (r.status_code, orjson.loads(r.body)) == (200, {"handle": "ana"})
    assert stub.calls == [("profile", "ana")]


def test_the_home_handler_authenticates_and_reads_list_parameters():
    stub = StubService()
    r = run(timelines.home(request(stub, query=b"limit=5&before=99", headers={"Authorization": "Bearer good"})))
    assert r.status_code == 200
    assert stub.calls == [("home", 7, 5, 99)]
    with pytest.raises(Unauthorized):
        run(timelines.home(request(stub, headers={"Authorization": "Bearer bad"})))
    with pytest.raises(Unauthorized):
        run(timelines.home(request(stub)))


def test_create_post_decodes_the_body_and_refuses_before_calling_the_service():
    stub = StubService()
    auth = {"Authorization": "Bearer good"}
    r = run(posts.create_post(request(stub, "POST", headers=auth, body=b'{"text": "hi"}')))
    assert r.status_code == 201 and stub.calls == [("post", 7, "hi")]
    for body, error in ((b"{}", InvalidInput), (b"[1]", InvalidInput), (b"{", BadJson),
                        (b'{"text": "\xff"}', BadJson), (b'{"text": "' + b"x" * 64 + b'"}', PayloadTooLarge)):
        with pytest.raises(error):
            run(posts.create_post(request(stub, "POST", headers=auth, body=body)))
    assert len(stub.calls) == 1


def test_a_path_that_is_not_a_post_id_is_404_without_a_lookup():
    stub = StubService()
    with pytest.raises(NotFound):
        run(posts.get_post(request(stub, path_params={"post_id": "abc"})))
    assert stub.calls == []
    run(posts.post_item(request(stub, path_params={"post_id": "12"})))
    assert stub.calls == [("get_post", 12)]


def test_search_requires_q():
    stub = StubService()
    with pytest.raises(InvalidInput, match="q is required"):
        run(search.search(request(stub)))
    run(search.search(request(stub, query=b"q=rust&limit=100")))
    assert stub.calls == [("search", "rust", 100, None)]


@pytest.mark.parametrize("query", [b"limit=x", b"limit=-1", b"limit=10000", b"limit=%EF%BC%91", b"before=0",
                                   b"before=abc", b"before=99999999999999999999"])
def test_malformed_list_parameters_are_invalid_input(query):
    with pytest.raises(InvalidInput):
        list_params(request(StubService(), query=query))


@given(st.binary(max_size=40))
@example(b'{"text": "\xc3"}')
@example(b"\xef\xbb\xbf{}")
def test_property_a_body_is_refused_at_its_first_bad_utf8_byte(raw):
    """Oracle: Python's UTF-8 decoder (which refuses surrogates and overlong forms too)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        with pytest.raises(BadJson, match=f"^request body is not valid UTF-8 at byte {bad.start}$"):
            parse_json(raw)
        return
    try:
        parse_json(raw)
    except BadJson as exc:
        assert "not valid UTF-8" not in exc.message
    except InvalidInput:
        pass  # JSON, but not an object


def test_the_request_module_is_the_only_place_bodies_are_read():
    """Every handler reads bodies through _request (size limit, UTF-8, JSON object)."""
    import inspect

    for module in (users, posts, timelines, search):
        source = inspect.getsource(module)
        assert "request.body(" not in source and "request.stream(" not in source, module.__name__
        assert "orjson.loads" not in source, module.__name__
    assert "request.stream()" in inspect.getsource(_request)
