"""The pywin32 service class: translates SCM calls to guard.service.servicehost.ServiceHost.

Kept thin on purpose (it cannot run on the Linux CI; tests/windows_service replays pywin32's
calls with fake modules): the state reports, the stop on shutdown and the daemon's life are the
host's logic. Three things differ from a plain pywin32 service, each for a reason found in
pywin32's source (win32serviceutil.py, PythonService.cpp):
- SvcRun is our own: pywin32's reports RUNNING before it calls SvcDoRun, so Windows would
  hear "running" before the MLflow server answers.
- Every status goes through SetServiceStatus directly (guard.service.servicehost.status):
  pywin32's ReportServiceStatus accepts no control while starting, so a service waiting for
  its sync drive could not be stopped.
- After "stopped" (with the daemon's exit code) the process ends at once: when SvcRun returns,
  pywin32's host reports SERVICE_STOPPED again with code 0, which would lose the exit code (and
  a second "stopped" may crash the process, says SetServiceStatus's documentation).
The service runs under the environment's own python.exe (`python.exe -m
windows_service.service`), not pythonservice.exe: see windows_service/install.py.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable

import servicemanager
import win32service
import win32serviceutil

from guard.core.config import ConfigError, load_config
from guard.daemon.hosted import SERVICE_DAEMON
from guard.service.servicehost import STOPPED, ServiceHost, status
from guard.service.windows import SERVICE_NAME


class _Manager:
    """guard.service.servicehost.ServiceManager over pywin32."""

    def __init__(self, service: MlflowGuardService) -> None:
        self.service = service
        self.checkpoint = 0

    def report(self, state: str, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        self.checkpoint += 1
        win32service.SetServiceStatus(
            self.service.ssh, status(state, self.checkpoint, wait_hint_ms, exit_code))

    def event(self, level: int, message: str) -> None:
        if level >= logging.ERROR:
            servicemanager.LogErrorMsg(message)
        elif level >= logging.WARNING:
            servicemanager.LogWarningMsg(message)
        else:
            servicemanager.LogInfoMsg(message)


def end_process(code: int) -> None:
    """End the process right after "stopped" (a seam: the tests' fake host replaces it)."""
    logging.shutdown()
    os._exit(code)


class MlflowGuardService(win32serviceutil.ServiceFramework):
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = "MLflow Sync Guard"
    _svc_description_ = ("Runs one supervised MLflow server over the synced mlruns folder and "
                         "keeps that store safe to share (mlflow-sync-guard).")

    def __init__(self, args: Iterable[str]) -> None:
        super().__init__(args)
        self.host: ServiceHost | None = None
        self.manager = _Manager(self)
        self._stop_early = threading.Event()

    def SvcRun(self) -> None:
        try:
            config = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "config")
            cfg = load_config(config)
        except (ConfigError, OSError) as exc:
            self.manager.event(logging.ERROR, f"mlflow-guard cannot start: {exc}")
            self.manager.report(STOPPED, exit_code=2)
            end_process(2)
            return
        self.host = ServiceHost(cfg, self.manager, SERVICE_DAEMON)
        if self._stop_early.is_set():
            self.host.stop()
        end_process(self.host.run())

    def SvcStop(self) -> None:
        if self.host is not None:
            self.host.stop()
        else:
            self._stop_early.set()

    SvcShutdown = SvcStop


def main(argv: list[str]) -> None:
    """`python.exe -m windows_service.service`, as the SCM starts it: host this one service
    in this process (servicemanager works from python.exe as from pythonservice.exe)."""
    if len(argv) == 1:
        servicemanager.Initialize(SERVICE_NAME)  # the event source registered at install
        servicemanager.PrepareToHostSingle(MlflowGuardService)
        servicemanager.StartServiceCtrlDispatcher()
    else:
        win32serviceutil.HandleCommandLine(MlflowGuardService, argv=argv)


if __name__ == "__main__":
    main(sys.argv)
