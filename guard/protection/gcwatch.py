"""The gc watch part: `mlflow gc` processes aimed at this store, logged once each and shown
in status while they run (the vault puts back what they delete; `guardctl gc` is the way)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from guard.core.parts import TickPart
from guard.supervision.processes import GcProcess, gc_processes

log = logging.getLogger("guard.daemon")

GC_CHECK_INTERVAL = 5.0


@dataclass(frozen=True)
class GcFigures:
    """The gc watch's figures: the `mlflow gc` processes running now."""

    processes: tuple[GcProcess, ...] = ()
    error: str | None = None
    paused: bool = False


def newcomers(seen: list[GcProcess], found: list[GcProcess]) -> list[GcProcess]:
    """The processes in `found` not already in `seen`, by pid (pure)."""
    known = {p.pid for p in seen}
    return [p for p in found if p.pid not in known]


class GcWatch(TickPart):
    name = "gc"

    def __init__(self, store: str, port: int, every: float = GC_CHECK_INTERVAL,
                 find: Callable[[str, int], list[GcProcess]] = gc_processes) -> None:
        super().__init__(every=every)
        self.store, self.port, self.find = store, port, find
        self.seen: list[GcProcess] = []  # the gc processes running now

    def round(self, now: float) -> None:
        found = self.find(self.store, self.port)
        for proc in newcomers(self.seen, found):
            log.error("`mlflow gc` is running against this store: pid %s (user %s): %s",
                      proc.pid, proc.user, proc.command)
        self.seen = found

    def snapshot(self) -> GcFigures:
        return GcFigures(tuple(self.seen), self.error, self.paused.is_set())
