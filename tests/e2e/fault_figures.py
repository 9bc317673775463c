"""Figures of the fault scenarios, for the table that issue 5's resolving note asks for.

Each scenario calls :func:`record` once, after its final checks passed (a scenario that
fails records nothing: its figures would not mean what the table says). At the end of the
run ``tests/e2e/conftest.py`` prints the table, and writes it as JSON to
``$HOMEFEED_FAULT_FIGURES`` when that variable names a file.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any

_LOCK = threading.Lock()


@dataclass(frozen=True)
class ScenarioFigures:
    #: A short name: "embedded: API SIGKILL x10", "scale-out: Redis stopped 10 s", ...
    scenario: str
    #: How many faults were injected (kills, stops).
    faults: int
    #: HTTP requests sent during the scenario (reads and writes, whatever their outcome).
    requests: int
    #: Writes answered 2xx (posts, deletes, follows, unfollows, registrations, and issue 11's
    #: replies, favourites, unfavourites, boosts and unboosts).
    writes_acknowledged: int
    #: Acknowledged writes missing (or duplicated) at the end. Must be 0.
    writes_lost: int
    #: Differences reported by the final ``homefeed audit`` (and by the oracle). Must be 0.
    audit_divergences: int
    #: Anything else worth reporting: 5xx seen, 503s answered, seconds of the outage, the
    #: conversation writes acknowledged by kind (reply=, favourite=, unfavourite=, reblog=,
    #: unreblog=) and the notifications the final check read (notifications=), ...
    extra: dict[str, Any] | None = None


FIGURES: list[ScenarioFigures] = []


def record(figures: ScenarioFigures) -> None:
    with _LOCK:
        FIGURES.append(figures)


def table() -> str:
    if not FIGURES:
        return ""
    head = ("scenario", "faults", "requests", "writes acked", "writes lost", "audit divergences", "extra")
    rows = [head] + [
        (f.scenario, str(f.faults), str(f.requests), str(f.writes_acknowledged), str(f.writes_lost),
         str(f.audit_divergences), ", ".join(f"{k}={v}" for k, v in (f.extra or {}).items()))
        for f in FIGURES
    ]
    total = ("TOTAL", *(str(sum(int(r[i]) for r in rows[1:])) for i in range(1, 6)), "")
    rows.append(total)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join(" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def write_json() -> None:
    path = os.environ.get("HOMEFEED_FAULT_FIGURES")
    if path and FIGURES:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump([asdict(f) for f in FIGURES], fh, indent=2)
