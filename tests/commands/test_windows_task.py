"""`guardctl install-service --windows` / `uninstall-service --windows`: the logon task, with a
stand-in for schtasks (no Windows here) that checks the XML file it is handed against the Task
Scheduler schema's rules (tests/service/test_logontask.py); and `uninstall-service --systemd`."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from guard import cli
from guard.commands import install_service, uninstall_service
from guard.core import runtime
from guard.core.config import Config, load_config
from tests.commands.test_install_service import _fake_commands
from tests.helpers.daemons import guardctl
from tests.service.test_logontask import NS, parse_task_file, split_windows, task_problems

PYTHON = "C:\\Users\\Zoë O'Brien & Co\\lab venv\\Scripts\\python.exe"
PYTHONW = "C:\\Users\\Zoë O'Brien & Co\\lab venv\\Scripts\\pythonw.exe"


class FakeRun:
    """subprocess.run's stand-in: records each command; for `schtasks /Create ... /XML path`
    reads the file at that moment and checks it against the schema's rules."""

    def __init__(self, returncode: int = 0, stderr: str = "", stdout: str = "",
                 answers: list[tuple[int, str]] | None = None) -> None:
        self.returncode, self.stderr, self.stdout = returncode, stderr, stdout
        self.answers = list(answers or [])  # (returncode, stderr) for the first commands
        self.calls: list[list[str]] = []
        self.xml: list[bytes] = []
        self.problems: list[str] = []

    def __call__(self, command: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(command))
        if command[:2] == ["schtasks", "/Create"]:
            data = Path(command[command.index("/XML") + 1]).read_bytes()
            self.xml.append(data)
            self.problems += task_problems(parse_task_file(data))
        code, err = self.answers.pop(0) if self.answers else (self.returncode, self.stderr)
        return subprocess.CompletedProcess(command, code, self.stdout, err)


def _config_file(tmp_path: Path, store: Path) -> Path:
    path = tmp_path / "my config.yaml"
    path.write_text(f"store: {store}\nstate_dir: {tmp_path / 'state dir'}\n")
    return path


@pytest.fixture
def cfg(tmp_path, new_store, monkeypatch) -> Config:
    """A config from a file; guardctl's interpreter as on Windows (a venv's python.exe beside
    its pythonw.exe) and a Windows user."""
    monkeypatch.setattr(install_service, "interpreter", lambda: PYTHON)
    monkeypatch.setattr(install_service, "windowless",
                        lambda python, platform: runtime.windowless(python, platform,
                                                                    isfile=lambda _: True))
    monkeypatch.setenv("USERNAME", "Zoë O'Brien")
    monkeypatch.setenv("USERDOMAIN", "ZOË-PC")
    return load_config(str(_config_file(tmp_path, new_store)))


# ---- install-service --windows ------------------------------------------------------------------
def test_register_task_hands_schtasks_a_valid_task_and_says_how_to_use_it(cfg, capsys):
    run = FakeRun()
    assert install_service.register_task(cfg, run=run) == 0
    xml_path = cfg.state_dir / "mlflow-guard.task.xml"
    assert run.calls == [["schtasks", "/Create", "/TN", "mlflow-guard", "/XML", str(xml_path),
                          "/F"]]
    assert run.problems == []
    assert xml_path.read_bytes() == run.xml[0]   # written in the state folder, and kept
    root = parse_task_file(run.xml[0])
    exec_ = root.find(f"{NS}Actions/{NS}Exec")
    assert exec_ is not None
    assert exec_.findtext(f"{NS}Command") == PYTHONW
    assert exec_.findtext(f"{NS}WorkingDirectory") == str(cfg.state_dir)
    assert split_windows(exec_.findtext(f"{NS}Arguments") or "") == [
        "-m", "guard.cli", "run", "--config", str(cfg.file), "--wait-for-store", "--relaunch"]
    assert root.findtext(f"{NS}Triggers/{NS}LogonTrigger/{NS}UserId") == "ZOË-PC\\Zoë O'Brien"

    out = capsys.readouterr().out
    assert (f"registered the logon task mlflow-guard: at each logon of ZOË-PC\\Zoë O'Brien it "
            f"runs {PYTHONW} -m guard.cli run --config \"{cfg.file}\" --wait-for-store "
            "--relaunch") in out
    assert "start it now:  schtasks /Run /TN mlflow-guard" in out
    assert "stop it:       guardctl stop" in out
    assert "see it:        schtasks /Query /TN mlflow-guard" in out
    assert "remove it:     guardctl uninstall-service --windows" in out


