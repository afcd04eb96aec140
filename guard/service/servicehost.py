"""The daemon under a service manager other than systemd (Windows' service control manager).

The pywin32 class in windows_service/ only translates between the SCM and this host, so the
logic is tested on any OS with a fake manager: the daemon runs in a thread; the manager hears
"start pending" (with a wait hint, again and again while the daemon works towards a healthy
server or waits for the sync drive), "running" only once the MLflow server answers health,
"stop pending" while the server tree is ended, and "stopped" when nothing of it is left,
with the daemon's exit code. Nothing is reported after "stopped": Windows' SetServiceStatus
documentation says the first SERVICE_STOPPED closes the RPC handle and a later call can crash
the process (the pywin32 layer therefore ends the process right after it, before pywin32's
own host would report a second "stopped" with code 0).
The daemon comes from an injected `DaemonFactory` (guard.daemon.hosted.SERVICE_DAEMON): the
service layer sits below the daemon and does not import it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from guard.core.config import Config
from guard.service.readiness import Advice, Reporter

log = logging.getLogger("guard.service")

START_PENDING, RUNNING, STOP_PENDING, STOPPED = (
    "start pending", "running", "stop pending", "stopped")
EVERY = 5.0  # seconds between "start pending" reports; the wait hint covers three of them
ERROR_SERVICE_SPECIFIC_ERROR = 1066  # winerror.h: "the service has returned a service-specific
#                                      error code", the code itself in dwServiceSpecificExitCode


# Windows' numbers for the states and controls (winsvc.h); SetServiceStatus takes them as the
# SERVICE_STATUS tuple below, so the pywin32 layer passes `status()` through unchanged.
SERVICE_WIN32_OWN_PROCESS = 0x10
STATE_CODES = {STOPPED: 1, START_PENDING: 2, STOP_PENDING: 3, RUNNING: 4}
SERVICE_ACCEPT_STOP, SERVICE_ACCEPT_SHUTDOWN = 0x1, 0x4


def status(state: str, checkpoint: int, wait_hint_ms: int = 0,
           exit_code: int = 0) -> tuple[int, int, int, int, int, int, int]:
    """The SERVICE_STATUS for one report: (type, state, controls accepted, win32 exit code,
    service-specific exit code, checkpoint, wait hint). Stop and shutdown are accepted while
    starting too (pywin32's own reports accept nothing then): the daemon may wait for a sync
    drive for hours, and the service must still stop when asked. Pending states carry the
    caller's increasing checkpoint, the others 0."""
    accepted = (SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN
                if state in (START_PENDING, RUNNING) else 0)
    win32, specific = exit_codes(exit_code) if state == STOPPED else (0, 0)
    pending = state in (START_PENDING, STOP_PENDING)
    return (SERVICE_WIN32_OWN_PROCESS, STATE_CODES[state], accepted, win32, specific,
            checkpoint if pending else 0, wait_hint_ms if pending else 0)


def exit_codes(code: int) -> tuple[int, int]:
    """(dwWin32ExitCode, dwServiceSpecificExitCode) for the daemon's exit code: a non-zero
    win32 code is what makes the service's failure actions run (with the failure-actions flag
    set, guard.service.windows), and the daemon's own code travels in the specific one."""
    return (0, 0) if code == 0 else (ERROR_SERVICE_SPECIFIC_ERROR, code)


class ServiceManager(Protocol):
    def report(self, state: str, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        """Tell the manager the service's state (SetServiceStatus on Windows)."""

    def event(self, level: int, message: str) -> None:
        """Write one line to the system's event log."""


class EventLogHandler(logging.Handler):
    """The daemon's warnings and errors in the event log, through the manager's one event
    source (registered at install, so the log shows the text and not "the description for
    Event ID ... cannot be found")."""

    def __init__(self, manager: ServiceManager, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.manager = manager

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.manager.event(record.levelno, self.format(record))
        except Exception:  # noqa: BLE001 - logging must not take the daemon down
            self.handleError(record)


class HostedDaemon(Protocol):
    """What the host needs of a daemon: its URL, a stop flag, and a blocking run."""

    url: str
    stopping: threading.Event

    def run(self) -> int: ...


@dataclass(frozen=True)
class DaemonFactory:
    """How the host gets its daemon, given by the caller on top (the service layer sits below
    the daemon): `make(cfg, reporter, log_handlers)`, and the errors that mean the daemon
    cannot start (exit code 2, said as such) rather than a crash (exit code 1)."""

    make: Callable[[Config, Reporter, Sequence[logging.Handler]], HostedDaemon]
    cannot_start: tuple[type[BaseException], ...] = ()


class ServiceHost:
    """Runs one daemon for a service manager; `run` blocks, `stop` may come from any thread."""

    every = EVERY

    def __init__(self, cfg: Config, manager: ServiceManager, daemons: DaemonFactory) -> None:
        self.cfg = cfg
        self.manager = manager
        self.daemons = daemons
        self.daemon: HostedDaemon | None = None
        self.exit_code: int | None = None
        self._stop_asked = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()

    def _report(self, state: str, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        """One report to the manager; none after "stopped"."""
        with self._lock:
            if self._stopped:
                return
            if state == STOPPED:
                self._stopped = True
            self.manager.report(state, wait_hint_ms, exit_code)

    # readiness.Reporter: what the daemon's loop tells us
    def send(self, advice: Advice) -> None:
        if self._stop_asked.is_set():
            return  # stopping: "stop pending" stands until "stopped"
        if advice.ready:
            assert self.daemon is not None  # the daemon reports only from inside its run()
            self._report(RUNNING)
            self.manager.event(logging.INFO, f"serving MLflow at {self.daemon.url}")
        elif advice.extend:
            self._report(START_PENDING, wait_hint_ms=int(self.every * 3000))

    def run(self) -> int:
        """The service's main: start the daemon and return its exit code when it ends."""
        self._report(START_PENDING, wait_hint_ms=int(self.every * 3000))
        with self._lock:
            stop_first = self._stop_asked.is_set()
            if not stop_first:
                self.daemon = self.daemons.make(self.cfg, self, [EventLogHandler(self.manager)])
        if stop_first or self.daemon is None:
            self.exit_code = 0
            self._report(STOPPED)
            return 0
        try:
            code = self.daemon.run()
        except self.daemons.cannot_start as exc:
            self.manager.event(logging.ERROR, f"mlflow-guard cannot start: {exc}")
            code = 2
        except Exception as exc:  # noqa: BLE001 - the SCM must hear of any crash
            log.exception("daemon failed")
            self.manager.event(logging.ERROR, f"mlflow-guard failed: {exc!r}")
            code = 1
        self.exit_code = code
        self.manager.event(logging.INFO if code == 0 else logging.ERROR,
                           f"mlflow-guard stopped (exit code {code})")
        self._report(STOPPED, exit_code=code)
        return code

    def stop(self) -> None:
        """Stop or shutdown from the manager: the daemon ends the server tree, then `run`
        returns."""
        with self._lock:
            self._stop_asked.set()
            daemon = self.daemon
        self._report(STOP_PENDING, wait_hint_ms=int((self.cfg.server.stop_grace + 30) * 1000))
        if daemon is not None:
            daemon.stopping.set()
