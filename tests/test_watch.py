"""The real watcher (inotify here): writes and moves wake the guard, its own reads do not."""

from __future__ import annotations

import os
import queue
import sys
import time

from guard.core.watch import EVENTS, StoreWatcher


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


def test_only_folders_that_can_hold_a_meta_yaml_are_watched():
    from guard.core.layout import can_hold_meta
    yes = [(), ("0",), ("123",), (".trash",), (".trash", "5"), (".trash", "5", "r1"),
           ("123", "abc"), ("123", "models"), ("123", "models", "m-1"), ("models",),
           ("models", "clf"), ("models", "clf", "version-3"), (".trash", "5", "models", "m-1")]
    no = [("123", "abc", "params"), ("123", "abc", "metrics"), ("123", "abc", "artifacts"),
          ("123", "abc", "tags"), ("123", "abc", "outputs"), ("123", "traces"),
          ("123", "models", "m-1", "artifacts"), ("models", "clf", "aliases"),
          ("models", "clf", "version-3", "tags"), ("123", "datasets")]
    assert [r for r in yes if not can_hold_meta(r)] == []
    assert [r for r in no if can_hold_meta(r)] == []


def test_inotify_watches_one_folder_per_run_not_its_subfolders(tmp_path):
    for run in ("r1", "r2"):
        for sub in ("params", "metrics", "tags", "artifacts/deep/er"):
            (tmp_path / "7" / run / sub).mkdir(parents=True)
    watcher = StoreWatcher(tmp_path)
    assert watcher.start() == EVENTS
    try:
        if not sys.platform.startswith("linux"):  # one recursive watchdog handle instead
            assert watcher._inotify is None and watcher._observer is not None
            return
        watched = sorted(rel for _, rel in watcher._inotify.paths.values())
        assert watched == [(), ("7",), ("7", "r1"), ("7", "r2")]
        (tmp_path / "7" / "r3" / "params").mkdir(parents=True)  # a new run appears
        assert ("dir", tmp_path / "7" / "r3") in drain(watcher.queue, 1.0)
        assert ("7", "r3") in [rel for _, rel in watcher._inotify.paths.values()]
        (tmp_path / "7" / "r3" / "meta.yaml").write_text("artifact_uri: x\n")
        assert ("file", tmp_path / "7" / "r3" / "meta.yaml") in drain(watcher.queue, 1.0)
    finally:
        watcher.stop()
