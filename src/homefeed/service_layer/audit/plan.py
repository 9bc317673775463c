"""What an audit looks at: every user and every post, a random sample of them
(``--sample N``), or, when re-checking, exactly what the differences seen name."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from homefeed.service_layer.audit.context import PAGE, POSTS_PER_SAMPLED_USER, WINDOW, AuditContext
from homefeed.service_layer.audit.report import Difference
from homefeed.service_layer.feed import AUTHOR, HOME


@dataclass
class Plan:
    users: list[int] = field(default_factory=list)
    home: set[int] = field(default_factory=set)  # users whose timelines part is checked
    author: set[int] = field(default_factory=set)
    counters: set[int] = field(default_factory=set)
    #: posts whose counters are checked; ``post_counters_full``: every post
    post_counters: set[int] = field(default_factory=set)
    post_counters_full: bool = False
    notifications: set[int] = field(default_factory=set)  # users whose notifications are checked
    celebs: bool = False
    post_cache: set[int] = field(default_factory=set)
    search_full: bool = False
    search_windows: list[tuple[int, int | None]] = field(default_factory=list)
    search_ids: set[int] = field(default_factory=set)
    lists: set[tuple[str, int]] = field(default_factory=set)  # cached lists of unknown users


async def make_plan(ctx: AuditContext, parts: Sequence[str], sample: int | None, rng: random.Random) -> Plan:
    plan = Plan()
    want_users = any(p in parts for p in ("timelines", "authors", "counters", "notifications"))
    cached: dict[str, list[int]] = {HOME: [], AUTHOR: []}
    if "timelines" in parts or "authors" in parts:
        for kind in (HOME, AUTHOR):
            cached[kind] = await ctx.cache.keys(kind)
    if want_users:
        if sample is None:
            after = 0
            while True:
                ids = await ctx.store.user_ids_after(after, PAGE)
                if not ids:
                    break
                plan.users.extend(ids)
                after = ids[-1]
                ctx.progress("users", len(plan.users), None)
            known = set(plan.users)
            for kind in (HOME, AUTHOR):
                plan.lists.update((kind, k) for k in cached[kind] if k not in known)
        else:
            listed = sorted(set(cached[HOME]) | set(cached[AUTHOR]))
            chosen = rng.sample(listed, min(len(listed), max(1, sample // 2)))
            picked = set(chosen)
            for uid in await ctx.store.sample_user_ids(sample):
                if len(picked) >= sample:
                    break
                picked.add(uid)
            plan.users = sorted(picked)
    if "timelines" in parts:
        plan.home = set(plan.users)
        plan.celebs = True
    if "authors" in parts:
        plan.author = set(plan.users)
    if "counters" in parts:
        plan.counters = set(plan.users)
        if sample is None:
            plan.post_counters_full = True
        else:  # the newest posts of each sampled user
            for uid in plan.users:
                plan.post_counters.update(await ctx.store.author_post_ids(uid, None, POSTS_PER_SAMPLED_USER))
    if "notifications" in parts:
        plan.notifications = set(plan.users)
    if "search" in parts:
        if sample is None:
            plan.search_full = True
        else:
            plan.search_windows = await _sample_windows(ctx, sample, rng)
    return plan


async def _sample_windows(ctx: AuditContext, sample: int, rng: random.Random) -> list[tuple[int, int | None]]:
    """``sample * POSTS_PER_SAMPLED_USER`` posts, as windows of ``WINDOW`` consecutive posts
    starting at random ids (the index's first entry counts too: an entry below the first
    post is found)."""
    first = await ctx.store.posts_after(0, 1)
    top = await ctx.store.max_post_id()
    entries = await ctx.index.entries(0, 1)
    starts = ([first[0].id] if first else []) + ([entries[0][0]] if entries else [])
    lo = min(starts) - 1 if starts else 0
    budget = sample * POSTS_PER_SAMPLED_USER
    windows: list[tuple[int, int | None]] = []
    for _ in range(max(1, -(-budget // WINDOW))):
        start = rng.randint(max(0, lo), max(lo, top))
        posts = await ctx.store.posts_after(start, WINDOW)
        upto = posts[-1].id if len(posts) == WINDOW else None
        windows.append((start, upto))
    return windows


def replan(diffs: Sequence[Difference]) -> Plan:
    """Exactly what the differences seen name, to look at again."""
    plan = Plan()
    for d in diffs:
        kind, *rest = d.recheck
        if kind == "home":
            plan.home.add(rest[0])
        elif kind == "author":
            plan.author.add(rest[0])
        elif kind == "celebs":
            plan.celebs = True
        elif kind == "post":
            plan.post_cache.add(rest[0])
        elif kind == "search":
            plan.search_ids.add(rest[0])
        elif kind == "counters":
            plan.counters.add(rest[0])
        elif kind == "post_counters":
            plan.post_counters.add(rest[0])
        elif kind == "notifications":
            plan.notifications.add(rest[0])
        elif kind == "list":
            plan.lists.add((rest[0], rest[1]))
    return plan
