"""The ``trends`` job: the hashtags used by the most distinct accounts in the last 24 hours,
weighted against their usual rate, with seven days of history (Mastodon's Tag entity).

Why distinct accounts, not uses: one account posting a tag fifty times is not a trend.
Why "against their usual rate": a tag that 30 accounts use every day (``#caturday``) is
less news than one that 10 accounts use today and nobody used last week. The score is
``a * log2(1 + a / (1 + b))`` with ``a`` the distinct accounts of the last 24 hours and
``b`` the mean distinct accounts per day over the six days before: it grows with ``a``,
and shrinks as the tag's baseline grows.

The result is stored in the system of record (``job_results``, name ``trends``), so every
API process serves the same list, and it is visible as soon as the run returns.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from homefeed.domain.ids import EPOCH_MS, NODE_BITS, SEQ_BITS
from homefeed.domain.mastodon.content import extract_hashtags

if TYPE_CHECKING:
    from homefeed.service_layer.jobs.records import BatchReads, JobRecords

NAME = "trends"
HISTORY_DAYS = 7
#: Tags served (``/api/v1/trends/tags`` pages through them, at most 20 at a time).
KEEP = 40
#: A tag needs this many distinct accounts in the last 24 hours to trend.
MIN_ACCOUNTS = 2


def id_at(t: float) -> int:
    """The smallest id made at or after unix time ``t`` (ids are time-ordered)."""
    ms = int(t * 1000) - EPOCH_MS
    return max(0, ms) << (NODE_BITS + SEQ_BITS)


def id_seconds(id_: int) -> float:
    return ((id_ >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS) / 1000


def score(recent_accounts: int, baseline: float) -> float:
    return recent_accounts * math.log2(1 + recent_accounts / (1 + baseline))


async def compute(store: "BatchReads", now: float | None = None) -> list[dict[str, Any]]:
    """The trending tags at ``now``, best first: ``{name, score, accounts_24h, baseline,
    history: [{day, uses, accounts}] newest day first}``."""
    now = time.time() if now is None else now
    today = int(now // 86400) * 86400
    days = [today - i * 86400 for i in range(HISTORY_DAYS)]  # newest first
    since = min(days[-1], now - 86400)
    uses: dict[str, dict[int, int]] = {}
    accounts: dict[str, dict[int, set[int]]] = {}
    recent: dict[str, set[int]] = {}
    spelling: dict[str, str] = {}
    async for chunk in store.public_posts_since(id_at(since)):
        for post_id, author, text in chunk:
            if "#" not in text:
                continue
            t = id_seconds(post_id)
            day = int(t // 86400) * 86400
            for tag in extract_hashtags(text):
                key = tag.lower()
                spelling.setdefault(key, key)
                if day >= days[-1]:
                    u = uses.setdefault(key, {})
                    u[day] = u.get(day, 0) + 1
                    accounts.setdefault(key, {}).setdefault(day, set()).add(author)
                if t >= now - 86400:
                    recent.setdefault(key, set()).add(author)
    ranked: list[dict[str, Any]] = []
    for key, who in recent.items():
        a = len(who)
        if a < MIN_ACCOUNTS:
            continue
        # The six whole days before the last 24 hours: the tag's usual rate.
        before = [len(accounts.get(key, {}).get(d, ())) for d in days[1:]]
        baseline = sum(before) / len(before) if before else 0.0
        ranked.append({
            "name": spelling[key],
            "score": round(score(a, baseline), 4),
            "accounts_24h": a,
            "baseline": round(baseline, 3),
            "history": [{"day": d, "uses": uses.get(key, {}).get(d, 0),
                         "accounts": len(accounts.get(key, {}).get(d, ()))} for d in days],
        })
    ranked.sort(key=lambda r: (-float(r["score"]), -int(r["accounts_24h"]), str(r["name"])))
    return ranked[:KEEP]


async def run(store: "BatchReads", records: "JobRecords", now: float | None = None) -> str:
    now = time.time() if now is None else now
    tags = await compute(store, now)
    await records.put_result(NAME, {"tags": tags}, now)
    top = ", ".join(f"#{t['name']}" for t in tags[:3])
    return f"{len(tags)} trending tags" + (f" ({top})" if top else "")


async def stored(records: "JobRecords") -> list[dict[str, Any]]:
    """The last run's list (empty before the first run)."""
    got = await records.result(NAME)
    return [] if got is None else list(got[0].get("tags", []))
