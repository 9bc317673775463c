"""The consumers' outbox fetch on a long outbox is not JIT-compiled.

PostgreSQL JIT-compiles a statement at every execution when the planner's cost estimate
passes ``jit_above_cost``. The outbox is kept (``homefeed replay`` reads it), and the
fetch's estimate grows with it: at ~140k events every fetch spent ~220 ms compiling and
0.04 ms running, and a worker's consumers fell behind by seconds per batch. ``PgDatabase``
turns JIT off for its sessions; this checks it against a real server, with the fetch's own
statement on an outbox long enough for a plain session to compile it.

The outbox is made of 40k small rows in one quick statement: enough for the estimate to
pass ``jit_above_cost``, and short, because while an insert's transaction is open every
other database's outbox on the cluster holds its newer events back (a first version with
150k rows held other tests' events back for over 10 s on a loaded machine)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg

from homefeed.adapters.pg_db import PgDatabase
from homefeed.adapters.pg_outbox import _FETCH
from tests.backends import scratch_pg_database

EVENTS = 40_000


def _plan_has_jit(rows: Any) -> bool:
    plan = rows[0][0]
    return "JIT" in json.dumps(plan[0] if isinstance(plan, list) else plan)


def test_the_outbox_fetch_is_not_jit_compiled_on_a_long_outbox() -> None:
    explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + _FETCH

    async def main(url: str) -> None:
        db = PgDatabase(url)
        await db.open()
        try:
            await db.write("INSERT INTO outbox (type, data) SELECT 'post.created', '{}'"
                           " FROM generate_series(1, %s) g", (EVENTS,), outbox=False)
            await db.write("ANALYZE outbox", outbox=False)
            params = {"c": "fanout", "n": 256}
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as plain:
                available = (await (await plain.execute("SELECT pg_jit_available()")).fetchone())[0]  # type: ignore[index]
                if available:  # the world is long enough: a session with the server's defaults compiles it
                    assert _plan_has_jit(await (await plain.execute(explain, params)).fetchall())
            for _ in range(3):  # prepared, then executed again (generic plans come after a few)
                assert not _plan_has_jit(await db.fetch(explain, params))
            assert len(await db.fetch(_FETCH, params)) == 256  # and the fetch itself answers
        finally:
            await db.close()

    with scratch_pg_database() as url:
        asyncio.run(main(url))
