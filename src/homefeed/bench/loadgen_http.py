"""The load generator's HTTP/1.1 client: raw request bytes per request type
(``RequestFactory``), responses parsed with ``httptools``, keep-alive connections in a
bounded pool. Why not httpx: see ``loadgen``'s docstring (client CPU per request)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

import httptools
import orjson

from homefeed.bench.vocabulary import WORDS

if TYPE_CHECKING:
    from homefeed.bench.loadgen import LoadSpec, User


class RequestFactory:
    """Builds the raw HTTP/1.1 bytes of each request type, acting as a random user.

    Every request carries the acting user's bearer token (a logged-in app sends it on every
    call; endpoints that do not need it ignore it). Content is seeded, so runs repeat.
    """

    def __init__(self, spec: LoadSpec, users: Sequence[User], host: str, port: int, seed: str):
        if not users:
            raise ValueError("the generator needs at least one (handle, token) user")
        self.users = list(users)
        self.rng = random.Random(seed)
        self.limit = spec.timeline_limit
        host_header = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self.common = f"Host: {host_header}\r\nUser-Agent: homefeed-bench\r\n".encode()
        # The home-timeline read, by far the most frequent, is prebuilt per user.
        self.home = [
            self._get(f"/v1/timelines/home?limit={self.limit}", u.token) for u in self.users
        ]

    def _get(self, path: str, token: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\n".encode()
            + self.common
            + f"Authorization: Bearer {token}\r\n\r\n".encode()
        )

    def build(self, kind: str) -> bytes:
        rng = self.rng
        i = rng.randrange(len(self.users))
        if kind == "home_timeline":
            return self.home[i]
        user = self.users[i]
        if kind == "post":
            words = rng.choices(WORDS, k=rng.randint(3, 12))
            body = orjson.dumps({"text": " ".join(words)})
            return (
                b"POST /v1/posts HTTP/1.1\r\n"
                + self.common
                + f"Authorization: Bearer {user.token}\r\n".encode()
                + b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        if kind == "user_timeline":
            target = self.users[rng.randrange(len(self.users))].handle
            return self._get(
                f"/v1/users/{quote(target, safe='')}/posts?limit={self.limit}", user.token
            )
        if kind == "search":
            return self._get(f"/v1/search/posts?q={quote(rng.choice(WORDS))}", user.token)
        raise ValueError(f"unknown request type {kind!r}")


class Response:
    """httptools callbacks for one response: its status, whether the connection may be
    reused, and when it is complete. (``should_keep_alive`` must be read inside the callback:
    once the message is complete the parser resets and always answers False.)"""

    __slots__ = ("parser", "status", "keep_alive", "complete")

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.status = 0
        self.keep_alive = False
        self.complete = False

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


class Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # already broken: nothing to release
            pass

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one request and read its whole response; ``(status, keep_alive)``."""
        self.writer.write(request)
        cb = Response()
        parser = cb.parser = httptools.HttpResponseParser(cb)
        read = self.reader.read
        while not cb.complete:
            data = await read(65536)
            if not data:
                raise ConnectionError("server closed the connection mid-response")
            parser.feed_data(data)
        return cb.status, cb.keep_alive


class Pool:
    """Keep-alive connections, opened lazily up to ``limit``; excess requests wait in line."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []
        #: One permit per connection that may exist; a request holds one while it runs.
        self._sem = asyncio.Semaphore(limit)

    async def acquire(self) -> Connection:
        await self._sem.acquire()
        if self.idle:
            return self.idle.pop()
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except BaseException:
            self._sem.release()
            raise
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Connection(reader, writer)

    def release(self, conn: Connection | None, reusable: bool) -> None:
        """Give back a connection; a broken or unreusable one is closed (``conn`` may be None
        when the slot was acquired but connecting failed)."""
        if conn is not None:
            if reusable:
                self.idle.append(conn)
            else:
                conn.close()
        self._sem.release()

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()
