"""The served API keeps the promises of its ``/openapi.json``, shard ``mastodon_statuses``: Mastodon's statuses, timelines, search, favourites and notifications.

What is generated and checked, and why the document is run in shards:
``tests/e2e/test_schemathesis.py`` and ``tests/e2e/schemathesis_kit.py``.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ServerFactory
from tests.e2e.schemathesis_kit import run_shard

SHARD = "mastodon_statuses"


@pytest.mark.slow
def test_every_operation_keeps_the_promises_of_the_openapi_document(server_factory: ServerFactory,
                                                                   capsys: pytest.CaptureFixture):
    run_shard(SHARD, server_factory, capsys)
