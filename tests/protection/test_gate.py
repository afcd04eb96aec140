"""gate: what the server does with each request, by the route MLflow dispatched it to, and the
request's fields as MLflow reads them (pure; MLflow's Flask app is built, never served)."""

from __future__ import annotations

import json
import os

import pytest

from guard.protection.gate import (
    EXPERIMENT,
    GC_HINT,
    ROUTES,
    Verdict,
    decide,
    joins_experiment,
    mlflow_request_doc,
    model_name,
    model_resource,
)

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
JSON = "application/json"


def body(**kw) -> bytes:
    return json.dumps(kw).encode()


def twice(**kw) -> bytes:
    """A JSON string holding a JSON object: what older clients send, and MLflow decodes."""
    return json.dumps(json.dumps(kw)).encode()


# --- which route MLflow dispatches to ---------------------------------------------------------

@pytest.fixture(scope="module")
def routed():
    """`routed(method, path)`: the endpoint MLflow's own Flask app dispatches to, None when
    no rule matches (404, 405, or a redirect: no handler runs)."""
    from mlflow.server import app
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import RequestRedirect

    def match(method: str, path: str) -> str | None:
        with app.test_request_context(path, method=method):
            from flask import request
            try:
                return request.url_rule.endpoint if request.url_rule else None
            except (HTTPException, RequestRedirect):
                return None
    return match


@pytest.mark.parametrize("path", [
    "/api/2.0/mlflow/model-versions/create",
    "/ajax-api/2.0/mlflow/model-versions/create",
    "/api/2.0/mlflow/model%2Dversions/create",          # percent-encoded: werkzeug decodes
])
def test_model_version_creation_routes_lock_the_model_name(routed, path):
    verdict = decide(routed("POST", path), "POST", "refuse")
    assert verdict == Verdict(lock="name")


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/2.0/mlflow/model-versions/create/"),   # trailing slash: 404 in MLflow
    ("POST", "/API/2.0/mlflow/model-versions/create"),     # case: 404
    ("POST", "//api/2.0/mlflow//model-versions/create"),   # doubled slashes: a redirect
    ("POST", "/api/3.0/mlflow/model-versions/create"),     # no such route
    ("GET", "/api/2.0/mlflow/registered-models/delete"),   # 405
    ("POST", "/api/2.0/mlflow/registered-models/delete"),  # 405
])
def test_paths_mlflow_does_not_route_run_no_handler(routed, method, path):
    """What MLflow does not dispatch changes nothing; the gate sees the same (no endpoint)."""
    assert routed(method, path) is None
    assert decide(routed(method, path), method, "refuse") == Verdict()


def test_the_static_prefix_routes_to_the_same_handlers():
    """--static-prefix changes every rule's path, not its endpoint (MLflow's handler name)."""
    import subprocess
    import sys

    code = ("from mlflow.server import app; from flask import request\n"
            "with app.test_request_context('/lab/ajax-api/3.0/mlflow/demo/delete', "
            "method='POST'):\n    print(request.url_rule.endpoint)")
    env = {**os.environ, "_MLFLOW_STATIC_PREFIX": "/lab", "MLFLOW_ALLOW_FILE_STORE": "true"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.stdout.strip() == "_delete_demo", out.stderr[-2000:]


def test_registered_model_creation_and_rename_lock_the_new_name(routed):
    create = decide(routed("POST", "/api/2.0/mlflow/registered-models/create"), "POST", "allow")
    # no lock when the model is there already: MLflow answers RESOURCE_ALREADY_EXISTS
    assert create == Verdict(lock="name", needs_absent=True)
    rename = decide(routed("POST", "/ajax-api/2.0/mlflow/registered-models/rename"), "POST",
                    "allow")
    assert rename == Verdict(lock="new_name", keeps="name")   # the old name goes away


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/experiments/create",
                                  "/ajax-api/2.0/mlflow/experiments/create"])
