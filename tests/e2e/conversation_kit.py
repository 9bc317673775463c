"""The conversation side (issue 11) of the fault scenarios' final checks: the records read
back over HTTP (posts, replies, boosts, favourites, follows), the home rules and the
notification function computed from them *in the test* (docs/conversations.md, written out
here again so that the check does not lean on the code it checks), and the comparisons:

- every user's home equals the author, reply and boost rules applied to the records;
- every user's notification list (``GET /api/v1/notifications``, paged to the end) holds
  each notification the records make exactly once (ids unique per user, no (type, account,
  status) twice) and nothing else;
- every status's ``replies_count``, ``reblogs_count`` and ``favourites_count`` equal the
  records.

The scenarios' ledgers decide separately which records the acknowledged writes allow
(``crash_kit.check_everything``, ``test_scaleout``'s model); this module only compares views
with records.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import AbstractSet, Any, Iterable, Mapping, Sequence

import httpx

#: Mastodon's 40: a boost is hidden when its original, or another boost of it, is among the
#: 40 home entries older than the boost (docs/conversations.md, rule 3).
BOOST_WINDOW = 40
#: ``@username`` as Mastodon's extractor finds it in the plain texts the tests write (words
#: separated by spaces: a mention is a whole word).
_MENTION = re.compile(r"(?:^|\s)@([A-Za-z0-9_]+)(?=\s|$)")


@dataclass(frozen=True)
class Rec:
    """One post record as the test knows it. ``author`` and the ``*_author`` fields are the
    scenario's user keys (an index, a handle: anything hashable)."""

    id: int
    author: Any
    text: str = ""
    reply_to: int | None = None
    reply_to_author: Any = None  # the author of the post replied to, at the reply's creation
    reblog_of: int | None = None


def mentioned(text: str, handles: Mapping[str, Any]) -> set[Any]:
    """The users a text mentions: ``handles`` maps a lowercased handle to the user key."""
    return {handles[m.lower()] for m in _MENTION.findall(text) if m.lower() in handles}


# --------------------------------------------------------------------------------------------
# the rules, from the records
# --------------------------------------------------------------------------------------------


def _reply_ok(r: Rec, reader: Any, following: AbstractSet[Any]) -> bool:
    to = r.reply_to_author
    if r.reply_to is None or to is None or to == r.author:
        return True
    return reader == r.author or reader == to or to in following


def home(records: Mapping[int, Rec], reader: Any, following: AbstractSet[Any]) -> list[int]:
    """The reader's home, newest first: entries are the reader's own posts and boosts and
    those of the accounts they follow that pass the reply rule; a boost is shown unless its
    original is the reader's or gone, or the original or another boost of it is among the
    ``BOOST_WINDOW`` older entries."""
    entries = [r for r in sorted(records.values(), key=lambda r: -r.id)
               if (r.author == reader or r.author in following) and _reply_ok(r, reader, following)]
    shown = []
    for k, e in enumerate(entries):
        if e.reblog_of is not None:
            o = records.get(e.reblog_of)
            if o is None or o.author == reader:
                continue
            older = entries[k + 1 : k + 1 + BOOST_WINDOW]
            if any(x.id == e.reblog_of or x.reblog_of == e.reblog_of for x in older):
                continue
        shown.append(e.id)
    return shown


#: A notification as the test compares it: (type, from user, status id, notification id).
#: The id is the cause's own id where the test can know it (a boost's, a mentioning post's);
#: follows and favourites have ids the HTTP API does not show, so None there.
Key = tuple[str, Any, "int | None", "int | None"]


def expected_notifications(records: Mapping[int, Rec], follows: Iterable[tuple[Any, Any]],
                           favourites: Iterable[tuple[Any, int]],
                           handles: Mapping[str, Any],
                           registered: Mapping[Any, int] | None = None) -> dict[Any, Counter[Key]]:
    """Recipient -> the notifications the records make (docs/conversations.md): follows of
    them, favourites and boosts of their posts by others, mentions of them by others (boosts
    mention nobody). A mention names an account that existed when the post was written:
    ``registered`` (user key -> account id, time-ordered like post ids) says which did, for
    scenarios that register users while they post (None: everyone existed from the start)."""
    out: dict[Any, Counter[Key]] = {}

    def add(to: Any, key: Key) -> None:
        out.setdefault(to, Counter())[key] += 1

    for a, b in follows:
        if a != b:
            add(b, ("follow", a, None, None))
    for u, pid in favourites:
        p = records.get(pid)
        if p is not None and p.author != u:
            add(p.author, ("favourite", u, pid, None))
    for r in records.values():
        if r.reblog_of is not None:
            o = records.get(r.reblog_of)
            if o is not None and o.author != r.author:
                add(o.author, ("reblog", r.author, o.id, r.id))
        else:
            for m in mentioned(r.text, handles):
                if m != r.author and (registered is None or registered[m] < r.id):
                    add(m, ("mention", r.author, r.id, r.id))
    return out


