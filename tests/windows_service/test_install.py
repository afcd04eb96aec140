"""Installing and removing the Windows service (windows_service/install.py) against pywin32's
calls recorded by a fake SCM: the command Windows will run, the account's logon right, the
event source, the failure actions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from guard.core.config import load_config
from guard.service.windows import failure_commands


def config(tmp_path: Path, store: Path):
    path = tmp_path / "guard.yaml"
    path.write_text(f"store: {store}\nstate_dir: {tmp_path / 'state'}\n")
    return load_config(str(path))


class Runner:
    def __init__(self, code: int = 0) -> None:
        self.commands: list[list[str]] = []
        self.code = code

    def __call__(self, command, **kw) -> subprocess.CompletedProcess:
        self.commands.append(command)
        return subprocess.CompletedProcess(command, self.code, "", "access denied"
                                           if self.code else "")


def test_install_runs_the_environments_python_and_sets_everything_the_service_needs(
        scm, tmp_path, new_store, monkeypatch, capsys):
    from windows_service import install

    monkeypatch.setenv("COMPUTERNAME", "LABPC7")
    cfg = config(tmp_path, new_store)
    run = Runner()
    asked: list[str] = []
    assert install.install(cfg, ".\\alice", run=run,
                           ask=lambda prompt: asked.append(prompt) or "s3cret") == 0
    (args, kw), = scm.called("InstallService")
    assert args[1] == "mlflow-guard"
    # the real interpreter hosts the service, never pythonservice.exe
    assert kw["exeName"] == sys.executable and kw["exeArgs"] == "-m windows_service.service"
    assert kw["userName"] == ".\\alice" and kw["password"] == "s3cret"
    assert kw["startType"] == 2 and kw["delayedstart"] is True
    assert "Microsoft account's password, not the PIN" in asked[0]
    assert scm.options[("mlflow-guard", "config")] == str(cfg.file)
    assert ("SetEventSourceName", ("mlflow-guard", True), {}) in scm.calls
    assert scm.called("LsaAddAccountRights") == [(("sid:LABPC7\\alice",
                                                   ("SeServiceLogonRight",)), {})]
    assert scm.called("LsaClose")
    assert run.commands == failure_commands()
    assert ["sc.exe", "failureflag", "mlflow-guard", "1"] in run.commands
    out = capsys.readouterr().out
    assert "sc.exe start mlflow-guard" in out and "uninstall-service --windows-service" in out


def test_reinstalling_updates_the_service_in_place(scm, tmp_path, new_store):
    from windows_service import install

    cfg = config(tmp_path, new_store)
    scm.installed.add("mlflow-guard")
    assert install.install(cfg, None, run=Runner()) == 0
    (args, kw), = scm.called("ChangeServiceConfig")
    assert kw["exeName"] == sys.executable and kw["userName"] is None
    assert not scm.called("LsaAddAccountRights")  # LocalSystem has the right


def test_install_says_when_the_failure_actions_could_not_be_set(scm, tmp_path, new_store,
                                                                capsys):
    from windows_service import install

    assert install.install(config(tmp_path, new_store), None, run=Runner(code=5)) == 0
    err = capsys.readouterr().err
    assert "sc.exe failureflag" in err and "will not restart after a failure" in err


def test_uninstall_stops_then_removes_the_service(scm):
    from windows_service import install

    scm.installed.add("mlflow-guard")
    scm.running.add("mlflow-guard")
    assert install.uninstall() == 0
    names = [n for n, _, _ in scm.calls]
    assert names == ["StopService", "WaitForServiceStatus", "RemoveService"]
    assert "mlflow-guard" not in scm.installed


def test_uninstall_of_a_stopped_service_removes_it_and_of_none_says_so(scm, capsys):
    from windows_service import install

    scm.installed.add("mlflow-guard")
    assert install.uninstall() == 0 and "mlflow-guard" not in scm.installed
    assert install.uninstall() == 1
    assert "no service named mlflow-guard is installed" in capsys.readouterr().err


def test_lookup_name_turns_dot_into_the_computer(scm):
    from windows_service import install

    assert install.lookup_name(".\\alice", "PC") == "PC\\alice"
    assert install.lookup_name("LAB\\bob", "PC") == "LAB\\bob"
