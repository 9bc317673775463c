"""``homefeed status``: the dashboard's figures in the terminal, for one server or a whole
scale-out deployment.

Each ``--url`` is an API process (``http://host:8080``) or a worker's metrics port; each is
asked for ``/metrics.json`` (and API processes for ``/readyz``). With several, the figures
are merged the right way: latency and fan-out-delay histograms are added bucket by bucket
before percentiles are read (percentiles of percentiles would be wrong), throughputs and
counters are summed, and what every process reads from the same shared backends (events
behind, outbox not relayed, store sizes) is shown once.

    homefeed status                                  # http://$HOMEFEED_HOST:$HOMEFEED_PORT
    homefeed status --url http://api1:8080 --url http://api2:8080 --url http://worker1:9101
    homefeed status --watch 2                        # refresh every 2 s
    homefeed status --json                           # the merged figures, for scripts

Exit status: 0 when every process answered and every backend is ready, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from homefeed.entrypoints.metrics.histogram import BOUNDS, Histogram

WINDOWS = ("1m", "5m")


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "status",
        help="latency percentiles, throughput, errors, fan-out delay and consumer lag of running servers",
        description="Show the figures of /dashboard in the terminal, for one server or several "
                    "(API processes and worker metrics ports); several are merged.",
    )
    p.add_argument("--url", action="append", default=None, metavar="URL",
                   help="base URL of an API process or a worker's metrics port; repeat it or separate "
                        "with commas (default: http://$HOMEFEED_HOST:$HOMEFEED_PORT, else http://127.0.0.1:8080)")
    p.add_argument("--json", action="store_true", help="print the merged figures as JSON")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each server (default 5)")
    return p


def default_url() -> str:
    host = os.environ.get("HOMEFEED_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    port = os.environ.get("HOMEFEED_PORT") or "8080"
    return f"http://{host}:{port}"


def urls_of(args: argparse.Namespace) -> list[str]:
    raw = args.url or [default_url()]
    out: list[str] = []
    for item in raw:
        for u in item.split(","):
            u = u.strip().rstrip("/")
            if not u:
                continue
            if "://" not in u:
                u = "http://" + u
            for suffix in ("/metrics.json", "/metrics"):
                if u.endswith(suffix):
                    u = u[: -len(suffix)]
            out.append(u)
    return out


# -- fetching ----------------------------------------------------------------------------------
def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except Exception:
            body = None
        return exc.code, body


def fetch(base: str, timeout: float) -> dict[str, Any]:
    """``{"url", "metrics"?, "ready"?, "error"?}`` for one process."""
    out: dict[str, Any] = {"url": base}
    try:
        status, body = _get_json(base + "/metrics.json", timeout)
        if status != 200 or not isinstance(body, dict) or "windows" not in body:
            out["error"] = f"/metrics.json answered {status}"
            return out
        out["metrics"] = body
    except (OSError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        return out
    if body.get("role") == "api":
        try:
            status, ready = _get_json(base + "/readyz", timeout)
            if isinstance(ready, dict) and "backends" in ready:
                out["ready"] = ready
        except (OSError, ValueError) as exc:
            out["ready"] = {"status": "unknown", "failing": ["readyz"], "backends": {},
                            "error": str(exc)}
    return out


def fetch_all(urls: Sequence[str], timeout: float) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(urls)))) as pool:
        return list(pool.map(lambda u: fetch(u, timeout), urls))


# -- merging ----------------------------------------------------------------------------------
def _merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    h = Histogram()
    out: dict[str, Any] = {"count": 0, "rps": 0.0, "errors": 0, "client_errors": 0}
    for p in parts:
        h.add(Histogram.from_sparse(p.get("hist") or []))
        out["count"] += p.get("count", 0)
        out["rps"] += p.get("rps", p.get("rate", 0.0)) or 0.0
        out["errors"] += p.get("errors", 0) or 0
        out["client_errors"] += p.get("client_errors", 0) or 0
    n = out["count"]
    out["error_rate"] = out["errors"] / n if n else 0.0
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)):
        v = h.quantile(q)
        out[name] = None if v is None else v * 1000.0
    return out


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One view of every process that answered."""
    merged: dict[str, Any] = {"processes": [], "windows": {}, "consumers": {}, "unreachable": []}
    ok: list[dict[str, Any]] = []
    seen: dict[tuple[Any, Any], str] = {}
    for r in results:
        if "metrics" in r:
            m = r["metrics"]
            ident = (m.get("pid"), m.get("started"))
            if ident in seen:  # the same process under two URLs: count it once
                merged.setdefault("duplicates", []).append({"url": r["url"], "same_as": seen[ident]})
                continue
            seen[ident] = r["url"]
            ok.append(m)
            merged["processes"].append({"url": r["url"], "role": m.get("role"), "profile": m.get("profile"),
                                        "pid": m.get("pid"), "uptime_s": m.get("uptime_s"),
                                        "in_flight": m.get("in_flight")})
        else:
            merged["unreachable"].append({"url": r["url"], "error": r.get("error")})
    if ok and any(tuple(m.get("bounds") or ()) != BOUNDS for m in ok):
        merged["warning"] = "a server uses other histogram buckets (another homefeed version): percentiles are approximate"
    for w in WINDOWS:
        routes: dict[str, list[dict[str, Any]]] = {}
        for m in ok:
            for name, s in m["windows"][w]["routes"].items():
                routes.setdefault(name, []).append(s)
        merged["windows"][w] = {
            "api": _merge_summaries([m["windows"][w]["api"] for m in ok]),
            "fanout": _merge_summaries([m["windows"][w]["fanout"] for m in ok]),
            "routes": {name: _merge_summaries(parts) for name, parts in sorted(routes.items())},
        }
    for m in ok:
        for name, c in (m.get("consumers") or {}).items():
            agg = merged["consumers"].setdefault(
                name, {"behind": None, "running_in": [], "failures": 0, "dead_lettered": 0})
            if c.get("behind") is not None:
                agg["behind"] = max(agg["behind"] or 0, c["behind"])
            if c.get("running"):
                agg["running_in"].append(f"{m.get('role')} pid {m.get('pid')}")
            agg["failures"] += c.get("failures", 0) or 0
            agg["dead_lettered"] += c.get("dead_lettered", 0) or 0
    unrelayed: list[int] = [m["outbox_unrelayed"] for m in ok if m.get("outbox_unrelayed") is not None]
    merged["outbox_unrelayed"] = max(unrelayed) if unrelayed else None
    reads = sum((m.get("timeline_cache") or {}).get("home_reads", 0) for m in ok)
    rebuilds = sum((m.get("timeline_cache") or {}).get("rebuilds", 0) for m in ok)
    merged["timeline_cache"] = {"home_reads": reads, "rebuilds": rebuilds,
                                "hit_ratio": max(0.0, 1 - rebuilds / reads) if reads else None}
    hits = sum((m.get("post_cache") or {}).get("hits", 0) for m in ok)
    misses = sum((m.get("post_cache") or {}).get("misses", 0) for m in ok)
    merged["post_cache"] = {"hits": hits, "misses": misses,
                            "hit_ratio": hits / (hits + misses) if hits + misses else None}
    sizes: dict[str, int] = {}
    for m in ok:
        for k, v in (m.get("sizes") or {}).items():
            sizes[k] = max(sizes.get(k, 0), v)
    merged["sizes"] = sizes
    ready: dict[str, Any] = {}
    for r in results:
        for name, b in ((r.get("ready") or {}).get("backends") or {}).items():
            cur = ready.get(name)
            if cur is None or (cur.get("ok") and not b.get("ok")):
                ready[name] = b
    merged["backends"] = ready
    merged["errors"] = {f"{r['url']} {k}": v for r in results if "metrics" in r
                        for k, v in (r["metrics"].get("errors") or {}).items()}
    return merged


