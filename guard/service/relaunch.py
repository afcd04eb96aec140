"""`guardctl run --relaunch`: restart the daemon after a failure where no service manager does.

Under systemd, Restart=on-failure does this; under Windows' service manager the failure
actions do. Task Scheduler does not: its RestartOnFailure covers only a task that could not
start (MS-TSCH 2.5.4.2), so the logon task runs the daemon under this small loop. The policy
is systemd's, from the unit the guard writes (guard.service.units): a failed daemon is started
again after RESTART_SEC; after BURST failures within WINDOW seconds the loop gives up and exits
with the daemon's code, so a daemon that cannot start does not spin forever. A daemon that
exits 0 (`guardctl stop`, a signal) ends the loop: stopping is not a failure; nor is a stop
asked while the loop waits to start it again (exit 0 then too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from guard.service.units import RESTART_SEC, START_LIMIT_BURST, START_LIMIT_INTERVAL_SEC

log = logging.getLogger("guard.service")


@dataclass(frozen=True)
class Decision:
    wait: float | None      # seconds until the next start; None: give up
    reason: str


def after_exit(code: int, failures: Sequence[float], now: float) -> Decision:
    """What to do when the daemon exited with `code`; `failures` are the times of earlier
    failures (this one not included)."""
    if code == 0:
        return Decision(None, "the daemon stopped (exit code 0)")
    recent = [t for t in failures if now - t < START_LIMIT_INTERVAL_SEC] + [now]
    if len(recent) >= START_LIMIT_BURST:
        return Decision(None, f"the daemon failed {len(recent)} times within "
                              f"{START_LIMIT_INTERVAL_SEC} s (last exit code {code}): giving up; "
                              "`guardctl doctor` and the log in the state folder say why")
    return Decision(RESTART_SEC, f"the daemon failed (exit code {code}); starting it again in "
                                 f"{RESTART_SEC} s")


def keep_running(start: Callable[[], int], sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 stopping: Callable[[], bool] = lambda: False) -> int:
    """Run `start()` (which runs the daemon to its end and returns its exit code) again after
    each failure, as `after_exit` decides; returns the last exit code."""
    failures: list[float] = []
    while True:
        code = start()
        now = clock()
        decision = after_exit(code, failures, now)
        if code != 0:
            failures.append(now)
        if decision.wait is None or stopping():
            (log.info if code == 0 else log.error)("relaunch: %s", decision.reason)
            return code
        log.warning("relaunch: %s", decision.reason)
        sleep(decision.wait)
        if stopping():  # asked to stop while no daemon ran: a clean end
            log.info("relaunch: stopped on request while waiting to start the daemon again")
            return 0
