"""The Windows service's definition as plain data: its command, failure actions, event source.

windows_service/install.py (pywin32, Windows only) applies these; keeping them here lets the
tests check them on any OS. Why:
- The service runs `python.exe -m windows_service.service` with the environment's own
  interpreter, not pywin32's pythonservice.exe: under pythonservice.exe `sys.executable` is
  not a Python that can start `mlflow server`, and pywin32's maintainers call services from a
  virtual environment with pythonservice.exe fragile (it needs pywin32's post-install, which
  pywin32's README says not to run inside a venv). servicemanager hosts the service from
  python.exe as well.
- Failure actions restart the service 10 s, then 60 s after a failure; the count resets after a
  day. The failure-actions flag makes them apply to a service that reports "stopped" with a
  non-zero exit code (the guard's failures), not only to a crashed process.
- The event source is registered at install (the service's account usually may not write that
  registry key) with servicemanager's message file, and removed at uninstall.
"""

from __future__ import annotations

SERVICE_NAME = "mlflow-guard"
MODULE = "windows_service.service"
RESET_SEC = 86400
RESTART_DELAYS_MS = (10_000, 60_000, 60_000)
LOGON_RIGHT = "SeServiceLogonRight"   # "Log on as a service"


def service_arguments() -> str:
    """The arguments after python.exe in the service's command line."""
    return f"-m {MODULE}"


def failure_commands(name: str = SERVICE_NAME) -> list[list[str]]:
    """The sc.exe commands that set the failure actions and their flag."""
    actions = "/".join(f"restart/{ms}" for ms in RESTART_DELAYS_MS)
    return [["sc.exe", "failure", name, "reset=", str(RESET_SEC), "actions=", actions],
            ["sc.exe", "failureflag", name, "1"]]


def start_command(name: str = SERVICE_NAME) -> list[str]:
    return ["sc.exe", "start", name]


def stop_command(name: str = SERVICE_NAME) -> list[str]:
    return ["sc.exe", "stop", name]
