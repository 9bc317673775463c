"""Every route of the Mastodon client API but the timelines, for ``entrypoints/http.py``
(which puts ``timelines.routes`` early: the home timeline is the hot path)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from homefeed.entrypoints.mastodon import (
    accounts, favourites, instance, markers, notifications, search, statuses, stubs,
)

ROUTES: list[BaseRoute] = [
    *instance.routes,
    *accounts.routes,
    *statuses.routes,
    *favourites.routes,
    *notifications.routes,
    *markers.routes,
    *search.routes,
    *stubs.routes,
]
