"""One warning when a backend goes away, one line when it is back: the log of an outage.

An adapter that turns a driver's connection error into ``Unavailable`` reports it here.
During an outage every request and every consumer retry fails the same way; logging each
would bury the one line an operator needs (which backend, since when) under thousands of
copies. So the first failure logs a WARNING naming the backend, later ones are counted
silently, and a success followed by ``QUIET`` seconds without a failure logs "recovered
after N s (M failed calls)". (A server shutting down ends its sessions one by one: calls on
the others still succeed for a moment. Without the quiet period that moment would log a
recovery and a second outage.)
"""

from __future__ import annotations

import asyncio
import logging
import time

from homefeed.domain.errors import Unavailable

log = logging.getLogger("homefeed.backends")

#: Seconds without a failure before a success counts as the end of the outage.
QUIET = 0.5
#: After a failure, calls within this many seconds may be failed at once without trying
#: (``recently_failed``): during an outage a caller with a fallback pays nothing, and the
#: backend is still tried a few times a second, so its return is noticed.
PROBE_INTERVAL = 0.25


class OutageLog:
    """The availability of one backend as this process sees it. Not thread-safe: every
    caller runs on the process's event loop."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        #: monotonic time of the first failure of the current outage (None: available)
        self.since: float | None = None
        self.failures = 0  # failed calls in the current outage
        self.last_failure = 0.0  # monotonic time
        self._confirming = False  # a check QUIET seconds after a success is scheduled
        self.outages = 0  # outages seen since the process started

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> Unavailable:
        """Record a failed call; returns the ``Unavailable`` to raise (503, retry later)."""
        self.failures += 1
        self.last_failure = time.monotonic()
        if self.since is None:
            self.since = self.last_failure
            self.outages += 1
            log.warning("%s is unavailable (%s: %s); calls needing it fail (503, or a fallback) until it is back",
                        self.backend, type(exc).__name__, _first_line(exc))
        return self._error()

    def recently_failed(self) -> bool:
        """Down, and the last failure is less than ``PROBE_INTERVAL`` old: a call may
        fail at once (``skipped``) instead of waiting for its connection to fail again."""
        return self.since is not None and time.monotonic() - self.last_failure < PROBE_INTERVAL

    def skipped(self) -> Unavailable:
        """A call failed without trying (see ``recently_failed``)."""
        self.failures += 1
        return self._error()

    def _error(self) -> Unavailable:
        return Unavailable(f"the {self.backend_noun} ({self.backend}) is unavailable; retry later")

    def succeeded(self) -> None:
        """Record a call that worked; the outage, if there is one, ends once no call failed
        for ``QUIET`` seconds after it. Cheap when there is none."""
        if self.since is None:
            return
        now = time.monotonic()
        if now - self.last_failure >= QUIET:
            self._recovered(now)
        elif not self._confirming:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to wait on: take the success as it is
                self._recovered(now)
                return
            self._confirming = True
            loop.call_later(QUIET, self._confirm, now)

    def _confirm(self, success_at: float) -> None:
        self._confirming = False
        if self.since is not None and self.last_failure <= success_at:
            self._recovered(time.monotonic())

    def _recovered(self, now: float) -> None:
        log.warning("%s recovered after %.1f s (%d failed calls)",
                    self.backend, now - (self.since or now), self.failures)
        self.since = None
        self.failures = 0

    @property
    def backend_noun(self) -> str:
        return {"PostgreSQL": "database", "Redis": "cache"}.get(self.backend, self.backend)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"
