"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, on a thread of its own, so that
in-process tests and tests of server subprocesses use it alike), keeping every message it
accepted, and the checks a mail receiver would make of homefeed's notification mails."""

from __future__ import annotations

import email
import re
import socket
import threading
from email.message import Message
from typing import Any, Callable

from aiosmtpd.controller import Controller

from tests.waiting import wait_until

#: ``<mention.123.u42@domain>`` / ``<follow.812.u42@domain>`` (README "Email"; bundling off:
#: one cause per mail, so no ``+N``).
MESSAGE_ID = re.compile(r"<(mention|follow)\.(\d+)\.u(\d+)@([^>]+)>")


class Inbox:
    """aiosmtpd handler: keeps every message it accepted (with its envelope recipients);
    refuses recipients in ``refuse`` with 550 (a permanent reject)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.refuse: set[str] = set()
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def snapshot(self) -> list[tuple[list[str], Message]]:
        with self._lock:
            return list(self.messages)

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()

    def wait_for(self, done: Callable[[list[tuple[list[str], Message]]], bool], timeout: float = 60.0,
                 what: str = "the expected mails") -> list[tuple[list[str], Message]]:
        """Wait (liveness, not a timing check) until ``done(messages)``."""
        return wait_until(self.snapshot, done, timeout, what, lambda got: [m["Message-ID"] for _, m in got])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """``with SmtpServer() as smtp:`` ... ``smtp.url`` for ``HOMEFEED_SMTP_URL``."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = _free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def by_message_id(messages: list[tuple[list[str], Message]]) -> dict[str, list[tuple[list[str], Message]]]:
    """Message-ID -> every copy received (more than one: the same mail sent again)."""
    out: dict[str, list[tuple[list[str], Message]]] = {}
    for rcpts, m in messages:
        out.setdefault(str(m["Message-ID"]), []).append((rcpts, m))
    return out


def actor_of(m: Message) -> str:
    """The actor's username a one-notification mail names in its subject (``@bob followed
    you``, ``@bob mentioned you``), lowercased."""
    found = re.match(r"@(\S+) (?:followed|mentioned) you$", str(m["Subject"]))
    assert found, f"not the subject of one notification: {m['Subject']!r}"
    return found.group(1).lower()
