"""What to tell a service manager (systemd, Windows' SCM), decided from the daemon's state.

Pure: the daemon passes its phase and the last health probe; the answer says whether to report
ready (once, when the MLflow server first answers health), whether to prove liveness now (a
watchdog ping once ready, a start-timeout extension before), and which status line to show.
Liveness is withheld while the server is up but failing probes (the supervisor should act
within `health_failures` probes; if it does not, the manager's watchdog does), in a crash
loop (the supervisor gave up, so the manager's own restart and start limits take over) and
while a part is stuck (a thread cannot be ended from inside: the manager restarts the daemon).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from guard.supervision.supervisor import Phase

# Phases in which the daemon is deliberately busy: waiting for a drive, (re)starting the server.
WORKING = frozenset({Phase.WAITING_STORE, Phase.STARTING, Phase.BACKOFF})


@dataclass(frozen=True)
class Told:
    """What the manager has been told so far."""
    ready: bool = False
    status: str = ""
    alive_at: float = float("-inf")
    stopping: bool = False


@dataclass(frozen=True)
class Advice:
    ready: bool = False      # report ready now (sent once)
    watchdog: bool = False   # liveness once ready: a watchdog ping
    extend: bool = False     # liveness before ready: extend the start timeout
    status: str | None = None  # a new status line, or None when unchanged
    stopping: bool = False   # report that the service is stopping (sent once)


class Reporter(Protocol):
    """A service manager's side of the conversation (systemd notify, Windows' SCM)."""
    every: float  # seconds between liveness reports

    def send(self, advice: Advice) -> None: ...


def status_line(phase: Phase, healthy: bool, url: str, message: str) -> str:
    """One short line for `systemctl status` or the services console."""
    if phase is Phase.RUNNING:
        return f"serving {url}" if healthy else f"{url} failing health probes"
    return f"{phase.value}: {message}" if message else phase.value


def advise(phase: Phase, healthy: bool, url: str, message: str, told: Told, now: float,
           every: float, stuck: bool = False) -> tuple[Advice, Told]:
    """The messages due now, and what will have been told once they are sent; `stuck`: a
    part of the daemon is stuck, so no liveness is proven."""
    line = status_line(phase, healthy, url, message)
    status = line if line != told.status else None
    if phase in (Phase.STOPPING, Phase.STOPPED):
        advice = Advice(status=status, stopping=not told.stopping)
        return advice, replace(told, status=line, stopping=True)
    serving = phase is Phase.RUNNING and healthy
    ready = serving and not told.ready
    alive = ((serving or phase in WORKING) and not stuck
             and (ready or now - told.alive_at >= every))
    advice = Advice(ready=ready, watchdog=alive and told.ready,
                    extend=alive and not told.ready and not ready, status=status)
    return advice, replace(told, ready=told.ready or ready, status=line,
                           alive_at=now if alive else told.alive_at)