def test_a_failing_schtasks_is_reported_with_the_task_file(cfg, capsys):
    run = FakeRun(returncode=1, stderr="ERROR: Access is denied.\r\n")
    assert install_service.register_task(cfg, run=run) == 1
    xml_path = cfg.state_dir / "mlflow-guard.task.xml"
    captured = capsys.readouterr()
    assert "schtasks could not register the task: ERROR: Access is denied." in captured.err
    assert str(xml_path) in captured.err and xml_path.is_file()
    assert "registered" not in captured.out
    assert len(run.calls) == 1


def test_the_task_is_for_windows_only(tmp_path, new_store, capsys):
    run = FakeRun()
    args = argparse.Namespace(config=str(_config_file(tmp_path, new_store)))
    assert install_service._install_task(args, run, platform="linux") == 2
    assert "the logon task is for Windows; on Linux use --systemd" in capsys.readouterr().err
    assert run.calls == []
    assert not (tmp_path / "state dir").exists()


def test_on_windows_install_task_reads_the_config_file_and_registers(cfg, capsys):
    run = FakeRun()
    args = argparse.Namespace(config=str(cfg.file))
    assert install_service._install_task(args, run, platform="win32") == 0
    assert run.calls[0][:2] == ["schtasks", "/Create"] and run.problems == []
    assert "registered the logon task" in capsys.readouterr().out


def test_account_is_only_for_the_windows_service(capsys):
    assert cli.main(["install-service", "--windows", "--account", "x"]) == 2
    assert "--account is for --windows-service" in capsys.readouterr().err


@pytest.mark.parametrize(("environ", "user"), [
    ({"USERNAME": "ana", "USERDOMAIN": "LAB"}, "LAB\\ana"),
    ({"USERNAME": "ana", "COMPUTERNAME": "LAB-PC"}, "LAB-PC\\ana"),
    ({"USERNAME": "ana"}, "ana"),
])
def test_windows_user_is_domain_and_name(environ, user):
    assert install_service.windows_user(environ) == user


# ---- uninstall-service --windows ----------------------------------------------------------------
def _uninstall_args(config: Path) -> argparse.Namespace:
    return argparse.Namespace(config=str(config), state_dir=None, store=None)


def test_remove_task_deletes_the_task_and_leaves_the_store(tmp_path, new_store, capsys):
    run = FakeRun()
    config = _config_file(tmp_path, new_store)
    assert uninstall_service.remove_task(_uninstall_args(config), run=run) == 0
    assert run.calls == [["schtasks", "/Delete", "/TN", "mlflow-guard", "/F"]]
    out = capsys.readouterr().out
    assert "mlflow-guard is not running" in out
    assert ("removed the logon task mlflow-guard; the store, the state folder and the config "
            "file are untouched") in out
    assert new_store.is_dir() and config.is_file()


def test_remove_task_reports_a_failing_schtasks(tmp_path, new_store, capsys):
    run = FakeRun(returncode=1, stderr="ERROR: The system cannot find the file specified.")
    config = _config_file(tmp_path, new_store)
    assert uninstall_service.remove_task(_uninstall_args(config), run=run) == 1
    captured = capsys.readouterr()
    assert ("`schtasks /Delete /TN mlflow-guard /F` failed (1): ERROR: The system cannot find "
            "the file specified.") in captured.err
    assert "removed" not in captured.out


