"""Mastodon's streaming API end to end, on a real ``homefeed serve`` (and, for Mastodon.py's
``stream_user``, on the scale-out profile too: the workers publish on Redis pub/sub, the API
process holding the stream routes it).

What a client sees: the 200 and headers before any event, frames exactly ``event: NAME\\n
data: PAYLOAD\\n\\n``, a heartbeat comment when idle, ``update`` for what the reader's home
would show (celebrity posts included) and nothing else, ``delete`` as digits, a revoked
token's stream closed, a client that reads nothing disconnected while a fast one keeps up,
and the WebSocket's subscribe/unsubscribe. No timed assertions: waits are bounded only so
that a bug fails instead of hanging.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import struct
import threading
import time
from typing import Any, Iterator

import httpx
import pytest

from tests.e2e import mastodon_kit as kit

#: A heartbeat every 0.3 s (so a test sees one at once), and a small per-connection queue
#: (so a client that reads nothing is disconnected after a few hundred statuses).
STREAM_SETTINGS = {"HOMEFEED_STREAM_HEARTBEAT_SECONDS": "0.3", "HOMEFEED_STREAM_QUEUE": "20"}
WAIT = 20.0


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[kit.Target]:
    with kit.running("embedded", tmp_path_factory, STREAM_SETTINGS) as t:
        yield t


#: A heartbeat every second (a test answers a WebSocket ping well within it), and every
#: request over 50 ms logged as slow (an open stream must not be).
PACED_SETTINGS = {"HOMEFEED_STREAM_HEARTBEAT_SECONDS": "1", "HOMEFEED_SLOW_REQUEST_MS": "50"}


@pytest.fixture(scope="module")
def paced(tmp_path_factory) -> Iterator[kit.Target]:
    """A server of its own, so that the open streams it counts are this module's only."""
    with kit.running("embedded", tmp_path_factory, PACED_SETTINGS) as t:
        yield t


def auth(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


class Users:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=20.0)

    def new(self, prefix: str = "s") -> tuple[str, str, str]:
        """(id, handle, token) of a new user."""
        r = self.http.post("/v1/users", json={"handle": kit.unique_username(prefix)})
        assert r.status_code == 201, r.text
        body = r.json()
        return body["id"], body["handle"], body["token"]

    def follow(self, token: str, account_id: str) -> None:
        r = self.http.post(f"/api/v1/accounts/{account_id}/follow", headers=auth(token))
        assert r.status_code == 200, r.text

    def post(self, token: str, text: str, **extra: str) -> dict[str, Any]:
        r = self.http.post("/api/v1/statuses", data={"status": text, **extra}, headers=auth(token))
        assert r.status_code == 200, r.text
        return r.json()

    def delete(self, token: str, status_id: str) -> None:
        r = self.http.delete(f"/api/v1/statuses/{status_id}", headers=auth(token))
        assert r.status_code == 200, r.text


@pytest.fixture
def users(srv) -> Iterator[Users]:
    u = Users(srv.url())
    yield u
    u.http.close()


class SSE:
    """An open event stream read by a thread: ``raw`` every byte received, ``events`` each
    (event, data) parsed; ``heartbeats`` the comment lines."""

    def __init__(self, base: str, path: str, token: str | None = None, **params: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=httpx.Timeout(20.0, read=None))
        self._cm = self.client.stream("GET", path, params=params, headers=auth(token) if token else {})
        #: Entering returns once the status line and headers arrived: no event was needed.
        self.response = self._cm.__enter__()
        self.raw = bytearray()
        self.events: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.comments: list[str] = []
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        try:
            for chunk in self.response.iter_raw():
                self.raw += chunk
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    fields: dict[str, str] = {}
                    for line in block.decode().split("\n"):
                        if line.startswith(":"):
                            self.comments.append(line)
                        else:
                            key, _, value = line.partition(": ")
                            fields[key] = value
                    if fields:
                        self.events.put((fields["event"], fields["data"]))
        except (httpx.HTTPError, OSError):
            pass
        finally:
            self.ended.set()
            self.events.put(None)

    def next(self, timeout: float = WAIT) -> tuple[str, str]:
        got = self.events.get(timeout=timeout)
        assert got is not None, "the stream ended"
        return got

    def next_update(self) -> dict[str, Any]:
        event, data = self.next()
        assert event == "update", (event, data)
        return json.loads(data)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self.client.close()


