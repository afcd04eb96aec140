"""The daemon under a service manager, with a real daemon and a real MLflow server:
systemd's notify protocol against a fake NOTIFY_SOCKET, and the Windows service logic
(guard.servicehost) driven by a fake service control manager."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from guard.core.config import load_config
from guard.daemon.hosted import SERVICE_DAEMON
from guard.service.servicehost import RUNNING, START_PENDING, STOP_PENDING, STOPPED, ServiceHost
from tests.helpers.daemons import any_alive, free_port, read_status, wait_for

pytestmark = pytest.mark.integration  # a real daemon under fake service managers; subprocesses


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def write_config(tmp_path: Path, store: Path, port: int, **server) -> Path:
    settings = {"health_interval": 0.5, "health_timeout": 1.0, **server}
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(f"store: {store}\nstate_dir: {tmp_path / 'state'}\nserver:\n  port: {port}\n"
                   + "".join(f"  {k}: {v}\n" for k, v in settings.items()))
    return cfg


class NotifySocket:
    """A fake systemd: records every datagram with its arrival time, and whether the MLflow
    server answered /health at the moment READY=1 arrived."""

    def __init__(self, port: int) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="ns")  # unix socket paths are short
        self.path = os.path.join(self.dir.name, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.port = port
        self.messages: list[tuple[float, str]] = []
        self.health_at_ready: bool | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closed.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except OSError:
                continue
            now = time.monotonic()
            for line in data.splitlines():
                if line == "READY=1" and self.health_at_ready is None:
                    self.health_at_ready = healthy(self.port)
                self.messages.append((now, line))

    def lines(self, prefix: str = "") -> list[str]:
        return [m for _, m in self.messages if m.startswith(prefix)]

    def times(self, line: str, after: float = 0.0) -> list[float]:
        return [t for t, m in self.messages if m == line and t > after]

    def close(self) -> None:
        self.closed.set()
        self.thread.join(5)
        self.sock.close()
        self.dir.cleanup()


def test_systemd_hears_ready_only_when_healthy_then_watchdog_pings_while_healthy(
        tmp_path, new_store, make_guard):
    port = free_port()
    cfg = write_config(tmp_path, new_store, port, health_failures=1000)
    fake = NotifySocket(port)
    guard = make_guard(new_store, state_dir=tmp_path / "state", port=port, config=cfg,
                       env={"NOTIFY_SOCKET": fake.path, "WATCHDOG_USEC": "2000000"})
    stopped: list[int] = []
    try:
        guard.start()
        wait_for(lambda: fake.lines("READY=1"), what="READY=1")
        assert fake.health_at_ready is True, "READY=1 came before the server answered /health"
        first_ready = fake.times("READY=1")[0]
        before = [m for t, m in fake.messages if t < first_ready]
        assert "EXTEND_TIMEOUT_USEC=3000000" in before  # 3 x (2 s watchdog / 2)
        assert "STATUS=starting" in before
        assert f"STATUS=serving http://127.0.0.1:{port}" in fake.lines("STATUS=")
        wait_for(lambda: len(fake.times("WATCHDOG=1", first_ready)) >= 3, timeout=30,
                 what="three watchdog pings")

        # The server hangs (SIGSTOP): probes fail, and the pings stop.
        tree = {r["pid"] for r in read_status(guard.state_dir)["server"]["tree"]}
        assert not any("NOTIFY_SOCKET" in psutil.Process(p).environ() for p in tree)
        for pid in tree:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        failing = f"STATUS=http://127.0.0.1:{port} failing health probes"
        wait_for(lambda: failing in fake.lines("STATUS="), timeout=30, what=failing)
        since = fake.times(failing)[0]
        time.sleep(3)
        assert fake.times("WATCHDOG=1", since) == [], "pinged while the server was hung"

        # The server resumes: healthy again, pings again.
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped.clear()
        wait_for(lambda: fake.times("WATCHDOG=1", since), timeout=30, what="pings to resume")
        assert fake.lines("READY=1") == ["READY=1"]  # ready is said once

        assert guard.ctl("stop").returncode == 0
        assert guard.proc.wait(timeout=60) == 0
        assert "STOPPING=1" in fake.lines()
        assert any_alive(tree) == []
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        fake.close()


# ---- the Windows service logic, under a fake service control manager ------------------------
class FakeSCM:
    """Records what the service reports, as Windows' service control manager would see it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reports: list[tuple[str, int, int]] = []
        self.health_when_running: list[bool] = []
        self.events: list[tuple[int, str]] = []

    def report(self, state: str, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        if state == RUNNING:
            self.health_when_running.append(healthy(self.port))
        self.reports.append((state, wait_hint_ms, exit_code))

    def event(self, level: int, message: str) -> None:
        self.events.append((level, message))

    def states(self) -> list[str]:
        return [s for s, _, _ in self.reports]


def run_host(cfg_path: Path, scm: FakeSCM) -> tuple[ServiceHost, threading.Thread]:
    host = ServiceHost(load_config(str(cfg_path)), scm, SERVICE_DAEMON)
    thread = threading.Thread(target=host.run, daemon=True)
    thread.start()
    return host, thread


def test_windows_service_reports_running_only_after_health_and_stop_leaves_no_process(
        tmp_path, new_store):
    port = free_port()
    scm = FakeSCM(port)
    host, thread = run_host(write_config(tmp_path, new_store, port), scm)
    tree: set[int] = set()
    try:
        wait_for(lambda: RUNNING in scm.states(), what="the service to report running")
        states = scm.states()
        assert states[0] == START_PENDING and states.index(RUNNING) > 0
        assert all(hint > 0 for s, hint, _ in scm.reports if s == START_PENDING)
        assert scm.health_when_running == [True]
        assert any("serving MLflow at" in m for _, m in scm.events)
        tree = {r["pid"] for r in read_status(tmp_path / "state")["server"]["tree"]}
        assert tree and any_alive(tree)

        host.stop()  # what the SCM's stop (or shutdown) control calls
        thread.join(60)
        assert not thread.is_alive()
        assert scm.states()[-2:] == [STOP_PENDING, STOPPED]
        assert scm.reports[-1][2] == 0 and host.exit_code == 0
        assert any_alive(tree) == []
        assert (logging.INFO, "mlflow-guard stopped (exit code 0)") in scm.events
        assert scm.states().count(RUNNING) == 1
    finally:
        if thread.is_alive():
            host.stop()
            thread.join(60)


def test_windows_service_that_cannot_start_never_reports_running(tmp_path, new_store):
    port = free_port()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import socket,time;s=socket.socket();"
         f"s.bind(('127.0.0.1',{port}));s.listen();print('up',flush=True);time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        scm = FakeSCM(port)
        host, thread = run_host(write_config(tmp_path, new_store, port), scm)
        thread.join(60)
        assert RUNNING not in scm.states()
        assert scm.reports[-1][0] == STOPPED and scm.reports[-1][2] == 2
        errors = [m for level, m in scm.events if level == logging.ERROR]
        assert any(f"port {port}" in m and "cannot start" in m for m in errors), errors
    finally:
        holder.kill()
        holder.wait(10)


# Runs in a fresh interpreter where pywin32's modules cannot be imported, whatever the machine
# has installed; prints which of them the import of the module below tried to load.
WITHOUT_PYWIN32 = """
import importlib.abc, sys
PYWIN32 = {"win32service", "win32serviceutil", "servicemanager", "win32api", "win32con",
           "win32event", "win32evtlog", "win32evtlogutil", "pywintypes", "pythoncom"}
tried = []
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PYWIN32:
            tried.append(name)
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
import %s
print("tried:", sorted(tried))
"""


def import_without_pywin32(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_PYWIN32 % module], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("module", ["guard", "guard.cli", "guard.service.servicehost",
                                    "guard.daemon.hosted", "guard.commands.install_service",
                                    "windows_service"])
def test_the_package_imports_without_pywin32(module):
    res = import_without_pywin32(module)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "tried: []", res.stdout  # not even a guarded try


def test_without_pywin32_the_service_class_itself_does_not_import():
    """The check above can fail: the pywin32 layer is blocked in that interpreter."""
    res = import_without_pywin32("windows_service.service")
    assert res.returncode != 0 and "servicemanager' (blocked by the test)" in res.stderr
