"""`guardctl uninstall-service`: undo install-service, for each kind it installs.

It removes only what install-service made (the unit file, the task, the service) after
stopping the guard the way `guardctl stop` would; the store, the state folder and the config
file stay.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from guard.commands import stop
from guard.commands.common import add_config_options
from guard.commands.install_service import Run, _unit_path
from guard.service import logontask, units

NAME = "uninstall-service"
HELP = ("remove what install-service installed: the systemd unit (--systemd), the logon task "
        "(--windows) or the Windows service (--windows-service)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--systemd", action="store_true", help="disable and remove the unit")
    kind.add_argument("--windows", action="store_true", help="delete the logon task")
    kind.add_argument("--windows-service", action="store_true",
                      help="stop and delete the Windows service and its event log source")
    parser.add_argument("--user", action="store_true",
                        help="systemd: the user unit (`systemctl --user`)")
    parser.add_argument("--output", metavar="PATH", help=argparse.SUPPRESS)
    add_config_options(parser, store=False)


def run(args: argparse.Namespace) -> int:
    if args.windows:
        return remove_task(args)
    if args.windows_service:
        try:
            from windows_service import install
        except ImportError as exc:
            print(f"guardctl: removing the Windows service needs pywin32 ({exc}), as installing "
                  "it did", file=sys.stderr)
            return 2
        return install.uninstall()
    path = _unit_path(args)
    assert path is not None  # no '-' here
    return remove_unit(path, args.user)


def _step(run: Run, command: list[str], tolerate: tuple[str, ...] = ()) -> bool:
    print("+ " + " ".join(command))
    try:
        done = run(command, capture_output=True, text=True)
    except OSError as exc:
        print(f"guardctl: cannot run {command[0]}: {exc}", file=sys.stderr)
        return False
    said = (done.stderr or done.stdout).strip()
    if done.returncode != 0 and not any(t in said for t in tolerate):
        print(f"guardctl: `{' '.join(command)}` failed ({done.returncode}): {said}",
              file=sys.stderr)
        return False
    return True


def remove_task(args: argparse.Namespace, run: Run = subprocess.run) -> int:
    """Stop the guard as `guardctl stop` does (the daemon ends its server; its relauncher and
    so the task end with it: Task Scheduler's End would kill the daemon and leave the server
    serving), then delete the task."""
    if stop.run(args) != 0:
        return 1
    if not _step(run, logontask.delete_command()):
        return 1
    print(f"removed the logon task {logontask.TASK_NAME}; the store, the state folder and the "
          "config file are untouched")
    return 0


def remove_unit(path: Path, user_unit: bool, run: Run = subprocess.run) -> int:
    """Disable and stop the unit, delete its file, reload systemd."""
    if not path.exists():
        print(f"guardctl: no unit at {path}" + ("" if user_unit else
              " (a user unit? pass --user)"), file=sys.stderr)
        return 1
    ctl = ["systemctl", "--user"] if user_unit else ["systemctl"]
    if not _step(run, ctl + ["disable", "--now", f"{units.SERVICE_NAME}.service"],
                 tolerate=("not loaded", "does not exist")):
        return 1
    try:
        path.unlink()
    except PermissionError:
        print(f"guardctl: cannot remove {path}: permission denied; a system unit needs root: "
              f"sudo {sys.executable} -m guard.cli uninstall-service --systemd",
              file=sys.stderr)
        return 1
    print(f"removed {path}")
    if not _step(run, ctl + ["daemon-reload"]):
        return 1
    print("the store, the state folder and the config file are untouched")
    return 0
