"""guard.core.runtime: the interpreter that can run mlflow, and a host_id per OS on one PC."""

from __future__ import annotations

import re

import pytest

from guard.core import runtime
from guard.core.config import HOST_ID_RE

VENV = r"C:\Users\alice\mlflow-sync-guard\.venv"
SERVICE_HOST = VENV + r"\Lib\site-packages\win32\pythonservice.exe"


def test_under_pywin32s_service_host_the_server_gets_the_venvs_python():
    exists = {VENV + r"\Scripts\python.exe"}.__contains__
    assert runtime.real_interpreter(SERVICE_HOST, VENV, "win32", exists) == \
        VENV + r"\Scripts\python.exe"


def test_a_python_org_install_without_a_venv_has_python_in_the_prefix():
    prefix = r"C:\Program Files\Python312"
    exe = prefix + r"\pythonservice.exe"
    exists = {prefix + r"\python.exe"}.__contains__
    assert runtime.real_interpreter(exe, prefix, "win32", exists) == prefix + r"\python.exe"
    assert runtime.real_interpreter(exe.upper(), prefix, "win32", exists) == \
        prefix + r"\python.exe"


def test_no_python_next_to_the_service_host_is_an_error_that_says_where_it_looked():
    with pytest.raises(FileNotFoundError, match=r"Scripts\\python\.exe.*cannot run mlflow"):
        runtime.real_interpreter(SERVICE_HOST, VENV, "win32", lambda p: False)


@pytest.mark.parametrize("exe,platform", [(VENV + r"\Scripts\python.exe", "win32"),
                                          (VENV + r"\Scripts\pythonw.exe", "win32"),
                                          ("/opt/guard/.venv/bin/python", "linux"),
                                          ("/x/pythonservice.exe", "linux")])
def test_any_other_interpreter_is_itself(exe, platform):
    assert runtime.real_interpreter(exe, VENV, platform, lambda p: True) == exe


def test_the_server_command_under_a_service_host_runs_python_not_the_host(monkeypatch, tmp_path):
    from guard.core.config import load_config
    from guard.core.store import init_store
    from guard.supervision.server import server_command

    init_store(tmp_path / "mlruns")
    cfg = load_config(overrides={"store": str(tmp_path / "mlruns"),
                                 "state_dir": str(tmp_path / "state")})
    monkeypatch.setattr(runtime.sys, "executable", SERVICE_HOST)
    monkeypatch.setattr(runtime.sys, "exec_prefix", VENV)
    monkeypatch.setattr(runtime.sys, "platform", "win32")
    monkeypatch.setattr(runtime.os.path, "isfile", lambda p: p == VENV + r"\Scripts\python.exe")
    command = server_command(cfg)
    assert command[:4] == [VENV + r"\Scripts\python.exe", "-m", "mlflow", "server"]


def test_windowless_is_pythonw_beside_python_on_windows_only():
    exists = {VENV + r"\Scripts\pythonw.exe"}.__contains__
    assert runtime.windowless(VENV + r"\Scripts\python.exe", "win32", exists) == \
        VENV + r"\Scripts\pythonw.exe"
    assert runtime.windowless(VENV + r"\Scripts\python.exe", "win32", lambda p: False) == \
        VENV + r"\Scripts\python.exe"
    assert runtime.windowless("/usr/bin/python3", "linux", lambda p: True) == "/usr/bin/python3"


def test_wsl_is_known_by_its_distro_or_by_the_kernel():
    assert runtime.wsl_distro({"WSL_DISTRO_NAME": "Ubuntu-24.04"}, "") == "Ubuntu-24.04"
    assert runtime.wsl_distro({}, "5.15.167.4-microsoft-standard-WSL2\n") == "wsl"
    assert runtime.wsl_distro({}, "6.8.0-49-generic\n") is None


def test_wsl_and_windows_on_one_pc_get_different_valid_host_ids():
    windows = runtime.default_host_id("LAB-PC7", None)
    wsl = runtime.default_host_id("LAB-PC7", "Ubuntu-24.04")
    bare = runtime.default_host_id("LAB-PC7", "wsl")
    assert windows == "LAB-PC7"
    assert wsl == "LAB-PC7-wsl-Ubuntu-24.04" and bare == "LAB-PC7-wsl"
    long = runtime.default_host_id("x" * 80, "Debian GNU/Linux")
    for host_id in (windows, wsl, bare, long):
        assert HOST_ID_RE.match(host_id), host_id
    assert long.endswith("-wsl-Debian-GNU-Linux") and len(long) <= 64
    assert re.fullmatch(r"host", runtime.default_host_id("...", None))


def test_the_default_host_id_in_the_config_follows_wsl(monkeypatch, tmp_path):
    from guard.core.config import load_config

    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    monkeypatch.setattr(runtime.socket, "gethostname", lambda: "lab-pc7")
    cfg = load_config(overrides={"state_dir": str(tmp_path)})
    assert cfg.host_id == "lab-pc7-wsl-Ubuntu"
