"""The ``search`` part: every post but a boost is indexed under exactly
``index.terms_of(post)``; no entry without a post, nor for a boost (such entries are
hidden: search drops ids that do not hydrate, and a boost has no terms)."""

from __future__ import annotations

from typing import Sequence

from homefeed.domain.feed_rules import is_indexed
from homefeed.domain.model import Post
from homefeed.service_layer.audit.context import BATCH, PAGE, AuditContext
from homefeed.service_layer.audit.report import AuditReport, Difference, terms_text


class SearchChecks:
    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx

    async def posts_in(self, after: int, upto: int | None) -> list[Post]:
        """The posts with ids in (after, upto] (``upto`` None: to the end)."""
        out: list[Post] = []
        while True:
            page = await self.ctx.store.posts_after(after, PAGE)
            keep = [p for p in page if upto is None or p.id <= upto]
            out.extend(keep)
            if len(keep) < len(page) or len(page) < PAGE:
                return out
            after = page[-1].id

    async def full(self, report: AuditReport) -> list[Difference]:
        """Every post, a window of ``BATCH`` posts at a time."""
        out: list[Difference] = []
        after = 0
        done = 0
        while True:
            posts = await self.ctx.store.posts_after(after, BATCH)
            if not posts:
                return out + await self.window([], after, None, report)
            out += await self.window(posts, after, posts[-1].id, report)
            after = posts[-1].id
            done += len(posts)
            self.ctx.progress("search", done, None)

    async def window(
        self, posts: Sequence[Post], after: int, upto: int | None, report: AuditReport
    ) -> list[Difference]:
        """Compare the index with ``posts``: every post in (after, upto]."""
        index = self.ctx.index
        entries: dict[int, frozenset[str]] = {}
        cursor = after
        while True:
            page = await index.entries(cursor, PAGE, upto)
            await self.ctx.pacer.tick()
            entries.update(page)
            if len(page) < PAGE:
                break
            cursor = page[-1][0]
        report.count("posts", len(posts))
        out: list[Difference] = []
        for p in posts:
            want = index.terms_of(p)
            have = entries.pop(p.id, None)
            if not is_indexed(p):  # a boost: no words of its own, never indexed
                if have is not None:
                    out.append(Difference("search", "search index", f"post {p.id}",
                                          "is a boost, which is never indexed, but has an entry", hidden=True,
                                          recheck=("search", p.id), key=("search", p.id, "boost")))
                continue
            if have is None:
                out.append(Difference("search", "search index", f"post {p.id}",
                                      "is not indexed: searches for its words miss it",
                                      recheck=("search", p.id), key=("search", p.id, "missing")))
            elif have != want:
                out.append(Difference("search", "search index", f"post {p.id}",
                                      f"indexed under the wrong terms: lacks {terms_text(want - have)},"
                                      f" has extra {terms_text(have - want)}",
                                      recheck=("search", p.id), key=("search", p.id, "terms")))
        for pid in sorted(entries):
            out.append(Difference("search", "search index", f"post {pid}",
                                  "has an entry but is not a post (deleted?)", hidden=True,
                                  recheck=("search", pid), key=("search", pid, "extra")))
        return out