def test_experiment_creation_locks_the_experiment_name(routed, path):
    verdict = decide(routed("POST", path), "POST", "refuse")
    assert verdict == Verdict(lock="name", resource=EXPERIMENT)
    assert model_resource(verdict.lock, {"name": "a/b"}, verdict.resource) == "experiment-a%2Fb"
    assert model_resource("name", {"name": "a/b"}) == "model-a%2Fb"  # a distinct resource


NOW = 1_700_000_000_000


@pytest.mark.parametrize("found, there_before, answer", [
    (None, False, None),                            # nobody made it: MLflow creates it
    (("7", "active", NOW - 3_600_000), False, "7"),  # arrived while waiting: the winner's id
    (("7", "active", None), False, "7"),
    (("7", "active", NOW - 2_000), True, "7"),       # arrived within the sync delay
    (("7", "active", NOW - 3_600_000), True, None),  # an old one: MLflow's "already exists"
    (("7", "active", None), True, None),
    (("7", "deleted", NOW - 2_000), False, None),    # a deleted one: MLflow's own answer
])
def test_a_create_that_lost_the_race_answers_the_winner(found, there_before, answer):
    assert joins_experiment(found, there_before, NOW, 5.0) == answer


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/2.0/mlflow/runs/log-batch"),
    ("GET", "/api/2.0/mlflow/model-versions/search"),
    ("PATCH", "/api/2.0/mlflow/model-versions/update"),
    ("POST", "/api/2.0/mlflow/model-versions/set-tag"),
    ("POST", "/api/2.0/mlflow/runs/delete"),                 # soft deletes: MLflow only marks
    ("POST", "/api/2.0/mlflow/experiments/delete"),
    ("POST", "/ajax-api/2.0/mlflow/experiments/delete"),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete-tag"),
    ("DELETE", "/api/2.0/mlflow/registered-models/alias"),
    ("OPTIONS", "/api/2.0/mlflow/registered-models/delete"),  # Flask answers it itself
])
@pytest.mark.parametrize("mode", ["allow", "refuse"])
def test_everything_else_passes_untouched(routed, method, path, mode):
    assert decide(routed(method, path), method, mode) == Verdict()


# --- refusals -----------------------------------------------------------------------------------

ART = "/api/2.0/mlflow-artifacts/artifacts/1/0123456789abcdef0123456789abcdef/artifacts/m.pkl"


@pytest.mark.parametrize("path", [ART, ART.replace("/api/", "/ajax-api/"),
                                  "/api/2.0/mlflow-artifacts/artifacts/x%2Fy"])
@pytest.mark.parametrize("mode", ["allow", "refuse"])
def test_artifact_delete_is_refused_and_names_guardctl_gc(routed, path, mode):
    why = decide(routed("DELETE", path), "DELETE", mode).refuse
    assert why is not None and "artifacts" in why
    assert "`guardctl gc`" in why and GC_HINT in why


def test_artifact_reads_pass(routed):
    assert decide(routed("GET", ART), "GET", "refuse") == Verdict()


@pytest.mark.parametrize("path", [
    "/api/2.0/mlflow/traces/delete-traces",
    "/api/3.0/mlflow/traces/delete-traces",
    "/ajax-api/2.0/mlflow/traces/delete-traces",
    "/ajax-api/3.0/mlflow/traces/delete-traces",
])
def test_trace_deletion_is_refused(routed, path):
    why = decide(routed("POST", path), "POST", "allow").refuse
    assert why is not None and "traces" in why


@pytest.mark.parametrize("mode", ["allow", "refuse"])
def test_demo_delete_is_refused(routed, mode):
    """It hard-deletes traces and every prompt (registered model) named like the demo's."""
    why = decide(routed("POST", "/ajax-api/3.0/mlflow/demo/delete"), "POST", mode).refuse
    assert why is not None and "prompt" in why


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/api/2.0/mlflow/registered-models/delete"),
    ("DELETE", "/ajax-api/2.0/mlflow/registered-models/delete"),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete"),
    ("POST", "/api/2.0/mlflow/registered-models/rename"),
    ("POST", "/ajax-api/2.0/mlflow/registered-models/rename"),
])
def test_model_deletions_and_renames_refused_only_when_configured(routed, method, path):
    """gc.model_deletions takes "allow" or "refuse" (config.py); only "refuse" refuses."""
    assert decide(routed(method, path), method, "allow").refuse is None
    why = decide(routed(method, path), method, "refuse").refuse
    assert why is not None and "gc.model_deletions" in why


