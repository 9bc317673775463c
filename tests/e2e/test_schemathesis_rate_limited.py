"""The served API keeps the promises of its ``/openapi.json`` when it refuses for the rate
limit: every ``/v1`` operation answers a documented 429, the others are never limited.

Its own module (it was the second test of ``tests/e2e/test_schemathesis.py``), so that
``make test`` can run it beside the other schemathesis shards.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import ServerFactory
from tests.e2e.schemathesis_kit import ADMIN_TOKEN, CHECKS, _label


def test_rate_limited_answers_keep_the_promises_of_the_openapi_document(server_factory: ServerFactory,
                                                                       capsys: pytest.CaptureFixture):
    """With a limit of one request a day per address, every /v1 operation answers 429 (with
    Retry-After and the RateLimit headers, as documented) and the operations routes are
    never limited."""
    server = server_factory.start("schemathesis-429", admin_token=ADMIN_TOKEN, rate_limit_per_address="1/day")
    schema = schemathesis.openapi.from_dict(requests.get(server.base_url + "/openapi.json", timeout=20).json())
    statuses: Counter = Counter()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = _label(operation)

            @settings(max_examples=4, derandomize=True, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def check(case: Any) -> None:
                response = case.call(base_url=server.base_url, session=session, timeout=20)
                statuses[(label, response.status_code)] += 1
                case.validate_response(response, checks=CHECKS)

            check()
    with capsys.disabled():
        print(f"\nschemathesis, rate limited: {dict(sorted(statuses.items()))}")
    labels = {label for label, _ in statuses}
    limited = {label for label, status in statuses if status == 429}
    assert limited == {label for label in labels if " /v1/" in label}, statuses
