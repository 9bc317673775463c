"""``GET /dashboard``: a live page for a person. No build step, no external asset, nothing
fetched but its own script and style and ``metrics.json`` beside it, every 2 seconds. Charts
are inline SVG drawn from the server's 10-second slots (the last five minutes) and from its
lag samples, so a page opened late still shows the history.

The page lives in ``dashboard.html``, ``dashboard.css`` and ``dashboard.js`` beside this
module (package data, so each can be read, linted and edited as what it is). The HTML links
the other two by name; they are served as they are, at ``/dashboard.css`` and
``/dashboard.js`` (``asset``), so that the page runs under a Content-Security-Policy without
``'unsafe-inline'`` (``PAGE_CSP``). ``page()`` adds the files' digest to the links
(``dashboard.js?v=...``): a browser may cache them for a day and still never runs a script
of another version with this page. Every figure has an ``id`` (``api-rps-1m``,
``fanout-p99-1m``, ``lag-fanout``...) so that a browser test can read it.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from importlib import resources
from typing import Iterable

_PACKAGE = "homefeed.entrypoints"
#: The files served beside the page, by name: their media types.
ASSETS = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
#: How long a browser keeps an asset (the page's links change with the files' content).
ASSET_CACHE_CONTROL = "public, max-age=86400"


def _read(name: str) -> str:
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def asset(name: str) -> tuple[bytes, str]:
    """``(content, etag)`` of one of ``ASSETS`` (read from the package once)."""
    if name not in ASSETS:
        raise KeyError(name)
    content = _read(name).encode("utf-8")
    return content, '"' + hashlib.sha256(content).hexdigest()[:16] + '"'


@lru_cache(maxsize=1)
def page() -> str:
    """The dashboard's HTML, its links to the assets carrying their digest."""
    html = _read("dashboard.html")
    for name in ASSETS:
        attr = "href" if name.endswith(".css") else "src"
        link = f'{attr}="{name}"'
        if html.count(link) != 1:
            raise RuntimeError(f"dashboard.html must link {name} exactly once ({link})")
        html = html.replace(link, f'{attr}="{name}?v={asset(name)[1].strip(chr(34))}"')
    return html


def csp(inline_styles: Iterable[str] = ()) -> str:
    """The Content-Security-Policy of the pages for people (``/``, ``/docs``, ``/dashboard``):
    nothing from elsewhere, no inline script, and inline style only for the ``<style>``
    elements given here (by their digest), never ``'unsafe-inline'``."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(s.encode('utf-8')).digest()).decode()}'"
        for s in inline_styles
    )
    return ("default-src 'none'; script-src 'self'; style-src 'self'" + hashes
            + "; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none';"
            " frame-ancestors 'none'")


#: The dashboard's policy: its script and style are files of its own.
PAGE_CSP = csp()


def __getattr__(name: str) -> str:
    """``DASHBOARD_HTML``, as before the page moved to package files."""
    if name == "DASHBOARD_HTML":
        return page()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
