"""Pure rules of the timelines, shared by every adapter (no I/O here).

The home rules (docs/conversations.md) are predicates over posts and the reader's follows;
``FeedManager`` is the one place that applies them, on read, to every strategy. They are
written here without I/O so that the tests' oracle and the audit can name the same thing.

- **author rule**: a home shows the reader's own posts and those of accounts the reader
  follows now.
- **reply rule** (Mastodon's): a reply by A to B (B != A) shows only if the reader is A, is
  B, or follows B. A self-reply (a thread) shows like a post.
- **boost rule**: a boost of O is hidden if O's author is the reader, if O is gone, or if O
  or another boost of O is among the ``BOOST_WINDOW`` entries of the home older than the
  boost. An *entry* is a post that passes the author and reply rules, shown or not.
"""

from __future__ import annotations

from typing import AbstractSet, Iterable

from homefeed.domain.model import Post

#: How many entries older than a boost the boost rule looks at (Mastodon's 40).
BOOST_WINDOW = 40


def is_celebrity(followers_count: int, threshold: int) -> bool:
    """Celebrities are pulled at read time instead of pushed at write time."""
    return followers_count >= threshold


def is_reply_to_other(post: Post) -> bool:
    """A reply to someone else's post (a self-reply, a thread, is not)."""
    return post.in_reply_to_account_id is not None and post.in_reply_to_account_id != post.author_id


def author_rule(post: Post, reader: int, following: AbstractSet[int]) -> bool:
    return post.author_id == reader or post.author_id in following


def reply_rule(post: Post, reader: int, following: AbstractSet[int]) -> bool:
    if not is_reply_to_other(post):
        return True
    to = post.in_reply_to_account_id
    return reader == post.author_id or reader == to or to in following


def is_home_entry(post: Post, reader: int, following: AbstractSet[int]) -> bool:
    """An entry of the reader's home: passes the author and reply rules (the boost rule then
    decides whether it is shown)."""
    return author_rule(post, reader, following) and reply_rule(post, reader, following)


def boost_hidden(boost: Post, original: Post | None, reader: int, older: Iterable[Post]) -> bool:
    """The boost rule for ``boost`` (a post with ``reblog_of_id``): ``original`` is the
    boosted post (None: gone), ``older`` the (up to ``BOOST_WINDOW``) entries of the home
    older than the boost, newest first."""
    o = boost.reblog_of_id
    if original is None or original.author_id == reader:
        return True
    return any(e.id == o or e.reblog_of_id == o for e in older)


def on_public_list(post: Post) -> bool:
    """The public timeline (Mastodon's PublicFeed): public posts, no boosts, no replies to
    others (self-replies are kept)."""
    return post.visibility == "public" and post.reblog_of_id is None and not is_reply_to_other(post)


def is_indexed(post: Post) -> bool:
    """The search index holds posts with words of their own: not boosts (empty text)."""
    return post.reblog_of_id is None
