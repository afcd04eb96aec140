"""pywin32 stand-ins that replay what Windows and pywin32 do, for windows_service/ on Linux.

`FakeSCM` records every SetServiceStatus with the SERVICE_STATUS tuple the real call gets, and
fails a report that comes after SERVICE_STOPPED (SetServiceStatus's documentation: the first
"stopped" closes the handle; a later call may crash the process). `host_service` replays
pywin32's service_main (win32/src/PythonService.cpp): instantiate the class, report
START_PENDING, call SvcRun, and, when SvcRun returns, report SERVICE_STOPPED with code 0 (or,
when it raised, ERROR_SERVICE_SPECIFIC_ERROR with 0x20000001). `ServiceFramework` is pywin32's
own (win32serviceutil.py): its SvcRun reports RUNNING before SvcDoRun.
"""

from __future__ import annotations

import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Any

STOPPED, START_PENDING, STOP_PENDING, RUNNING = 1, 2, 3, 4
NAMES = {STOPPED: "stopped", START_PENDING: "start pending", STOP_PENDING: "stop pending",
         RUNNING: "running"}


class PyWinError(Exception):
    def __init__(self, winerror: int, funcname: str, strerror: str) -> None:
        super().__init__(winerror, funcname, strerror)
        self.winerror = winerror


class ProcessEnded(BaseException):
    """os._exit in the service process: nothing of the service runs after it."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class FakeSCM:
    statuses: list[tuple[int, ...]] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple[str, tuple, dict]] = field(default_factory=list)
    after_stopped: list[tuple[int, ...]] = field(default_factory=list)
    options: dict[tuple[str, str], Any] = field(default_factory=dict)
    installed: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    on_running: Any = None  # called at the moment RUNNING is reported

    def set_status(self, handle: Any, status: tuple[int, ...]) -> None:
        if any(s[1] == STOPPED for s in self.statuses):
            self.after_stopped.append(status)
            raise PyWinError(6, "SetServiceStatus", "The handle is invalid.")
        if status[1] == RUNNING and self.on_running is not None:
            self.on_running()
        self.statuses.append(tuple(status))

    def states(self) -> list[str]:
        return [NAMES[s[1]] for s in self.statuses]

    def record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def called(self, name: str) -> list[tuple[tuple, dict]]:
        return [(a, k) for n, a, k in self.calls if n == name]


def modules(scm: FakeSCM) -> dict[str, types.ModuleType]:
    """win32service, servicemanager, win32serviceutil, win32security over `scm`."""
    win32service = types.ModuleType("win32service")
    win32service.__dict__.update(
        SERVICE_STOPPED=STOPPED, SERVICE_START_PENDING=START_PENDING,
        SERVICE_STOP_PENDING=STOP_PENDING, SERVICE_RUNNING=RUNNING,
        SERVICE_WIN32_OWN_PROCESS=0x10, SERVICE_ACCEPT_STOP=1, SERVICE_ACCEPT_SHUTDOWN=4,
        SERVICE_ACCEPT_PAUSE_CONTINUE=2, SERVICE_AUTO_START=2, SERVICE_DEMAND_START=3,
        SetServiceStatus=scm.set_status, error=PyWinError)

    servicemanager = types.ModuleType("servicemanager")
    servicemanager.__dict__.update(
        RegisterServiceCtrlHandler=lambda name, handler, ex=False: f"handle:{name}",
        SetEventSourceName=lambda name, register=False: scm.record(
            "SetEventSourceName", name, register),
        LogInfoMsg=lambda m: scm.events.append(("info", m)),
        LogWarningMsg=lambda m: scm.events.append(("warning", m)),
        LogErrorMsg=lambda m: scm.events.append(("error", m)),
        Initialize=lambda *a: scm.record("Initialize", *a),
        PrepareToHostSingle=lambda klass: scm.record("PrepareToHostSingle", klass),
        StartServiceCtrlDispatcher=lambda: scm.record("StartServiceCtrlDispatcher"))

    class ServiceFramework:
        """pywin32's, as win32serviceutil.py has it."""

        def __init__(self, args: Any) -> None:
            self.ssh = servicemanager.RegisterServiceCtrlHandler(args[0], None, True)
            servicemanager.SetEventSourceName(self._svc_name_)  # type: ignore[attr-defined]
            self.checkPoint = 0

        def GetAcceptedControls(self) -> int:
            accepted = 0
            if hasattr(self, "SvcStop"):
                accepted |= 1
            if hasattr(self, "SvcShutdown"):
                accepted |= 4
            return accepted

        def ReportServiceStatus(self, serviceStatus: int, waitHint: int = 5000,
                                win32ExitCode: int = 0, svcExitCode: int = 0) -> None:
            accepted = 0 if serviceStatus == START_PENDING else self.GetAcceptedControls()
            if serviceStatus in (RUNNING, STOPPED):
                checkpoint = 0
            else:
                self.checkPoint += 1
                checkpoint = self.checkPoint
            scm.set_status(self.ssh, (0x10, serviceStatus, accepted, win32ExitCode,
                                      svcExitCode, checkpoint, waitHint))

        def SvcRun(self) -> None:
            self.ReportServiceStatus(RUNNING)
            self.SvcDoRun()  # type: ignore[attr-defined]
            self.ReportServiceStatus(STOP_PENDING)

    def install_service(cls_string: str, name: str, display: str, **kw: Any) -> None:
        scm.record("InstallService", cls_string, name, display, **kw)
        if name in scm.installed:
            raise PyWinError(1073, "CreateService", "The specified service already exists.")
        scm.installed.add(name)

    def stop_service(name: str) -> None:
        scm.record("StopService", name)
        if name not in scm.installed:
            raise PyWinError(1060, "OpenService", "The specified service does not exist.")
        if name not in scm.running:
            raise PyWinError(1062, "ControlService", "The service has not been started.")
        scm.running.discard(name)

    def remove_service(name: str) -> None:
        scm.record("RemoveService", name)
        scm.installed.discard(name)

    win32serviceutil = types.ModuleType("win32serviceutil")
    win32serviceutil.__dict__.update(
        ServiceFramework=ServiceFramework, InstallService=install_service,
        ChangeServiceConfig=lambda *a, **kw: scm.record("ChangeServiceConfig", *a, **kw),
        SetServiceCustomOption=lambda name, opt, value: scm.options.__setitem__(
            (name, opt), value),
        GetServiceCustomOption=lambda name, opt, default=None: scm.options.get(
            (name, opt), default),
        StopService=stop_service, RemoveService=remove_service,
        WaitForServiceStatus=lambda *a: scm.record("WaitForServiceStatus", *a),
        HandleCommandLine=lambda cls, argv=None: scm.record("HandleCommandLine", cls, argv))

    win32security = types.ModuleType("win32security")
    win32security.__dict__.update(
        POLICY_ALL_ACCESS=0xF0FFF,
        LsaOpenPolicy=lambda system, access: ("policy", system, access),
        LookupAccountName=lambda system, name: (f"sid:{name}", "domain", 1),
        LsaAddAccountRights=lambda policy, sid, rights: scm.record(
            "LsaAddAccountRights", sid, tuple(rights)),
        LsaClose=lambda policy: scm.record("LsaClose"))
    return {"win32service": win32service, "servicemanager": servicemanager,
            "win32serviceutil": win32serviceutil, "win32security": win32security}


