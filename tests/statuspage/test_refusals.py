"""The guard's refusals as the app answers and journals them, on a plain Flask app with
MLflow's endpoint names (the real server's are in tests/statuspage/test_browser.py and
tests/security/test_gate_attacks.py): MLflow's error format, words a person can act on, and a
line in the refusal journal for `guardctl status` and the status page."""

from __future__ import annotations

import pytest

from guard.core.journal import read_journal
from guard.core.state import StateDir
from guard.protection.gate import Sanctions
from guard.sync.locks import LockSettings, LockTimeout


@pytest.fixture
def client(tmp_path):
    from flask import Flask

    from guard.app import install

    app = Flask("mlflow-like")
    for rule, endpoint, method in [
            ("/api/2.0/mlflow/traces/delete-traces", "_delete_traces", "POST"),
            ("/api/2.0/mlflow/registered-models/delete", "_delete_registered_model", "DELETE"),
            ("/api/2.0/mlflow/model-versions/create", "_create_model_version", "POST")]:
        app.add_url_rule(rule, endpoint, lambda: {"ok": True}, methods=[method])
    store, state = tmp_path / "mlruns", tmp_path / "state"
    store.mkdir()
    settings = LockSettings(str(store), str(state), "lab-pc", "lease", 1.0, 20.0, 2.0, 0.5,
                            0.1, 10.0)
    install(app, settings, Sanctions(str(store), str(state / "vault"), "lab-pc", "refuse"))
    return app.test_client(), StateDir(state)


def test_a_refused_trace_deletion_says_why_and_what_to_do_and_is_journaled(client):
    http, state = client
    answer = http.post("/api/2.0/mlflow/traces/delete-traces", json={"experiment_id": "0"})
    assert answer.status_code == 403
    body = answer.get_json()
    assert body["error_code"] == "PERMISSION_DENIED"
    message = body["message"]
    assert message.startswith("Deleting traces is blocked by mlflow-sync-guard on this shared "
                              "store")
    assert "Nothing was deleted" in message and "To hide traces" in message
    assert message.endswith("Refused requests are listed on the guard's status page: "
                            "http://localhost/guard/")
    (line,) = list(read_journal(state.refusal_journal))
    assert (line["method"], line["path"], line["what"], line["status"]) == (
        "POST", "/api/2.0/mlflow/traces/delete-traces", "delete traces", 403)
    assert line["reason"].startswith("Deleting traces is blocked") and "/guard/" not in \
        line["reason"]


def test_a_model_deletion_refused_by_the_config_names_the_setting(client):
    http, state = client
    answer = http.delete("/api/2.0/mlflow/registered-models/delete", json={"name": "m"})
    assert answer.status_code == 403
    assert "gc.model_deletions: refuse" in answer.get_json()["message"]
    assert [r["what"] for r in read_journal(state.refusal_journal)] == [
        "delete a registered model"]


def test_a_lock_timeout_is_a_503_journaled_too(client, monkeypatch):
    def busy(self, timeout=None):
        raise LockTimeout("model-m is held by office-pc (claimed 3 s ago)")

    monkeypatch.setattr("guard.app.HostLock.acquire", busy)
    http, state = client
    answer = http.post("/api/2.0/mlflow/model-versions/create",
                       json={"name": "m", "source": "runs:/r/model"})
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert body["message"].startswith("mlflow-sync-guard: model-m is held by office-pc")
    (line,) = list(read_journal(state.refusal_journal))
    assert (line["what"], line["status"]) == ("register a model version", 503)
    assert "send the request again" in line["reason"]
