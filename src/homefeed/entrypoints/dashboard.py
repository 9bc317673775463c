"""``GET /dashboard``: a live page for a person. No build step, no external asset, nothing
fetched but ``metrics.json`` beside it, every 2 seconds. Charts are inline SVG drawn from the
server's 10-second slots (the last five minutes) and from its lag samples, so a page opened
late still shows the history.

The page lives in ``dashboard.html``, ``dashboard.css`` and ``dashboard.js`` beside this
module (package data, so each can be read, linted and edited as what it is). The HTML links
the other two by name; ``page()`` inlines them once, at first use, so the page stays one
response and needs no route per asset. Every figure has an ``id`` (``api-rps-1m``,
``fanout-p99-1m``, ``lag-fanout``...) so that a browser test can read it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

_PACKAGE = "homefeed.entrypoints"
#: The tags of ``dashboard.html`` that ``page()`` replaces with the files' content.
_CSS_LINK = '<link rel="stylesheet" href="dashboard.css">'
_JS_SCRIPT = '<script src="dashboard.js"></script>'


def _read(name: str) -> str:
    return resources.files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def page() -> str:
    """The dashboard as one self-contained HTML document (read from the package once)."""
    html = _read("dashboard.html")
    if html.count(_CSS_LINK) != 1 or html.count(_JS_SCRIPT) != 1:
        raise RuntimeError("dashboard.html must link dashboard.css and dashboard.js exactly once")
    css, js = _read("dashboard.css"), _read("dashboard.js")
    if "</script" in js.lower():
        raise RuntimeError("dashboard.js must not contain '</script' (it is inlined)")
    return html.replace(_CSS_LINK, f"<style>\n{css}</style>").replace(_JS_SCRIPT, f"<script>\n{js}</script>")


def __getattr__(name: str) -> str:
    """``DASHBOARD_HTML``, as before the page moved to package files (http.py imports it)."""
    if name == "DASHBOARD_HTML":
        return page()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
