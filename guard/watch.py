"""Filesystem events for the store: which meta.yaml files (or moved-in folders) to look at.

Uses watchdog's native observer (inotify, ReadDirectoryChangesW, FSEvents). When watches
cannot be set up (inotify limits, some network filesystems), the caller falls back to polling.
"""

from __future__ import annotations

import logging
import os
import queue
import warnings
from pathlib import Path
from typing import Callable

from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent,
                             FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)
from watchdog.observers import Observer

from .layout import META

log = logging.getLogger("guard.watch")
# watchdog re-adds a watch for a folder moved back in and warns about it; harmless noise.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

EVENTS, POLLING = "events", "polling"
# Only writes and moves: the guard reads every meta.yaml it checks, and open/close-nowrite
# events for those reads would flood the kernel queue (and wake the guard for nothing).
WANTED = [FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent,
          DirCreatedEvent, DirMovedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: "queue.Queue[tuple[str, Path]]") -> None:
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("created", "modified", "moved", "closed"):
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(os.fsdecode(raw))
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                self.sink.put(("dir", path))  # a folder synced or restored in one move
        elif path.name == META:
            self.sink.put(("file", path))


class StoreWatcher:
    """Puts ("file", path) and ("dir", path) items on `self.queue` as the store changes."""

    def __init__(self, store: Path, mode: str = "auto",
                 observer_factory: Callable[[], object] = Observer) -> None:
        self.store = store
        self.requested = mode
        self.factory = observer_factory
        self.queue: "queue.Queue[tuple[str, Path]]" = queue.Queue()
        self.mode = POLLING
        self.reason = ""
        self._observer = None

    def start(self) -> str:
        """Start watching; returns the mode in effect (events, or polling with a reason)."""
        if self.requested == POLLING:
            self.reason = "polling configured"
            return self.mode
        observer = self.factory()
        try:
            observer.schedule(_Handler(self.queue), str(self.store), recursive=True,
                              event_filter=WANTED)
            observer.start()
        except OSError as exc:
            self.reason = f"cannot watch the store ({exc}); polling instead"
            log.warning("%s", self.reason)
            try:
                observer.stop()
            except Exception:  # noqa: BLE001 - a half-started observer may fail to stop
                pass
            return self.mode
        self._observer = observer
        self.mode = EVENTS
        return self.mode

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
