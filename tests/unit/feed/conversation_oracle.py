"""The home rules and the notifications computed from the records alone, in plain Python
(docs/conversations.md), written apart from the product's code: what the tests compare
``FeedManager``'s reads and the notifier's table with."""

from __future__ import annotations

from dataclasses import dataclass

WINDOW = 40


@dataclass(frozen=True)
class P:
    """A post as the oracle knows it."""

    id: int
    author: int
    reply_to_author: int | None = None  # the author of the post replied to
    reblog_of: int | None = None
    mentions: tuple[int, ...] = ()


def home(reader: int, posts: dict[int, P], follows: set[tuple[int, int]]) -> list[int]:
    """The reader's home, newest first: entries (own or followed authors; a reply to
    someone else only if the reader is either side or follows the one replied to), and a
    boost of O hidden if O is gone, O is the reader's, or O or a boost of O is among the
    40 entries older than the boost."""
    following = {b for a, b in follows if a == reader}

    def entry(p: P) -> bool:
        if p.author != reader and p.author not in following:
            return False
        to = p.reply_to_author
        if to is None or to == p.author:
            return True
        return reader in (p.author, to) or to in following

    entries = [p for _, p in sorted(posts.items(), reverse=True) if entry(p)]
    out = []
    for i, p in enumerate(entries):
        if p.reblog_of is not None:
            o = posts.get(p.reblog_of)
            if o is None or o.author == reader:
                continue
            if any(e.id == p.reblog_of or e.reblog_of == p.reblog_of for e in entries[i + 1 : i + 1 + WINDOW]):
                continue
        out.append(p.id)
    return out


def notifications(
    user: int,
    posts: dict[int, P],
    follows: dict[tuple[int, int], int],
    favourites: dict[tuple[int, int], int],
) -> list[tuple[int, str, int, int | None]]:
    """(id, type, from, post) of the user's notifications, newest first. ``follows``:
    (follower, followee) -> follow id; ``favourites``: (user, post) -> favourite id."""
    out = []
    for (f, b), fid in follows.items():
        if b == user and f != user:
            out.append((fid, "follow", f, None))
    for (u, pid), fav_id in favourites.items():
        p = posts.get(pid)
        if p is not None and p.author == user and u != user:
            out.append((fav_id, "favourite", u, pid))
    for p in posts.values():
        if p.reblog_of is not None:
            o = posts.get(p.reblog_of)
            if o is not None and o.author == user and p.author != user:
                out.append((p.id, "reblog", p.author, o.id))
        elif user in p.mentions and p.author != user:
            out.append((p.id, "mention", p.author, p.id))
    return sorted(out, reverse=True)