def host_service(cls: Any, scm: FakeSCM, name: str = "mlflow-guard") -> tuple[Any, threading.Thread,
                                                                                 list]:
    """pywin32's service_main in a thread: returns the instance, the thread and a list that
    gets how it ended ("ended", code) for os._exit, ("returned",) or ("raised", exc)."""
    instance = cls([name])
    outcome: list = []

    def service_main() -> None:
        scm.set_status(instance.ssh, (0x10, START_PENDING, 0, 0, 0, 0, 5000))
        try:
            instance.SvcRun()
        except ProcessEnded as ended:
            outcome.append(("ended", ended.code))
            return
        except Exception as exc:  # noqa: BLE001 - the C host reports any exception
            outcome.append(("raised", exc))
            scm.set_status(instance.ssh, (0x10, STOPPED, 0, 1066, 0x20000001, 0, 0))
            return
        outcome.append(("returned",))
        scm.set_status(instance.ssh, (0x10, STOPPED, 0, 0, 0, 0, 0))

    thread = threading.Thread(target=service_main, daemon=True)
    thread.start()
    return instance, thread, outcome


def install(monkeypatch: Any, scm: FakeSCM) -> None:
    """Put the fakes in sys.modules and forget windows_service's modules, so the next import
    binds to the fakes; `end_process` raises ProcessEnded instead of ending the test run."""
    for name, module in modules(scm).items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("windows_service.service", "windows_service.install"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    import windows_service.service as service

    def end_process(code: int) -> None:
        raise ProcessEnded(code)

    monkeypatch.setattr(service, "end_process", end_process)
