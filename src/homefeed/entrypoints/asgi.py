"""ASGI factory for multi-process serving (``homefeed serve --workers N``): each worker
process builds its app from the ``HOMEFEED_*`` environment."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from homefeed.bootstrap import build, plan
from homefeed.config import Settings
from homefeed.entrypoints.http import create_app

PROCESSES_ENV = "HOMEFEED_API_PROCESSES"


def app_from_env() -> Starlette:
    settings = Settings.from_env()
    processes = int(os.environ.get(PROCESSES_ENV, "1"))
    process_plan = plan(settings, "api", processes=processes)
    # Scale-out API processes claim an id-generator node from PostgreSQL.
    hf = build(settings, node=None if settings.database_url else 0)
    return create_app(hf, process_plan)