def test_health_and_headers_before_any_event(srv, users):
    r = httpx.get(srv.url() + "/api/v1/streaming/health")
    assert r.status_code == 200 and r.text == "OK" and r.headers["content-type"].startswith("text/plain")
    _, _, token = users.new()
    s = SSE(srv.url(), "/api/v1/streaming/user", token)
    try:
        assert s.response.status_code == 200
        assert s.response.headers["content-type"].startswith("text/event-stream")
        assert s.events.empty()  # nothing was posted: the answer came without an event
    finally:
        s.close()


def test_user_stream_needs_a_valid_token(srv):
    for path in ("/api/v1/streaming/user", "/api/v1/streaming/user/notification"):
        for headers in ({}, auth("not-a-token")):
            r = httpx.get(srv.url() + path, headers=headers)
            assert r.status_code == 401, r.text
            assert r.headers["content-type"].startswith("application/json") and "error" in r.json()
    r = httpx.get(srv.url() + "/api/v1/streaming/hashtag")
    assert r.status_code == 400 and r.json() == {"error": "No tag for stream provided"}


def test_heartbeat_comment_on_an_idle_stream(srv):
    s = SSE(srv.url(), "/api/v1/streaming/public")
    try:
        deadline = time.monotonic() + WAIT
        while b":thump\n\n" not in s.raw and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b":thump\n\n" in bytes(s.raw)
    finally:
        s.close()


def test_update_reaches_followers_only_exact_frames_and_delete_as_digits(srv, users):
    author_id, _, author = users.new("a")
    _, _, follower = users.new("f")
    _, _, stranger = users.new("x")
    stranger_friend_id, _, stranger_friend = users.new("y")
    users.follow(follower, author_id)
    users.follow(stranger, stranger_friend_id)
    fs = SSE(srv.url(), "/api/v1/streaming/user", follower)
    xs = SSE(srv.url(), "/api/v1/streaming/user", stranger)
    try:
        status = users.post(author, "hello live world")
        got = fs.next_update()
        assert got["id"] == status["id"] and got["account"]["id"] == author_id
        assert got["content"] == status["content"]
        data = fs.raw.split(b"event: update\n", 1)[1]
        assert data.startswith(b"data: {") and b"\n\n" in data  # space after each colon
        assert json.loads(data.split(b"\n\n", 1)[0][len(b"data: "):])["id"] == status["id"]
        # the stranger's stream skipped it: the next update they get is their friend's
        marker = users.post(stranger_friend, "for the stranger")
        assert xs.next_update()["id"] == marker["id"]

        users.delete(author, status["id"])
        event, payload = fs.next()
        assert (event, payload) == ("delete", status["id"]) and payload.isdigit()
        assert b"event: delete\ndata: " + status["id"].encode() + b"\n\n" in bytes(fs.raw)
    finally:
        fs.close()
        xs.close()


def test_celebrity_posts_arrive_though_never_pushed(srv, users):
    star_id, _, star = users.new("star")
    _, _, reader = users.new("r")
    users.follow(reader, star_id)
    for _ in range(kit.CELEBRITY_THRESHOLD):  # the reader and these make a celebrity
        _, _, fan = users.new("fan")
        users.follow(fan, star_id)
    s = SSE(srv.url(), "/api/v1/streaming/user", reader)
    try:
        status = users.post(star, "a celebrity speaks")
        assert s.next_update()["id"] == status["id"]
    finally:
        s.close()


