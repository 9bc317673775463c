"""The ``notifications`` part: each user's notifications equal the function of the records
(docs/conversations.md: follows, favourites, boosts and mentions by others, minus what the
user dismissed or cleared). The record store computes both sides in one snapshot
(``notification_diff``): what the function says exists and the table lacks (missing), and
what the table holds that the function does not (extra)."""

from __future__ import annotations

from typing import Sequence

from homefeed.service_layer.audit.context import BATCH, AuditContext
from homefeed.service_layer.audit.report import AuditReport, Difference


async def check_notifications(ctx: AuditContext, ids: Sequence[int], report: AuditReport) -> list[Difference]:
    out: list[Difference] = []
    ids = list(ids)
    for i in range(0, len(ids), BATCH):
        chunk = ids[i : i + BATCH]
        got = await ctx.store.notification_diff(chunk)
        report.count("notification_lists", len(chunk))
        ctx.progress("notifications", i + len(chunk), len(ids))
        for uid, (missing, extra) in sorted(got.items()):
            if not (missing or extra):
                continue
            out.append(Difference("notifications", "notifications", f"user {uid}",
                                  f"lacks {missing} notification(s) the records make, holds {extra}"
                                  " they do not",
                                  recheck=("notifications", uid), key=("notifications", uid, missing, extra)))
    return out
