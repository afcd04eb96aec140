"""The daemon's parts: one interface for every duty, and the two ways a part runs.

A part (the server keeper, heartbeats, gc watch, rewriting, conflicts, vault, the watcher) is
started, then either ticked by the daemon's loop (`TickPart`: short, periodic work) or runs its
own thread (`ThreadPart`: passes that take long, fed by watcher events); it is paused while the
store is away, stopped at shutdown, and says what it is doing through `snapshot()`. A part whose
work raised keeps the error (the traceback goes to the log) instead of taking the daemon down,
and `last_tick` says when it last went round, so a part that hangs can be told from an idle one.

The daemon supervises both kinds alike (guard.supervision.partlife decides): `crashes` counts
the rounds or threads that raised, `restart()` brings a failed part back (its state, such as an
index, kept), `deadline` is how long a thread's round may go without `progress()` before it
counts as stuck, and `held` names a condition outside the guard (a full disk, a read-only
store) that keeps the part from working until it clears.
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

from guard.core.strenum import StrEnum

log = logging.getLogger("guard.daemon")

Event = tuple[str, Path]  # (a watch.Change, the path it is about)


# A thread's round that goes this long without `progress()` is stuck, unless the part allows more.
DEADLINE_MIN = 60.0


class PartPhase(StrEnum):
    """Where a part is in its life (guard.supervision.partlife); all but RUNNING are unhealthy."""

    RUNNING = "running"
    BACKOFF = "backoff"        # it failed; restarted after a wait that doubles each time
    CRASH_LOOP = "crash loop"  # it failed too often: not restarted until `guardctl restart`
    STUCK = "stuck"            # its thread made no progress past its deadline
    HELD = "held"              # a condition outside the guard stops it (disk full, read-only)
    PAUSED = "paused"          # the store is away


@dataclass(frozen=True)
class PartState:
    """How a part is doing, whatever its work: an entry of the status's "parts" section."""

    error: str | None = None
    paused: bool = False
    last_tick: float | None = None
    state: PartPhase = PartPhase.RUNNING
    held: str | None = None
    restarts: int = 0
    last_error: str | None = None        # what made it fail last, kept after a restart
    next_start_at: float | None = None   # in backoff: when it is restarted


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


class Supervised(Part, Protocol):
    """A part the daemon restarts when it fails (the server keeper supervises itself)."""

    held: str | None    # a condition outside the guard that stops it; None while there is none
    crashes: int        # rounds or threads that raised so far
    deadline: float | None  # seconds without progress before it is stuck; None: never checked
    idle: bool          # waiting for work: never stuck

    @property
    def alive(self) -> bool: ...

    def restart(self) -> None:
        """Work again after a failure, keeping what the part knows."""


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

    deadline: float | None = None  # its rounds run in the daemon's loop: a hang stops the loop
    idle = False

    def __init__(self, every: float) -> None:
        self.every = every
        self.paused = threading.Event()
        self.error: str | None = None
        self.held: str | None = None
        self.crashes = 0
        self.last_tick: float | None = None
        self.next_at = 0.0  # the loop's clock; 0 = due now
        self._ran = False

    @property
    def ran(self) -> bool:
        return self._ran

    @property
    def alive(self) -> bool:
        """Always: a failed round ends nothing, the daemon only stops ticking it a while."""
        return True

    def restart(self) -> None:
        """The next tick does a round at once."""
        self.next_at = 0.0

    def start(self) -> None:  # noqa: B027 - an optional hook
        """Nothing to start: the first tick does the first round."""

    def stop(self) -> None:  # noqa: B027 - an optional hook
        """Nothing runs between ticks."""

    def tick(self, now: float) -> None:
        if self.paused.is_set() or now < self.next_at:
            return
        self.next_at = now + self.every
        self._ran = True
        self.last_tick = time.time()
        try:
            self.round(now)
        except Exception as exc:  # noqa: BLE001 - report, never take the daemon down
            self.error = f"{type(exc).__name__}: {exc}"
            self.crashes += 1
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
    <exception>; <consequence>", with the traceback in the log, until `restart()` gives the
    part a new thread; `stop()` ends the thread, waiting at most `join_timeout` seconds for a
    pass in progress. A round that makes no `progress()` for `deadline` seconds is stuck, so a
    long pass calls it as it goes; waiting for events (`idle`) is never stuck."""

    name = "part"
    consequence = "it does nothing until the daemon restarts"
    wants: frozenset[str] = frozenset()  # the watcher's changes this part hears

    def __init__(self, wait: float, join_timeout: float = 10.0) -> None:
        self.wait = wait
        self.join_timeout = join_timeout
        self.paused = threading.Event()
        self.inbox: queue.Queue[Event | None] = queue.Queue()  # None only wakes the thread
        self.error: str | None = None
        self.held: str | None = None
        self.crashes = 0
        self.deadline: float | None = DEADLINE_MIN
        self.idle = False  # waiting for an event or `wait` seconds: not working, so not stuck
        self.last_tick: float | None = None
        self._stop = threading.Event()
        self._thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name=self.name, daemon=True)

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

    def restart(self) -> None:
        """A new thread for a part whose thread failed: `begin()` again (a full pass finds what
        happened meanwhile, so the events that waited are dropped), then rounds as before; what
        the part knows (an index, its counts) is kept. Nothing while it runs or is stopping."""
        if self._thread.ident is not None:  # a failed thread is ending: it counts its crash last
            self._thread.join(timeout=1.0)
        if self._thread.is_alive() or self._stop.is_set():
            return
        self.drain()
        self.error = None
        self._thread = self._new_thread()
        self._thread.start()

    def tick(self, now: float) -> None:  # noqa: B027 - the Part interface
        """Nothing: the part's own thread does its work."""

    def notice(self, kind: str, path: Path) -> None:
        """A change the watcher saw (only the kinds in `wants` are delivered); dropped while a
        failed part waits for its restart, whose first pass finds it."""
        if self._thread.ident is not None and not self._thread.is_alive():
            return
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
        """Wait, but not past a stop; True when stopping. A part that waits on purpose is
        not stuck: the wait counts as progress."""
        self.progress()
        stopping = self._stop.wait(seconds)
        self.progress()
        return stopping

    def progress(self) -> None:
        """Say the part is working (each file of a long pass): it is not stuck."""
        self.last_tick = time.time()

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
        """When the thread starts, and again after a restart (a full pass, for instance)."""

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
            self.crashes += 1  # last: the daemon restarts the part once it sees this

    def _next(self) -> Event | None:
        self.idle = True
        try:
            return self.inbox.get(timeout=self.wait)
        except queue.Empty:
            return None
        finally:
            self.last_tick = time.time()  # before `idle` clears: a long wait is not a hang
            self.idle = False
