"""The pywin32 service class: translates SCM calls to guard.servicehost.ServiceHost.

Kept thin on purpose (it cannot run on the Linux CI): the state reports, the stop on shutdown
and the daemon's life are the host's logic, tested there with a fake manager.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys

import servicemanager
import win32service
import win32serviceutil

from guard.core.config import load_config
from guard.daemon.hosted import SERVICE_DAEMON
from guard.service.servicehost import RUNNING, START_PENDING, STOP_PENDING, STOPPED, ServiceHost

SERVICE_NAME = "mlflow-guard"
STATES = {START_PENDING: win32service.SERVICE_START_PENDING,
          RUNNING: win32service.SERVICE_RUNNING,
          STOP_PENDING: win32service.SERVICE_STOP_PENDING,
          STOPPED: win32service.SERVICE_STOPPED}


class _Manager:
    """guard.service.servicehost.ServiceManager over pywin32."""

    def __init__(self, service: MlflowGuardService) -> None:
        self.service = service

    def report(self, state: str, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        self.service.ReportServiceStatus(STATES[state], waitHint=wait_hint_ms,
                                         win32ExitCode=exit_code)

    def event(self, level: int, message: str) -> None:
        if level >= logging.ERROR:
            servicemanager.LogErrorMsg(message)
        elif level >= logging.WARNING:
            servicemanager.LogWarningMsg(message)
        else:
            servicemanager.LogInfoMsg(message)

    def log_handler(self) -> logging.Handler:
        handler = logging.handlers.NTEventLogHandler(SERVICE_NAME)
        handler.setLevel(logging.WARNING)
        return handler


class MlflowGuardService(win32serviceutil.ServiceFramework):
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = "MLflow Sync Guard"
    _svc_description_ = ("Runs one supervised MLflow server over the synced mlruns folder and "
                         "keeps that store safe to share (mlflow-sync-guard).")

    def __init__(self, args) -> None:
        super().__init__(args)
        self.host: ServiceHost | None = None

    def GetAcceptedControls(self) -> int:  # also hear a machine shutdown
        return super().GetAcceptedControls() | win32service.SERVICE_ACCEPT_SHUTDOWN

    def SvcDoRun(self) -> None:
        config = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "config")
        self.host = ServiceHost(load_config(config), _Manager(self), SERVICE_DAEMON)
        self.host.run()

    def SvcStop(self) -> None:
        if self.host is not None:
            self.host.stop()

    SvcShutdown = SvcStop


if __name__ == "__main__":
    if len(sys.argv) == 1:  # started by the SCM
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(MlflowGuardService)
        servicemanager.StartServiceCtrlDispatcher()
    else:
        win32serviceutil.HandleCommandLine(MlflowGuardService)
