"""gate: which requests take the model-name lock, and which are refused or sanctioned (pure)."""

from __future__ import annotations

import json

import pytest

from guard.protection.gate import GC_HINT, model_lock, model_name, refusal, removed_model_field


def body(**kw) -> bytes:
    return json.dumps(kw).encode()


@pytest.mark.parametrize("path", [
    "/api/2.0/mlflow/model-versions/create",
    "/ajax-api/2.0/mlflow/model-versions/create",
    "/mlflow/prefix/api/2.0/mlflow/model-versions/create",
    "/api/2.0/mlflow/model-versions/create/",
])
def test_model_version_creation_locks_the_model_name(path):
    assert model_lock("POST", path, body(name="churn", source="x")) == "model-churn"


def test_registered_model_creation_and_rename_lock_the_new_name():
    assert model_lock("POST", "/api/2.0/mlflow/registered-models/create",
                      body(name="churn")) == "model-churn"
    assert model_lock("post", "/api/2.0/mlflow/registered-models/rename",
                      body(name="old", new_name="new")) == "model-new"


@pytest.mark.parametrize("method, path, raw", [
    ("POST", "/api/2.0/mlflow/runs/log-batch", body(run_id="r", metrics=[])),
    ("GET", "/api/2.0/mlflow/model-versions/search", b""),
    ("PATCH", "/api/2.0/mlflow/model-versions/update", body(name="churn", version="1")),
    ("POST", "/api/2.0/mlflow/model-versions/set-tag", body(name="churn", version="1")),
    ("POST", "/api/2.0/mlflow-artifacts/artifacts/0/x", b"binary\x00"),
    ("POST", "/api/2.0/mlflow/model-versions/create", b"not json"),
    ("POST", "/api/2.0/mlflow/model-versions/create", b"\xff\xfe"),
    ("POST", "/api/2.0/mlflow/model-versions/create", body(source="x")),
    ("POST", "/api/2.0/mlflow/model-versions/create", body(name="")),
    ("POST", "/api/2.0/mlflow/model-versions/create", body(name=["a"])),
    ("POST", "/api/2.0/mlflow/model-versions/create", b"[1, 2]"),
    ("POST", "/api/3.0/mlflow/model-versions/create", body(name="churn")),
])
def test_everything_else_passes_untouched(method, path, raw):
    assert model_lock(method, path, raw) is None


def test_hostile_model_names_become_one_safe_file_name():
    resource = model_lock("POST", "/api/2.0/mlflow/registered-models/create",
                          body(name="../../../etc/x"))
    assert resource == "model-..%2F..%2F..%2Fetc%2Fx"  # one file name: no separator left


# --- refusal ------------------------------------------------------------------------------

ART = "/api/2.0/mlflow-artifacts/artifacts/1/0123456789abcdef0123456789abcdef/artifacts/m.pkl"


@pytest.mark.parametrize("path", [
    ART,
    ART.replace("/api/", "/ajax-api/"),
    "/mlflow/prefix" + ART,
    "/api/2.0/mlflow-artifacts/artifacts",
    "/api/2.0/mlflow-artifacts/artifacts/",
])
@pytest.mark.parametrize("model_deletions", ["allow", "refuse"])
def test_artifact_delete_is_refused_and_names_guardctl_gc(path, model_deletions):
    for method in ("DELETE", "delete"):
        why = refusal(method, path, model_deletions)
        assert why is not None and "artifacts" in why
        assert "`guardctl gc`" in why and GC_HINT in why


@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "HEAD"])
def test_artifact_reads_and_uploads_pass(method):
    assert refusal(method, ART, "refuse") is None


def test_artifact_lookalike_paths_pass():
    assert refusal("DELETE", "/api/2.0/mlflow-artifacts/artifactsx/1", "refuse") is None
    assert refusal("DELETE", "/api/2.0/mlflow/artifacts/list", "refuse") is None


