"""The records of the stateful oracle (tests/integration/test_oracle_stateful.py) and every
view computed from them alone, in plain Python, written apart from the product's code
(nothing here imports homefeed): who exists, who follows whom (with the follow's id), the
posts with their reply and boost links and mentions, favourites (with their ids), and each
reader's dismissals and cleared id. The views are the rules of docs/conversations.md:

- **home**: entries are the reader's own posts and those of whom they follow now, a reply
  by A to B != A only if the reader is A or B or follows B; a boost of O is hidden if O is
  gone or the reader's, or if O or another boost of O is among the ``window`` entries older
  than the boost (40 in the product; the test may make it smaller);
- **context**: ancestors up to the first gone post, oldest first; descendants depth first,
  each post's live replies by id;
- **counters**: live replies, live boosts, favourites;
- **notifications**: follow / favourite / reblog / mention as a function of the records,
  minus dismissed ids and ids at or below the cleared id, newest first;
- **webhooks** (README "Webhooks"): one message per thing that *happened* (an account
  registered, a post written or deleted, a mention, each follow, unfollow, favourite and
  boost that changed something), so the model also keeps the history of those changes,
  not only their present state;
- **mails** (README "Email", bundling off): one mail per mention of, and per new follower
  of, an account with an email address.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import NamedTuple

#: Mastodon's mention syntax (Account::MENTION_RE), written again: a username of [A-Za-z0-9_]
#: with inner dots and dashes, an optional @domain (a remote account: no mention here), not
#: after "=", "/" or a word character.
_MENTION = re.compile(r"(?<![=/\w])@([A-Za-z0-9_]+(?:[A-Za-z0-9_.-]+[A-Za-z0-9_]+)?)(@[\w.-]+\w+)?")


def model_mentions(text: str) -> list[str]:
    """Lowercased local usernames ``@name`` in ``text``, first-seen order, each once."""
    out: list[str] = []
    for name, domain in _MENTION.findall(text):
        if not domain and name.lower() not in out:
            out.append(name.lower())
    return out


class Notif(NamedTuple):
    id: int
    type: str
    from_id: int
    post_id: int | None


class Records:
    """The system of record as the test wrote it. ``posts`` maps id -> (author, text,
    creation seq); creation order is id order (one id generator, one writer)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.users: list[tuple[int, str]] = []  # (id, handle), in registration order
        self.follows: set[tuple[int, int]] = set()  # (follower, followee)
        self.follow_ids: dict[tuple[int, int], int] = {}
        self.posts: dict[int, tuple[int, str, int]] = {}
        self.deleted: set[int] = set()
        self.unlisted: set[int] = set()
        self.parent: dict[int, int] = {}  # reply -> the post replied to (kept when it goes)
        self.parent_author: dict[int, int] = {}
        self.reblog_of: dict[int, int] = {}  # boost -> original
        self.mentions: dict[int, frozenset[int]] = {}
        self.favourites: dict[tuple[int, int], int] = {}  # (user, post) -> favourite id
        self.dismissed: dict[int, set[int]] = defaultdict(set)
        self.cleared: dict[int, int] = defaultdict(int)
        # the history of the changes that make webhooks and mails (only those that changed
        # something: a second follow of the same account, a favourite twice, make no event)
        self.follow_events: list[tuple[str, int, int]] = []  # ("follow"|"unfollow", follower, followee)
        self.favourite_events: list[tuple[int, int]] = []  # (user, original post)
        self.boost_events: list[tuple[int, int]] = []  # (booster, original post)
        # the favourites and boosts (indexes in the lists above) whose original still existed
        # at a drain after them: the webhooks consumer rendered their message (``drained``)
        self.rendered_favourites: set[int] = set()
        self.rendered_boosts: set[int] = set()

    # -- writes -----------------------------------------------------------------------------
    def add_post(self, pid: int, author: int, text: str, seq: int, *, parent: int | None = None,
                 reblog_of: int | None = None, unlisted: bool = False) -> None:
        self.posts[pid] = (author, text, seq)
        if unlisted:
            self.unlisted.add(pid)
        if parent is not None:
            self.parent[pid] = parent
            self.parent_author[pid] = self.posts[parent][0]
        if reblog_of is not None:
            self.reblog_of[pid] = reblog_of
            self.boost_events.append((author, reblog_of))
        else:
            by_name = {h.lower(): u for u, h in self.users}
            self.mentions[pid] = frozenset(
                by_name[n] for n in model_mentions(text) if n in by_name and by_name[n] != author)

    def delete(self, pid: int) -> list[int]:
        """Delete a post: an original takes its boosts and favourites with it (replies
        stay). Returns the ids deleted."""
        gone = [pid]
        self.deleted.add(pid)
        if pid not in self.reblog_of:
            for b, o in self.reblog_of.items():
                if o == pid and b not in self.deleted:
                    self.deleted.add(b)
                    gone.append(b)
            for key in [k for k in self.favourites if k[1] == pid]:
                del self.favourites[key]
        return gone

    def followed(self, follower: int, followee: int) -> bool:
        """A follow request answered: True (and an event) if it made a new follow."""
        if (follower, followee) in self.follows:
            return False
        self.follows.add((follower, followee))
        self.follow_events.append(("follow", follower, followee))
        return True

    def unfollowed(self, follower: int, followee: int) -> bool:
        """An unfollow request answered: True (and an event) if it ended a follow."""
        if (follower, followee) not in self.follows:
            return False
        self.follows.discard((follower, followee))
        self.follow_ids.pop((follower, followee), None)
        self.follow_events.append(("unfollow", follower, followee))
        return True

    def favourited(self, user: int, original: int, fid: int = 0) -> bool:
        """A favourite request answered: True (and an event) if it made a new favourite."""
        if (user, original) in self.favourites:
            return False
        self.favourites[(user, original)] = fid
        self.favourite_events.append((user, original))
        return True

    def drained(self) -> None:
        """Every consumer has caught up: a favourite or boost whose original exists now had
        its message rendered, which must be delivered even if the original goes later."""
        for events, rendered in ((self.favourite_events, self.rendered_favourites),
                                 (self.boost_events, self.rendered_boosts)):
            rendered.update(i for i, (_, p) in enumerate(events) if i not in rendered and self.exists(p))

    # -- reads of the records ---------------------------------------------------------------
    def exists(self, pid: int) -> bool:
        return pid in self.posts and pid not in self.deleted

    def original(self, pid: int) -> int:
        return self.reblog_of.get(pid, pid)

    def boost_of(self, user: int, original: int) -> int | None:
        for b, o in self.reblog_of.items():
            if o == original and b not in self.deleted and self.posts[b][0] == user:
                return b
        return None

    def live(self) -> list[int]:
        """Ids of the posts that exist, newest first (creation order)."""
        ids = [pid for pid in self.posts if pid not in self.deleted]
        ids.sort(key=lambda pid: self.posts[pid][2], reverse=True)
        return ids

    def following(self, uid: int) -> set[int]:
        return {b for a, b in self.follows if a == uid}

    def is_reply_to_other(self, pid: int) -> bool:
        return pid in self.parent and self.parent_author[pid] != self.posts[pid][0]

    def is_entry(self, reader: int, pid: int, following: set[int]) -> bool:
        """The author and reply rules."""
        author = self.posts[pid][0]
        if author != reader and author not in following:
            return False
        if not self.is_reply_to_other(pid):
            return True
        to = self.parent_author[pid]
        return reader in (author, to) or to in following

    # -- views --------------------------------------------------------------------------------
    def home(self, reader: int) -> list[int]:
        following = self.following(reader)
        entries = [pid for pid in self.live() if self.is_entry(reader, pid, following)]
        out: list[int] = []
        for i, pid in enumerate(entries):
            o = self.reblog_of.get(pid)
            if o is not None:
                if not self.exists(o) or self.posts[o][0] == reader:
                    continue
                older = entries[i + 1 : i + 1 + self.window]
                if any(e == o or self.reblog_of.get(e) == o for e in older):
                    continue
            out.append(pid)
        return out

    def boost_shadowed(self, reader: int) -> bool:
        """Whether the window (not the author of the original) hides a boost in the home:
        the statistics say how often the window logic decides something."""
        following = self.following(reader)
        entries = [pid for pid in self.live() if self.is_entry(reader, pid, following)]
        for i, pid in enumerate(entries):
            o = self.reblog_of.get(pid)
            if o is not None and self.exists(o) and self.posts[o][0] != reader:
                older = entries[i + 1 : i + 1 + self.window]
                if any(e == o or self.reblog_of.get(e) == o for e in older):
                    return True
        return False

    def user_posts(self, author: int) -> list[int]:
        return [pid for pid in self.live() if self.posts[pid][0] == author]

    def public(self) -> list[int]:
        return [pid for pid in self.live() if pid not in self.unlisted
                and pid not in self.reblog_of and not self.is_reply_to_other(pid)]

    def ancestors(self, pid: int) -> list[int]:
        out: list[int] = []
        p = self.parent.get(self.original(pid))
        while p is not None and self.exists(p):
            out.append(p)
            p = self.parent.get(p)
        return out[::-1]

    def children(self, pid: int) -> list[int]:
        return sorted(q for q, p in self.parent.items() if p == pid and self.exists(q))

    def descendants(self, pid: int) -> list[int]:
        out: list[int] = []
        stack = list(reversed(self.children(self.original(pid))))
        while stack:
            q = stack.pop()
            out.append(q)
            stack.extend(reversed(self.children(q)))
        return out

    def counters(self, pid: int) -> tuple[int, int, int]:
        """(replies, reblogs, favourites) of an existing post."""
        return (
            sum(1 for q, p in self.parent.items() if p == pid and self.exists(q)),
            sum(1 for b, o in self.reblog_of.items() if o == pid and self.exists(b)),
            sum(1 for _, p in self.favourites if p == pid),
        )

    def notifications(self, uid: int) -> list[Notif]:
        """The recipient's notifications, newest first."""
        out: list[Notif] = []
        for (a, b), fid in self.follow_ids.items():
            if b == uid and a != uid and (a, b) in self.follows:
                out.append(Notif(fid, "follow", a, None))
        for (u, pid), fav in self.favourites.items():
            if self.exists(pid) and self.posts[pid][0] == uid and u != uid:
                out.append(Notif(fav, "favourite", u, pid))
        for pid in self.live():
            author = self.posts[pid][0]
            if author == uid:
                continue
            o = self.reblog_of.get(pid)
            if o is not None:
                if self.exists(o) and self.posts[o][0] == uid:
                    out.append(Notif(pid, "reblog", author, o))
            elif uid in self.mentions.get(pid, ()):
                out.append(Notif(pid, "mention", author, pid))
        cleared, dismissed = self.cleared[uid], self.dismissed[uid]
        return sorted((n for n in out if n.id > cleared and n.id not in dismissed), reverse=True)

    # -- what the outside world hears -------------------------------------------------------
    def webhooks(self) -> tuple[Counter[tuple[str, int, int]], Counter[tuple[str, int, int]]]:
        """The webhook messages the history makes, as ``(type, a, b)`` keys counted:
        (must arrive, may arrive). ``a, b``: the account (``account.created``: it, 0), the
        status (``status.*``: it, 0), (status, mentioned account), (follower, followee),
        (who favourited or boosted, the original status). Every event is a must, but a
        favourite or boost of a post deleted since and not rendered at a drain before
        (``drained``): the message shows the status, and one gone before the consumer
        rendered it has no message (``Renderer.messages``)."""
        must: Counter[tuple[str, int, int]] = Counter()
        may: Counter[tuple[str, int, int]] = Counter()

        def add(key: tuple[str, int, int], sure: bool = True) -> None:
            may[key] += 1
            if sure:
                must[key] += 1

        for uid, _ in self.users:
            add(("account.created", uid, 0))
        for pid in self.posts:
            if pid in self.reblog_of:
                continue  # a boost is reblog.created; its deletion sends nothing
            add(("status.created", pid, 0))
            if pid in self.deleted:
                add(("status.deleted", pid, 0))
            for uid in self.mentions.get(pid, ()):
                add(("mention.created", pid, uid))
        for kind, a, b in self.follow_events:
            add(("follow.created" if kind == "follow" else "follow.deleted", a, b))
        for i, (u, p) in enumerate(self.favourite_events):
            add(("favourite.created", u, p), self.exists(p) or i in self.rendered_favourites)
        for i, (u, p) in enumerate(self.boost_events):
            add(("reblog.created", u, p), self.exists(p) or i in self.rendered_boosts)
        return must, may

    def mails(self, reachable: set[int]) -> tuple[Counter[tuple[int, int]], Counter[tuple[int, int]]]:
        """The notification mails the history makes for the accounts in ``reachable`` (an
        email, not opted out), bundling off: (mentions as (recipient, post) -> 1, new
        followers as (recipient, follower) -> how many times they started following)."""
        mentions: Counter[tuple[int, int]] = Counter()
        follows: Counter[tuple[int, int]] = Counter()
        for pid, who in self.mentions.items():
            for uid in who:
                if uid in reachable:
                    mentions[(uid, pid)] += 1
        for kind, a, b in self.follow_events:
            if kind == "follow" and b in reachable:
                follows[(b, a)] += 1
        return mentions, follows
