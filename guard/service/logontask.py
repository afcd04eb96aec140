"""The Windows logon task: the default way to run the guard on a Windows workstation (pure).

A Task Scheduler task for the current user, as Syncthing's documentation recommends for a
per-user sync client: it starts at that user's logon with the user's own token
(InteractiveToken), so it needs no password and no "Log on as a service" right, and it sees the
user's Synology Drive folder and mapped drives, which a service account does not.
Why each setting is there (element names from the Task Scheduler schema, MS-TSCH 2.5):
- pythonw.exe runs it: no console window (the task's Hidden flag only hides it from the
  Task Scheduler list, where people should be able to find it, so it is not set).
- `--wait-for-store`: at logon Synology Drive may not have the folder ready yet.
- `--relaunch`: Task Scheduler's RestartOnFailure restarts a task only when it fails to
  *start* (a start condition not met, an action that cannot launch: MS-TSCH 2.5.4.2), not when
  the program exits with an error; the guard's own relauncher restarts the daemon after a
  failure, with the systemd unit's limits (guard.service.relaunch). RestartOnFailure stays set
  for the failures it does cover.
- ExecutionTimeLimit PT0S: the default (PT72H) would end the guard after three days.
- DisallowStartIfOnBatteries / StopIfGoingOnBatteries false: laptops are workstations too
  (both default to true).
- MultipleInstancesPolicy IgnoreNew: one guard per user; a second logon session does not
  start a second one (the daemon's own lock refuses it anyway).
The XML goes to `schtasks /Create /XML` as UTF-16 with a byte-order mark, the encoding Task
Scheduler itself exports.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass

TASK_NAME = "mlflow-guard"
NAMESPACE = "http://schemas.microsoft.com/windows/2004/02/mit/task"
RESTART_INTERVAL = "PT1M"   # the schema's minimum
RESTART_COUNT = 3


@dataclass(frozen=True)
class TaskSpec:
    pythonw: str        # the environment's windowless interpreter (pythonw.exe)
    config: str         # absolute path of the config file
    user: str           # DOMAIN\name of the account the task runs as (the current user)
    workdir: str        # the state folder: a folder that exists and the guard may write


def arguments(spec: TaskSpec) -> list[str]:
    """The daemon's command line after the interpreter."""
    return ["-m", "guard.cli", "run", "--config", spec.config, "--wait-for-store", "--relaunch"]


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def render(spec: TaskSpec) -> str:
    """The task's XML definition (as text; `encode` gives the bytes schtasks reads)."""
    task = ET.Element("Task", {"version": "1.2", "xmlns": NAMESPACE})
    info = _sub(task, "RegistrationInfo")
    _sub(info, "Author", spec.user)
    _sub(info, "Description", "mlflow-sync-guard: one supervised MLflow server over the synced "
                              "mlruns folder (guardctl install-service --windows). README.md, "
                              "\"Run on Windows\", explains each setting.")
    _sub(info, "URI", "\\" + TASK_NAME)
    trigger = _sub(_sub(task, "Triggers"), "LogonTrigger")
    _sub(trigger, "Enabled", "true")
    _sub(trigger, "UserId", spec.user)
    principal = _sub(_sub(task, "Principals"), "Principal", id="Author")
    _sub(principal, "UserId", spec.user)
    _sub(principal, "LogonType", "InteractiveToken")
    _sub(principal, "RunLevel", "LeastPrivilege")
    settings = _sub(task, "Settings")
    for tag, text in (("MultipleInstancesPolicy", "IgnoreNew"),
                      ("DisallowStartIfOnBatteries", "false"),
                      ("StopIfGoingOnBatteries", "false"),
                      ("AllowHardTerminate", "true"),
                      ("StartWhenAvailable", "false"),
                      ("RunOnlyIfNetworkAvailable", "false")):
        _sub(settings, tag, text)
    idle = _sub(settings, "IdleSettings")
    _sub(idle, "StopOnIdleEnd", "false")
    _sub(idle, "RestartOnIdle", "false")
    for tag, text in (("AllowStartOnDemand", "true"), ("Enabled", "true"),
                      ("Hidden", "false"), ("RunOnlyIfIdle", "false"), ("WakeToRun", "false"),
                      ("ExecutionTimeLimit", "PT0S"), ("Priority", "5")):
        _sub(settings, tag, text)
    restart = _sub(settings, "RestartOnFailure")
    _sub(restart, "Interval", RESTART_INTERVAL)
    _sub(restart, "Count", str(RESTART_COUNT))
    action = _sub(_sub(task, "Actions", Context="Author"), "Exec")
    _sub(action, "Command", spec.pythonw)
    _sub(action, "Arguments", subprocess.list2cmdline(arguments(spec)))
    _sub(action, "WorkingDirectory", spec.workdir)
    ET.indent(task)
    return ('<?xml version="1.0" encoding="UTF-16"?>\n'
            + ET.tostring(task, encoding="unicode") + "\n")


def encode(xml: str) -> bytes:
    """The bytes of the XML file for schtasks: UTF-16 (little-endian) with a byte-order mark."""
    return xml.replace("\n", "\r\n").encode("utf-16")


def create_command(xml_path: str) -> list[str]:
    """Register (or replace: /F) the task from its XML file."""
    return ["schtasks", "/Create", "/TN", TASK_NAME, "/XML", xml_path, "/F"]


def run_command() -> list[str]:
    return ["schtasks", "/Run", "/TN", TASK_NAME]


def delete_command() -> list[str]:
    return ["schtasks", "/Delete", "/TN", TASK_NAME, "/F"]


def query_command() -> list[str]:
    return ["schtasks", "/Query", "/TN", TASK_NAME]
