"""The real watcher (inotify here): writes and moves wake the guard, its own reads do not."""

from __future__ import annotations

import os
import queue
import time

from guard.watch import EVENTS, StoreWatcher


def drain(q, wait: float) -> list:
    items, deadline = [], time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            items.append(q.get(timeout=0.05))
        except queue.Empty:
            pass
    return items


def test_reads_are_silent_writes_and_moves_are_seen(tmp_path):
    run = tmp_path / "1" / "abc"
    run.mkdir(parents=True)
    meta = run / "meta.yaml"
    meta.write_text("artifact_uri: x\n")
    watcher = StoreWatcher(tmp_path)
    assert watcher.start() == EVENTS
    try:
        time.sleep(0.2)
        for _ in range(50):
            meta.read_bytes()
            list(os.scandir(run))
        assert drain(watcher.queue, 0.5) == []

        tmp = run / ".guard-tmp-1"
        tmp.write_text("artifact_uri: y\n")
        os.replace(tmp, meta)  # how MLflow and the guard replace meta.yaml
        assert ("file", meta) in drain(watcher.queue, 1.0)

        moved_in = tmp_path / "staging"
        (moved_in / "r2").mkdir(parents=True)
        (moved_in / "r2" / "meta.yaml").write_text("artifact_uri: z\n")
        drain(watcher.queue, 0.3)
        os.rename(moved_in / "r2", tmp_path / "1" / "r2")  # a folder synced in one move
        assert ("dir", tmp_path / "1" / "r2") in drain(watcher.queue, 1.0)
    finally:
        watcher.stop()
