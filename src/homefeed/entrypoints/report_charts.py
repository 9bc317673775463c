"""PNG charts of the load report (``homefeed report load --png DIR``), with matplotlib (the
``bench`` extra): the followers and following distributions (complementary CDF on log-log
axes, where a power law is a straight line) and the celebrity-threshold trade-off."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from homefeed.service_layer.jobs.records import UserCounts


def _ccdf(values: list[int]) -> tuple[list[int], list[float]]:
    v = sorted(x for x in values if x > 0)
    n = len(v)
    xs, ys = [], []
    for i, x in enumerate(v):
        if i + 1 < n and v[i + 1] == x:
            continue
        xs.append(x)
        ys.append((n - i) / n)
    return xs, ys


def write_charts(report: dict[str, Any], users: Sequence[UserCounts], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, values in (("followers", [u.followers for u in users]), ("following", [u.following for u in users])):
        xs, ys = _ccdf(values)
        if xs:
            ax.loglog(xs, ys, marker=".", linestyle="none", label=label)
    ax.set_xlabel("accounts followed by / following (log)")
    ax.set_ylabel("share of accounts with at least x (log)")
    ax.set_title(f"{report['accounts']} accounts: followers p50={report['followers']['p50']},"
                 f" p99={report['followers']['p99']}, max={report['followers']['max']}")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "followers.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    rows = report["celebrity_thresholds"]
    fig, ax1 = plt.subplots(figsize=(7, 4.5))
    ts = [r["threshold"] for r in rows]
    ax1.semilogx(ts, [r["timeline_writes_per_post"] for r in rows], marker="o", label="timeline writes per post")
    ax1.semilogx(ts, [r["extra_pulls_per_read"] * report["assumptions"]["reads_per_post"]
                      * report["assumptions"]["pull_cost_in_timeline_inserts"] for r in rows],
                 marker="s", label="pull work per post (insert-equivalents)")
    ax1.semilogx(ts, [r["cost_per_post"] for r in rows], marker="^", label="total cost per post")
    ax1.axvline(report["recommended_celebrity_threshold"], color="grey", linestyle="--",
                label=f"recommended: {report['recommended_celebrity_threshold']}")
    ax1.set_xlabel("celebrity threshold (followers)")
    ax1.set_ylabel("work per post")
    ax1.set_yscale("symlog")  # linear below 1: a threshold that pulls nobody has 0 pull work
    ax1.set_ylim(bottom=0)  # no negative ticks from the autoscale margin under that 0
    ax1.legend(fontsize=8)
    ax1.set_title("push vs pull by celebrity threshold")
    fig.tight_layout()
    path = out_dir / "celebrity-thresholds.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
