"""`guardctl stop` when the state folder cannot take its request: SIGTERM to the daemon."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil
import pytest

from guard.commands.stop import ask_to_stop
from guard.core.state import StateDir
from guard.supervision.processes import ProcRef

pytestmark = pytest.mark.integration  # starts a process standing in for the daemon


def test_stop_falls_back_to_sigterm_when_the_request_cannot_be_written(tmp_path, capsys):
    state = StateDir(tmp_path)
    state.control.mkdir()  # the request file cannot replace a folder: an OSError, as when full
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ref = ProcRef(daemon.pid, psutil.Process(daemon.pid).create_time())
        ask_to_stop(state, ref)
        assert daemon.wait(timeout=10) == -signal.SIGTERM
        err = capsys.readouterr().err
        assert f"cannot leave the stop request in {state.control}" in err
        assert f"sending SIGTERM to daemon pid {daemon.pid}" in err
    finally:
        daemon.kill()
        daemon.wait(timeout=10)


def test_stop_leaves_a_request_and_sends_no_signal_when_it_can(tmp_path):
    state = StateDir(tmp_path)
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ask_to_stop(state, ProcRef(daemon.pid, psutil.Process(daemon.pid).create_time()))
        assert state.take_request()["command"] == "stop"
        assert daemon.poll() is None
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
