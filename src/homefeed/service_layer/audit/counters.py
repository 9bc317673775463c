"""The ``counters`` part: each user's followers, following and posts counts, and each
post's replies, boosts and favourites counts, equal the counts of the records (the store
recomputes them in the same snapshot)."""

from __future__ import annotations

from homefeed.service_layer.audit.context import BATCH, AuditContext
from homefeed.service_layer.audit.report import AuditReport, Difference

_NAMES = ("followers_count", "following_count", "posts_count")
_POST_NAMES = ("replies_count", "reblogs_count", "favourites_count")


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


async def check_post_counters(ctx: AuditContext, ids: list[int], report: AuditReport) -> list[Difference]:
    out: list[Difference] = []
    for i in range(0, len(ids), BATCH):
        got = await ctx.store.post_counters(ids[i : i + BATCH])
        report.count("post_counters", len(got))
        ctx.progress("post counters", min(i + BATCH, len(ids)), len(ids))
        out += _post_differences(got)
    return out


async def check_all_post_counters(ctx: AuditContext, report: AuditReport) -> list[Difference]:
    """Every post, ``BATCH`` at a time, walked in id order (the total is not known ahead)."""
    out: list[Difference] = []
    after, done = 0, 0
    while True:
        posts = await ctx.store.posts_after(after, BATCH)
        if not posts:
            return out
        got = await ctx.store.post_counters([p.id for p in posts])
        report.count("post_counters", len(got))
        out += _post_differences(got)
        after = posts[-1].id
        done += len(posts)
        ctx.progress("post counters", done, None)


def _post_differences(got: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]) -> list[Difference]:
    out: list[Difference] = []
    for pid, (stored, actual) in sorted(got.items()):
        for name, s, a in zip(_POST_NAMES, stored, actual):
            if s != a:
                out.append(Difference("counters", "counters", f"post {pid}",
                                      f"{name} is {s}, the records count {a}",
                                      recheck=("post_counters", pid), key=("post_counters", pid, name, s, a)))
    return out
