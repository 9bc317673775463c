"""The Mastodon client API (``/api/v1``, ``/api/v2``, discovery), one module per resource,
like ``entrypoints/routes``; ``ROUTES`` gathers them for ``entrypoints/http.py``."""
