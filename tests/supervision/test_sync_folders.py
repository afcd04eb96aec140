"""A store whose root holds the sync clients' own folders (Syncthing's `.stfolder` and
`.stversions`, Synology's `@eaDir`: the mlruns folder itself is the shared folder) works
through the guard's server, and fails through a bare `mlflow server`: the guard's patch
(guard/core/mlflowpatch.py, installed by create_app) is what makes the difference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from guard.core.store import init_store
from tests.helpers.daemons import end_started, free_port, healthy_guard, wait_for

pytestmark = pytest.mark.integration

SYNC_FOLDERS = (".stfolder", ".stversions/x", "@eaDir", "models/@eaDir")
OPS = ("set_experiment", "search_experiments", "get_experiment_by_name", "create_experiment",
       "search_registered_models")

CLIENT = r'''
import json, sys
import mlflow
from mlflow import MlflowClient

url = sys.argv[1]
mlflow.set_tracking_uri(url)
client = MlflowClient(url)
out = {}

def attempt(name, call):
    try:
        call()
        out[name] = "ok"
    except Exception as exc:
        out[name] = " ".join(str(exc).split())[:300]

attempt("set_experiment", lambda: mlflow.set_experiment("via-set"))
attempt("search_experiments", lambda: client.search_experiments())
attempt("get_experiment_by_name",
        lambda: client.get_experiment_by_name("via-set") or (_ for _ in ()).throw(
            AssertionError("via-set not found")))
attempt("create_experiment", lambda: client.create_experiment("via-create"))
attempt("search_registered_models", lambda: client.search_registered_models())
print(json.dumps(out))
'''


def marked_store(root: Path) -> Path:
    store = root / "mlruns"
    init_store(store)
    for rel in SYNC_FOLDERS:
        (store / rel).mkdir(parents=True, exist_ok=True)
    return store


def run_client(url: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    res = subprocess.run([sys.executable, "-c", CLIENT, url], capture_output=True, text=True,
                         timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_the_guards_server_works_with_sync_folders_in_the_root(tmp_path, make_guard,
                                                               monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = marked_store(tmp_path)
    guard = healthy_guard(store, make_guard, tmp_path)
    assert run_client(guard.url) == dict.fromkeys(OPS, "ok")
    for rel in SYNC_FOLDERS:
        assert (store / rel).is_dir()  # skipped, never touched
    assert guard.status().get("phase") == "running"


def test_a_bare_mlflow_server_fails_with_sync_folders_in_the_root(tmp_path, monkeypatch):
    """The same store and client without the guard's app: what the patch is there for."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = marked_store(tmp_path)
    port = free_port()
    log = open(tmp_path / "mlflow.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store.as_uri(),
         "--default-artifact-root", "mlflow-artifacts:/", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "mlflow.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    return True
            except OSError:
                return False

        wait_for(up, what="a bare mlflow server")
        found = run_client(f"http://127.0.0.1:{port}")
    finally:
        end_started(proc, grace=20)
    for op in OPS[:4]:
        assert "Invalid experiment ID" in found[op], (op, found)
    assert found["search_registered_models"] != "ok"  # a 500: models/@eaDir has no meta.yaml
    assert "models/@eaDir/meta.yaml" in (tmp_path / "mlflow.log").read_text(errors="replace")
