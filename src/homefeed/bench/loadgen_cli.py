"""The load generator's command line (``python -m homefeed.bench.loadgen``): the users
file, the flags (also reused by ``homefeed bench``), ``run`` and ``merge``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from homefeed.bench.loadgen import DEFAULT_MIX, LoadSpec, User, run_load_processes
from homefeed.bench.loadgen_results import LoadResult, merge_results


def load_users(path: str | Path) -> list[User]:
    """Read the users to act as: a JSON list of ``{"handle": ..., "token": ...}`` objects,
    or text with one ``handle token`` pair a line (``#`` comments and blank lines skipped)."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return [User(str(d["handle"]), str(d["token"])) for d in json.loads(text)]
    users = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}: line {n}: expected 'handle token', got {line!r}")
        users.append(User(fields[0], fields[1]))
    return users


def _parse_mix(text: str) -> dict[str, float]:
    """``home_timeline=65,post=1`` -> dict."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        if part.strip():
            k, _, v = part.partition("=")
            mix[k.strip()] = float(v)
    return mix


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The generator's flags, on ``parser`` if given (so a ``homefeed bench load`` subcommand
    can reuse them) or on a new parser."""
    p = parser or argparse.ArgumentParser(
        prog="python -m homefeed.bench.loadgen",
        description="Open-loop, coordinated-omission-corrected load against a local homefeed.",
    )
    d = LoadSpec()
    p.add_argument("--url", default=d.url, help="loopback base URL (default %(default)s)")
    p.add_argument("--users", required=True, help="users file: JSON list or 'handle token' lines")
    p.add_argument("--rate", type=float, default=d.rate, help="total requests/s")
    p.add_argument("--duration", type=float, default=d.duration_s, help="seconds of load")
    p.add_argument("--mix", type=_parse_mix, default=None,
                   help="weights, e.g. home_timeline=65,post=1,user_timeline=10,search=3")
    p.add_argument("--arrival", choices=("poisson", "constant"), default=d.arrival)
    p.add_argument("--max-requests", type=int, default=None)
    p.add_argument("--connections", type=int, default=d.max_connections,
                   help="max open connections per process")
    p.add_argument("--timeout", type=float, default=d.request_timeout_s,
                   help="seconds after its due time a request fails")
    p.add_argument("--processes", type=int, default=1, help="generator processes")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=None, help="write the result (with histograms) as JSON here")
    return p


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    return LoadSpec(
        url=args.url,
        rate=args.rate,
        duration_s=args.duration,
        mix=args.mix if args.mix is not None else dict(DEFAULT_MIX),
        arrival=args.arrival,
        max_requests=args.max_requests,
        max_connections=args.connections,
        request_timeout_s=args.timeout,
        drain_timeout_s=args.timeout + 5.0,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``run`` (the default) applies load; ``merge`` combines result files of
    generators started separately (e.g. on several cores by a script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        mp = argparse.ArgumentParser(prog="python -m homefeed.bench.loadgen merge")
        mp.add_argument("results", nargs="+")
        mp.add_argument("--out", default=None)
        margs = mp.parse_args(argv[1:])
        merged = merge_results(
            [LoadResult.from_dict(json.loads(Path(f).read_text())) for f in margs.results]
        )
        _emit(merged, margs.out)
        return 0
    if argv and argv[0] == "run":
        argv = argv[1:]
    args = build_arg_parser().parse_args(argv)
    spec = spec_from_args(args)
    try:
        spec.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run_load_processes(spec, load_users(args.users), processes=args.processes)
    _emit(result, args.out)
    return 0


def _emit(result: LoadResult, out: str | None) -> None:
    print(result.format())
    if out:
        Path(out).write_text(json.dumps(result.to_dict(), indent=1))
