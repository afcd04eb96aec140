"""After the README's quickstart (`guardctl run --store X`, no config file) every command
works without flags, finding the store through the running daemon (issue 16)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guard.core.config import system_config_path
from tests.helpers.daemons import guardctl

pytestmark = pytest.mark.integration

PYTHON_SPELLINGS = ("None", "True", "False", "1 files", "1 locations", "1 warnings")


def quickstart_env(tmp_path: Path) -> dict[str, str]:
    """No config file anywhere; the default state folder under tmp_path."""
    if system_config_path().exists():  # the daemon and guardctl are real processes: it counts
        why = (f"the machine-wide config file {system_config_path()} exists, so this machine "
               "cannot show the quickstart's no-config-file setup")
        if os.environ.get("CI") == "true":
            pytest.fail(why + "; CI machines have none")
        pytest.skip(why)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_GUARD_CONFIG"}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "xconfig"), XDG_STATE_HOME=str(tmp_path / "xstate"),
               MLFLOW_ALLOW_FILE_STORE="true")
    return env


def test_every_command_works_after_the_quickstart_without_flags(tmp_path, new_store,
                                                                 make_guard):
    env = quickstart_env(tmp_path)
    state = tmp_path / "xstate" / "mlflow-guard"  # the default state folder under that env
    guard = make_guard(new_store, state_dir=state, env=env).start()
    guard.wait_healthy()
    assert guard.proc is not None
    pid = guard.proc.pid
    assert "make it permanent: `guardctl config --save --store" in guard.output()
    for command in (["doctor"], ["locks"], ["conflicts"], ["gc"], ["gc", "--dry-run"],
                    ["fix", "--dry-run"], ["config"], ["status"]):
        res = guardctl(*command, env=env)
        said = res.stdout + res.stderr
        assert res.returncode == 0, f"{command}: {said}"
        assert str(new_store) in said, f"{command}: {said}"
        assert not [w for w in PYTHON_SPELLINGS if w in res.stdout], f"{command}: {res.stdout}"
    config = guardctl("config", env=env).stdout
    assert f"the running daemon (pid {pid}); make it permanent" in config
    assert f"{guard.port}" in config  # the daemon's port, not the default
    doctor = guardctl("doctor", env=env).stdout
    assert f"WARN  config: no config file names the store: {new_store}" in doctor
    assert "strays: no hand-started MLflow server" in doctor
    assert "own server" in doctor  # the port check knows the daemon's port
    locks = guardctl("locks", env=env)
    assert f"(from the running daemon, pid {pid};" in locks.stderr
    res = guardctl("stop", env=env)
    assert res.returncode == 0 and f"stopped (was pid {pid})" in res.stdout
    guard.proc.wait(timeout=30)
    res = guardctl("locks", env=env)  # no daemon, no config: the old advice
    assert res.returncode == 2 and "no store configured" in res.stderr
    saved = guardctl("config", "--save", "--store", str(new_store), env=env)
    assert saved.returncode == 0, saved.stderr
    assert guardctl("locks", env=env).returncode == 0  # permanent now


def on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 60) -> str:
    """Run guardctl with a pseudo-terminal as its stdout and stderr; all it wrote."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "guard.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=10)
    os.close(leader)
    return out.decode(errors="replace")


def test_the_lock_settle_shows_progress_on_a_terminal_and_nothing_when_piped(tmp_path,
                                                                            new_store):
    env = quickstart_env(tmp_path)
    config = tmp_path / "guard.yaml"
    config.write_text("locks:\n  settle: 1.5\n")
    args = ["gc", "--config", str(config), "--store", str(new_store), "--state-dir",
            str(tmp_path / "state")]
    shown = on_a_terminal(args, env)
    assert "\rwaiting for the gc lock: " in shown and "for other claims to sync" in shown
    assert "nothing to remove" in shown
    piped = guardctl(*args, env=env)
    assert piped.returncode == 0 and piped.stderr == ""
    assert piped.stdout == "nothing to remove\n"


def test_run_on_the_folder_above_mlruns_suggests_mlruns(tmp_path, new_store):
    env = quickstart_env(tmp_path)
    res = guardctl("run", "--store", str(tmp_path), "--state-dir", str(tmp_path.parent /
                   f"{tmp_path.name}-state"), env=env)
    assert res.returncode == 2
    assert f"use --store {new_store}" in res.stderr
    assert f"Start with --store {new_store}." in res.stderr
    assert "--wait-for-store" not in res.stderr
