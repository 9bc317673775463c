"""Suite-wide scheduling for ``make test``'s parallel pass: the longest modules start first.

``make test`` runs the suite in TEST_WORKERS processes with pytest-xdist's ``--dist
loadfile``: a module is one unit of work, run whole by one process, in its own order (the web
client's tests build on each other). The processes take the units in the order of the
queue. By default xdist sorts that queue by the number of tests in a module, most first, so
the modules that are long because each test is long (a schemathesis shard, the crash and
outage scenarios, the hypothesis oracle: one to a dozen tests of a minute or more) came last,
and the pass ended with one process running one of them while the others sat idle.

So ``make test`` passes ``--no-loadscope-reorder`` (xdist then keeps the collection order)
and this hook orders the collection by module, longest first (the "longest processing time
first" rule: the end of the pass is made of short modules that even the processes out).
The length of a module is its measured time in ``MODULE_SECONDS``; a module that is not
there comes after those that are, most tests first (xdist's own rule). The table only
orders: a stale figure costs time, never a test. Within a module the order is untouched.

Only in an xdist worker (every worker sorts the same collection the same way, as xdist
requires): in one process (``TEST_WORKERS=0``, or ``pytest`` by hand) the order is pytest's.
To refresh the table, run ``make test`` with ``PYTEST_ARGS="--durations=0 -q"`` and add up
each module's setup, call and teardown times (benchmarks/results/issue14_p16ci.md has the
command used for these).
"""

from __future__ import annotations

import pytest

#: Seconds per module (setup + call + teardown of its tests in the parallel pass): the mean
#: of each module's share of the pass in two ``make test`` runs (load average ~13 and ~9 on
#: 2 shared cores; a module's share moved by up to 5x between them), in seconds of the
#: second run (issue14_p16ci.md). Only the order matters. The 47 modules of 10 s or more
#: (96% of the pass); the others are short enough to fill in at the end in any order. The
#: serial pass's modules run in one process: not listed.
MODULE_SECONDS: dict[str, float] = {
    "tests/e2e/test_scaleout.py": 506,
    "tests/e2e/test_mastodon_oracle.py": 191,
    "tests/e2e/test_schemathesis_mastodon_accounts.py": 167,
    "tests/e2e/test_schemathesis_mastodon_statuses.py": 159,
    "tests/integration/test_oracle_stateful.py": 151,
    "tests/e2e/test_toot.py": 130,
    "tests/contract/test_record_store_conversations.py": 123,
    "tests/e2e/test_drain.py": 120,
    "tests/e2e/test_schemathesis_pages.py": 107,
    "tests/e2e/test_api.py": 107,
    "tests/integration/test_jetstream.py": 97,
    "tests/e2e/test_first_hour.py": 97,
    "tests/integration/test_scheduler.py": 84,
    "tests/e2e/test_schemathesis_rate_limited.py": 80,
    "tests/e2e/test_mastodon_clients.py": 63,
    "tests/contract/test_record_store.py": 57,
    "tests/e2e/test_crash.py": 56,
    "tests/contract/test_event_stream.py": 53,
    "tests/e2e/test_schemathesis_native.py": 51,
    "tests/e2e/test_oauth.py": 50,
    "tests/e2e/test_bad_input.py": 50,
    "tests/integration/test_redis_cache.py": 46,
    "tests/e2e/test_web_client.py": 41,
    "tests/e2e/test_streaming.py": 38,
    "tests/unit/test_bench_quick.py": 35,
    "tests/contract/test_search_index.py": 34,
    "tests/integration/test_hot_path_layer.py": 30,
    "tests/integration/test_webhooks.py": 26,
    "tests/e2e/test_fuzz_text.py": 24,
    "tests/e2e/test_observability.py": 22,
    "tests/e2e/test_mastodon_conversations.py": 21,
    "tests/e2e/test_webhooks_crash.py": 20,
    "tests/unit/test_bench_loadgen.py": 17,
    "tests/unit/test_bench_runner.py": 16,
    "tests/e2e/test_rate_limit.py": 16,
    "tests/unit/test_text.py": 16,
    "tests/integration/test_outages_adapters.py": 15,
    "tests/integration/test_home_pages.py": 15,
    "tests/integration/test_mailer.py": 15,
    "tests/contract/test_timeline_cache.py": 15,
    "tests/unit/test_memory_cache.py": 14,
    "tests/unit/test_bench_graph.py": 13,
    "tests/e2e/test_idempotency.py": 13,
    "tests/integration/test_notifier.py": 13,
    "tests/unit/feed/test_feed_rules_conversations.py": 13,
    "tests/e2e/test_oauth_scaleout.py": 12,
    "tests/integration/test_view_pages.py": 12,
}


def _module(nodeid: str) -> str:
    """The unit ``--dist loadfile`` schedules: the node id up to its first ``::``."""
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Longest module first in an xdist worker (see the module's docstring)."""
    if not hasattr(config, "workerinput"):
        return
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_module.setdefault(_module(item.nodeid), []).append(item)
    first_seen = {module: i for i, module in enumerate(by_module)}

    def length(module: str) -> tuple[int, float, int, int]:
        known = module in MODULE_SECONDS
        return (0 if known else 1, -MODULE_SECONDS.get(module, 0.0), -len(by_module[module]),
                first_seen[module])

    items[:] = [item for module in sorted(by_module, key=length) for item in by_module[module]]
