"""A dead daemon's server: after `kill -9` of the daemon its server keeps serving the port.
`guardctl status` shows it (orphan, pids, DEGRADED, exit 1), `doctor` says so, and `stop` ends
exactly that tree (pid, start time, a command line over this store) and says what it ended;
a look-alike over another store, even one carrying this guard's owner mark, is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from guard.supervision.processes import OWNER_ENV
from guard.supervision.server import port_bindable
from tests.helpers.daemons import any_alive, healthy_guard, tree_pids, wait_for
from tests.helpers.disks import files_of, health

pytestmark = pytest.mark.integration


def lookalike(other_store: Path, env: dict) -> subprocess.Popen:
    """A process whose command line reads as `mlflow server` over another store."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "mlflow", "server",
         "--backend-store-uri", other_store.as_uri(), "--port", "1"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_dead_daemons_server_is_shown_and_ended_by_stop(new_store, make_guard, tmp_path):
    guard = healthy_guard(new_store, make_guard, tmp_path)
    doc = guard.status()
    daemon_pid = doc["daemon"]["pid"]
    server_pid = doc["server"]["pid"]
    tree = wait_for(lambda: tree_pids(server_pid) if len(tree_pids(server_pid)) > 1 else None,
                    30, what="the server's worker")
    guard.seen_server_pids |= tree
    other = tmp_path / "elsewhere" / "mlruns"
    other.mkdir(parents=True)
    (other / "keep.txt").write_text("another lab's store")
    marked = lookalike(other, {OWNER_ENV: str(guard.state_dir)})  # inherited our mark
    plain = lookalike(other, {})
    try:
        os.kill(daemon_pid, signal.SIGKILL)
        guard.proc.wait(timeout=30)
        assert health(guard.url) == "OK"  # the orphan keeps serving the port
        store_before = files_of(guard.store)

        status = guard.ctl("status")
        assert status.returncode == 1, status.stdout + status.stderr
        first = status.stdout.splitlines()[0]
        assert first.startswith(f"mlflow-guard: DEGRADED - the daemon (pid {daemon_pid}) is "
                                "not running but its server is")
        assert "`guardctl stop` ends it" in first
        assert "  ORPHAN    server of a dead daemon" in status.stdout
        for pid in tree:
            assert f"pid {pid}: " in status.stdout
        assert f"pid {marked.pid}" not in status.stdout and f"pid {plain.pid}" not in status.stdout
        assert "strays    none" in status.stdout
        as_json = json.loads(guard.ctl("status", "--json").stdout)
        assert as_json["state"] == "degraded" and as_json["exit_code"] == 1
        assert {o["pid"] for o in as_json["orphans"]} == tree

        doctor = guard.ctl("doctor", "--store", str(guard.store))
        port = "\n".join(ln for ln in doctor.stdout.splitlines() if "port:" in ln)
        assert port.startswith("WARN  port: the server of a dead guard daemon is still running "
                               "(orphan)"), doctor.stdout
        assert f"pid {server_pid}" in port and "own server" not in doctor.stdout
        assert "`guardctl stop` ends it" in doctor.stdout

        stop = guard.ctl("stop")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        ended = ", ".join(str(p) for p in sorted(tree))
        assert stop.stdout.strip() == (
            f"mlflow-guard is not running; ended the server its dead daemon (pid {daemon_pid}) "
            f"left serving: pids {ended}")
        assert any_alive(tree) == []
        wait_for(lambda: port_bindable("127.0.0.1", guard.port), 10, what="the port to be free")
        for proc in (marked, plain):
            assert proc.poll() is None, "a look-alike over another store was ended"
            assert psutil.Process(proc.pid).is_running()

        # nothing was lost or changed, in the store or the other lab's store
        assert files_of(guard.store) == store_before
        assert (other / "keep.txt").read_text() == "another lab's store"

        after = guard.ctl("status")
        assert after.returncode == 3 and "ORPHAN" not in after.stdout
        again = guard.ctl("stop")
        assert again.returncode == 0 and again.stdout.strip() == "mlflow-guard is not running"
    finally:
        for proc in (marked, plain):
            proc.kill()
            proc.wait(timeout=10)
