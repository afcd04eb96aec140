"""`guardctl install-service`: the systemd unit it writes (checked by `systemd-analyze verify`),
the account it runs as, `--enable`, and Windows without pywin32."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from guard.service import units
from tests.helpers.daemons import guardctl
from tests.helpers.systemd import needs_analyze, verify


def _config(tmp_path: Path, new_store: Path) -> Path:
    cfg = tmp_path / "my config.yaml"
    cfg.write_text(f"store: {new_store}\nstate_dir: {tmp_path / 'state'}\n")
    return cfg


@pytest.mark.integration
@needs_analyze
def test_install_service_writes_a_system_unit_that_verifies(tmp_path, new_store):
    cfg = _config(tmp_path, new_store)
    out = tmp_path / "units" / "mlflow-guard.service"
    res = guardctl("install-service", "--systemd", "--config", str(cfg), "--run-as", "root",
                   "--output", str(out))
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert f'ExecStart={units.quote(sys.executable, True)} -m guard.cli run --config ' \
           f'"{cfg}" --wait-for-store' in text
    assert f"ReadWritePaths=-{new_store} -{tmp_path / 'state'} -{tmp_path / 'state' / 'vault'}" \
        in text
    assert "User=root" in text
    assert (tmp_path / "state" / "vault").is_dir()  # ReadWritePaths needs them to exist
    assert "sudo systemctl enable --now mlflow-guard.service" in res.stdout
    assert verify(out) == ""


@pytest.mark.integration
@needs_analyze
def test_install_service_writes_a_user_unit_that_verifies(tmp_path, new_store):
    cfg = _config(tmp_path, new_store)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    res = guardctl("install-service", "--systemd", "--user", "--config", str(cfg), env=env)
    assert res.returncode == 0, res.stderr
    unit = tmp_path / "xdg" / "systemd" / "user" / "mlflow-guard.service"
    assert "User=" not in unit.read_text()
    assert "systemctl --user enable --now mlflow-guard.service" in res.stdout
    assert "loginctl enable-linger" in res.stdout
    assert verify(unit, user=True) == ""


@pytest.mark.integration
def test_install_service_needs_a_config_file_and_a_named_account(tmp_path, new_store):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MLFLOW_ALLOW_FILE_STORE": "true"}
    res = guardctl("install-service", "--systemd", "--run-as", "root", "--output", "-", env=env)
    assert res.returncode == 2 and "needs a config file" in res.stderr
    assert "guardctl config --save --store PATH" in res.stderr
    cfg = _config(tmp_path, new_store)
    env.pop("SUDO_USER", None)
    if os.geteuid() == 0:
        res = guardctl("install-service", "--systemd", "--config", str(cfg), "--output", "-",
                       env=env)
        assert res.returncode == 2 and "--run-as NAME" in res.stderr
    res = guardctl("install-service", "--systemd", "--config", str(cfg), "--output", "-",
                   "--run-as", "no-such-user-xyz", env=env)
    assert res.returncode == 2 and "no account named 'no-such-user-xyz'" in res.stderr


@pytest.mark.integration
def test_install_service_names_the_tilde_of_the_service_account(tmp_path):
    """Under sudo, HOME may be root's: '~' in the config is expanded for --run-as."""
    import pwd

    me = pwd.getpwuid(os.getuid())
    cfg = tmp_path / "g.yaml"
    cfg.write_text("store: ~/lab-mlruns-xyz\n")
    env = {**os.environ, "HOME": str(tmp_path / "elsewhere")}
    res = guardctl("install-service", "--systemd", "--config", str(cfg), "--run-as", me.pw_name,
                   "--output", "-", env=env)
    assert res.returncode == 0, res.stderr
    assert f"-{me.pw_dir}/lab-mlruns-xyz" in res.stdout
    assert f"-{me.pw_dir}/.local/state/mlflow-guard" in res.stdout


@pytest.mark.integration
def test_windows_install_without_pywin32_says_what_to_install(tmp_path, new_store):
    res = guardctl("install-service", "--windows-service", "--config",
                   str(_config(tmp_path, new_store)))
    assert res.returncode == 2
    assert "pywin32" in res.stderr and "pip install" in res.stderr
    assert "Traceback" not in res.stderr


def _fake_commands(tmp_path: Path, exit_code: int = 0) -> tuple[dict, Path]:
    """systemctl and loginctl stand-ins that record their arguments (no systemd runs here)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("systemctl", "loginctl"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n'
                          + (f'echo "System has not been booted with systemd" >&2\n'
                             f'exit {exit_code}\n' if exit_code else ""))
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    return env, log


@pytest.mark.integration
def test_enable_runs_the_printed_commands_and_reports_a_failure(tmp_path, new_store):
    import getpass

    cfg = _config(tmp_path, new_store)
    env, log = _fake_commands(tmp_path)
    res = guardctl("install-service", "--systemd", "--user", "--config", str(cfg), "--enable",
                   env=env)
    assert res.returncode == 0, res.stderr
    assert log.read_text().splitlines() == [
        "systemctl --user daemon-reload", "systemctl --user enable --now mlflow-guard.service",
        f"loginctl enable-linger {getpass.getuser()}"]
    assert "enabled and started" in res.stdout

    failing = tmp_path / "second"
    failing.mkdir()
    env, log = _fake_commands(failing, exit_code=1)
    res = guardctl("install-service", "--systemd", "--user", "--config", str(cfg), "--enable",
                   env=env)
    assert res.returncode == 1
    assert "`systemctl --user daemon-reload` failed (1): System has not been booted" in res.stderr
    assert log.read_text().splitlines() == ["systemctl --user daemon-reload"]  # stopped there
