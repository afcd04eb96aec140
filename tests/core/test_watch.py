"""The watcher: the real one (inotify here) where writes and moves wake the guard and its own
reads do not; its fallback to polling; the watcher part handing each change to every part
that wants it."""

from __future__ import annotations

import os
import queue
import sys
import time

from guard.core.watch import EVENTS, POLLING, Change, StoreWatcher, WatchFigures, WatchPart
from tests.helpers.daemons import wait_for
from tests.helpers.parts import Recorder


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
        watched = sorted(watcher._inotify.paths.values())
        assert watched == ["", "7", "7/r1", "7/r2"]
        (tmp_path / "7" / "r3" / "params").mkdir(parents=True)  # a new run appears
        assert ("dir", tmp_path / "7" / "r3") in drain(watcher.queue, 1.0)
        assert "7/r3" in watcher._inotify.paths.values()
        (tmp_path / "7" / "r3" / "meta.yaml").write_text("artifact_uri: x\n")
        assert ("file", tmp_path / "7" / "r3" / "meta.yaml") in drain(watcher.queue, 1.0)
    finally:
        watcher.stop()


def test_a_watched_folder_costs_one_short_string(tmp_path):
    """The watches' memory grows with the store (a watch per run): about 130 bytes each, not
    a Path and a tuple (~630 bytes: 30 MB at 50,000 runs, issue 16)."""
    import gc
    import tracemalloc

    if not sys.platform.startswith("linux"):
        return  # one recursive watchdog handle instead, nothing per folder
    runs = 1000
    for i in range(runs):
        (tmp_path / "7" / f"{i:032x}" / "params").mkdir(parents=True)
    watcher = StoreWatcher(tmp_path)
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        assert watcher.start() == EVENTS
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        watched = len(watcher._inotify.paths)
    finally:
        tracemalloc.stop()
        watcher.stop()
    assert watched == runs + 2
    assert held / runs < 250, f"{held / runs:.0f} bytes per watched run folder"


# --- StoreWatcher fallback --------------------------------------------------------------------

class FailingObserver:
    def __init__(self):
        self.stopped = False
        self.started = False

    def schedule(self, handler, path, recursive=False, event_filter=None):
        raise OSError(28, "inotify watch limit reached")

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True


class WorkingObserver:
    def __init__(self):
        self.calls = []

    def schedule(self, handler, path, recursive=False, event_filter=None):
        self.calls.append(("schedule", path, recursive))

    def start(self):
        self.calls.append(("start",))

    def stop(self):
        self.calls.append(("stop",))

    def join(self, timeout=None):
        self.calls.append(("join",))


def test_watcher_falls_back_to_polling_when_watches_fail(tmp_path):
    made = []

    def factory():
        made.append(FailingObserver())
        return made[-1]

    watcher = StoreWatcher(tmp_path, "auto", observer_factory=factory)
    assert watcher.start() == POLLING
    assert watcher.mode == POLLING
    assert "inotify watch limit reached" in watcher.reason
    assert "polling" in watcher.reason
    assert len(made) == 1 and made[0].stopped and not made[0].started
    watcher.stop()  # nothing to stop; must not raise


def test_watcher_polling_mode_never_calls_the_factory(tmp_path):
    def factory():
        raise AssertionError("observer factory called in polling mode")

    watcher = StoreWatcher(tmp_path, "polling", observer_factory=factory)
    assert watcher.start() == POLLING
    assert watcher.mode == POLLING
    assert watcher.reason


def test_watcher_events_mode_with_a_working_observer(tmp_path):
    obs = WorkingObserver()
    watcher = StoreWatcher(tmp_path, "auto", observer_factory=lambda: obs)
    assert watcher.start() == EVENTS
    assert watcher.mode == EVENTS
    assert obs.calls == [("schedule", str(tmp_path), True), ("start",)]
    watcher.stop()
    assert obs.calls[-2:] == [("stop",), ("join",)]


# ---- the watcher part ------------------------------------------------------------------------

class Inbox:
    """A subscriber that only records what it is given."""

    def __init__(self, *wants: Change) -> None:
        self.wants = frozenset(wants)
        self.got: list = []

    def notice(self, kind, path) -> None:
        self.got.append((kind, path))


def test_the_watcher_gives_each_change_to_every_part_that_wants_its_kind(tmp_path):
    rewrite, conflicts, vault = (Inbox(Change.FILE, Change.DIR), Inbox(Change.COPY),
                                 Inbox(Change.FILE, Change.DIR, Change.GONE))
    watch = WatchPart(tmp_path, "polling", [rewrite, conflicts, vault])
    watch.start()
    try:
        assert watch.mode == "polling"
        meta, copy, gone = tmp_path / "meta.yaml", tmp_path / "x (conflict).txt", tmp_path / "r"
        for event in ((Change.FILE, meta), (Change.COPY, copy), (Change.GONE, gone)):
            watch.inbox.put(event)  # what the StoreWatcher's backends put there
        wait_for(lambda: len(vault.got) == 2 and len(conflicts.got) == 1, 5, what="fan-out")
        assert rewrite.got == [(Change.FILE, meta)]
        assert conflicts.got == [(Change.COPY, copy)]
        assert vault.got == [(Change.FILE, meta), (Change.GONE, gone)]
        assert watch.snapshot() == WatchFigures("polling", "polling configured", 0, None)
    finally:
        watch.stop()
    assert not watch.alive


def test_the_watcher_feeds_real_parts_with_real_events(tmp_path):
    """Events from the store reach a subscribed part through the watcher's own thread."""
    run = tmp_path / "0" / "r1"
    run.mkdir(parents=True)
    part = Recorder()
    watch = WatchPart(tmp_path, "auto", [part])
    watch.start()
    part.start()
    try:
        assert watch.mode == "events"
        (run / "meta.yaml").write_text("x: 1\n")
        wait_for(lambda: (Change.FILE, run / "meta.yaml") in part.events(), 5, what="file event")
        (run / "meta.yaml").unlink()
        wait_for(lambda: (Change.GONE, run / "meta.yaml") in part.events(), 5, what="gone event")
    finally:
        watch.stop()
        part.stop()


def test_a_part_whose_thread_died_does_not_cut_the_others_off(tmp_path):
    """The old coupling: the vault heard the store only through the rewrite thread's loop."""
    rewrite, vault = Recorder(), Recorder()
    rewrite.fail_on = "meta.yaml"
    watch = WatchPart(tmp_path, "polling", [rewrite, vault])
    for part in (watch, rewrite, vault):
        part.start()
    try:
        watch.inbox.put((Change.FILE, tmp_path / "meta.yaml"))
        wait_for(lambda: not rewrite.alive, 5, what="the rewrite part to fail")
        watch.inbox.put((Change.GONE, tmp_path / "r1"))
        wait_for(lambda: (Change.GONE, tmp_path / "r1") in vault.events(), 5,
                 what="the vault to hear the deletion")
        assert rewrite.error is not None and vault.error is None and watch.error is None
    finally:
        for part in (watch, rewrite, vault):
            part.stop()
