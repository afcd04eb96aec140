"""`guardctl install-service --windows-service` and its uninstall: the SCM side (pywin32).

What is installed and why is guard.service.windows (plain data, tested on any OS); this
module only applies it. The service runs as an account that owns the Synology Drive folder:
Windows needs that account's password (a Microsoft account's password, not a PIN) and the
"Log on as a service" right, which CreateService does not grant (error 1069 at the first
start); install grants it.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Callable

import servicemanager
import win32security
import win32service
import win32serviceutil

from guard.core.config import Config
from guard.core.runtime import interpreter
from guard.service.windows import (
    LOGON_RIGHT,
    SERVICE_NAME,
    failure_commands,
    service_arguments,
    start_command,
)
from windows_service.service import MlflowGuardService

CLASS = f"{MlflowGuardService.__module__}.{MlflowGuardService.__name__}"
ERROR_SERVICE_EXISTS = 1073
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
Run = Callable[..., "subprocess.CompletedProcess[str]"]


def lookup_name(account: str, computer: str) -> str:
    """`.\\name` (this computer's account, as the SCM accepts it) as LookupAccountName wants
    it: COMPUTER\\name."""
    return computer + account[1:] if account.startswith(".\\") else account


def grant_logon_right(account: str) -> None:
    """Give `account` the "Log on as a service" right (services.msc does this itself; the
    SCM's CreateService does not)."""
    # None is the local system (pywin32 takes it; its stubs say str)
    policy = win32security.LsaOpenPolicy(None, win32security.POLICY_ALL_ACCESS)  # type: ignore[arg-type]
    try:
        sid = win32security.LookupAccountName(
            None, lookup_name(account, os.environ.get("COMPUTERNAME", ".")))[0]
        win32security.LsaAddAccountRights(policy, sid, (LOGON_RIGHT,))
    finally:
        win32security.LsaClose(policy)  # type: ignore[arg-type]


def install(cfg: Config, account: str | None, run: Run = subprocess.run,
            ask: Callable[[str], str] = getpass.getpass) -> int:
    """Install (or update) the service for `cfg`, started automatically after boot."""
    password = ask(f"password of {account} (the service logs on as it; a Microsoft "
                   "account's password, not the PIN): ") if account else None
    python, description = interpreter(), MlflowGuardService._svc_description_
    try:
        win32serviceutil.InstallService(
            CLASS, SERVICE_NAME, MlflowGuardService._svc_display_name_,
            startType=win32service.SERVICE_AUTO_START, userName=account, password=password,
            exeName=python, exeArgs=service_arguments(), description=description,
            delayedstart=True)
    except Exception as exc:  # noqa: BLE001 - pywintypes.error: already installed
        if getattr(exc, "winerror", None) != ERROR_SERVICE_EXISTS:
            print(f"guardctl: cannot install the service: {exc}; run from an "
                  "Administrator PowerShell", file=sys.stderr)
            return 1
        win32serviceutil.ChangeServiceConfig(
            CLASS, SERVICE_NAME, startType=win32service.SERVICE_AUTO_START, userName=account,
            password=password, exeName=python, exeArgs=service_arguments(),
            description=description, delayedstart=True)
    win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "config", str(cfg.file))
    servicemanager.SetEventSourceName(SERVICE_NAME, True)  # registered now, as Administrator
    if account:
        try:
            grant_logon_right(account)
        except Exception as exc:  # noqa: BLE001 - pywintypes.error
            print(f"guardctl: could not give {account} the \"Log on as a service\" right "
                  f"({exc}): grant it in secpol.msc (Local Policies > User Rights Assignment) "
                  "or the service fails to start with error 1069", file=sys.stderr)
    for step in failure_commands():
        done = run(step, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"guardctl: `{' '.join(step)}` failed: {(done.stderr or done.stdout).strip()}"
                  "; the service will not restart after a failure", file=sys.stderr)
    print(f"installed the service {SERVICE_NAME}: {python} {service_arguments()} "
          f"(config {cfg.file}, account {account or 'LocalSystem'})")
    if not account:
        print("note: LocalSystem cannot see a user's Synology Drive folder or mapped drives; "
              r"reinstall with --account .\<the user who owns the folder>, or use the logon "
              "task (`guardctl install-service --windows`)")
    print(f"start it now: {' '.join(start_command())}   (it also starts after every boot); "
          f"remove it: guardctl uninstall-service --windows-service")
    return 0


def uninstall(run: Run = subprocess.run) -> int:
    """Stop the service if it runs, delete it and its event source."""
    try:
        win32serviceutil.StopService(SERVICE_NAME)
        win32serviceutil.WaitForServiceStatus(SERVICE_NAME, win32service.SERVICE_STOPPED, 120)
    except Exception as exc:  # noqa: BLE001 - pywintypes.error
        code = getattr(exc, "winerror", None)
        if code == ERROR_SERVICE_DOES_NOT_EXIST:
            print(f"guardctl: no service named {SERVICE_NAME} is installed", file=sys.stderr)
            return 1
        if code != ERROR_SERVICE_NOT_ACTIVE:
            print(f"guardctl: cannot stop the service: {exc}; run from an Administrator "
                  "PowerShell", file=sys.stderr)
            return 1
    try:
        win32serviceutil.RemoveService(SERVICE_NAME)  # also removes its event source
    except Exception as exc:  # noqa: BLE001 - pywintypes.error
        print(f"guardctl: cannot remove the service: {exc}; run from an Administrator "
              "PowerShell", file=sys.stderr)
        return 1
    print(f"removed the service {SERVICE_NAME} and its event log source; the store, the state "
          "folder and the config file are untouched")
    return 0
