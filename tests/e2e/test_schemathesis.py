"""The served API keeps the promises of its own ``/openapi.json`` (schemathesis, v4 API).

A dedicated server (its own data dir, so the shared session server's state is untouched)
is loaded with a small world: users, follows and posts. Then, for every operation of the
document, schemathesis generates requests from the document itself (valid ones, and invalid
ones that must be refused with a documented 4xx), half of them aimed at what exists (real
handles, post ids and cursors, a real bearer token) so that generation reaches the handlers
and not only the 401s and 404s. Every answer is checked: no 5xx, a documented status code,
content type, body schema and headers (``X-Request-Id``, ``Retry-After``...).

The admin route gets a wrong token: generated admin bodies would otherwise start a rebuild
or an audit (minutes of work). Its documented 401 is then what is checked.

Deterministic: hypothesis is derandomized (a fixed seed per operation) and has no example
database. The requests are counted, so the test cannot pass having sent nothing. To explore
further: ``HOMEFEED_SCHEMATHESIS_FACTOR=10 HOMEFEED_SCHEMATHESIS_RANDOM=1``.

The operations run in shards, one module each, so that ``make test`` can run them in
different processes: ``test_schemathesis_{native,mastodon_statuses,mastodon_accounts,pages}.py``,
each with its own server and world (``tests/e2e/schemathesis_kit.py``), and the rate-limited
answers in ``test_schemathesis_rate_limited.py``. This module checks that the shards cover the
document: every operation is run by exactly one of them.
"""

from __future__ import annotations

import importlib

from homefeed.config import Settings
from homefeed.entrypoints.openapi import openapi_document
from tests.e2e.schemathesis_kit import SHARDS, documented_labels, shard_of


def test_the_shards_cover_every_operation_of_the_document():
    """Every documented operation falls in one shard, no shard is empty, and each shard has
    its module that runs it (a shard without a module would leave its operations unchecked)."""
    labels = documented_labels(openapi_document(Settings()))
    by_shard: dict[str, set[str]] = {}
    for label in labels:
        by_shard.setdefault(shard_of(label.split(" ", 1)[1]), set()).add(label)
    assert set(by_shard) == set(SHARDS), by_shard
    assert set().union(*by_shard.values()) == labels
    for shard in SHARDS:
        module = importlib.import_module(f"tests.e2e.test_schemathesis_{shard}")
        assert module.SHARD == shard
        assert callable(module.test_every_operation_keeps_the_promises_of_the_openapi_document)