def test_boosts_arrive_and_replies_to_strangers_do_not(srv, users):
    """The user stream shows what the home shows: a boost by a followee (the wrapper, with
    the original inside), not a followee's reply to someone the reader does not follow."""
    booster_id, _, booster = users.new("b")
    _, _, stranger = users.new("st")
    _, _, reader = users.new("rd")
    users.follow(reader, booster_id)
    s = SSE(srv.url(), "/api/v1/streaming/user", reader)
    try:
        original = users.post(stranger, "worth a boost")
        r = users.http.post(f"/api/v1/statuses/{original['id']}/reblog", headers=auth(booster))
        assert r.status_code == 200, r.text
        got = s.next_update()
        assert got["id"] == r.json()["id"] and got["reblog"]["id"] == original["id"]
        users.post(booster, "to a stranger", in_reply_to_id=original["id"])  # hidden: a reply to a stranger
        marker = users.post(booster, "plain")
        assert s.next_update()["id"] == marker["id"]
    finally:
        s.close()


def test_public_and_hashtag_streams(srv, users):
    _, _, author = users.new("p")
    tag = kit.unique_word("tag")
    pub = SSE(srv.url(), "/api/v1/streaming/public/local")
    tagged = SSE(srv.url(), "/api/v1/streaming/hashtag", tag=tag.upper())
    try:
        users.post(author, "quiet", visibility="unlisted")
        plain = users.post(author, "no tag here")
        with_tag = users.post(author, f"now with #{tag}")
        assert pub.next_update()["id"] == plain["id"]  # the unlisted one is not public
        assert pub.next_update()["id"] == with_tag["id"]
        assert tagged.next_update()["id"] == with_tag["id"]  # the tag ignoring case
    finally:
        pub.close()
        tagged.close()


def test_revoked_token_closes_its_stream(srv):
    http = httpx.Client(base_url=srv.url(), timeout=20.0)
    try:
        app = http.post("/api/v1/apps", data={"client_name": "stream", "redirect_uris": kit.OOB,
                                              "scopes": "read write"}).json()
        user = kit.unique_username("rv")
        app_token = http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": app["client_id"],
            "client_secret": app["client_secret"], "scope": "read write"}).json()["access_token"]
        r = http.post("/api/v1/accounts", headers=auth(app_token), data={
            "username": user, "email": kit.email_of(user), "password": kit.PASSWORD, "agreement": "1"})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        s = SSE(srv.url(), "/api/v1/streaming/user", token)
        try:
            assert s.response.status_code == 200
            r = http.post("/oauth/revoke", data={"client_id": app["client_id"],
                                                 "client_secret": app["client_secret"], "token": token})
            assert r.status_code == 200
            assert s.ended.wait(WAIT), "the stream of a revoked token stayed open"
        finally:
            s.close()
        assert httpx.get(srv.url() + "/api/v1/streaming/user", headers=auth(token)).status_code == 401
    finally:
        http.close()


def test_a_slow_client_is_disconnected_while_a_fast_one_keeps_up(srv, users):
    author_id, _, author = users.new("loud")
    _, _, fast_reader = users.new("fast")
    _, _, slow_reader = users.new("slow")
    users.follow(fast_reader, author_id)
    users.follow(slow_reader, author_id)
    fast = SSE(srv.url(), "/api/v1/streaming/user", fast_reader)
    host, port = srv.url().removeprefix("http://").split(":")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
    slow.connect((host, int(port)))
    slow.sendall(f"GET /api/v1/streaming/user HTTP/1.1\r\nHost: {host}\r\n"
                 f"Authorization: Bearer {slow_reader}\r\n\r\n".encode())
    try:
        ids = [users.post(author, "x" * 400 + f" {i}")["id"] for i in range(400)]
        got = [fast.next_update()["id"] for _ in ids]
        assert got == ids  # every one, in order
        # the slow one was cut off: reading now ends before all 400 arrived
        slow.settimeout(WAIT)
        data = b""
        try:
            while chunk := slow.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        assert data.startswith(b"HTTP/1.1 200")
        assert data.count(b"event: update\n") < len(ids)
    finally:
        fast.close()
        slow.close()


