"""The ``counters`` part: each user's followers, following and posts counts equal the
counts of the records (the store recomputes them in the same snapshot)."""

from __future__ import annotations

from homefeed.service_layer.audit.context import BATCH, AuditContext
from homefeed.service_layer.audit.report import AuditReport, Difference

_NAMES = ("followers_count", "following_count", "posts_count")


async def check_counters(ctx: AuditContext, ids: list[int], report: AuditReport) -> list[Difference]:
    out: list[Difference] = []
    for i in range(0, len(ids), BATCH):
        got = await ctx.store.counters(ids[i : i + BATCH])
        report.count("counters", len(got))
        ctx.progress("counters", min(i + BATCH, len(ids)), len(ids))
        for uid, (stored, actual) in sorted(got.items()):
            for name, s, a in zip(_NAMES, stored, actual):
                if s != a:
                    out.append(Difference("counters", "counters", f"user {uid}",
                                          f"{name} is {s}, the records count {a}",
                                          recheck=("counters", uid), key=("counters", uid, name, s, a)))
    return out
