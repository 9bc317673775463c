"""The web client (issue 13): a single-page app for people, served at ``/`` and at every
address it shows (``/@ana``, ``/@ana/123``, ``/tags/rust``...), that is just another client of
the Mastodon API: it registers itself as an OAuth app, logs in through ``/oauth/authorize``
with PKCE, and reads and writes through ``/api/v1`` like any app.

No build step and no Node: plain ES modules and one style sheet, in this package directory
(package data), read once per process. Every asset is served under one versioned prefix,
``/web/<version>/<name>``, where the version is a digest of every file: the modules import
each other by relative path, so one prefix versions them all, and each may be cached for a
year (``immutable``). The shell (the one HTML page every client route answers) is small,
never cached without revalidation (``no-cache`` + ``ETag``), and names the current prefix.
Everything is gzip-compressed once, at first use, and served so to a browser that accepts it.

The Content-Security-Policy allows scripts and styles from this origin only (no inline
script, no inline style), connections to this origin only (the API and its event stream),
and nothing from elsewhere: the client works on a machine with no internet.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_PACKAGE = "homefeed.entrypoints.web"
#: Served files by suffix: their media types (the shell is not an asset).
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
#: An asset's name changes with any file's content: a browser keeps it for a year.
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
#: The shell: always revalidated (cheap: a 304 by ETag), so a new version is seen at once.
SHELL_CACHE_CONTROL = "no-cache"
SHELL = "shell.html"
#: The one policy of the client: nothing inline, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self';"
       " frame-ancestors 'none'")


@dataclass(frozen=True, slots=True)
class Asset:
    """One served file: its bytes, gzip-compressed bytes, media type and ETag."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


def _make(body: bytes, media_type: str) -> Asset:
    return Asset(body, gzip.compress(body, 9, mtime=0), media_type,
                 '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """Every ``.js`` and ``.css`` file of the package directory, by name."""
    out: dict[str, Asset] = {}
    for entry in sorted(resources.files(_PACKAGE).iterdir(), key=lambda e: e.name):
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in MEDIA_TYPES:
            out[entry.name] = _make(entry.read_bytes(), MEDIA_TYPES[suffix])
    return out


@lru_cache(maxsize=1)
def version() -> str:
    """A digest of every asset's name and content: the prefix they are served under."""
    digest = hashlib.sha256()
    for name, asset in assets().items():
        digest.update(name.encode() + b"\0" + asset.body + b"\0")
    return digest.hexdigest()[:16]


def asset_path(name: str) -> str:
    return f"/web/{version()}/{name}"


@lru_cache(maxsize=1)
def shell() -> Asset:
    """The app's one HTML page, its ``$prefix`` filled with the current asset prefix (the
    modules are preloaded, so the browser fetches them in parallel rather than one import
    after another)."""
    text = resources.files(_PACKAGE).joinpath(SHELL).read_text(encoding="utf-8")
    preload = "\n".join(f'<link rel="modulepreload" href="{asset_path(name)}">'
                        for name in assets() if name.endswith(".js") and name != "app.js")
    page = text.replace("$preload", preload).replace("$prefix", f"/web/{version()}")
    return _make(page.encode("utf-8"), "text/html; charset=utf-8")
