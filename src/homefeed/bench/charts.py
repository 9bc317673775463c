"""PNG charts of bench results (matplotlib, the ``bench`` extra; headless Agg backend).

* ``latency_vs_load`` -- p50 and p99 of home-timeline reads against offered load, one colour
  per strategy, from the steps of capacity searches (every repeat's steps are plotted).
* ``fanout_delay_chart`` -- fan-out delay of every probe against its author's follower count
  (log-log), one colour per strategy, with the p99 of each bucket drawn over the points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["latency_vs_load", "fanout_delay_chart"]

COLORS = {"pull": "#d62728", "push": "#1f77b4", "hybrid": "#2ca02c"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_vs_load(compares: Sequence[Mapping[str, Any]], path: str | Path,
                    kind: str = "home_timeline", title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    import math
    import statistics

    target = None
    points: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for comp in compares:
        target = comp.get("target_p99_ms", target)
        for strategy, cap in comp["strategies"].items():
            points.setdefault(strategy, []).extend(
                (s["rate"], s["summary"].get(kind, {})) for s in cap["steps"])
    for strategy, pts in points.items():
        color = COLORS.get(strategy, None)
        for key, style, label in (("p50_ms", ":", "p50"), ("p99_ms", "-", "p99")):
            xs = [r for r, _ in pts]
            ys = [max(row.get(key, 0.0), 0.01) for _, row in pts]
            ax.scatter(xs, ys, s=10, color=color, alpha=0.35, marker="o" if key == "p99_ms" else ".")
            # the line: medians within half-octave bins of offered rate (repeats differ in rates)
            bins: dict[int, list[tuple[float, float]]] = {}
            for x, y in zip(xs, ys):
                bins.setdefault(round(2 * math.log2(x)), []).append((x, y))
            keys = sorted(bins)
            ax.plot([statistics.median(x for x, _ in bins[k]) for k in keys],
                    [statistics.median(y for _, y in bins[k]) for k in keys],
                    style, color=color, lw=1.6, label=f"{strategy} {label} (median)")
    if target:
        ax.axhline(target, color="grey", lw=0.8, ls="--")
        ax.text(ax.get_xlim()[0], target * 1.08, f" p99 target {target:g} ms", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, requests/s (open loop; 65 home reads : 1 post)")
    ax.set_ylabel(f"{kind} latency, ms (from due time)")
    ax.set_title(title or "Home-timeline latency against offered load, by fan-out strategy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    ax.set_title((title or "Home-timeline latency against offered load, by fan-out strategy")
                 + f"\n(points: every step of {len(compares)} capacity search(es); lines: medians)",
                 fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def fanout_delay_chart(results: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path,
                       title: str = "") -> Path:
    """``results``: strategy -> list of fan-out measurements (``measure_fanout_delay``)."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for strategy, runs in results.items():
        color = COLORS.get(strategy, None)
        samples = [s for r in runs for s in r["samples"]]
        if not samples:
            continue
        xs = np.asarray([max(s["followers"], 1) for s in samples], dtype=float)
        ys = np.asarray([max(s["from_id_s"] * 1e3, 0.1) for s in samples])
        jitter = np.exp(np.random.default_rng(0).normal(0, 0.04, len(xs)))
        ax.scatter(xs * jitter, ys, s=6, alpha=0.35, color=color)
        by: dict[int, list[float]] = {}
        for x, y in zip(xs, ys):
            by.setdefault(int(x), []).append(y)
        keys = sorted(by)
        ax.plot(keys, [np.percentile(by[k], 99) for k in keys], "-", color=color, lw=1.5,
                label=f"{strategy}: p99 per author")
    ax.axhline(1000, color="grey", lw=0.8, ls="--")
    ax.text(1.1, 1100, " target: p99 < 1 s", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("author's follower count")
    ax.set_ylabel("fan-out delay, ms\n(post id time to visible in a follower's timeline)")
    ax.set_title(title or "Fan-out delay against the author's follower count", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
