"""Every route of the Mastodon client API, for ``entrypoints/http.py``."""

from __future__ import annotations

from starlette.routing import BaseRoute

from homefeed.entrypoints.mastodon import accounts, instance, search, statuses, stubs, timelines

ROUTES: list[BaseRoute] = [
    *instance.routes,
    *accounts.routes,
    *statuses.routes,
    *timelines.routes,
    *search.routes,
    *stubs.routes,
]