@pytest.mark.parametrize("path", [
    "/api/2.0/mlflow/traces/delete-traces",
    "/api/3.0/mlflow/traces/delete-traces",
    "/ajax-api/2.0/mlflow/traces/delete-traces",
    "/ajax-api/3.0/mlflow/traces/delete-traces",
    "/prefix/api/2.0/mlflow/traces/delete-traces/",
])
def test_trace_deletion_is_refused(path):
    why = refusal("POST", path, "allow")
    assert why is not None and "traces" in why


def test_trace_deletion_with_another_method_passes():
    assert refusal("GET", "/api/2.0/mlflow/traces/delete-traces", "allow") is None


@pytest.mark.parametrize("op", ["registered-models/delete", "model-versions/delete"])
@pytest.mark.parametrize("prefix", ["/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/",
                                    "/p/api/2.0/mlflow/"])
def test_model_deletions_refused_only_when_configured(op, prefix):
    """gc.model_deletions takes "allow" or "refuse" (config.py); only "refuse" refuses."""
    assert refusal("DELETE", prefix + op, "allow") is None
    why = refusal("DELETE", prefix + op, "refuse")
    assert why is not None and "gc.model_deletions" in why


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/api/2.0/mlflow/runs/delete"),           # soft deletes: MLflow only marks them
    ("POST", "/api/2.0/mlflow/runs/delete"),
    ("POST", "/api/2.0/mlflow/experiments/delete"),
    ("POST", "/ajax-api/2.0/mlflow/experiments/delete"),
    ("POST", "/api/2.0/mlflow/registered-models/rename"),
    ("GET", "/api/2.0/mlflow/registered-models/delete"),
    ("POST", "/api/2.0/mlflow/model-versions/create"),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag"),
    ("DELETE", "/api/2.0/mlflow/registered-models/alias"),
])
def test_everything_else_is_never_refused(method, path):
    assert refusal(method, path, "refuse") is None
    assert refusal(method, path, "allow") is None


# --- removed_model_field / model_name ---------------------------------------------------------

@pytest.mark.parametrize("method, path, field", [
    ("DELETE", "/api/2.0/mlflow/registered-models/delete", "name"),
    ("delete", "/ajax-api/2.0/mlflow/registered-models/delete", "name"),
    ("POST", "/api/2.0/mlflow/registered-models/rename", "name"),   # the old name goes away
    ("POST", "/p/api/2.0/mlflow/registered-models/rename/", "name"),
    ("POST", "/api/2.0/mlflow/registered-models/delete", None),
    ("GET", "/api/2.0/mlflow/registered-models/delete", None),
    ("DELETE", "/api/2.0/mlflow/registered-models/rename", None),
    ("PATCH", "/api/2.0/mlflow/registered-models/rename", None),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete", None),      # a soft delete
    ("POST", "/api/2.0/mlflow/registered-models/create", None),
    ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/x", None),
])
def test_removed_model_field(method, path, field):
    assert removed_model_field(method, path) == field


@pytest.mark.parametrize("field, raw, name", [
    ("name", body(name="churn"), "churn"),
    ("new_name", body(name="old", new_name="new"), "new"),
    ("name", body(new_name="new"), None),
    ("name", body(name=""), None),
    ("name", body(name=7), None),
    ("name", b"", None),
    ("name", b"[\"churn\"]", None),
    ("name", b"not json", None),
    ("name", b"\xff\xfe", None),
])
def test_model_name(field, raw, name):
    assert model_name(field, raw) == name


def test_the_configured_refusal_survives_the_trip_to_the_server():
    """gc.model_deletions is an enum in the daemon; the server gets it as JSON in its env."""
    from guard.core.config import ModelDeletions
    from guard.protection.gate import Sanctions

    sent = Sanctions("/s", "/v", "lab-pc", ModelDeletions.REFUSE)
    assert json.loads(sent.to_env())["model_deletions"] == "refuse"
    got = Sanctions.from_env(sent.to_env())
    assert refusal("DELETE", "/api/2.0/mlflow/registered-models/delete", got.model_deletions)
    assert refusal("DELETE", "/api/2.0/mlflow/registered-models/delete",
                   ModelDeletions.ALLOW) is None
