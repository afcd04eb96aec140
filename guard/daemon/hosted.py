"""The daemon as a service manager runs it (guard.service.servicehost, the Windows service).

The service layer sits below the daemon, so it is handed this factory by the caller on top
(windows_service/service.py) instead of importing the daemon itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from guard.core.config import Config
from guard.daemon.loop import AlreadyRunning, Daemon, StartupError
from guard.service.readiness import Reporter
from guard.service.servicehost import DaemonFactory


def service_daemon(cfg: Config, reporter: Reporter,
                   log_handlers: Sequence[logging.Handler]) -> Daemon:
    """A daemon that waits for the store (a service may start before the sync drive mounts)
    and reports readiness to the manager instead of systemd."""
    return Daemon(cfg, wait_for_store=True, reporter=reporter, log_handlers=log_handlers)


SERVICE_DAEMON = DaemonFactory(service_daemon, cannot_start=(AlreadyRunning, StartupError))
