"""The webhook sender: one HTTP/1.1 POST per attempt, to an address checked AFTER DNS
resolution, on asyncio streams.

Why not an HTTP client library: the SSRF rule needs the connection to go to the very
address that was checked (no second resolution a DNS-rebinding answer could change), with
``Host`` and the TLS server name (SNI, certificate check) still those of the URL, and no
redirect ever followed. With asyncio streams that is ``open_connection(ip, port,
ssl=context, server_hostname=host)``: a few dozen lines we control, and no new runtime
dependency (httpx is only a test dependency). Connections are kept alive per (address,
port, host, scheme) and reused by later deliveries to the same endpoint; a kept connection
that the server closed meanwhile is retried once on a fresh one when nothing of the answer
was read.

Only the status code of the answer matters (2xx: delivered; 410: gone; anything else,
redirects included: failed). At most ``MAX_BODY`` bytes of the answer are read; a longer
answer's connection is closed instead of drained.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import defaultdict
from typing import Mapping

from homefeed.domain.webhooks import Target, address_allowed, parse_target

MAX_BODY = 64 * 1024
MAX_HEADER_LINES = 100
#: Idle kept connections per endpoint.
MAX_IDLE = 8
USER_AGENT = "homefeed-webhooks/1"


class DeliveryError(Exception):
    """An attempt that got no HTTP answer (refused target, DNS, connection, timeout)."""


class TargetRefused(DeliveryError):
    """The target resolves to an address webhooks may not reach (SSRF rule)."""


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def resolve(target: Target, allow_private: bool) -> list[str]:
    """The addresses to connect to, all checked; TargetRefused if the host resolves to any
    address webhooks may not reach (a name with one private address is refused whole: the
    rule must not depend on which answer comes first)."""
    host = target.host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise DeliveryError(f"cannot resolve {host}: {exc}") from None
    addrs: list[str] = []
    for info in infos:
        ip = str(info[4][0])
        if ip not in addrs:
            addrs.append(ip)
    if not addrs:
        raise DeliveryError(f"{host} has no address")
    if not allow_private:
        bad = [ip for ip in addrs if not address_allowed(ip)]
        if bad:
            raise TargetRefused(f"{host} resolves to {bad[0]}, a loopback, private, link-local or"
                                " multicast address: refused (HOMEFEED_WEBHOOKS_ALLOW_PRIVATE=1 allows it)")
    return addrs


def check_url(url: str, allow_private: bool) -> Target:
    """``webhooks add``'s check (blocking DNS: the CLI and the admin route call it in a
    thread): the URL's form, then every address its host resolves to. Raises InvalidInput
    (bad URL) or TargetRefused / DeliveryError (refused or unresolvable host)."""
    target = parse_target(url)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryError(f"cannot resolve {target.host}: {exc}") from None
    if not allow_private:
        for info in infos:
            ip = str(info[4][0])
            if not address_allowed(ip):
                raise TargetRefused(
                    f"{target.host} resolves to {ip}, a loopback, private, link-local or multicast"
                    " address: webhooks may not reach it (HOMEFEED_WEBHOOKS_ALLOW_PRIVATE=1 allows it)")
    return target


class HttpSender:
    """POSTs with kept-alive connections. One per process (the dispatcher's)."""

    def __init__(self, allow_private: bool = False, timeout: float = 15.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._ssl = ssl_context
        self._idle: dict[tuple[str, int, str, str], list[_Conn]] = defaultdict(list)
        #: Connections opened (kept-alive ones are reused: far fewer than requests).
        self.connects = 0

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        """POST ``body``; the answer's status code. DeliveryError when no answer came
        (TargetRefused for an address that may not be reached) or within the timeout."""
        target = parse_target(url)
        try:
            async with asyncio.timeout(self.timeout):
                addrs = await resolve(target, self.allow_private)
                return await self._post(target, addrs, headers, body)
        except TimeoutError:
            raise DeliveryError(f"no answer within {self.timeout:g}s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None

    async def _post(self, target: Target, addrs: list[str], headers: Mapping[str, str], body: bytes) -> int:
        request = self._request(target, headers, body)
        last: Exception | None = None
        for ip in addrs:
            key = (ip, target.port, target.host, target.scheme)
            idle = self._idle[key]
            while idle:  # a kept connection first; one the server closed is retried fresh
                conn = idle.pop()
                try:
                    status, keep = await self._exchange(conn, request)
                except _Stale:
                    conn[1].close()
                    continue
                self._release(key, conn, keep)
                return status
            try:
                conn = await self._connect(target, ip)
            except OSError as exc:
                last = exc
                continue
            try:
                status, keep = await self._exchange(conn, request)
            except _Stale as exc:
                conn[1].close()
                raise DeliveryError(f"the connection closed before an answer: {exc}") from None
            self._release(key, conn, keep)
            return status
        raise DeliveryError(f"cannot connect to {target.host} port {target.port}: {last}")

    async def _connect(self, target: Target, ip: str) -> _Conn:
        self.connects += 1
        if target.scheme == "https":
            return await asyncio.open_connection(ip, target.port, ssl=self._context(),
                                                 server_hostname=target.host)
        return await asyncio.open_connection(ip, target.port)

    def _release(self, key: tuple[str, int, str, str], conn: _Conn, keep: bool) -> None:
        if keep and len(self._idle[key]) < MAX_IDLE:
            self._idle[key].append(conn)
        else:
            conn[1].close()

    @staticmethod
    def _request(target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
        lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}", f"User-Agent: {USER_AGENT}",
                 "Content-Type: application/json", f"Content-Length: {len(body)}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError("header values may not contain line breaks")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _exchange(self, conn: _Conn, request: bytes) -> tuple[int, bool]:
        """Send, read the answer; (status, whether the connection may be reused)."""
        reader, writer = conn
        try:
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
        except (ConnectionError, OSError) as exc:
            raise _Stale(str(exc)) from None
        if not status_line:
            raise _Stale("EOF")
        try:
            parts = status_line.decode("latin-1").split(" ", 2)
            if not parts[0].startswith("HTTP/1."):
                raise ValueError(parts[0])
            status = int(parts[1])
        except (ValueError, IndexError):
            raise DeliveryError(f"not an HTTP answer: {status_line[:80]!r}") from None
        length: int | None = None
        chunked = False
        keep = parts[0] == "HTTP/1.1"
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length" and value.isdigit():
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection":
                keep = "close" not in value and (keep or "keep-alive" in value)
        else:
            return status, False
        if status in (204, 304) or 100 <= status < 200:
            # no body by definition; one that declares a body anyway is not to be trusted
            return status, keep and not length and not chunked
        if chunked:
            return status, keep and await _skip_chunked(reader)
        if length is None:
            return status, False  # the body ends when the connection does
        if length > MAX_BODY:
            return status, False
        await reader.readexactly(length)
        return status, keep

    async def close(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()


class _Stale(Exception):
    """A connection failed before any of the answer was read."""


async def _skip_chunked(reader: asyncio.StreamReader) -> bool:
    """Read a chunked body of at most MAX_BODY bytes; False if it was longer (close)."""
    total = 0
    while True:
        size_line = await reader.readline()
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            return False
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return True
        total += size
        if total > MAX_BODY:
            return False
        await reader.readexactly(size + 2)
