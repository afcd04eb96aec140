"""The daemon under a service manager other than systemd (Windows' service control manager).

The pywin32 class in windows_service/ only translates between the SCM and this host, so the
logic is tested on any OS with a fake manager: the daemon runs in a thread; the manager hears
"start pending" (with a wait hint, again and again while the daemon works towards a healthy
server or waits for the sync drive), "running" only once the MLflow server answers health,
"stop pending" while the server tree is ended, and "stopped" when nothing of it is left.
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


class ServiceManager(Protocol):
    def report(self, state: str, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        """Tell the manager the service's state (SetServiceStatus on Windows)."""

    def event(self, level: int, message: str) -> None:
        """Write one line to the system's event log."""

    def log_handler(self) -> logging.Handler | None:
        """A handler that puts the daemon's warnings and errors into the event log."""


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
        self._lock = threading.Lock()

    # readiness.Reporter: what the daemon's loop tells us
    def send(self, advice: Advice) -> None:
        if advice.ready:
            assert self.daemon is not None  # the daemon reports only from inside its run()
            self.manager.report(RUNNING)
            self.manager.event(logging.INFO, f"serving MLflow at {self.daemon.url}")
        elif advice.extend and not self._stop_asked.is_set():
            self.manager.report(START_PENDING, wait_hint_ms=int(self.every * 3000))

    def run(self) -> int:
        """The service's main: start the daemon and return its exit code when it ends."""
        self.manager.report(START_PENDING, wait_hint_ms=int(self.every * 3000))
        handler = self.manager.log_handler()
        with self._lock:
            if self._stop_asked.is_set():
                self.manager.report(STOPPED)
                return 0
            self.daemon = self.daemons.make(self.cfg, self, [handler] if handler else [])
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
        self.manager.report(STOPPED, exit_code=code)
        return code

    def stop(self) -> None:
        """Stop or shutdown from the manager: the daemon ends the server tree, then `run`
        returns."""
        with self._lock:
            self._stop_asked.set()
            daemon = self.daemon
        self.manager.report(STOP_PENDING, wait_hint_ms=int((self.cfg.server.stop_grace + 30)
                                                           * 1000))
        if daemon is not None:
            daemon.stopping.set()
