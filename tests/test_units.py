"""systemd units: the renderer (pure), the shipped files, `guardctl install-service --systemd`,
each checked by `systemd-analyze verify` (CI installs Debian's systemd package for it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import guardctl
from guard.service import units

ROOT = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None and os.environ.get("CI") != "true",
    reason="systemd-analyze is not installed on this machine, so the units cannot be verified "
           "here (they are still rendered and compared with the shipped files); `apt install "
           "systemd` provides it. CI installs it and sets CI=true, so there this fails instead")


def verify(unit: Path, user: bool = False, root: Path | None = None) -> str:
    """Run `systemd-analyze verify`; returns what it printed about our unit (nothing when
    clean; complaints about the machine's other units are not ours)."""
    assert ANALYZE, "systemd-analyze is missing: install Debian's systemd package"
    cmd = [ANALYZE, "verify", "--man=no"]
    env = dict(os.environ)
    if user:
        cmd.append("--user")
        runtime = tempfile.TemporaryDirectory(prefix="rt")  # short: units' socket paths
        env["XDG_RUNTIME_DIR"] = runtime.name
    if root is not None:
        cmd.append(f"--root={root}")
        cmd.append(unit.name)
    else:
        cmd.append(str(unit))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 0, out
    return "\n".join(line for line in out.splitlines() if "mlflow-guard" in line)


def fake_root(tmp_path: Path, unit_text: str, spec: units.UnitSpec) -> Path:
    """A minimal tree for `verify --root`: the unit, the targets it names, and an executable
    at the shipped unit's interpreter path (which this machine does not have)."""
    root = tmp_path / "root"
    lib = root / "usr/lib/systemd/system"
    lib.mkdir(parents=True)
    for target in ("sysinit", "basic", "shutdown", "network-online", "remote-fs", "multi-user",
                   "default"):
        (lib / f"{target}.target").write_text(f"[Unit]\nDescription={target}\n")
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    (etc / "mlflow-guard.service").write_text(unit_text)
    python = root / spec.python.lstrip("/")
    python.parent.mkdir(parents=True)
    shutil.copy(shutil.which("true"), python)
    return root


# ---- the renderer -----------------------------------------------------------------------------
def test_system_unit_has_the_settings_the_service_relies_on():
    text = units.render(units.UnitSpec(python="/v/bin/python", config="/etc/g.yaml",
                                       writable=("/srv/mlruns", "/var/st"), user="alice",
                                       stop_grace=15))
    lines = set(text.splitlines())
    for line in ("Type=notify", "User=alice", "Restart=on-failure", "WatchdogSec=60",
                 "KillMode=mixed", "TimeoutStopSec=60", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "ProtectSystem=strict", "ReadWritePaths=-/srv/mlruns -/var/st",
                 "After=network-online.target remote-fs.target", "WantedBy=multi-user.target",
                 "ExecStart=/v/bin/python -m guard.cli run --config /etc/g.yaml --wait-for-store"):
        assert line in lines, line


def test_user_unit_has_no_user_and_no_namespace_options():
    text = units.render(units.UnitSpec(python="/v/bin/python", config="/h/g.yaml",
                                       writable=("/srv/mlruns",)))
    assert "User=" not in text and "ProtectSystem" not in text and "PrivateTmp" not in text
    assert "NoNewPrivileges=yes" in text and "WantedBy=default.target" in text
    assert "Type=notify" in text and "WatchdogSec=60" in text


def test_hostile_paths_are_quoted_and_specifiers_escaped():
    spec = units.UnitSpec(python="/opt/my env/bin/python", config='/c/100% "x".yaml',
                          writable=("/srv/my store", "/a/$HOME"), user="bob")
    text = units.render(spec)
    assert 'ExecStart="/opt/my env/bin/python"' in text
    assert '"/c/100%% \\"x\\".yaml"' in text  # '%' is a specifier, '"' escaped
    assert 'ReadWritePaths="-/srv/my store" "-/a/$HOME"' in text
    assert units.quote("/a/$HOME", command=True) == '"/a/$$HOME"'


def test_systemctl_commands():
    assert units.commands(False) == [["systemctl", "daemon-reload"],
                                     ["systemctl", "enable", "--now", "mlflow-guard.service"]]
    assert units.commands(True, "alice")[-1] == ["loginctl", "enable-linger", "alice"]


# ---- shipped units --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(units.SHIPPED))
def test_shipped_units_are_what_the_renderer_writes(name):
    assert (ROOT / "systemd" / name).read_text() == units.render(units.SHIPPED[name])


@pytest.mark.integration
@needs_analyze
@pytest.mark.parametrize("name", sorted(units.SHIPPED))
def test_shipped_units_pass_systemd_analyze_verify(tmp_path, name):
    """Under --root, since their interpreter path is not on this machine; `verify --root`
    knows no --user, so the user unit is read by the system manager's parser (same keys)."""
    spec = units.SHIPPED[name]
    root = fake_root(tmp_path, (ROOT / "systemd" / name).read_text(), spec)
    assert verify(root / "etc/systemd/system/mlflow-guard.service", root=root) == ""


@pytest.mark.integration
@needs_analyze
def test_verify_catches_a_mistyped_key(tmp_path):
    """The check above can fail: a typo in a unit is reported."""
    bad = units.render(units.SHIPPED["system/mlflow-guard.service"]).replace("KillMode", "KilMode")
    root = fake_root(tmp_path, bad, units.SHIPPED["system/mlflow-guard.service"])
    out = verify(root / "etc/systemd/system/mlflow-guard.service", root=root)
    assert "Unknown key 'KilMode'" in out


# ---- guardctl install-service --systemd -------------------------------------------------------
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
    res = guardctl("install-service", "--systemd", "--store", str(new_store), "--run-as", "root",
                   "--output", "-", env=env)
    assert res.returncode == 2 and "needs a config file" in res.stderr
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
    res = guardctl("install-service", "--windows", "--config", str(_config(tmp_path, new_store)))
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
