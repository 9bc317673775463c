"""LiveBus in this process: the embedded profile runs its consumers and its API in one
process, so a live update is handed straight from the fan-out consumer to the listeners
(the ``StreamHub``), with no copy and no network."""

from __future__ import annotations

import asyncio
from typing import Callable, ClassVar


class LocalLiveBus:
    backend: ClassVar[str] = "local"

    def __init__(self) -> None:
        self._listeners: list[Callable[[bytes], None]] = []

    async def publish(self, message: bytes) -> None:
        for on_message in list(self._listeners):
            on_message(message)  # a listener only queues it (StreamHub.on_message)

    def listened(self) -> bool:
        """Whether a listener (this process's ``StreamHub``, from its first stream on) is here."""
        return bool(self._listeners)

    async def listen(
        self, on_message: Callable[[bytes], None], on_reset: Callable[[bool], None]
    ) -> None:
        self._listeners.append(on_message)
        try:
            on_reset(True)
            await asyncio.Event().wait()  # until cancelled: nothing can go down in-process
        finally:
            self._listeners.remove(on_message)

    async def close(self) -> None:
        """Nothing held: the listeners leave when their task is cancelled."""
