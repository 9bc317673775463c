"""The audit's report: each difference found, what was looked at, and the exit status the
``homefeed audit`` command returns (0 clean, 1 a difference reads show, 3 only differences
reads hide). Its JSON form (``as_dict``) is what the admin route returns and ``--json``
prints: scripts and the fault tests read it, so it does not change shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

#: The parts an audit can check, in report order.
PARTS = ("timelines", "authors", "search", "counters", "notifications")


@dataclass(frozen=True)
class Difference:
    #: timelines | authors | search | counters | notifications
    part: str
    #: which store: "home cache", "home read", "following cache", "celebrity set",
    #: "post cache", "author cache", "search index", "counters", "notifications", "stream"
    store: str
    #: what it is about: "@ana (123)", "post 456"
    subject: str
    problem: str
    #: True if reads hide it (the documented read-time filters): wrong data kept, not shown.
    hidden: bool = False
    #: What to check again to confirm it: ("home", uid) | ("author", uid) | ("celebs",) |
    #: ("post", pid) | ("search", pid) | ("counters", uid) | ("post_counters", pid) |
    #: ("notifications", uid) | ("list", kind, key)
    recheck: tuple = ()
    #: Identity across the first look and the re-check.
    key: tuple = ()

    def __str__(self) -> str:
        tail = "  [hidden at read time]" if self.hidden else ""
        return f"{self.store:<16} {self.subject}: {self.problem}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part, "store": self.store, "subject": self.subject,
            "problem": self.problem, "hidden": self.hidden,
            "recheck": list(self.recheck), "key": [str(k) for k in self.key],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Difference":
        return cls(d["part"], d["store"], d["subject"], d["problem"], bool(d.get("hidden")),
                   tuple(d.get("recheck") or ()), tuple(d.get("key") or ()))


@dataclass
class AuditReport:
    differences: list[Difference] = field(default_factory=list)
    #: How much was looked at: users, home_lists, author_lists, reads, posts, ...
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Consumers still behind when the audit stopped waiting for them (events).
    behind: dict[str, int] = field(default_factory=dict)

    @property
    def visible(self) -> list[Difference]:
        return [d for d in self.differences if not d.hidden]

    def exit_code(self) -> int:
        """0: clean. 1: a difference that reads show (or that breaks a count). 3: only
        differences that reads hide (stale ids, entries of deleted posts)."""
        if self.visible:
            return 1
        return 3 if self.differences else 0

    def count(self, key: str, n: int = 1) -> None:
        self.checked[key] = self.checked.get(key, 0) + n

    def merge(self, other: "AuditReport") -> None:
        self.differences.extend(other.differences)
        for k, v in other.checked.items():
            self.count(k, v)
        self.notes.extend(other.notes)
        for k, v in other.behind.items():
            self.behind[k] = max(self.behind.get(k, 0), v)

    def lines(self) -> list[str]:
        out = [str(d) for d in self.differences]
        checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.checked.items() if v)
        out.append(f"checked: {checked or 'nothing'}")
        out.extend(f"note: {n}" for n in self.notes)
        if self.behind:
            out.append("consumers still behind: " + ", ".join(f"{k} {v}" for k, v in self.behind.items()))
        hidden = len(self.differences) - len(self.visible)
        if not self.differences:
            out.append("audit: clean")
        else:
            out.append(f"audit: {len(self.differences)} difference(s), {hidden} of them hidden at read time")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "differences": [d.as_dict() for d in self.differences],
            "checked": dict(self.checked),
            "notes": list(self.notes),
            "behind": dict(self.behind),
            "exit_code": self.exit_code(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditReport":
        return cls(
            [Difference.from_dict(x) for x in d.get("differences", [])],
            dict(d.get("checked", {})),
            list(d.get("notes", [])),
            dict(d.get("behind", {})),
        )


def ids_text(ids: Sequence[int]) -> str:
    """At most ten ids, then how many more: a difference stays one readable line."""
    if not ids:
        return "none"
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")


def terms_text(terms: Iterable[str]) -> str:
    t = sorted(terms)
    return "{" + ", ".join(t) + "}" if t else "nothing"

