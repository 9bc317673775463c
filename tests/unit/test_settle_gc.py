"""``settle_gc`` (issue 14's posts p99): once a process serves, what it started with is out of
the collector's sight and young collections are rarer, so that full collections, which stop
the event loop for the whole heap's traversal, become rare and short. The figures are in
``benchmarks/results/issue14_p16post.md``; this checks the settings are what they claim."""

from __future__ import annotations

import gc

from homefeed.entrypoints import processes


def test_settle_gc_freezes_what_the_process_started_with_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    kept: object = type("Kept", (), {})()  # a tracked object made before settling
    try:
        processes.settle_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (processes.GC_YOUNG_THRESHOLD, *before[1:])
        assert all(o is not kept for o in gc.get_objects())  # frozen: no collection sees it
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