def expected_counts(records: Mapping[int, Rec], favourites: Iterable[tuple[Any, int]]) -> dict[int, tuple[int, int, int]]:
    """Post id -> (replies, boosts, favourites) the records count, for posts with any."""
    out: dict[int, list[int]] = {}
    for r in records.values():
        if r.reply_to is not None and r.reply_to in records:
            out.setdefault(r.reply_to, [0, 0, 0])[0] += 1
        if r.reblog_of is not None and r.reblog_of in records:
            out.setdefault(r.reblog_of, [0, 0, 0])[1] += 1
    for _, pid in favourites:
        if pid in records:
            out.setdefault(pid, [0, 0, 0])[2] += 1
    return {pid: (c[0], c[1], c[2]) for pid, c in out.items()}


# --------------------------------------------------------------------------------------------
# reading over HTTP
# --------------------------------------------------------------------------------------------


def _next_max_id(r: httpx.Response) -> str | None:
    link = r.headers.get("link", "")
    m = re.search(r"<[^>]*[?&]max_id=(\d+)[^>]*>;\s*rel=\"next\"", link)
    return m.group(1) if m else None


def mastodon_walk(http: httpx.Client, url: str, token: str, limit: int = 40,
                  **params: Any) -> list[dict[str, Any]]:
    """Every item of a Mastodon list, following ``Link: rel="next"`` to the end."""
    out: list[dict[str, Any]] = []
    q: dict[str, Any] = {"limit": limit, **params}
    for _ in range(10_000):
        r = http.get(url, params=q, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, f"GET {url} {q} -> {r.status_code} {r.text[:300]}"
        page = r.json()
        out.extend(page)
        nxt = _next_max_id(r)
        if not page or nxt is None:
            break
        q = {**q, "max_id": nxt}
    return out


def favourites_of(http: httpx.Client, token: str) -> list[int]:
    """The ids of the statuses a user has favourited (``GET /api/v1/favourites``)."""
    return [int(s["id"]) for s in mastodon_walk(http, "/api/v1/favourites", token)]


def notifications_of(http: httpx.Client, token: str, limit: int = 80) -> list[dict[str, Any]]:
    return mastodon_walk(http, "/api/v1/notifications", token, limit=limit)


def notification_keys(notes: Sequence[dict[str, Any]], account_key: Mapping[str, Any]) -> tuple[Counter[Key], list[str]]:
    """The notifications as keys (see ``Key``), and what is wrong with the list on its own:
    an id twice, not newest first."""
    problems: list[str] = []
    ids = [int(n["id"]) for n in notes]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        problems.append(f"notification ids listed twice: {twice[:10]}")
    if ids != sorted(ids, reverse=True):
        problems.append("notifications not newest first")
    keys: Counter[Key] = Counter()
    for n in notes:
        t = n["type"]
        status = int(n["status"]["id"]) if n.get("status") else None
        known_id = int(n["id"]) if t in ("reblog", "mention") else None
        keys[(t, account_key.get(n["account"]["id"], n["account"]["id"]), status, known_id)] += 1
    return keys, problems


def compare_notifications(got: Counter[Key], want: Counter[Key]) -> str | None:
    """None when equal; else what is missing and what is extra (or twice)."""
    if got == want:
        return None
    missing = want - got
    extra = got - want
    return (f"missing {sorted(missing.elements(), key=str)[:8]} ({sum(missing.values())}), "
            f"extra or twice {sorted(extra.elements(), key=str)[:8]} ({sum(extra.values())})")


def status_counts(http: httpx.Client, post_id: int, token: str | None = None) -> tuple[int, int, int] | None:
    """(replies_count, reblogs_count, favourites_count) of a status; None if it is gone."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    r = http.get(f"/api/v1/statuses/{post_id}", headers=headers)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, f"GET /api/v1/statuses/{post_id} -> {r.status_code} {r.text[:300]}"
    s = r.json()
    return s["replies_count"], s["reblogs_count"], s["favourites_count"]


@dataclass
class ConversationFigures:
    """What the conversation checks looked at (for the scenarios' figures)."""

    notifications: int = 0
    favourites: int = 0
    boosts: int = 0
    replies: int = 0
    mentions: int = 0