def test_registered_model_deletion_is_sanctioned_when_allowed(routed):
    endpoint = routed("DELETE", "/api/2.0/mlflow/registered-models/delete")
    assert decide(endpoint, "DELETE", "allow") == Verdict(keeps="name")
    # a model version is only marked deleted: nothing to keep
    assert decide(routed("DELETE", "/api/2.0/mlflow/model-versions/delete"), "DELETE",
                  "allow") == Verdict()


def test_an_unknown_endpoint_passes():
    assert decide("_no_such_handler", "DELETE", "refuse") == Verdict()
    assert decide(None, "DELETE", "refuse") == Verdict()
    assert "_delete_registered_model" in ROUTES


# --- the request's fields, as MLflow reads them -----------------------------------------------

@pytest.mark.parametrize("method, args, raw, ctype, doc", [
    # a JSON object
    ("POST", {}, body(name="churn"), JSON, {"name": "churn"}),
    ("POST", {}, body(name="churn"), JSON + "; charset=utf-8", {"name": "churn"}),
    ("DELETE", {}, body(name="churn"), JSON, {"name": "churn"}),
    # a JSON string holding an object: decoded twice
    ("POST", {}, twice(name="churn"), JSON, {"name": "churn"}),
    ("DELETE", {}, twice(name="churn"), JSON, {"name": "churn"}),
    ("DELETE", {}, twice(name="churn"), None, {"name": "churn"}),
    # a form body: POST needs application/json (400); DELETE reads the body as JSON: no fields
    ("POST", {}, b"name=churn", "application/x-www-form-urlencoded", None),
    ("DELETE", {}, b"name=churn", "application/x-www-form-urlencoded", {}),
    # the query string: read for GET only
    ("GET", {"name": "churn"}, b"", None, {"name": "churn"}),
    ("DELETE", {"name": "churn"}, b"", None, {}),
    ("POST", {"name": "churn"}, body(name="other"), JSON, {"name": "other"}),
    # a wrong or missing content type: POST and PUT refuse it, other methods read JSON anyway
    ("POST", {}, body(name="churn"), "text/plain", None),
    ("POST", {}, body(name="churn"), None, None),
    ("POST", {}, body(name="churn"), "Application/JSON", None),
    ("DELETE", {}, body(name="churn"), "text/plain", {"name": "churn"}),
    ("DELETE", {}, body(name="churn"), None, {"name": "churn"}),
    ("PATCH", {}, body(name="churn"), "text/plain", {"name": "churn"}),
    # other encodings of JSON, and what is no object
    ("DELETE", {}, json.dumps({"name": "churn"}).encode("utf-16"), None, {"name": "churn"}),
    ("POST", {}, b"", JSON, {}),
    ("POST", {}, b"not json", JSON, {}),
    ("POST", {}, b"\xff\xfe\x00", JSON, {}),
    ("POST", {}, b"[1, 2]", JSON, None),
    ("POST", {}, json.dumps("not json").encode(), JSON, None),
    ("POST", {}, json.dumps(json.dumps(json.dumps({"name": "x"}))).encode(), JSON, None),
])
def test_request_fields_are_read_as_mlflow_reads_them(method, args, raw, ctype, doc):
    """One case per body form; the same request through MLflow's own normalisation (what
    guard.app.request_doc calls inside the server) gives the same fields."""
    from flask import Flask, request

    from guard.app import request_doc

    assert mlflow_request_doc(method, args, raw, ctype) == doc
    headers = {"Content-Type": ctype} if ctype else {}
    with Flask("t").test_request_context("/", method=method, query_string=args, data=raw,
                                         headers=headers):
        if ctype is None:
            request.environ.pop("CONTENT_TYPE", None)
        assert request_doc(request) == doc


