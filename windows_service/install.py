"""`guardctl install-service --windows`: register the service with the SCM (pywin32)."""

from __future__ import annotations

import getpass
import subprocess
import sys

import win32service
import win32serviceutil

from guard.core.config import Config
from windows_service.service import SERVICE_NAME, MlflowGuardService

CLASS = f"{MlflowGuardService.__module__}.{MlflowGuardService.__name__}"


def install(cfg: Config, account: str | None) -> int:
    """Install (or update) the service for `cfg`, started automatically after boot."""
    password = None
    if account:
        password = getpass.getpass(f"password of {account} (the service logs on as it): ")
    try:
        win32serviceutil.InstallService(
            CLASS, SERVICE_NAME, MlflowGuardService._svc_display_name_,
            startType=win32service.SERVICE_AUTO_START, userName=account, password=password,
            description=MlflowGuardService._svc_description_, delayedstart=True)
    except Exception as exc:  # noqa: BLE001 - pywintypes.error: already installed
        if getattr(exc, "winerror", None) != 1073:  # ERROR_SERVICE_EXISTS
            print(f"guardctl: cannot install the service: {exc}; run from an "
                  "Administrator prompt", file=sys.stderr)
            return 1
        win32serviceutil.ChangeServiceConfig(
            CLASS, SERVICE_NAME, startType=win32service.SERVICE_AUTO_START, userName=account,
            password=password, description=MlflowGuardService._svc_description_,
            delayedstart=True)
    win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "config", str(cfg.file))
    # Restart after a crash: 10 s, then 60 s; the failure count resets after a day.
    subprocess.run(["sc.exe", "failure", SERVICE_NAME, "reset=", "86400",
                    "actions=", "restart/10000/restart/60000/restart/60000"], check=False)
    print(f"installed the service {SERVICE_NAME} (config {cfg.file}, account "
          f"{account or 'LocalSystem'})")
    if not account:
        print("note: LocalSystem cannot see a user's Synology Drive folder; reinstall with "
              r"--account .\<the user who owns the folder>")
    print(f"start it now: sc.exe start {SERVICE_NAME}   (it also starts after every boot)")
    return 0
