"""The daemon's parts: one interface for every duty, and the two ways a part runs.

A part (the server keeper, heartbeats, gc watch, rewriting, conflicts, vault, the watcher) is
started, then either ticked by the daemon's loop (`TickPart`: short, periodic work) or runs its
own thread (`ThreadPart`: passes that take long, fed by watcher events); it is paused while the
store is away, stopped at shutdown, and says what it is doing through `snapshot()`. A part whose
work raised keeps the error (the traceback goes to the log) instead of taking the daemon down,
and `last_tick` says when it last went round, so a part that hangs can be told from an idle one.
"""

from __future__ import annotations

import abc
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger("guard.daemon")

Event = tuple[str, Path]  # (a watch.Change, the path it is about)


@dataclass(frozen=True)
class PartState:
    """How a part is doing, whatever its work: an entry of the status's "parts" section."""

    error: str | None = None
    paused: bool = False
    last_tick: float | None = None


class Part(Protocol):
    """What the daemon needs of each of its parts."""

    name: str
    error: str | None       # what stopped or failed it; None while it works
    paused: threading.Event  # set while the store is away: the part must not touch it
    last_tick: float | None  # wall time it last went round (None before its first round)

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def tick(self, now: float) -> None:
        """Called by the daemon's loop every turn (a no-op for parts with their own thread)."""

    def snapshot(self) -> object:
        """Its figures for the status document: a frozen dataclass declared beside it."""


def state_of(part: Part) -> PartState:
    return PartState(part.error, part.paused.is_set(), part.last_tick)


class Subscriber(Protocol):
    """A part that hears the watcher: the kinds of change it wants, and where they go."""

    wants: frozenset[str]

    def notice(self, kind: str, path: Path) -> None: ...


class TickPart(abc.ABC):
    """A part the daemon's loop ticks: `round(now)` at most every `every` seconds, skipped
    while paused. An exception in a round becomes `error` (cleared by the next good round)."""

    name = "part"

    def __init__(self, every: float) -> None:
        self.every = every
        self.paused = threading.Event()
        self.error: str | None = None
        self.last_tick: float | None = None
        self.next_at = 0.0  # the loop's clock; 0 = never ran

    @property
    def ran(self) -> bool:
        return self.next_at > 0

    def start(self) -> None:  # noqa: B027 - an optional hook
        """Nothing to start: the first tick does the first round."""

    def stop(self) -> None:  # noqa: B027 - an optional hook
        """Nothing runs between ticks."""

    def tick(self, now: float) -> None:
        if self.paused.is_set() or now < self.next_at:
            return
        self.next_at = now + self.every
        self.last_tick = time.time()
        try:
            self.round(now)
        except Exception as exc:  # noqa: BLE001 - report, never take the daemon down
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("%s failed", self.name)
        else:
            self.error = None

    @abc.abstractmethod
    def round(self, now: float) -> None:
        """The part's periodic work."""

    def snapshot(self) -> object:
        """A part without figures of its own reports how it is doing."""
        return state_of(self)


class ThreadPart(abc.ABC):
    """A part with its own thread: `begin()` once, then `handle(event, now)` for each event in
    its inbox, or with None after `wait` seconds without one; nothing is handled while paused
    (events that arrive then are dropped: the next full pass finds what they were about).

    An exception that escapes ends the thread and becomes `error`, "<name> thread failed:
    <exception>; <consequence>", with the traceback in the log; `stop()` ends the thread,
    waiting at most `join_timeout` seconds for a pass in progress."""

    name = "part"
    consequence = "it does nothing until the daemon restarts"
    wants: frozenset[str] = frozenset()  # the watcher's changes this part hears

    def __init__(self, wait: float, join_timeout: float = 10.0) -> None:
        self.wait = wait
        self.join_timeout = join_timeout
        self.paused = threading.Event()
        self.inbox: queue.Queue[Event | None] = queue.Queue()  # None only wakes the thread
        self.error: str | None = None
        self.last_tick: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    # ---- what the daemon calls ------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread.ident is None:
            return  # never started
        self._thread.join(timeout=self.join_timeout)
        if self._thread.is_alive():
            log.warning("%s thread still busy %g s after stop; leaving it", self.name,
                        self.join_timeout)

    def tick(self, now: float) -> None:  # noqa: B027 - the Part interface
        """Nothing: the part's own thread does its work."""

    def notice(self, kind: str, path: Path) -> None:
        """A change the watcher saw (only the kinds in `wants` are delivered)."""
        self.inbox.put((kind, path))

    def wake(self) -> None:
        """Go round now rather than after `wait` seconds."""
        self.inbox.put(None)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> object:
        """A part without figures of its own reports how it is doing."""
        return state_of(self)

    # ---- for subclasses --------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait, but not past a stop; True when stopping."""
        return self._stop.wait(seconds)

    def drain(self) -> list[Event]:
        """The events waiting in the inbox now, without blocking."""
        events: list[Event] = []
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return events
            if item is not None:
                events.append(item)

    def begin(self) -> None:  # noqa: B027 - an optional hook
        """Once, when the thread starts (a first full pass, for instance)."""

    @abc.abstractmethod
    def handle(self, event: Event | None, now: float) -> None:
        """One round: the event that woke the part, or None; `now` is monotonic."""

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.last_tick = time.time()
            self.begin()
            while not self._stop.is_set():
                event = self._next()
                self.last_tick = time.time()
                if self._stop.is_set():
                    return
                if self.paused.is_set():
                    continue
                self.handle(event, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - report, never take the daemon down
            self.error = f"{self.name} thread failed: {exc!r}; {self.consequence}"
            log.exception("%s thread failed", self.name)

    def _next(self) -> Event | None:
        try:
            return self.inbox.get(timeout=self.wait)
        except queue.Empty:
            return None
