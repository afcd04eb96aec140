"""The server's life cycle as a pure state machine, after supervisor's process states.

    WAITING_STORE -> STARTING -> RUNNING -> (exit / K failed probes) -> BACKOFF -> STARTING ...
    too many failures within the window -> CRASH_LOOP (no more restarts until `guardctl restart`)
    store lost (any phase) -> WAITING_STORE -> store back -> BACKOFF, due at once
    daemon shutting down -> STOPPING -> STOPPED

Every function takes the state, an event and the current time and returns the new state; the
daemon loop performs the side effects (start, end tree). No clocks, processes or disks here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Phase(str, enum.Enum):
    WAITING_STORE = "waiting for store"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    CRASH_LOOP = "crash loop"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Policy:
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    crash_loop_count: int = 5
    crash_loop_window: float = 300.0
    startup_timeout: float = 90.0
    health_failures: int = 3
    stable_after: float = 60.0


@dataclass(frozen=True)
class State:
    phase: Phase = Phase.STOPPED
    starts: int = 0
    last_reason: str | None = None
    failures: tuple[float, ...] = ()   # times of failures inside the crash-loop window
    streak: int = 0                    # failures since the server was last stable (backoff)
    failed_probes: int = 0
    started_at: float | None = None
    healthy_since: float | None = None
    next_start_at: float | None = None

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)


def backoff_delay(streak: int, policy: Policy) -> float:
    """1 s, 2 s, 4 s ... capped: the wait before restart number `streak` (1-based)."""
    if streak <= 0:
        return 0.0
    return min(policy.backoff_max, policy.backoff_initial * 2 ** (streak - 1))


def started(s: State, now: float) -> State:
    return replace(s, phase=Phase.STARTING, starts=s.starts + 1, started_at=now,
                   healthy_since=None, failed_probes=0, next_start_at=None)


def strike(failures: tuple[float, ...], streak: int, now: float, policy: Policy
           ) -> tuple[tuple[float, ...], int, bool]:
    """One more failure: the failures still inside the crash-loop window, the backoff streak,
    and whether that makes a crash loop (the rule the server and every part share)."""
    recent = tuple(t for t in failures if now - t < policy.crash_loop_window) + (now,)
    return recent, streak + 1, len(recent) >= policy.crash_loop_count


def failed(s: State, reason: str, now: float, policy: Policy) -> State:
    """The server died or stopped answering: back off, or give up on a crash loop."""
    recent, streak, loop = strike(s.failures, s.streak, now, policy)
    if loop:
        return replace(s, phase=Phase.CRASH_LOOP, failures=recent, streak=streak,
                       last_reason=(f"crash loop: {len(recent)} failures within "
                                    f"{policy.crash_loop_window:g} s, last: {reason}; "
                                    "run `guardctl restart` once the cause is fixed"),
                       next_start_at=None, healthy_since=None, failed_probes=0)
    return replace(s, phase=Phase.BACKOFF, failures=recent, streak=streak, last_reason=reason,
                   next_start_at=now + backoff_delay(streak, policy), healthy_since=None,
                   failed_probes=0)


def probed(s: State, ok: bool, now: float, policy: Policy) -> tuple[State, bool]:
    """Apply one health probe; returns the new state and whether to end the server tree."""
    if s.phase is Phase.STARTING:
        if ok:
            return replace(s, phase=Phase.RUNNING, healthy_since=now, failed_probes=0), False
        if s.started_at is not None and now - s.started_at > policy.startup_timeout:
            return failed(s, f"not healthy {policy.startup_timeout:g} s after start", now,
                          policy), True
        return s, False
    if s.phase is not Phase.RUNNING:
        return s, False
    if ok:
        streak = 0 if (s.healthy_since is not None
                       and now - s.healthy_since >= policy.stable_after) else s.streak
        return replace(s, failed_probes=0, streak=streak), False
    probes = s.failed_probes + 1
    if probes >= policy.health_failures:
        return failed(s, f"{probes} health probes in a row failed", now, policy), True
    return replace(s, failed_probes=probes), False


def exited(s: State, code: int | None, now: float, policy: Policy) -> State:
    if s.phase not in (Phase.STARTING, Phase.RUNNING):
        return s
    return failed(s, f"server exited with code {code}", now, policy)


def due(s: State, now: float) -> bool:
    """True when the daemon should start the server now."""
    if s.phase is Phase.STOPPED and s.starts == 0:
        return True
    return s.phase is Phase.BACKOFF and s.next_start_at is not None and now >= s.next_start_at


def resumed(s: State, now: float, reason: str = "restart requested") -> State:
    """`guardctl restart`: forget past failures and start again at once; `reason` says why
    (the last reason `guardctl status` shows)."""
    return replace(s, phase=Phase.BACKOFF, failures=(), streak=0, next_start_at=now,
                   last_reason=reason)


def healthy(s: State) -> bool:
    return s.phase is Phase.RUNNING


def waiting_for_store(s: State, reason: str | None = None) -> State:
    """The store is missing or empty (a drive not mounted yet): no server until it is there.
    Only the start count and the last reason (or `reason`) are kept: the failures of a server
    over a store that went away say nothing about the next one."""
    return State(phase=Phase.WAITING_STORE, starts=s.starts,
                 last_reason=s.last_reason if reason is None else reason)


def store_lost(s: State, detail: str) -> State:
    """The store vanished under a server (an unmounted drive); already waiting: no change."""
    if s.phase is Phase.WAITING_STORE:
        return s
    return waiting_for_store(s, f"store lost: {detail}")


def store_back(s: State, now: float) -> State:
    """The store is usable again after a wait: start at once, as after `guardctl restart`
    (but nobody asked: the last reason says the store came back)."""
    if s.phase is not Phase.WAITING_STORE:
        return s
    return resumed(s, now, "the store came back")


def stopping(s: State) -> State:
    """The daemon is shutting down: the server tree is being ended; nothing restarts."""
    return State(phase=Phase.STOPPING, starts=s.starts, last_reason=s.last_reason)


def stopped(s: State) -> State:
    """The daemon has ended the server tree and is about to exit."""
    return State(phase=Phase.STOPPED, starts=s.starts, last_reason=s.last_reason)
