"""Filesystem events for the store: which meta.yaml files (or moved-in folders) to look at.

On Linux, inotify needs one watch per folder; a recursive watch of a 10,000-run store holds
60,000 of them (every params/metrics/tags/artifacts folder), which costs memory and exhausts
small `max_user_watches` limits. So there the guard watches only the folders that can hold a
meta.yaml (layout.can_hold_meta), about one per run. Elsewhere watchdog's observer covers the
tree with one handle (ReadDirectoryChangesW, FSEvents). When watches cannot be set up (limits,
some network filesystems) the caller falls back to polling.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from guard.core.config import WatchMode
from guard.core.conflictnames import parse_conflict_name
from guard.core.layout import META, can_hold_meta, walk
from guard.core.parts import Event, Subscriber, ThreadPart
from guard.core.strenum import StrEnum

try:
    from inotify_simple import INotify
    from inotify_simple import flags as iflags
except ImportError:  # not Linux
    INotify = None

log = logging.getLogger("guard.watch")
# watchdog re-adds a watch for a folder moved back in and warns about it; harmless noise.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)

EVENTS, POLLING = WatchMode.EVENTS, WatchMode.POLLING


class Change(StrEnum):
    """What the watcher saw; each part subscribes to the kinds it acts on."""
    FILE = "file"  # a meta.yaml written or moved in
    DIR = "dir"    # a folder created or moved in (the whole store after lost events)
    COPY = "copy"  # a sync client's conflict copy appeared
    GONE = "gone"  # something deleted, or moved away
# Only writes and moves: the guard reads every meta.yaml it checks, and open/close-nowrite
# events for those reads would flood the kernel queue (and wake the guard for nothing).
WANTED: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileMovedEvent, FileClosedEvent, FileDeletedEvent,
    DirCreatedEvent, DirMovedEvent, DirDeletedEvent]


class Observing(Protocol):
    """What the watcher needs of a watchdog observer (tests pass fakes that fail or record)."""

    def schedule(self, event_handler: FileSystemEventHandler, path: str, *,
                 recursive: bool = ..., event_filter: list[type[FileSystemEvent]] | None = ...,
                 ) -> object: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = ...) -> None: ...


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: queue.Queue[Event | None]) -> None:
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("deleted", "moved"):
            self.sink.put((Change.GONE, Path(os.fsdecode(event.src_path))))  # the vault looks
        if event.event_type not in ("created", "modified", "moved", "closed"):
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(os.fsdecode(raw))
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                self.sink.put((Change.DIR, path))  # a folder synced or restored in one move
        elif path.name == META:
            self.sink.put((Change.FILE, path))
        elif parse_conflict_name(path.name) is not None:
            self.sink.put((Change.COPY, path))


def watched_folders(path: Path, rel: tuple[str, ...] = ()
                    ) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """`path` and every folder below it that can hold a meta.yaml (what inotify watches on
    Linux): layout.walk's folders, each yielded before it is listed, so a watch set on it at
    once sees anything created while its children are walked."""
    for folder, entry in walk(path, rel):
        yield folder, entry.rel


class _InotifyBackend:
    """Linux: non-recursive inotify watches on exactly the folders that can hold a meta.yaml."""

    def __init__(self, store: Path, sink: queue.Queue[Event | None]) -> None:
        self.store = store
        self.sink = sink
        self.mask = (iflags.CLOSE_WRITE | iflags.MOVED_TO | iflags.CREATE | iflags.DELETE
                     | iflags.MOVED_FROM | iflags.ONLYDIR | iflags.DONT_FOLLOW)
        # each watch's folder, store-relative with "/" (one string: a Path and a tuple per
        # folder cost ~600 bytes, 30 MB at 50,000 runs; issue 16's footprint)
        self.paths: dict[int, str] = {}
        self.failed = ""
        self.overflows = 0
        self._inotify = INotify()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)

    def start(self) -> None:
        self._add_tree(self.store, ())  # OSError (limit reached) goes to the caller
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._inotify.close()

    def _add_tree(self, path: Path, rel: tuple[str, ...]) -> None:
        for folder, sub in watched_folders(path, rel):
            try:
                wd = self._inotify.add_watch(str(folder), self.mask)
            except FileNotFoundError:
                if folder == path:
                    raise
                continue  # gone meanwhile; the walk then finds nothing below it
            self.paths[wd] = "/".join(sub)  # a folder moved in the store keeps its wd: re-mapped

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._inotify.read(timeout=500)
            except OSError as exc:
                self.failed = f"inotify read failed ({exc}); polling instead"
                return
            for event in events:
                self._handle(event)

    def _handle(self, event) -> None:
        if event.mask & iflags.Q_OVERFLOW:
            self.overflows += 1
            log.warning("inotify queue overflowed (events lost); checking the whole store")
            self.sink.put((Change.DIR, self.store))  # events were lost: look at everything
            return
        if event.mask & iflags.IGNORED:
            self.paths.pop(event.wd, None)
            return
        base = self.paths.get(event.wd)
        if base is None or not event.name:
            return
        rel = (*base.split("/"), event.name) if base else (event.name,)
        path = self.store.joinpath(*rel)
        if event.mask & (iflags.DELETE | iflags.MOVED_FROM):
            self.sink.put((Change.GONE, path))  # a deletion (or the first half of a move): vault.py
            return
        if event.mask & iflags.ISDIR:
            if event.mask & (iflags.CREATE | iflags.MOVED_TO) and can_hold_meta(rel):
                try:
                    self._add_tree(path, rel)
                except FileNotFoundError:
                    return
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        self.failed = f"inotify watch limit reached ({exc}); polling instead"
                        log.warning("%s", self.failed)
                self.sink.put((Change.DIR, path))
        elif event.name == META and event.mask & (iflags.CLOSE_WRITE | iflags.MOVED_TO):
            self.sink.put((Change.FILE, path))
        elif event.mask & (iflags.CLOSE_WRITE | iflags.MOVED_TO) and \
                parse_conflict_name(event.name) is not None:
            self.sink.put((Change.COPY, path))  # a sync client's conflict copy (reconcile.py)


class StoreWatcher:
    """Puts (Change.FILE, path) (a meta.yaml), (Change.DIR, path) (a folder moved or
    created), (Change.COPY, path) (a sync client's conflict copy) and (Change.GONE, path)
    (something deleted or moved away) items on `self.queue` (or the `sink` given) as the store
    changes."""

    def __init__(self, store: Path, mode: str = WatchMode.AUTO,
                 observer_factory: Callable[[], Observing] | None = None,
                 sink: queue.Queue[Event | None] | None = None) -> None:
        self.store = store
        self.requested = mode
        self.factory = observer_factory
        self.queue: queue.Queue[Event | None] = sink if sink is not None else queue.Queue()
        self.reason = ""
        self._events = False
        self._observer: Observing | None = None
        self._inotify: _InotifyBackend | None = None

    @property
    def overflows(self) -> int:
        """Times the kernel dropped events (each followed by a whole-store check)."""
        return self._inotify.overflows if self._inotify is not None else 0

    @property
    def mode(self) -> str:
        """events, or polling (configured, or watches could not be set up or kept)."""
        if self._inotify is not None and self._inotify.failed:
            self.reason = self._inotify.failed
            return POLLING
        return EVENTS if self._events else POLLING

    def start(self) -> str:
        """Start watching; returns the mode in effect (events, or polling with a reason)."""
        if self.requested == POLLING:
            self.reason = "polling configured"
            return self.mode
        try:
            if self.factory is None and INotify is not None and sys.platform.startswith("linux"):
                self._start_inotify()
            else:
                self._start_observer()
        except OSError as exc:
            self.reason = f"cannot watch the store ({exc}); polling instead"
            log.warning("%s", self.reason)
            return self.mode
        self._events = True
        return self.mode

    def _start_inotify(self) -> None:
        backend = _InotifyBackend(self.store, self.queue)
        try:
            backend.start()
        except OSError:
            backend._inotify.close()
            raise
        self._inotify = backend

    def _start_observer(self) -> None:
        observer: Observing = (self.factory or Observer)()
        try:
            observer.schedule(_Handler(self.queue), str(self.store), recursive=True,
                              event_filter=WANTED)
            observer.start()
        except OSError:
            try:
                observer.stop()
            except Exception:  # noqa: BLE001 - a half-started observer may fail to stop
                pass
            raise
        self._observer = observer

    def stop(self) -> None:
        if self._inotify is not None:
            self._inotify.stop()
            self._inotify = None
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self._events = False


@dataclass(frozen=True)
class WatchFigures:
    """The watcher's figures: `guardctl status` shows them on its "paths" lines."""

    watch_mode: str = ""
    watch_note: str = ""
    watch_overflows: int = 0
    watch_error: str | None = None


class WatchPart(ThreadPart):
    """The daemon's watcher as a part of its own: every change goes to each part that
    subscribed to its kind (rewriting, conflicts, the vault), whichever of them are enabled,
    so no part hears the store through another one's thread."""

    name = "watch"
    consequence = "changes are found only by the periodic passes until restart"

    def __init__(self, store: Path, mode: str, subscribers: Iterable[Subscriber],
                 observer_factory: Callable[[], Observing] | None = None) -> None:
        super().__init__(wait=0.5, join_timeout=5.0)
        self.subscribers = list(subscribers)
        self.watcher = StoreWatcher(store, mode, observer_factory, sink=self.inbox)

    @property
    def mode(self) -> str:
        return self.watcher.mode

    def start(self) -> None:
        self.watcher.start()
        super().start()

    def stop(self) -> None:
        super().stop()
        self.watcher.stop()

    def handle(self, event: Event | None, now: float) -> None:
        if event is None:
            return
        kind, path = event
        for part in self.subscribers:
            if kind in part.wants:
                part.notice(kind, path)

    def snapshot(self) -> WatchFigures:
        return WatchFigures(self.watcher.mode, self.watcher.reason, self.watcher.overflows,
                            self.error)