def test_websocket_subscribe_and_unsubscribe(srv, users):
    import asyncio

    import websockets

    author_id, _, author = users.new("w")
    _, _, reader = users.new("wr")
    users.follow(reader, author_id)
    tag = kit.unique_word("wtag")
    ws_url = srv.url().replace("http://", "ws://") + "/api/v1/streaming"

    async def run() -> None:
        async with websockets.connect(ws_url + "?stream=user", subprotocols=[reader]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == reader
            await ws.send(json.dumps({"type": "subscribe", "stream": "hashtag", "tag": tag}))
            await ws.send(json.dumps({"type": "subscribe", "stream": "nonsense"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), WAIT)) == {"error": "Unknown stream type", "status": 400}
            first = await asyncio.to_thread(users.post, author, f"#{tag} one")
            frames = [json.loads(await asyncio.wait_for(ws.recv(), WAIT)) for _ in range(2)]
            assert sorted(f["stream"][0] for f in frames) == ["hashtag", "user"]
            for f in frames:
                assert f["event"] == "update" and json.loads(f["payload"])["id"] == first["id"]
                if f["stream"][0] == "hashtag":
                    assert f["stream"] == ["hashtag", tag]
            await ws.send(json.dumps({"type": "unsubscribe", "stream": "hashtag", "tag": tag}))
            await asyncio.sleep(0)  # (the order of messages on one connection is kept)
            await ws.send(json.dumps({"type": "subscribe", "stream": "nonsense"}))
            assert "error" in json.loads(await asyncio.wait_for(ws.recv(), WAIT))  # unsubscribe applied before
            second = await asyncio.to_thread(users.post, author, f"#{tag} two")
            f = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert f["stream"] == ["user"] and json.loads(f["payload"])["id"] == second["id"]
            await asyncio.to_thread(users.delete, author, second["id"])
            f = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert f == {"stream": ["user"], "event": "delete", "payload": second["id"]}
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url + "?stream=user"):
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(run())


@pytest.mark.parametrize("profile", kit.PROFILES)
def test_mastodon_py_stream_user_receives_update_delete_and_notification(profile, tmp_path_factory):
    from mastodon import Mastodon, StreamListener

    with kit.running(profile, tmp_path_factory, STREAM_SETTINGS) as t:
        writer, reader = Users(t.url(0)), Users(t.url(1))
        try:
            author_id, _, author = writer.new("mp")
            reader_id, _, token = reader.new("mr")
            reader.follow(token, author_id)
            got: queue.Queue[tuple[str, Any]] = queue.Queue()

            class Listener(StreamListener):
                def on_update(self, status: Any) -> None:
                    got.put(("update", status))

                def on_delete(self, status_id: Any) -> None:
                    got.put(("delete", status_id))

                def on_notification(self, notification: Any) -> None:
                    got.put(("notification", notification))

            m = Mastodon(access_token=token, api_base_url=t.url(1))
            assert m.stream_healthy()
            handle = m.stream_user(Listener(), run_async=True)
            try:
                deadline = time.monotonic() + WAIT
                while not handle.is_receiving() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert handle.is_receiving()
                status = writer.post(author, "to Mastodon.py")  # through the other API process
                kind, payload = got.get(timeout=WAIT)
                assert kind == "update" and str(payload.id) == status["id"], (kind, payload)
                writer.delete(author, status["id"])
                kind, payload = got.get(timeout=WAIT)
                assert (kind, str(payload)) == ("delete", status["id"])
                writer.follow(author, reader_id)  # the notifier writes a follow notification
                kind, payload = got.get(timeout=WAIT)
                assert kind == "notification", (kind, payload)
                assert payload.type == "follow" and str(payload.account.id) == author_id
            finally:
                handle.close()
        finally:
            writer.http.close()
            reader.http.close()


# -- the streams in the metrics, and the WebSocket heartbeat ---------------------------------