def healthy(merged: dict[str, Any]) -> bool:
    return bool(merged["processes"]) and not merged["unreachable"] and all(
        b.get("ok") for b in merged["backends"].values())


# -- printing ---------------------------------------------------------------------------------
def _f(v: Any, digits: int | None = None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int) and digits is None:
        return f"{v:,}"
    v = float(v)
    if digits is None:
        digits = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
    return f"{v:,.{digits}f}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def _ago(seconds: Any) -> str:
    if seconds is None:
        return "?"
    s = float(seconds)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def render(merged: dict[str, Any]) -> str:
    lines: list[str] = []
    procs = merged["processes"]
    lines.append(f"homefeed status - {len(procs)} process{'es' if len(procs) != 1 else ''} answered"
                 + (f", {len(merged['unreachable'])} did not" if merged["unreachable"] else ""))
    for p in procs:
        lines.append(f"  {p['url']}  {p['role']}  {p['profile']}  pid {p['pid']}  up {_ago(p['uptime_s'])}"
                     f"  in flight {p['in_flight']}")
    for u in merged["unreachable"]:
        lines.append(f"  {u['url']}  NOT ANSWERING: {u['error']}")
    for d in merged.get("duplicates", []):
        lines.append(f"  {d['url']}  is the same process as {d['same_as']}: counted once")
    if merged.get("warning"):
        lines.append(f"  warning: {merged['warning']}")
    if not procs:
        return "\n".join(lines) + "\n"

    cols = ("req/s", "p50", "p95", "p99", "p99.9", "5xx", "4xx")
    rows: list[tuple[str, list[str]]] = []

    def cells(s: dict[str, Any]) -> list[str]:
        return [_f(s["rps"]), _f(s["p50"]), _f(s["p95"]), _f(s["p99"]), _f(s["p999"]),
                _f(s["errors"]), _f(s["client_errors"])]

    w1, w5 = merged["windows"]["1m"], merged["windows"]["5m"]
    names = sorted(w5["routes"], key=lambda n: (-w5["routes"][n]["count"], n))
    empty = {"rps": 0, "p50": None, "p95": None, "p99": None, "p999": None, "errors": 0, "client_errors": 0}
    for n in names:
        rows.append((n, cells(w1["routes"].get(n, empty)) + cells(w5["routes"][n])))
    rows.append(("all API routes", cells(w1["api"]) + cells(w5["api"])))
    width = max([len(r[0]) for r in rows] + [28])
    lines.append("")
    lines.append(f"{'latency in ms':<{width}}  {'-- last 1 min ':-<55}  {'-- last 5 min ':-<55}")
    lines.append(f"{'route':<{width}}  " + "  ".join(f"{c:>6}" for c in cols * 2))
    for name, cs in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>6}" for c in cs))
    lines.append("")
    lines.append(f"error rate (5xx share of API requests): 1 min {_pct(w1['api']['error_rate'])}, "
                 f"5 min {_pct(w5['api']['error_rate'])}")
    for label, w in (("1 min", w1), ("5 min", w5)):
        f = w["fanout"]
        lines.append(f"fan-out delay, {label}: {_f(f['count'])} posts ({_f(f['rps'])}/s)  p50 {_f(f['p50'])}  "
                     f"p95 {_f(f['p95'])}  p99 {_f(f['p99'])}  p99.9 {_f(f['p999'])} ms")
    cons = "  ".join(
        f"{n} {_f(c['behind'])} behind ({', '.join(c['running_in']) or 'not running here'}"
        f"{', ' + str(c['failures']) + ' failed batches' if c['failures'] else ''})"
        for n, c in sorted(merged["consumers"].items()))
    lines.append(f"consumers: {cons}")
    dead = sum(c["dead_lettered"] for c in merged["consumers"].values())
    lines.append(f"outbox not yet relayed: {_f(merged['outbox_unrelayed']) if merged['outbox_unrelayed'] is not None else 'n/a (no bus)'}"
                 f"   dead-lettered events: {dead}")
    tc, pc = merged["timeline_cache"], merged["post_cache"]
    lines.append(f"timeline cache: hit ratio {_pct(tc['hit_ratio'])} over {_f(tc['home_reads'])} reads, "
                 f"{_f(tc['rebuilds'])} rebuilds   post cache hit ratio {_pct(pc['hit_ratio'])}")
    if merged["sizes"]:
        lines.append("derived stores: " + "  ".join(f"{k} {_f(v)}" for k, v in sorted(merged["sizes"].items())))
    if merged["backends"]:
        lines.append("backends: " + "  ".join(
            f"{n} ({b.get('backend', '?')}) " + (f"ok {b.get('ms')} ms" if b.get("ok") else f"FAILING: {b.get('error')}")
            for n, b in merged["backends"].items()))
    for k, v in merged["errors"].items():
        lines.append(f"not answering: {k}: {v}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    urls = urls_of(args)
    while True:
        merged = merge(fetch_all(urls, args.timeout))
        if args.json:
            print(json.dumps(merged, indent=2, default=str))
        else:
            if args.watch:
                sys.stdout.write("\x1b[H\x1b[2J")  # clear the terminal
            sys.stdout.write(render(merged))
        sys.stdout.flush()
        if not args.watch:
            return 0 if healthy(merged) else 1
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m homefeed.entrypoints.status`` (until ``homefeed status`` is wired)."""
    parser = argparse.ArgumentParser(prog="homefeed")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["status", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
