"""`guardctl doctor` on real setups: real stores, config files, sockets and the shared guard.

Each test writes its own config file (store, state folder, a free port) and runs the real
CLI; only the inotify limit is replaced, through doctor.Probes, where a test needs it low.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from guard.cli import build_parser
from guard.commands import doctor as doctor_cmd
from guard.core.store import store_uri
from guard.service import doctor
from guard.sync.peers import Heartbeat, publish
from tests.helpers.daemons import free_port, guardctl

pytestmark = pytest.mark.integration  # `guardctl doctor` subprocesses and a real daemon


def write_config(tmp_path: Path, store: Path, port: int | None = None, extra: str = "") -> Path:
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(f"store: {store}\nstate_dir: {tmp_path / 'state'}\n"
                   f"server:\n  port: {port or free_port()}\n" + extra)
    return cfg


def lines_of(text: str) -> dict[str, str]:
    """'check name' -> its line, for the finding lines of the text output."""
    out = {}
    for line in text.splitlines():
        if line[:6].strip() in ("ok", "WARN", "FAIL") and ":" in line:
            out[line[6:].split(":", 1)[0]] = line
    return out


def run_in_process(capsys, probes: doctor.Probes, *argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(["doctor", *argv])
    code = doctor_cmd.run(args, probes)
    return code, capsys.readouterr().out


def test_healthy_setup_exits_0_and_writes_nothing(tmp_path):
    store = tmp_path / "mlruns"
    made = guardctl("init", "--store", str(store))
    assert made.returncode == 0, made.stderr
    port = free_port()
    cfg = write_config(tmp_path, store, port)
    before = {p: p.stat().st_mtime_ns for p in [store, *store.rglob("*")]}
    res = guardctl("doctor", "--config", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    found = lines_of(res.stdout)
    assert found["config"].startswith("ok") and f"{cfg} (--config)" in found["config"]
    assert found["store"] == f"ok    store: {store} is an MLflow file store, writable"
    assert found["port"] == f"ok    port: 127.0.0.1:{port} is free"
    assert found["mlflow"].startswith("ok    mlflow: mlflow 3.")
    assert res.stdout.splitlines()[-1].startswith("0 failed")
    assert {p: p.stat().st_mtime_ns for p in [store, *store.rglob("*")]} == before
    assert not (tmp_path / "state").exists()

    as_json = guardctl("doctor", "--config", str(cfg), "--json")
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    assert {d["name"]: d["level"] for d in data}["store"] == "ok"
    assert all(set(d) == {"name", "level", "detail", "fix"} for d in data)


def test_port_held_by_the_running_guard_is_ours(shared_guard):
    res = shared_guard.ctl("doctor", "--store", str(shared_guard.store))
    port = lines_of(res.stdout)["port"]
    assert port.startswith("ok") and "this guard's own server" in port, res.stdout
    assert f"daemon pid {shared_guard.proc.pid}" in port
    assert lines_of(res.stdout)["clocks"] == "ok    clocks: no other machines seen yet"
    assert res.returncode == 0, res.stdout


def test_missing_store_fails_as_unmounted(tmp_path):
    store = tmp_path / "drive" / "mlruns"
    res = guardctl("doctor", "--config", str(write_config(tmp_path, store)))
    assert res.returncode == 1
    line = lines_of(res.stdout)["store"]
    assert line.startswith("FAIL") and "does not exist" in line and "unmounted" in line
    assert "fix: mount the drive" in res.stdout and "--wait-for-store" in res.stdout
    assert not store.exists() and not (tmp_path / "state").exists()


def test_empty_store_folder_fails_as_unmounted(tmp_path):
    store = tmp_path / "mlruns"
    store.mkdir()
    (store / ".stfolder").mkdir()  # what Syncthing leaves in a folder it has not filled yet
    res = guardctl("doctor", "--config", str(write_config(tmp_path, store)))
    assert res.returncode == 1
    line = lines_of(res.stdout)["store"]
    assert line.startswith("FAIL") and "empty folder" in line and "unmounted" in line
    assert f"guardctl init --store {store}" in res.stdout
    assert sorted(os.listdir(store)) == [".stfolder"]


def test_taken_port_fails_naming_port_and_pid(tmp_path, new_store):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = guardctl("doctor", "--config", str(write_config(tmp_path, new_store, port)))
    assert res.returncode == 1, res.stdout
    line = lines_of(res.stdout)["port"]
    assert line.startswith(f"FAIL  port: 127.0.0.1:{port} is taken by pid {os.getpid()} ")
    assert "fix: stop that process, or choose another port" in res.stdout


def test_low_watch_limit_warns_with_the_sysctl_fix_and_does_not_block(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow import MlflowClient

    store = tmp_path / "mlruns"
    client = MlflowClient(tracking_uri=store_uri(store))
    exp = client.create_experiment("doctor")
    for i in range(3):
        run = client.create_run(exp)
        client.log_param(run.info.run_id, "i", i)
        client.set_terminated(run.info.run_id)
    cfg = write_config(tmp_path, store)
    folders = doctor.count_watch_folders(store)
    assert folders >= 6  # store, .trash, models, two experiments, three runs

    code, out = run_in_process(capsys, doctor.Probes(watch_limit=lambda: 2), "--config", str(cfg))
    assert code == 0, out
    line = lines_of(out)["inotify watches"]
    assert line.startswith("WARN") and f"watch {folders} store folders" in line
    assert "limit (fs.inotify.max_user_watches) is 2" in line and "polling" in line
    assert "fix: sudo sysctl fs.inotify.max_user_watches=524288" in out
    assert "/etc/sysctl.d/" in out

    code, out = run_in_process(capsys, doctor.Probes(), "--config", str(cfg))
    assert str(doctor.read_watch_limit()) in lines_of(out)["inotify watches"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")
def test_watch_count_matches_the_watches_the_guard_sets(tmp_path):
    from guard.core.watch import EVENTS, StoreWatcher
    from tests.helpers.store import copy_direct_store

    store = copy_direct_store(tmp_path)
    watcher = StoreWatcher(store, "events")
    assert watcher.start() == EVENTS
    try:
        assert doctor.count_watch_folders(store) == len(watcher._inotify.paths)
    finally:
        watcher.stop()


def test_peer_with_a_clock_ahead_warns(tmp_path, new_store):
    now = time.time()
    for host, last_seen in (("me", now - 3600), ("hostB", now + 30)):
        publish(new_store, Heartbeat(host, 1, "0.1.0", "3.17.2", "linux", "/x", now, last_seen,
                                        5.0))
    cfg = write_config(tmp_path, new_store, extra="host_id: me\n")
    res = guardctl("doctor", "--config", str(cfg))
    line = lines_of(res.stdout)["clocks"]
    assert line.startswith("WARN") and "hostB's clock is ahead of ours by at least" in line
    assert "me's" not in line
    assert "timedatectl set-ntp true" in res.stdout
    assert res.returncode == 0


def test_malformed_yaml_is_a_config_fail_without_traceback(tmp_path):
    cfg = tmp_path / "guard.yaml"
    cfg.write_text("store: /data/mlruns\nserver:\n  port: [5050\n")
    res = guardctl("doctor", "--config", str(cfg))
    assert res.returncode == 1
    line = lines_of(res.stdout)["config"]
    assert line.startswith("FAIL") and "not valid YAML" in line and "line" in line
    assert str(cfg) in line
    assert "Traceback" not in res.stdout + res.stderr
    assert lines_of(res.stdout)["mlflow"].startswith("ok")  # the checks that need no config ran


def test_bad_usage_exits_2():
    res = guardctl("doctor", "--no-such-flag")
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr


def test_a_config_exposing_the_server_without_auth_fails_with_what_to_do(tmp_path, new_store):
    cfg = write_config(tmp_path, new_store, extra="  host: 0.0.0.0\n")
    res = guardctl("doctor", "--config", str(cfg))
    assert res.returncode == 1
    line = lines_of(res.stdout)["config"]
    assert line.startswith("FAIL") and "'server.host' is '0.0.0.0'" in line
    assert "server.auth: basic and server.expose: true" in line and "127.0.0.1" in line
    assert "Traceback" not in res.stdout + res.stderr


def test_a_loopback_config_shows_the_exposure_line(tmp_path, new_store):
    cfg = write_config(tmp_path, new_store)
    res = guardctl("doctor", "--config", str(cfg))
    line = lines_of(res.stdout)["exposure"]
    assert line.startswith("ok") and "this machine only" in line


def test_sync_folders_in_the_store_root_warn_and_do_not_block(tmp_path, capsys, new_store):
    for rel in (".stfolder", ".stversions/x", "@eaDir"):
        (new_store / rel).mkdir(parents=True)
    (new_store / ".stignore").write_text("")  # a file: MLflow lists folders only
    code, out = run_in_process(capsys, doctor.Probes(), "--config",
                               str(write_config(tmp_path, new_store)))
    line = lines_of(out)["sync folders"]
    assert line.startswith("WARN  sync folders: the store root holds .stfolder, .stversions, "
                           "@eaDir: the guard's server skips them"), out
    assert "fix: share the folder above mlruns" in out
    assert lines_of(out)["store"].startswith("ok") and code == 0, out
