"""The daemon with real processes: one supervised MLflow server, restarts, status, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers.daemons import any_alive, free_port, guardctl, tree_pids, wait_for

pytestmark = pytest.mark.integration  # a real daemon and MLflow server


def server_parent_and_child(guard) -> tuple[int, int]:
    doc = guard.wait_healthy()
    parent = doc["server"]["pid"]
    children = wait_for(lambda: psutil.Process(parent).children(), what="uvicorn child")
    return parent, children[0].pid


def status_json(guard) -> tuple[int, dict]:
    res = guard.ctl("status", "--json")
    return res.returncode, json.loads(res.stdout)


# ---- one shared daemon -------------------------------------------------------------------

def test_client_logs_run_through_guard_with_portable_uris(shared_guard, tmp_path):
    client = MlflowClient(tracking_uri=shared_guard.url)
    exp_id = client.create_experiment("guarded")
    run = client.create_run(exp_id)
    client.log_param(run.info.run_id, "lr", "0.1")
    client.log_metric(run.info.run_id, "loss", 0.25, step=3)
    artifact = tmp_path / "weights.txt"
    artifact.write_text("w=1")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)

    run_dir = shared_guard.store / exp_id / run.info.run_id
    meta = yaml.safe_load((run_dir / "meta.yaml").read_text())
    assert meta["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/{run.info.run_id}/artifacts"
    assert (run_dir / "artifacts" / "weights.txt").read_text() == "w=1"
    assert (run_dir / "params" / "lr").read_text() == "0.1"
    assert yaml.safe_load((shared_guard.store / exp_id / "meta.yaml").read_text())[
        "artifact_location"] == f"mlflow-artifacts:/{exp_id}"
    got = client.get_run(run.info.run_id)
    assert got.data.metrics["loss"] == 0.25
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["weights.txt"]


def test_status_healthy_text_and_json(shared_guard):
    res = shared_guard.ctl("status")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout and shared_guard.url in res.stdout
    assert str(shared_guard.store) in res.stdout
    code, doc = status_json(shared_guard)
    age = time.time() - psutil.Process(shared_guard.proc.pid).create_time()
    assert code == 0 and doc["state"] == "healthy"
    assert doc["daemon"]["pid"] == shared_guard.proc.pid
    # counted from the daemon's start: after its process began (and its imports), not before;
    # a healthy server took it seconds, so never 0
    uptime = doc["daemon"]["uptime_s"]
    assert 0 < uptime <= age + 0.1 and uptime > age - 60, (uptime, age)
    assert doc["server"]["health"]["ok"] is True
    assert len(doc["server"]["tree"]) >= 2 and all(t["alive"] for t in doc["server"]["tree"])
    assert doc["mlflow_version"].startswith("3.")
    assert doc["config_file"] == str(shared_guard.config)
    assert doc["log_file"].startswith(str(shared_guard.state_dir))
    assert doc["strays"] == []


def test_second_run_is_refused(shared_guard):
    res = guardctl("run", "--store", str(shared_guard.store), *shared_guard.opts, timeout=60)
    assert res.returncode == 1
    assert f"already running (pid {shared_guard.proc.pid})" in res.stderr
    assert shared_guard.proc.poll() is None


def test_hand_started_server_over_store_shows_as_stray(shared_guard):
    port = free_port()
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true")
    stray = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         shared_guard.store.as_uri(), "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        code, doc = status_json(shared_guard)
        assert code == 0
        assert stray.pid in [s["pid"] for s in doc["strays"]]
        assert "STRAYS" in shared_guard.ctl("status").stdout
    finally:
        pids = tree_pids(stray.pid)
        for pid in any_alive(pids):
            psutil.Process(pid).kill()
        stray.wait(10)


def test_kill_9_server_parent_restarts(shared_guard):
    before = shared_guard.wait_healthy()
    parent, child = server_parent_and_child(shared_guard)
    os.kill(parent, signal.SIGKILL)
    code, doc = status_json(shared_guard)
    assert code == 1 and doc["state"] == "degraded"
    after = shared_guard.wait_healthy(not_pid=parent)
    assert after["restarts"] == before["restarts"] + 1
    assert "exited" in after["last_reason"]
    wait_for(lambda: not any_alive([parent, child]), 15, what="old tree to be gone")


def test_kill_9_server_child_restarts(shared_guard):
    before = shared_guard.wait_healthy()
    parent, child = server_parent_and_child(shared_guard)
    os.kill(child, signal.SIGKILL)
    after = shared_guard.wait_healthy(not_pid=parent)
    assert after["restarts"] == before["restarts"] + 1
    assert not any_alive([parent, child])
    code, doc = status_json(shared_guard)
    assert code == 0 and doc["restarts"] == after["restarts"]


def test_crash_loop_stops_restarts_until_guardctl_restart(shared_guard):
    shared_guard.wait_healthy()
    for _ in range(3):  # crash_loop_count is 3 in the shared config
        doc = shared_guard.status()
        if doc.get("phase") == "crash loop":
            break
        parent = shared_guard.wait_healthy()["server"]["pid"]
        os.kill(parent, signal.SIGKILL)
        wait_for(lambda killed=parent: shared_guard.status()["server"]["pid"] != killed
                 or shared_guard.status()["phase"] == "crash loop", 60, what="reaction to kill")
        wait_for(lambda: shared_guard.status()["phase"] in ("running", "crash loop"), 120,
                 what="restart or crash loop")
    doc = wait_for(lambda: shared_guard.status().get("phase") == "crash loop"
                   and shared_guard.status(), 10, what="crash loop")
    assert "crash loop" in doc["last_reason"] and "guardctl restart" in doc["last_reason"]
    time.sleep(2)
    assert shared_guard.status()["server"]["pid"] is None  # no restart while in a crash loop
    res = shared_guard.ctl("status")
    assert res.returncode == 1 and "crash loop" in res.stdout

    res = shared_guard.ctl("restart")
    assert res.returncode == 0, res.stdout + res.stderr
    assert shared_guard.ctl("status").returncode == 0


# ---- daemons of their own ------------------------------------------------------------------

def test_kill_9_daemon_then_run_ends_orphans_and_stop_leaves_nothing(new_store, make_guard,
                                                                     tmp_path):
    first = make_guard(new_store, state_dir=tmp_path / "state").start()
    parent, child = server_parent_and_child(first)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    assert sorted(any_alive([parent, child])) == sorted([parent, child])  # orphans keep serving
    res = guardctl("status", *first.opts)  # the orphan is shown (tests/faults/test_orphans.py)
    assert res.returncode == 1 and "not running but its server is" in res.stdout
    assert "ORPHAN" in res.stdout and f"pid {parent}: " in res.stdout

    second = make_guard(new_store, state_dir=tmp_path / "state", port=first.port).start()
    doc = second.wait_healthy()
    assert not any_alive([parent, child])
    assert "ending orphaned guard server" in second.output()
    serving = [p for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and "server" in p.info["cmdline"]
               and new_store.as_uri() in p.info["cmdline"]]
    assert [p.pid for p in serving] == [doc["server"]["pid"]]

    tree = tree_pids(doc["server"]["pid"])
    assert len(tree) >= 2
    res = second.ctl("stop")
    assert res.returncode == 0 and "stopped" in res.stdout
    assert second.proc.wait(30) == 0
    assert any_alive(tree | {second.proc.pid}) == []
    assert not (second.state_dir / "pids.json").exists()
    res = second.ctl("status", "--json")
    assert res.returncode == 3 and json.loads(res.stdout)["state"] == "not running"


def test_hand_started_server_on_port_is_replaced(new_store, make_guard):
    port = free_port()
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true")
    stray = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", new_store.as_uri(),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    stray_tree = wait_for(lambda: len(tree_pids(stray.pid)) >= 2 and tree_pids(stray.pid), 60,
                          what="hand-started server's worker")
    guard = make_guard(new_store, port=port).start()
    try:
        guard.wait_healthy()
        assert not any_alive(stray_tree)
        assert "hand-started MLflow server over this store" in guard.output()
    finally:
        for pid in any_alive(stray_tree):
            psutil.Process(pid).kill()
        stray.wait(10)


def test_foreign_listener_on_port_is_left_alone(new_store, make_guard):
    listener = subprocess.Popen(
        [sys.executable, "-c", "import socket,time\ns=socket.socket()\n"
         "s.bind(('127.0.0.1',0))\ns.listen()\nprint(s.getsockname()[1],flush=True)\n"
         "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(listener.stdout.readline())
        guard = make_guard(new_store, port=port).start()
        assert guard.proc.wait(60) == 2
        out = guard.output()
        assert f"port {port} is taken by pid {listener.pid}" in out and "left alone" in out
        assert listener.poll() is None
        res = guard.ctl("status")
        assert res.returncode == 3
    finally:
        listener.kill()
        listener.wait()


def test_missing_store_is_an_error_and_nothing_is_created(tmp_path, make_guard):
    store = tmp_path / "not-mounted" / "mlruns"
    guard = make_guard(store).start()
    assert guard.proc.wait(60) == 2
    assert "does not exist" in guard.output() and "--wait-for-store" in guard.output()
    assert not store.exists() and not store.parent.exists()


def test_empty_store_is_an_error_and_stays_empty(tmp_path, make_guard):
    store = tmp_path / "mount-point"
    store.mkdir()
    guard = make_guard(store).start()
    assert guard.proc.wait(60) == 2
    assert "is empty" in guard.output() and "guardctl init" in guard.output()
    assert list(store.iterdir()) == []


def test_wait_for_store_starts_once_the_store_appears_and_sigterm_stops(tmp_path, make_guard):
    store = tmp_path / "late-drive"
    guard = make_guard(store, extra=("--wait-for-store",)).start()
    doc = wait_for(lambda: guard.status().get("phase") == "waiting for store"
                   and guard.status(),
                   60, what="waiting phase")
    assert "does not exist" in doc["message"]
    res = guard.ctl("status")
    assert res.returncode == 1 and "waiting for store" in res.stdout
    time.sleep(1.5)
    assert not store.exists()
    assert guardctl("init", "--store", str(store)).returncode == 0
    doc = guard.wait_healthy()
    assert guard.ctl("status").returncode == 0

    tree = tree_pids(doc["server"]["pid"])
    guard.proc.send_signal(signal.SIGTERM)  # what systemd sends on stop
    assert guard.proc.wait(30) == 0
    assert any_alive(tree) == []