def test_remove_task_without_schtasks_says_so(tmp_path, new_store, capsys):
    def missing(command, **kw):
        raise FileNotFoundError(2, "No such file or directory", command[0])

    config = _config_file(tmp_path, new_store)
    assert uninstall_service.remove_task(_uninstall_args(config), run=missing) == 1
    assert "cannot run schtasks" in capsys.readouterr().err


# ---- uninstall-service --systemd ----------------------------------------------------------------
class UnitRun(FakeRun):
    """Also records whether the unit file still existed when each command ran."""

    def __init__(self, unit: Path, **kw) -> None:
        super().__init__(**kw)
        self.unit, self.unit_there = unit, []

    def __call__(self, command, **kw):
        self.unit_there.append(self.unit.exists())
        return super().__call__(command, **kw)


@pytest.mark.parametrize("user_unit", [True, False], ids=["user", "system"])
def test_remove_unit_disables_deletes_and_reloads(tmp_path, capsys, user_unit):
    unit = tmp_path / "mlflow-guard.service"
    unit.write_text("[Service]\n")
    run = UnitRun(unit)
    assert uninstall_service.remove_unit(unit, user_unit, run=run) == 0
    ctl = ["systemctl", "--user"] if user_unit else ["systemctl"]
    assert run.calls == [ctl + ["disable", "--now", "mlflow-guard.service"],
                         ctl + ["daemon-reload"]]
    assert run.unit_there == [True, False]   # stopped before the file went, reloaded after
    assert not unit.exists()
    out = capsys.readouterr().out
    assert f"removed {unit}" in out and "the store, the state folder" in out


def test_remove_unit_tolerates_a_unit_systemd_never_loaded(tmp_path):
    unit = tmp_path / "mlflow-guard.service"
    unit.write_text("[Service]\n")
    run = UnitRun(unit, answers=[(1, "Failed to disable unit: Unit file mlflow-guard.service "
                                     "does not exist.")])
    assert uninstall_service.remove_unit(unit, True, run=run) == 0
    assert not unit.exists() and len(run.calls) == 2


def test_remove_unit_stops_at_a_failing_disable(tmp_path, capsys):
    unit = tmp_path / "mlflow-guard.service"
    unit.write_text("[Service]\n")
    run = UnitRun(unit, returncode=1, stderr="Failed to connect to bus: No medium found")
    assert uninstall_service.remove_unit(unit, True, run=run) == 1
    assert unit.exists() and len(run.calls) == 1
    assert "failed (1): Failed to connect to bus" in capsys.readouterr().err


@pytest.mark.parametrize(("user_unit", "hint"), [(True, ""), (False, "pass --user")])
def test_remove_unit_without_a_unit_file_says_so(tmp_path, capsys, user_unit, hint):
    run = FakeRun()
    unit = tmp_path / "mlflow-guard.service"
    assert uninstall_service.remove_unit(unit, user_unit, run=run) == 1
    err = capsys.readouterr().err
    assert f"no unit at {unit}" in err and hint in err
    assert run.calls == []


@pytest.mark.integration
def test_uninstall_removes_the_user_unit_install_wrote(tmp_path, new_store):
    config = _config_file(tmp_path, new_store)
    env, log = _fake_commands(tmp_path)
    res = guardctl("install-service", "--systemd", "--user", "--config", str(config), env=env)
    assert res.returncode == 0, res.stderr
    unit = tmp_path / "xdg" / "systemd" / "user" / "mlflow-guard.service"
    assert unit.is_file()
    res = guardctl("uninstall-service", "--systemd", "--user", env=env)
    assert res.returncode == 0, res.stderr
    assert not unit.exists()
    assert log.read_text().splitlines() == [
        "systemctl --user disable --now mlflow-guard.service", "systemctl --user daemon-reload"]
    assert f"removed {unit}" in res.stdout
    res = guardctl("uninstall-service", "--systemd", "--user", env=env)
    assert res.returncode == 1 and f"no unit at {unit}" in res.stderr
    assert os.path.isdir(new_store)
