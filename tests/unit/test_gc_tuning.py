"""`brace serve` tunes Python's garbage collector for a server, and undoes it."""

from __future__ import annotations

import gc

from brace.config import parse_config
from brace.gateway.app import tune_gc


def test_tune_freezes_start_up_raises_the_threshold_and_restores() -> None:
    before = gc.get_threshold()
    assert before[0] < 20_000
    kept = [[i] for i in range(1000)]  # start-up objects
    restore = tune_gc(20_000)
    assert restore is not None
    try:
        assert gc.get_threshold() == (20_000, before[1], before[2])
        assert gc.get_freeze_count() >= len(kept)
    finally:
        restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_zero_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    assert tune_gc(0) is None
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_default_is_on_and_zero_is_accepted() -> None:
    models = {"m": {"deployments": [{"provider": "mock", "model": "m"}]}}
    assert parse_config({"models": models}, env={}).server.gc_threshold == 20_000
    cfg = parse_config({"models": models, "server": {"gc_threshold": 0}}, env={})
    assert cfg.server.gc_threshold == 0
