"""A part's life cycle under the server's rules (supervisor.py's policy): a pure state machine.

    RUNNING -> (its thread died / a round raised) -> BACKOFF -> due -> restarted -> RUNNING ...
    too many failures within restart.crash_loop_window -> CRASH_LOOP (until `guardctl restart`)
    RUNNING, a round without progress past the part's deadline -> STUCK -> progress -> RUNNING
    held by a condition outside the guard (a full disk, a read-only store) -> HELD, and
    the store away -> PAUSED: both shown, both the part's own business to get out of

A stuck thread cannot be ended from inside the process, so STUCK restarts nothing: the daemon
stops its watchdog pings and a service manager restarts the whole daemon. The daemon feeds
`step` what it saw of each part every turn and performs the restart it asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from guard.core.parts import PartPhase
from guard.supervision.supervisor import Policy, backoff_delay, strike

RUNNING, BACKOFF, CRASH_LOOP = PartPhase.RUNNING, PartPhase.BACKOFF, PartPhase.CRASH_LOOP
STUCK, HELD, PAUSED = PartPhase.STUCK, PartPhase.HELD, PartPhase.PAUSED


@dataclass(frozen=True)
class Seen:
    """What the daemon saw of a part this turn."""

    crashes: int = 0             # its rounds or threads that raised so far
    error: str | None = None     # the part's error now
    alive: bool = True           # its thread runs (a ticked part: always)
    idle: bool = False           # waiting for work
    last_tick: float | None = None  # wall time of its last round or progress
    deadline: float | None = None   # seconds a round may go without progress; None: no check
    held: str | None = None
    paused: bool = False


@dataclass(frozen=True)
class Life:
    phase: PartPhase = RUNNING
    crashes: int = 0                    # the part's crashes already counted
    failures: tuple[float, ...] = ()    # times of failures inside the crash-loop window
    streak: int = 0                     # failures since it last ran stably (the backoff)
    restarts: int = 0
    started_at: float | None = None     # its last restart
    next_start_at: float | None = None  # in BACKOFF: when it is restarted
    last_error: str | None = None       # kept after the restart, for the status


def failed(life: Life, error: str, now: float, policy: Policy) -> Life:
    """The part raised: back off, or give up on a crash loop (supervisor.failed's rules)."""
    recent, streak, loop = strike(life.failures, life.streak, now, policy)
    if loop:
        return replace(life, phase=CRASH_LOOP, failures=recent, streak=streak,
                       next_start_at=None, last_error=error)
    return replace(life, phase=BACKOFF, failures=recent, streak=streak, last_error=error,
                   next_start_at=now + backoff_delay(streak, policy))


def stuck(seen: Seen, now: float) -> bool:
    """A live thread busy in a round that has made no progress for longer than its deadline."""
    return (seen.deadline is not None and seen.alive and not seen.idle
            and seen.last_tick is not None and now - seen.last_tick > seen.deadline)


def step(life: Life, seen: Seen, now: float, policy: Policy) -> tuple[Life, bool]:
    """The part's life after this look at it, and whether to restart it now. A part due for a
    restart waits while the store is away (its first pass must not run over a lost store)."""
    if seen.crashes > life.crashes:
        life = failed(replace(life, crashes=seen.crashes), seen.error or "it failed", now,
                      policy)
    if life.phase is CRASH_LOOP:
        return life, False
    if life.phase is BACKOFF:
        if seen.paused or life.next_start_at is None or now < life.next_start_at:
            return life, False
        return replace(life, phase=RUNNING, restarts=life.restarts + 1, started_at=now,
                       next_start_at=None), True
    streak = (0 if life.started_at is not None and now - life.started_at >= policy.stable_after
              else life.streak)
    phase = (STUCK if stuck(seen, now) else HELD if seen.held else PAUSED if seen.paused
             else RUNNING)
    return replace(life, phase=phase, streak=streak), False


def resumed(life: Life, now: float) -> Life:
    """`guardctl restart`: a part that failed forgets its failures and is restarted at once."""
    if life.phase not in (BACKOFF, CRASH_LOOP):
        return life
    return replace(life, phase=BACKOFF, failures=(), streak=0, next_start_at=now)


def runs(life: Life) -> bool:
    """Whether a ticked part gets its rounds (not while it waits for a restart)."""
    return life.phase not in (BACKOFF, CRASH_LOOP)
