"""The conversations part of the RecordStore on PostgreSQL (being written: the SQLite half
came first so that the service layer can be built against it)."""

from __future__ import annotations

from typing import Collection, Sequence

from homefeed.domain.model import Marker, Notification, Post, PostStats, User

_TODO = "conversations on PostgreSQL: not written yet (the SQLite store has them)"


class PgConversationsStore:
    async def reblog(self, user_id: int, user_handle: str, post_id: int, *, visibility: str = "public") -> tuple[Post, Post, bool]:
        raise NotImplementedError(_TODO)

    async def unreblog(self, user_id: int, post_id: int) -> tuple[Post | None, Post]:
        raise NotImplementedError(_TODO)

    async def favourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        raise NotImplementedError(_TODO)

    async def unfavourite(self, user_id: int, post_id: int) -> tuple[bool, Post]:
        raise NotImplementedError(_TODO)

    async def post_stats(self, post_ids: Sequence[int], viewer_id: int | None) -> dict[int, PostStats]:
        raise NotImplementedError(_TODO)

    async def reply_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        raise NotImplementedError(_TODO)

    async def mention_ids(self, post_ids: Sequence[int]) -> dict[int, list[int]]:
        raise NotImplementedError(_TODO)

    async def favourites_page(self, user_id: int, max_id: int | None, min_id: int | None, limit: int, oldest_first: bool = False) -> list[tuple[int, int]]:
        raise NotImplementedError(_TODO)

    async def favourited_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        raise NotImplementedError(_TODO)

    async def reblogged_by(self, post_id: int, max_id: int | None, limit: int) -> list[tuple[int, User]]:
        raise NotImplementedError(_TODO)

    async def sync_notifications(self, *, post_ids: Sequence[int] = (), favourites: Sequence[tuple[int, int]] = (), follows: Sequence[tuple[int, int]] = ()) -> list[Notification]:
        raise NotImplementedError(_TODO)

    async def notifications_page(self, user_id: int, *, types: Collection[str] | None = None, exclude_types: Collection[str] = (), from_user_id: int | None = None, max_id: int | None = None, min_id: int | None = None, limit: int = 40, oldest_first: bool = False) -> list[Notification]:
        raise NotImplementedError(_TODO)

    async def notification(self, user_id: int, notification_id: int) -> Notification | None:
        raise NotImplementedError(_TODO)

    async def dismiss_notification(self, user_id: int, notification_id: int) -> bool:
        raise NotImplementedError(_TODO)

    async def clear_notifications(self, user_id: int) -> int:
        raise NotImplementedError(_TODO)

    async def notification_diff(self, user_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        raise NotImplementedError(_TODO)

    async def rebuild_notifications(self, user_ids: Sequence[int]) -> int:
        raise NotImplementedError(_TODO)

    async def post_counters(self, post_ids: Sequence[int]) -> dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]:
        raise NotImplementedError(_TODO)

    async def fix_post_counters(self, post_ids: Sequence[int]) -> int:
        raise NotImplementedError(_TODO)

    async def markers(self, user_id: int, timelines: Sequence[str]) -> dict[str, Marker]:
        raise NotImplementedError(_TODO)

    async def set_marker(self, user_id: int, timeline: str, last_read_id: str) -> Marker:
        raise NotImplementedError(_TODO)
