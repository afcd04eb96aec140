"""systemd unit files for the daemon, rendered from plain data (pure).

One renderer writes both the shipped examples in systemd/ and what `guardctl install-service
--systemd` installs, so they cannot drift apart. Why each setting is there:
- Type=notify: the daemon reports READY=1 only once the MLflow server answers /health, pings
  WATCHDOG=1 while it stays healthy, and extends the start timeout while it waits for a late
  sync drive (`--wait-for-store`), so a hung start still fails after TimeoutStartSec.
- KillMode=mixed: SIGTERM reaches the daemon alone, which ends the server tree in order; after
  TimeoutStopSec whatever is left of the cgroup gets SIGKILL, so no orphan survives the unit.
- ProtectSystem=strict: everything is read-only except the store, the state folder and the
  vault. A leading '-' lets the unit start while a drive is not mounted yet.
- A user unit keeps only NoNewPrivileges: the namespace options need unprivileged user
  namespaces there, which some distributions (Ubuntu 24.04's AppArmor default) refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVICE_NAME = "mlflow-guard"
WATCHDOG_SEC = 60
START_TIMEOUT_SEC = 120
RESTART_SEC = 10
# systemd's start limit, which `guardctl run --relaunch` (guard.service.relaunch) applies too
START_LIMIT_INTERVAL_SEC = 600
START_LIMIT_BURST = 5


@dataclass(frozen=True)
class UnitSpec:
    python: str                 # the interpreter that has mlflow-sync-guard installed
    config: str                 # absolute path of the config file
    writable: tuple[str, ...]   # store, state folder, vault
    user: str | None = None     # system unit: the account owning the sync folder; None: user unit
    stop_grace: float = 10.0    # server.stop_grace: how long the daemon gives the server tree


def quote(word: str, command: bool = False) -> str:
    """One word of a unit-file command line or path list: '%' (and in a command '$') doubled,
    quoted when needed."""
    word = word.replace("%", "%%")
    if command:
        word = word.replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(spec: UnitSpec) -> str:
    """The unit file's text."""
    system = spec.user is not None
    command = " ".join(quote(w, command=True) for w in (
        spec.python, "-m", "guard.cli", "run", "--config", spec.config, "--wait-for-store"))
    stop_timeout = int(spec.stop_grace * 2 + 30)
    lines = [
        f"# {SERVICE_NAME} ({'system' if system else 'user'} unit). `guardctl install-service "
        f"--systemd{'' if system else ' --user'}` writes it with this machine's",
        "# interpreter, config and paths; README.md, \"Run as a service\", explains each part.",
        "[Unit]",
        "Description=MLflow sync guard: one supervised MLflow server over the synced store",
    ]
    if system:
        lines += ["Wants=network-online.target", "After=network-online.target remote-fs.target"]
    lines += [
        f"StartLimitIntervalSec={START_LIMIT_INTERVAL_SEC}",
        f"StartLimitBurst={START_LIMIT_BURST}",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
    ]
    if system:
        lines.append(f"User={spec.user}")
    lines += [
        f"ExecStart={command}",
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        f"TimeoutStartSec={START_TIMEOUT_SEC}",
        f"WatchdogSec={WATCHDOG_SEC}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={stop_timeout}",
        "NoNewPrivileges=yes",
    ]
    if system:
        lines += [
            "PrivateTmp=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=" + " ".join(quote("-" + p) for p in spec.writable),
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
        ]
    lines += ["", "[Install]", f"WantedBy={'multi-user.target' if system else 'default.target'}",
              ""]
    return "\n".join(lines)


# The units shipped in systemd/, rendered from a conventional layout (tests keep them in step).
SHIPPED = {
    "system/mlflow-guard.service": UnitSpec(
        python="/opt/mlflow-sync-guard/.venv/bin/python", config="/etc/mlflow-guard/config.yaml",
        user="labuser", writable=("/home/labuser/SynologyDrive/mlruns",
                                  "/home/labuser/.local/state/mlflow-guard")),
    "user/mlflow-guard.service": UnitSpec(
        python="/home/labuser/mlflow-sync-guard/.venv/bin/python",
        config="/home/labuser/.config/mlflow-guard/config.yaml",
        writable=("/home/labuser/SynologyDrive/mlruns",
                  "/home/labuser/.local/state/mlflow-guard")),
}


def commands(user_unit: bool, run_as: str | None = None) -> list[list[str]]:
    """The systemctl commands that load, enable and start the installed unit."""
    ctl = ["systemctl", "--user"] if user_unit else ["systemctl"]
    out = [ctl + ["daemon-reload"], ctl + ["enable", "--now", f"{SERVICE_NAME}.service"]]
    if user_unit and run_as:
        out.append(["loginctl", "enable-linger", run_as])  # start at boot, not at login
    return out
