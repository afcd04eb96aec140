"""The gc watch (guard.protection.gcwatch) with a fake process finder: no processes."""

from __future__ import annotations

import logging

from guard.protection.gcwatch import GcFigures, GcWatch, newcomers
from guard.supervision.processes import GcProcess


def test_gc_watch_logs_each_gc_once_and_shows_those_running():
    running: list[GcProcess] = []
    gc = GcWatch("/s", 5050, every=5.0, find=lambda store, port: list(running))
    gc.tick(0.0)
    assert gc.seen == [] and gc.snapshot() == GcFigures((), None, False)
    running.append(GcProcess(7, "bob", "mlflow gc"))
    logs = []
    handler = logging.Handler()
    handler.emit = logs.append  # type: ignore[method-assign]
    logger = logging.getLogger("guard.daemon")
    logger.addHandler(handler)
    try:
        for now in (5.0, 10.0, 15.0):
            gc.tick(now)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in logs] == [
        "`mlflow gc` is running against this store: pid 7 (user bob): mlflow gc"]
    assert gc.snapshot().processes == tuple(running)
    running.clear()
    gc.tick(20.0)
    assert gc.seen == []


def test_newcomers_are_the_pids_not_seen_before():
    one, two = GcProcess(1, "a", "mlflow gc"), GcProcess(2, "b", "mlflow gc")
    assert newcomers([one], [GcProcess(1, "a", "mlflow gc --older-than 1d"), two]) == [two]
    assert newcomers([], []) == []
