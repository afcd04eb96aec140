"""systemd units: the renderer (pure) and the shipped files, checked by `systemd-analyze verify`
(tests/helpers/systemd.py; `guardctl install-service`: tests/commands/test_install_service.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from guard.service import units
from tests.helpers.systemd import needs_analyze, verify

ROOT = Path(__file__).resolve().parents[2]


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
