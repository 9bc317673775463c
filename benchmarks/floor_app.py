"""The floor under issue 14's posts goal: what a durable write over HTTP costs on homefeed's
server with none of homefeed's work, so that ``post / home`` can be read against what any
post could reach on this stack.

One process, served exactly as ``homefeed serve`` serves (uvicorn, uvloop, the httptools
protocol on ``entrypoints/coalesce.py``'s one-send transport), with two routes:

- ``GET /``: the bare route of ``bare_app.py`` (``{"ok":true}``), here answered in one send
  like homefeed's routes (``bare_app.py`` on plain uvicorn sends the head and the body
  apart): the same-server reference for the reads (``/healthz`` answers the same, for
  the runner's wait);
- ``POST /v1/posts``: the body parsed as JSON (a ``text`` string required, else 422), one
  row inserted through homefeed's own SQLite writer (``adapters/sqlite_db.SqliteDatabase``:
  the writer thread, group commit, WAL with ``synchronous=FULL``: durable when answered),
  answered 201 with the row's id. No token, no validation beyond that, no outbox event, no
  fan-out, no index: what is left is the HTTP request, the JSON and one durable commit.

    .venv/bin/python benchmarks/floor_app.py --port 8091 --data-dir /tmp/floor [--write unsynced|none]

``--write unsynced`` and ``--write none`` take the commit's fsync, then the whole write,
away: where the floor's cost goes (``floor_parts.sh``).

``issue14_table.py --floor`` runs it beside the other servers (figures ``bare_1send`` and
``floor``).
"""

from __future__ import annotations

import argparse
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from homefeed.adapters.sqlite_db import SqliteDatabase
from homefeed.entrypoints.coalesce import CoalescingHttpToolsProtocol


#: ``--write``: what ``POST /v1/posts`` does after parsing the JSON.
WRITES = {
    "durable": "one row through homefeed's SQLite writer, synchronous=FULL (the default)",
    "unsynced": "the same with synchronous=OFF: the writer thread and the commit, no fsync",
    "none": "nothing: the answer right after the parse",
}


def make_app(data_dir: Path, write: str = "durable") -> Starlette:
    db = SqliteDatabase(data_dir / "floor.db", synchronous="OFF" if write == "unsynced" else "FULL")

    async def ok(request: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    async def post(request: Request) -> Response:
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            doc = None
        text = doc.get("text") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            return Response(b'{"error":"text must be a string"}', status_code=422, media_type="application/json")

        def tx(conn: sqlite3.Connection) -> int:
            return conn.execute("INSERT INTO floor_posts(text) VALUES (?)", (text,)).lastrowid or 0

        if write == "none":
            return Response(b'{"id":"%d"}' % len(text), status_code=201, media_type="application/json")
        return Response(b'{"id":"%d"}' % await db.write(tx), status_code=201, media_type="application/json")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db.open()
        await db.write(lambda conn: conn.execute(
            "CREATE TABLE IF NOT EXISTS floor_posts(id INTEGER PRIMARY KEY, text TEXT NOT NULL)"))
        try:
            yield
        finally:
            db.close()

    return Starlette(routes=[Route("/", ok), Route("/healthz", ok), Route("/v1/posts", post, methods=["POST"])],
                     lifespan=lifespan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--write", choices=WRITES, default="durable",
                    help="; ".join(f"{k}: {v}" for k, v in WRITES.items()))
    args = ap.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    config = uvicorn.Config(make_app(args.data_dir, args.write), host="127.0.0.1", port=args.port, loop="uvloop",
                            http=CoalescingHttpToolsProtocol, access_log=False, log_level="warning")
    uvicorn.Server(config).run()  # (run, not serve: it sets the loop up, uvloop as homefeed's)


if __name__ == "__main__":
    main()
