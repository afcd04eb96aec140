"""gate.model_lock: which requests take the model-name lock (pure)."""

from __future__ import annotations

import json

import pytest

from guard.gate import model_lock


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
