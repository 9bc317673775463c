"""What the batch side keeps in the system of record, as ports: the scheduler's claims
(``JobRecords``) and the bulk reads the jobs make (``BatchReads``). One adapter per
profile implements both: ``adapters.sqlite_jobs.SqliteJobStore``, ``adapters.pg_jobs.PgJobStore``.

Why a claim is a row and not a lock: a row survives the process that wrote it, so the
other processes can tell "done", "running" and "running, but its lease has expired (its
process died): take it over" apart, and ``homefeed jobs list`` can show the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

#: Outcomes of a run. ``running``: claimed, not finished (or its process died).
RUNNING, OK, FAILED = "running", "ok", "failed"


@dataclass(frozen=True, slots=True)
class JobRun:
    """One claimed slot of one job."""

    job: str
    #: The schedule's period number (scheduled runs), or ``-ms`` (``homefeed jobs run``).
    slot: int
    owner: str
    attempt: int
    started_at: float
    lease_until: float
    finished_at: float | None
    duration_s: float | None
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class UserCounts:
    id: int
    handle: str
    followers: int
    following: int
    posts: int


@dataclass(frozen=True, slots=True)
class Account:
    """An account the digest may write to."""

    id: int
    handle: str
    email: str
    #: Unix time of its last home read, None if never recorded.
    last_read_at: float | None


class JobRecords(Protocol):
    async def claim(self, job: str, slot: int, owner: str, now: float, lease_s: float) -> bool:
        """Claim ``(job, slot)`` for ``owner`` until ``now + lease_s``: True if this call
        made the claim (first, or taking over a ``running`` row whose lease expired)."""
        ...

    async def renew(self, job: str, slot: int, owner: str, lease_until: float) -> bool: ...

    async def finish(self, job: str, slot: int, owner: str, outcome: str, finished_at: float,
                     duration_s: float, detail: str) -> bool:
        """Record the outcome; False if the run is no longer ``owner``'s (taken over)."""
        ...

    async def run_of(self, job: str, slot: int) -> JobRun | None: ...

    async def runs(self, job: str, limit: int = 1000) -> list[JobRun]: ...

    async def latest_runs(self) -> dict[str, JobRun]: ...

    async def run_counts(self) -> dict[tuple[str, str], int]:
        """``(job, outcome) -> runs`` over the whole history."""
        ...

    async def put_result(self, name: str, data: Any, now: float) -> None: ...

    async def result(self, name: str) -> tuple[Any, float] | None: ...

    async def add_reads(self, hours: dict[int, int], last_read: dict[int, float]) -> None:
        """Add home reads per hour (unix seconds // 3600) and move accounts' last read."""
        ...

    async def home_reads(self, since_hour: int) -> dict[int, int]: ...


class BatchReads(Protocol):
    def public_posts_since(self, min_id: int) -> AsyncIterator[list[tuple[int, int, str]]]: ...

    async def user_counts(self) -> list[UserCounts]: ...

    async def posts_since(self, min_id: int) -> int: ...

    async def author_post_counts(self, min_id: int) -> dict[int, int]: ...

    def follow_edges(self) -> AsyncIterator[list[tuple[int, int]]]: ...

    async def digest_candidates(self, inactive_before: float, created_before_id: int,
                                limit: int) -> list[Account]: ...

    async def top_home_posts(self, user_id: int, since_id: int, limit: int) -> list[tuple[int, int, int]]: ...

    async def mark_digest_sent(self, user_ids: list[int], now: float) -> None: ...


class JobStore(JobRecords, BatchReads, Protocol):
    """Both, as the adapters provide them."""
