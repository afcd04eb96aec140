"""A part that records what its thread is handed (tests of parts and of the watcher's fan-out)."""

from __future__ import annotations

import threading

from guard.core.parts import ThreadPart
from guard.core.watch import Change


class Recorder(ThreadPart):
    """A part that records what its thread was handed."""

    name = "recorder"
    consequence = "nothing is recorded until restart"
    wants = frozenset({Change.FILE, Change.GONE})

    def __init__(self, wait: float = 0.05, join_timeout: float = 2.0) -> None:
        super().__init__(wait=wait, join_timeout=join_timeout)
        self.begun = 0
        self.handled: list = []
        self.fail_on: str | None = None
        self.block = threading.Event()

    def begin(self) -> None:
        self.begun += 1

    def handle(self, event, now: float) -> None:
        if event is not None and event[1].name == self.fail_on:
            raise RuntimeError("boom")
        if event is not None and event[1].name == "slow":
            self.block.wait(10)
        self.handled.append(event)

    def events(self) -> list:
        return [e for e in self.handled if e is not None]
