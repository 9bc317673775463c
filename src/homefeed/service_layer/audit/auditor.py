"""The auditor: plan what to look at, run each part's checks, re-check what differs once
the events in flight are applied, and keep only what is still there and the same."""

from __future__ import annotations

import logging
import random
from typing import Any, Iterable, Sequence

from homefeed.service_layer.audit.context import AuditContext
from homefeed.service_layer.audit.counters import check_all_post_counters, check_counters, check_post_counters
from homefeed.service_layer.audit.notifications import check_notifications
from homefeed.service_layer.audit.pacing import Pacer, Progress
from homefeed.service_layer.audit.plan import Plan, make_plan, replan
from homefeed.service_layer.audit.report import PARTS, AuditReport, Difference
from homefeed.service_layer.audit.search import SearchChecks
from homefeed.service_layer.audit.settle import wait_caught_up
from homefeed.service_layer.audit.timelines import TimelineChecks
from homefeed.service_layer.services import Homefeed

log = logging.getLogger("homefeed.audit")


class Auditor:
    """One audit of ``hf``'s derived stores. ``sample``: that many users (half of them among
    those with a cached list, if the cache can list them) and ``sample * 10`` posts;
    None: everything. ``parts``: a subset of ``PARTS``. ``progress(phase, done, total)`` is
    called as it goes (phases: users, timelines, authors, post cache, counters, post
    counters, notifications, search, search windows, recheck); ``pacer`` decides how often it gives the event loop back."""

    def __init__(
        self,
        hf: Homefeed,
        *,
        sample: int | None = None,
        parts: Iterable[str] = PARTS,
        settle_timeout: float = 30.0,
        stall: float = 5.0,
        rechecks: int = 1,
        seed: int | None = None,
        progress: Progress | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        parts = tuple(parts)
        self.hf = hf
        self.parts = tuple(p for p in PARTS if p in set(parts))
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown audit part(s) {sorted(unknown)}; parts: {', '.join(PARTS)}")
        if sample is not None and sample < 1:
            raise ValueError("sample must be at least 1")
        self.sample = sample
        self.settle_timeout = settle_timeout
        self.stall = stall
        self.rechecks = rechecks
        self.rng = random.Random(seed)
        self.ctx = AuditContext.of(hf, progress, pacer)
        self._handles: dict[int, str] = {}

    # -- the whole audit --------------------------------------------------------------------
    async def run(self) -> AuditReport:
        report = AuditReport()
        plan = await make_plan(self.ctx, self.parts, self.sample, self.rng)
        diffs = await self._check(plan, report)
        for _ in range(self.rechecks):
            if not diffs:
                break
            log.info("audit: %d difference(s) seen; re-checking once the events in flight are applied", len(diffs))
            self.ctx.progress("recheck", 0, len(diffs))
            behind = await wait_caught_up(self.hf, self.settle_timeout, self.stall)
            report.behind = behind
            if behind:
                report.notes.append(
                    "the consumers did not catch up with the events committed before the"
                    f" differences were seen ({', '.join(f'{k}: {v} behind' for k, v in behind.items())});"
                    " some differences may be events not applied yet (is the service running?)"
                )
            first = {d.key for d in diffs}
            again = await self._check(replan(diffs), AuditReport())
            diffs = [d for d in again if d.key in first]
        report.differences = sorted(diffs, key=lambda d: (PARTS.index(d.part), d.store, d.subject, d.problem))
        return report

    async def _check(self, plan: Plan, report: AuditReport) -> list[Difference]:
        ctx = self.ctx
        out: list[Difference] = []
        timelines = plan.home or plan.celebs
        celebs_truth = set(await ctx.store.celebrity_ids(ctx.threshold)) if timelines else set()
        cached_celebs = await ctx.cache.celebrities() if timelines else None
        checks = TimelineChecks(ctx, celebs_truth | set(cached_celebs or ()))
        if plan.celebs:
            out += checks.celebrities(celebs_truth, cached_celebs, report)
        post_ids: set[int] = set(plan.post_cache)
        for n, uid in enumerate(sorted(plan.home), 1):
            out += await checks.home(uid, report, post_ids)
            ctx.progress("timelines", n, len(plan.home))
        for n, uid in enumerate(sorted(plan.author), 1):
            out += await checks.author(uid, report, post_ids)
            ctx.progress("authors", n, len(plan.author))
        if post_ids:
            out += await checks.post_cache(sorted(post_ids), report)
        out += await checks.orphan_lists(plan.lists)
        if plan.counters:
            out += await check_counters(ctx, sorted(plan.counters), report)
        if plan.post_counters_full:
            out += await check_all_post_counters(ctx, report)
        elif plan.post_counters:
            out += await check_post_counters(ctx, sorted(plan.post_counters), report)
        if plan.notifications:
            out += await check_notifications(ctx, sorted(plan.notifications), report)
        search = SearchChecks(ctx)
        if plan.search_full:
            out += await search.full(report)
        for n, (after, upto) in enumerate(plan.search_windows, 1):
            posts = await search.posts_in(after, upto)
            out += await search.window(posts, after, upto, report)
            ctx.progress("search windows", n, len(plan.search_windows))
        for pid in sorted(plan.search_ids):
            got = await ctx.store.posts_by_ids([pid])
            out += await search.window(got, pid - 1, pid, report)
        if plan.home or plan.author:
            report.count("users", len(plan.home | plan.author))
        return await self._label(out)

    async def _label(self, diffs: Sequence[Difference]) -> list[Difference]:
        """Name users by handle in the subjects: "user 123" -> "@ana (123)"."""
        out = []
        for d in diffs:
            if d.subject.startswith("user "):
                uid = int(d.subject[5:])
                if uid not in self._handles:
                    u = await self.ctx.store.user_by_id(uid)
                    self._handles[uid] = f"@{u.handle} ({uid})" if u else f"user {uid}"
                d = Difference(d.part, d.store, self._handles[uid], d.problem, d.hidden, d.recheck, d.key)
            out.append(d)
        return out


async def audit(hf: Homefeed, **kwargs: Any) -> AuditReport:
    """Run one audit (see ``Auditor`` for the keyword arguments)."""
    return await Auditor(hf, **kwargs).run()