@pytest.mark.parametrize("field, doc, name", [
    ("name", {"name": "churn"}, "churn"),
    ("new_name", {"name": "old", "new_name": "new"}, "new"),
    ("name", {"new_name": "new"}, None),
    ("name", {"name": ""}, None),
    ("name", {"name": 7}, None),
    ("name", {"name": ["a"]}, None),
    ("name", {}, None),
    ("name", None, None),
])
def test_model_name(field, doc, name):
    assert model_name(field, doc) == name


def test_hostile_model_names_become_one_safe_file_name():
    resource = model_resource("name", {"name": "../../../etc/x"})
    assert resource == "model-..%2F..%2F..%2Fetc%2Fx"  # one file name: no separator left


def test_the_configured_refusal_survives_the_trip_to_the_server():
    """gc.model_deletions is an enum in the daemon; the server gets it as JSON in its env."""
    from guard.core.config import ModelDeletions
    from guard.protection.gate import Sanctions

    sent = Sanctions("/s", "/v", "lab-pc", ModelDeletions.REFUSE)
    assert json.loads(sent.to_env())["model_deletions"] == "refuse"
    got = Sanctions.from_env(sent.to_env())
    assert decide("_delete_registered_model", "DELETE", got.model_deletions).refuse
    assert decide("_delete_registered_model", "DELETE", ModelDeletions.ALLOW).refuse is None


def test_a_registration_is_journalled_and_junk_is_not(tmp_path):
    from guard.app import note_registration
    from guard.core.journal import read_journal
    from guard.sync.locks import LockSettings

    settings = LockSettings("/s", str(tmp_path), "hostA", "lease", 1, 20, 2, 1, 60, 5)
    journal = tmp_path / "journal" / "registrations.jsonl"
    for junk in (None, [], {"model_version": "x"}, {"model_version": {"name": "m"}}):
        note_registration(settings, junk)
    assert not journal.exists()
    note_registration(settings, {"model_version": {
        "name": "m", "version": "3", "creation_timestamp": "1700000000123", "run_id": ""}})
    (line,) = read_journal(journal)
    assert {k: line[k] for k in ("model", "version", "creation_timestamp", "run_id", "host")} \
        == {"model": "m", "version": 3, "creation_timestamp": 1700000000123, "run_id": None,
            "host": "hostA"}


def test_a_model_in_the_store_is_found_without_following_symlinks(tmp_path):
    """model_in_store: models/<name>/meta.yaml as layout names it, reached without a
    symlink; anything unsure says False (the lock is taken)."""
    from guard.app import model_in_store

    store = tmp_path / "mlruns"
    (store / "models" / "churn").mkdir(parents=True)
    (store / "models" / "churn" / "meta.yaml").write_text("name: churn\n")
    (store / "models" / "half").mkdir()          # a folder whose meta.yaml has not synced
    outside = tmp_path / "outside" / "evil"
    outside.mkdir(parents=True)
    (outside / "meta.yaml").write_text("name: evil\n")
    (store / "models" / "evil").symlink_to(outside)
    assert model_in_store(str(store), "churn")
    for name in ("half", "new", "evil", "..", "../models/churn", "", None):
        assert not model_in_store(str(store), name), name


@pytest.mark.parametrize("endpoint, status, backend, linger", [
    ("_create_registered_model", 200, "lease", "LINGER"),
    ("_create_registered_model", 400, "lease", 0.0),  # failed: released at once
    ("_create_registered_model", 500, "lease", 0.0),
    ("_create_registered_model", 200, "os", 0.0),  # no settle to save
    ("_create_model_version", 200, "lease", 0.0),  # the registration is complete
    ("_create_experiment", 200, "lease", 0.0),
    (None, 200, "lease", 0.0),
])
def test_only_a_created_model_keeps_its_lock_lingering(endpoint, status, backend, linger):
    """register_model's model-versions/create follows registered-models/create: the lock
    kept in between spares it a second claim and settle."""
    from guard.app import linger_after
    from guard.sync.locks import LINGER

    assert linger_after(endpoint, status, backend) == (LINGER if linger == "LINGER" else linger)