def test_open_streams_are_counted_apart_from_requests(paced):
    """An open stream is no long request: not in the latency histograms, not in flight, not
    logged as slow; ``homefeed_streaming_*`` counts it (open by transport, opened, closed)."""
    from websockets.sync.client import connect

    from tests.e2e.test_observability import metric, scrape

    url = paced.url()
    users = Users(url)
    _, _, token = users.new("obs")
    assert httpx.get(url + "/api/v1/streaming/user").status_code == 401  # a request, recorded
    before = scrape(url)
    sse = SSE(url, "/api/v1/streaming/user", token)
    ws = connect(url.replace("http://", "ws://") + "/api/v1/streaming?stream=public").__enter__()  # answers pings
    try:
        def both_open() -> Any:
            s = scrape(url)
            return s if (metric(s, "homefeed_streaming_connections", transport="sse"),
                         metric(s, "homefeed_streaming_connections", transport="websocket")) == (1, 1) else None

        s = kit.wait_until("the two streams counted open", both_open, WAIT)
        assert metric(s, "homefeed_http_requests_in_flight") == 1  # the scrape itself, not the streams
        opened = metric(s, "homefeed_streaming_connections_opened_total")
        assert opened == metric(before, "homefeed_streaming_connections_opened_total") + 2
        kit.wait_until("a heartbeat: the stream has lived longer than a slow request",
                       lambda: b":thump\n\n" in bytes(sse.raw), WAIT)
    finally:
        sse.close()
        ws.__exit__(None, None, None)

    def both_closed() -> Any:
        s = scrape(url)
        return s if metric(s, "homefeed_streaming_connections") == 0 else None

    s = kit.wait_until("the two streams counted closed", both_closed, WAIT)
    closed = metric(s, "homefeed_streaming_connections_closed_total")
    assert closed == metric(before, "homefeed_streaming_connections_closed_total") + 2
    duration = "homefeed_http_request_duration_seconds_count"
    assert metric(s, duration, route="/api/v1/streaming/user", status="401") >= 1
    assert metric(s, duration, route="/api/v1/streaming/user", status="200") == 0
    assert not [lb for lb, _ in s[duration] if lb["route"] == "/api/v1/streaming"]
    d = users.http.get("/metrics.json").json()
    assert d["in_flight"] == 1 and d["streaming"]["open"] == 0 and d["streaming"]["opened"] >= 2
    assert "/api/v1/streaming/user 200" not in paced.logs(), "a stream logged as a slow request"
    users.http.close()


PING, PONG, CLOSE, TEXT = 0x9, 0xA, 0x8, 0x1


class RawWebSocket:
    """A WebSocket client on a plain socket, so that a test decides whether a ping is answered
    (a library answers them by itself)."""

    def __init__(self, base: str, path: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        """The next frame (opcode, payload) from the server (unmasked); EOFError at the end."""
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return b0 & 0x0F, self._take(n)

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        assert len(payload) < 126
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
                          + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def close(self) -> None:
        self.sock.close()


def test_websocket_heartbeat_is_a_ping_and_a_client_that_does_not_answer_is_closed(paced):
    from tests.e2e.test_observability import metric, scrape

    url = paced.url()
    users = Users(url)
    _, _, author = users.new("hb")
    ws = RawWebSocket(url, "/api/v1/streaming?stream=public")
    try:
        for _ in range(3):  # answered: the pings keep coming, the stream stays open
            opcode, payload = ws.frame()
            assert opcode == PING, (opcode, payload)
            ws.send(PONG, payload)
        status = users.post(author, "still there?")
        while True:
            opcode, payload = ws.frame()
            if opcode == PING:
                ws.send(PONG, payload)
                continue
            assert opcode == TEXT, (opcode, payload)
            message = json.loads(payload)
            assert message["event"] == "update" and json.loads(message["payload"])["id"] == status["id"]
            break
        # now silent: the server pings, gets no answer, and closes the connection (1011)
        frames = []
        with pytest.raises(EOFError):
            while True:
                frames.append(ws.frame())
        assert frames and all(op == PING for op, _ in frames[:-1]), frames
        opcode, payload = frames[-1]
        assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1011, frames
    finally:
        ws.close()
    # and its stream is forgotten
    kit.wait_until("the stream counted closed",
                   lambda: metric(scrape(url), "homefeed_streaming_connections", transport="websocket") == 0, WAIT)
    users.http.close()
