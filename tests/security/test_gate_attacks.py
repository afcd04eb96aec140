"""Attacks on the gate, against real guard-managed servers (issue 13, findings 3 and 4).

3. A body MLflow reads and the gate did not: a JSON string holding the object (MLflow decodes
   it twice). model-versions/create then skipped the model lock, registered-models/delete
   left no tombstone and no trash copy.
4. A deleting route the gate did not know: POST /ajax-api/3.0/mlflow/demo/delete removed a
   prompt (a registered model) under gc.model_deletions: refuse; a rename away from a name
   passed in refuse mode.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from guard.core.store import init_store
from guard.protection import tombstones
from guard.sync.locks import LeaseLock
from tests.helpers.daemons import Guard, free_port

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"
LOCK_TIMEOUT = 2.0  # locks.timeout of the guards here


def start_guard(root, extra: str = "") -> Guard:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    store = root / "mlruns"
    init_store(store)
    config = root / "guard.yaml"
    config.write_text("server:\n  health_interval: 1\nlocks:\n  settle: 1\n  ttl: 20\n"
                      f"  renew_every: 2\n  timeout: {LOCK_TIMEOUT}\npeers:\n"
                      "  heartbeat_interval: 1\n  stale_after: 10\n" + extra)
    guard = Guard(store, root / "state", free_port(), config=config).start()
    guard.wait_healthy()
    return guard


@pytest.fixture(scope="module")
def allowing(tmp_path_factory):
    guard = start_guard(tmp_path_factory.mktemp("allow"))
    try:
        yield guard
    finally:
        guard.teardown()


@pytest.fixture(scope="module")
def refusing(tmp_path_factory):
    guard = start_guard(tmp_path_factory.mktemp("refuse"),
                        "vault:\n  policy: alert\ngc:\n  model_deletions: refuse\n")
    try:
        yield guard
    finally:
        guard.teardown()


def twice(**kw) -> str:
    """The double-encoded body: a JSON string holding the JSON object."""
    return json.dumps(json.dumps(kw))


def call(guard: Guard, method: str, path: str, data: str | None = None,
         ctype: str | None = "application/json") -> requests.Response:
    headers = {"Content-Type": ctype} if ctype else {}
    return requests.request(method, guard.url + path, data=data, headers=headers, timeout=60)


def new_model(guard: Guard, name: str) -> str:
    """A registered model with one version, made with ordinary bodies; its run's id."""
    from mlflow import MlflowClient

    client = MlflowClient(guard.url)
    run = client.create_run("0")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert (guard.store / "models" / name / "version-1" / "meta.yaml").is_file()
    return run.info.run_id


@pytest.mark.parametrize("encode", ["object", "double-encoded"])
def test_model_version_creation_waits_for_the_model_lock_another_machine_holds(
        allowing, encode):
    """Another machine holds model-<name>: the create waits locks.timeout and answers 503,
    whatever the body's encoding; once released the same request registers version 2."""
    name = f"contended-{encode}"
    run_id = new_model(allowing, name)
    fields = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id}
    data = json.dumps(fields) if encode == "object" else twice(**fields)
    other = LeaseLock(allowing.store, "other-machine", f"model-{name}", settle=1.0, ttl=30.0,
                      renew_every=1.0)
    other.acquire(timeout=30)
    try:
        start = time.monotonic()
        answer = call(allowing, "POST", f"{API}/model-versions/create", data)
        took = time.monotonic() - start
    finally:
        other.release()
    assert answer.status_code == 503, (answer.status_code, answer.text, took)
    assert "other-machine" in answer.text and took >= LOCK_TIMEOUT
    assert not (allowing.store / "models" / name / "version-2").exists()
    again = call(allowing, "POST", f"{API}/model-versions/create", data)
    assert again.status_code == 200, again.text
    assert (allowing.store / "models" / name / "version-2" / "meta.yaml").is_file()


@pytest.mark.parametrize("ctype", ["application/json", None, "text/plain"])
def test_double_encoded_model_deletion_leaves_a_tombstone_and_a_trash_copy(allowing, ctype):
    """DELETE reads its body as JSON whatever the content type; every such form is kept."""
    name = f"doomed-{(ctype or 'none').replace('/', '-')}"
    new_model(allowing, name)
    answer = call(allowing, "DELETE", f"{API}/registered-models/delete", twice(name=name),
                  ctype)
    assert answer.status_code == 200, answer.text
    assert not (allowing.store / "models" / name).exists()
    stones = [t.rel for t in tombstones.read_all(allowing.store)]
    assert ("models", name) in stones
    kept = list((allowing.state_dir / "vault" / "trash").glob(
        f"*/models/{name}/version-1/meta.yaml"))
    assert len(kept) == 1


def test_double_encoded_model_deletion_is_refused_in_refuse_mode(refusing):
    new_model(refusing, "precious")
    answer = call(refusing, "DELETE", f"{API}/registered-models/delete", twice(name="precious"))
    assert answer.status_code == 403 and "gc.model_deletions" in answer.text
    assert (refusing.store / "models" / "precious" / "meta.yaml").is_file()


def test_renaming_a_model_away_is_refused_in_refuse_mode(refusing):
    new_model(refusing, "named")
    for data in (json.dumps({"name": "named", "new_name": "elsewhere"}),
                 twice(name="named", new_name="elsewhere")):
        answer = call(refusing, "POST", f"{API}/registered-models/rename", data)
        assert answer.status_code == 403 and "gc.model_deletions" in answer.text
    assert (refusing.store / "models" / "named" / "version-1" / "meta.yaml").is_file()
    assert not (refusing.store / "models" / "elsewhere").exists()


@pytest.mark.parametrize("mode", ["refusing", "allowing"])
def test_demo_delete_removes_no_prompt(request, mode):
    """The demo's delete removes every prompt named like the demo's (and its traces for good):
    refused in both modes, the prompt stays."""
    import mlflow

    guard = request.getfixturevalue(mode)
    prompt = f"mlflow-demo.{mode}"
    mlflow.set_tracking_uri(guard.url)
    try:
        mlflow.genai.register_prompt(name=prompt, template="Hello {{name}}")
    finally:  # the global URI would outlive this guard and send later tests' lookups to it
        mlflow.set_tracking_uri(None)
    assert (guard.store / "models" / prompt / "meta.yaml").is_file()
    answer = call(guard, "POST", "/ajax-api/3.0/mlflow/demo/delete", "{}")
    assert answer.status_code == 403 and "demo" in answer.text, answer.text
    assert (guard.store / "models" / prompt / "meta.yaml").is_file()
