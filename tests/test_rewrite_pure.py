"""The store layout and the pure rewrite planner, on data modelled on real MLflow files.

The dicts below follow the meta.yaml files a direct MLflow file client wrote (MLflow 3.x):
an experiment, a run, a logged model and a model version.
"""

from __future__ import annotations

import pytest

from guard.core.layout import classify_meta, version_target
from guard.core.paths import parse_local
from guard.portability.rewrite import UNPORTABLE, UNSAFE, Change, Finding, Plan, apply, plan_file

EXP = "401878344117323602"
RUN = "57718c19fb0047259fbe7565bb4c52ea"
MODEL = "m-da48845d65f640198a3930713e766e00"
ROOT_A = "/tmp/d3/rootA/mlruns"
OWN_A = parse_local(ROOT_A)
OWN_B = parse_local("/home/bob/lab/mlruns")


def rel(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


# --- classify_meta ----------------------------------------------------------------------------

@pytest.mark.parametrize("path, kind, keys", [
    ("0/meta.yaml", "experiment", {"artifact_location": ("0",)}),
    (f"{EXP}/meta.yaml", "experiment", {"artifact_location": (EXP,)}),
    (f"{EXP}/{RUN}/meta.yaml", "run", {"artifact_uri": (EXP, RUN, "artifacts")}),
    (f"{EXP}/models/{MODEL}/meta.yaml", "logged_model",
     {"artifact_location": (EXP, "models", MODEL, "artifacts")}),
    ("models/adder/version-3/meta.yaml", "model_version",
     {"storage_location": None, "source": None}),
    ("models/adder/version-12/meta.yaml", "model_version",
     {"storage_location": None, "source": None}),
    ("models/adder/meta.yaml", "registered_model", {}),
    # a deleted experiment keeps its meta.yaml files; the location is the experiment's home
    (f".trash/{EXP}/meta.yaml", "experiment", {"artifact_location": (EXP,)}),
    (f".trash/{EXP}/{RUN}/meta.yaml", "run", {"artifact_uri": (EXP, RUN, "artifacts")}),
    (f".trash/{EXP}/models/{MODEL}/meta.yaml", "logged_model",
     {"artifact_location": (EXP, "models", MODEL, "artifacts")}),
])
def test_classify_meta_rows(path, kind, keys):
    got = classify_meta(rel(path))
    assert got.name == kind
    assert got.keys == keys
    assert got.has_locations is bool(keys)


@pytest.mark.parametrize("path", [
    f"{EXP}/{RUN}/outputs/{MODEL}/meta.yaml",  # run outputs: no locations
    f"{EXP}/{RUN}/inputs/abc/meta.yaml",
    f"{EXP}/traces/tr-1/meta.yaml",
    f"{EXP}/traces/meta.yaml",
    f"{EXP}/datasets/d1/meta.yaml",
    f"{EXP}/datasets/meta.yaml",
    f"{EXP}/tags/meta.yaml",
    f"{EXP}/{RUN}/params/x",
    f"{EXP}/{RUN}/metrics/m",
    f"{EXP}/{RUN}/artifacts/meta.yaml",  # a user's artifact named meta.yaml
    f"{EXP}/{RUN}/artifacts/model/meta.yaml",
    f"{EXP}/models/{MODEL}/artifacts/meta.yaml",
    f"{EXP}/models/{MODEL}/params/meta.yaml",
    f"{EXP}/models/meta.yaml",
    "meta.yaml",
    "models/meta.yaml",
    "models/adder/version-x/meta.yaml",
    "models/adder/version-1/extra/meta.yaml",
    ".trash/meta.yaml",
    f".trash/{EXP}/{RUN}/outputs/{MODEL}/meta.yaml",
    f".trash/{EXP}/traces/tr-1/meta.yaml",
    # MLflow deletes registry entries outright; there is no registry under .trash
    ".trash/models/adder/version-1/meta.yaml",
    ".trash/models/adder/meta.yaml",
    f"{EXP}/meta.yml",
    f"{EXP}/{RUN}/META.yaml",
    "",
])
def test_classify_meta_other(path):
    got = classify_meta(rel(path) if path else ())
    assert got.name == "other"
    assert not got.has_locations


# --- version_target ---------------------------------------------------------------------------

WIN_MODEL = "file:///C:/Users/alice/SynologyDrive/lab/mlruns/12/models/m-abc/artifacts"


def test_version_target_by_model_id():
    segs = parse_local(WIN_MODEL).segments
    assert version_target(segs, "m-abc", None) == ("12", "models", "m-abc", "artifacts")
    assert version_target(segs, "m-abc", "somerun") == ("12", "models", "m-abc", "artifacts")


def test_version_target_by_run_id_keeps_the_path_below_artifacts():
    segs = parse_local(f"/home/a/mlruns/12/{RUN}/artifacts/model").segments
    assert version_target(segs, None, RUN) == ("12", RUN, "artifacts", "model")
    assert version_target(segs, "m-other", RUN) == ("12", RUN, "artifacts", "model")


@pytest.mark.parametrize("path, model_id, run_id", [
    ("/data/elsewhere/model", "m-abc", RUN),
    ("/home/a/mlruns/12/models/m-abc/artifacts", "m-other", None),  # another model
    ("/home/a/mlruns/12/models/m-abc/artifacts", None, None),
    (f"/home/a/mlruns/12/{RUN}/artifacts/model", "m-abc", None),  # run path, no run_id
    (f"/home/a/mlruns/12/{RUN}/artifacts/model", None, "ffff"),
    ("/home/a/mlruns/exp/models/m-abc/artifacts", "m-abc", None),  # experiment ids are digits
    (f"/home/a/mlruns/12/{RUN}/model", None, RUN),  # not under artifacts
    ("/home/a/mlruns/12/models/m-abc", "m-abc", None),
])
def test_version_target_names_neither(path, model_id, run_id):
    assert version_target(parse_local(path).segments, model_id, run_id) is None


# --- plan_file on real-looking files ----------------------------------------------------------

def experiment_doc(exp=EXP, location=None):
    return {"artifact_location": location or f"file://{ROOT_A}/{exp}",
            "creation_time": 1795322468648, "effective_trace_archival_retention": None,
            "experiment_id": exp, "last_update_time": 1795322468648,
            "lifecycle_stage": "active", "name": "direct", "trace_location": None,
            "workspace": "default"}


def run_doc(uri=None):
    return {"artifact_uri": uri or f"file://{ROOT_A}/{EXP}/{RUN}/artifacts",
            "end_time": 1795322470707, "entry_point_name": "", "experiment_id": EXP,
            "lifecycle_stage": "active", "run_id": RUN, "run_name": "bald-ant-838",
            "source_name": "", "source_type": 4, "source_version": "",
            "start_time": 1795322468692, "status": 3, "tags": [], "user_id": "root"}


def model_doc(location=None):
    return {"artifact_location": location or f"file://{ROOT_A}/{EXP}/models/{MODEL}/artifacts",
            "creation_timestamp": 1795322468702, "experiment_id": EXP,
            "last_updated_timestamp": 1795322470696, "model_id": MODEL, "model_type": None,
            "name": "model", "source_run_id": RUN, "status": 2, "status_message": None}


def version_doc(**kw):
    doc = {"creation_timestamp": 1795322470701, "current_stage": "None",
           "deployment_job_state": None, "description": None,
           "last_updated_timestamp": 1795322470701, "model_id": MODEL, "name": "adder",
           "run_id": RUN, "run_link": None, "source": f"models:/{MODEL}", "status": "READY",
           "status_message": None,
           "storage_location": f"file://{ROOT_A}/{EXP}/models/{MODEL}/artifacts",
           "user_id": None, "version": 1, "workspace": "default"}
    doc.update(kw)
    return doc


EXP_KIND = classify_meta(rel(f"{EXP}/meta.yaml"))
RUN_KIND = classify_meta(rel(f"{EXP}/{RUN}/meta.yaml"))
MODEL_KIND = classify_meta(rel(f"{EXP}/models/{MODEL}/meta.yaml"))
VERSION_KIND = classify_meta(rel("models/adder/version-1/meta.yaml"))
REGISTERED_KIND = classify_meta(rel("models/adder/meta.yaml"))


def test_plan_experiment():
    doc = experiment_doc()
    plan = plan_file(EXP_KIND, doc, OWN_B)
    assert plan == Plan("experiment", (Change("artifact_location", doc["artifact_location"],
                                              f"mlflow-artifacts:/{EXP}", False),), ())
    assert plan.foreign


def test_plan_default_experiment_zero():
    plan = plan_file(classify_meta(("0", "meta.yaml")),
                     experiment_doc("0", f"file://{ROOT_A}/0"), OWN_A)
    assert [(c.key, c.new, c.own) for c in plan.changes] == \
        [("artifact_location", "mlflow-artifacts:/0", True)]
    assert not plan.foreign


def test_plan_run():
    doc = run_doc()
    plan = plan_file(RUN_KIND, doc, OWN_B)
    assert plan.kind == "run"
    assert plan.changes == (Change("artifact_uri", doc["artifact_uri"],
                                   f"mlflow-artifacts:/{EXP}/{RUN}/artifacts", False),)
    assert plan.findings == ()


def test_plan_logged_model():
    doc = model_doc()
    plan = plan_file(MODEL_KIND, doc, OWN_B)
    assert plan.kind == "logged_model"
    assert plan.changes == (Change("artifact_location", doc["artifact_location"],
                                   f"mlflow-artifacts:/{EXP}/models/{MODEL}/artifacts", False),)


def test_plan_real_model_version_rewrites_storage_location_keeps_models_uri():
    doc = version_doc()
    plan = plan_file(VERSION_KIND, doc, OWN_B)
    assert plan.kind == "model_version"
    assert plan.changes == (Change("storage_location", doc["storage_location"],
                                   f"mlflow-artifacts:/{EXP}/models/{MODEL}/artifacts", False),)
    assert plan.findings == ()
    assert apply(doc, plan.changes)["source"] == f"models:/{MODEL}"


def test_plan_model_version_with_windows_storage_location():
    doc = version_doc(model_id="m-abc", storage_location=WIN_MODEL, source="models:/m-abc")
    plan = plan_file(VERSION_KIND, doc, OWN_B)
    assert [(c.key, c.old, c.new) for c in plan.changes] == \
        [("storage_location", WIN_MODEL, "mlflow-artifacts:/12/models/m-abc/artifacts")]
    assert plan.findings == ()
    assert plan.foreign
    # seen from the Windows machine that wrote it, the same change is its own
    own_win = parse_local("C:\\Users\\Alice\\SynologyDrive\\lab\\mlruns")
    plan_win = plan_file(VERSION_KIND, doc, own_win)
    assert [c.own for c in plan_win.changes] == [True]
    assert not plan_win.foreign


def test_plan_model_version_old_style_source_by_run_id():
    source = f"file:///home/alice/mlruns/12/{RUN}/artifacts/model"
    doc = version_doc(model_id=None, source=source, storage_location=None)
    plan = plan_file(VERSION_KIND, doc, None)
    assert [(c.key, c.old, c.new, c.own) for c in plan.changes] == \
        [("source", source, f"mlflow-artifacts:/12/{RUN}/artifacts/model", False)]
    assert plan.findings == ()


def test_plan_model_version_both_keys_old_style():
    loc = f"C:\\Users\\alice\\mlruns\\12\\{RUN}\\artifacts\\model"
    doc = version_doc(model_id=None, source=loc, storage_location=loc)
    plan = plan_file(VERSION_KIND, doc, parse_local("C:\\Users\\alice\\mlruns"))
    assert {c.key: (c.new, c.own) for c in plan.changes} == {
        "source": (f"mlflow-artifacts:/12/{RUN}/artifacts/model", True),
        "storage_location": (f"mlflow-artifacts:/12/{RUN}/artifacts/model", True)}


@pytest.mark.parametrize("location", [
    "file:///C:/Users/alice/mlruns/12/Models/M-ABC/Artifacts",
    "C:\\Users\\alice\\mlruns\\12\\models\\m-abc\\Artifacts",
    "\\\\nas\\share\\mlruns\\12\\MODELS\\m-abc\\artifacts",
])
def test_plan_model_version_windows_case_differences_still_match(location):
    # as for runs and experiments: Windows forms name the same folder whatever the case
    doc = version_doc(model_id="m-abc", storage_location=location, source="models:/m-abc")
    plan = plan_file(VERSION_KIND, doc, OWN_B)
    assert [(c.key, c.new) for c in plan.changes] == \
        [("storage_location", "mlflow-artifacts:/12/models/m-abc/artifacts")]
    assert plan.findings == ()


@pytest.mark.parametrize("source", [
    f"C:\\Users\\alice\\mlruns\\12\\{RUN.upper()}\\artifacts\\model",
    f"file:///C:/Users/alice/mlruns/12/{RUN}/Artifacts/model",
])
def test_plan_model_version_windows_run_path_case_uses_the_store_spelling(source):
    # the run's folder is named by run_id and holds 'artifacts': the portable value must name
    # that folder as it exists, not as a case-insensitive file system let someone type it
    doc = version_doc(model_id=None, source=source, storage_location=None)
    plan = plan_file(VERSION_KIND, doc, OWN_B)
    assert [(c.key, c.new) for c in plan.changes] == \
        [("source", f"mlflow-artifacts:/12/{RUN}/artifacts/model")]


def test_plan_model_version_posix_run_path_in_other_case_is_another_folder():
    # POSIX is case-sensitive: .../12/<RUN in capitals>/... is not the run's folder
    doc = version_doc(model_id=None, source=f"/home/a/mlruns/12/{RUN.upper()}/artifacts/model",
                      storage_location=None)
    plan = plan_file(VERSION_KIND, doc, OWN_B)
    assert plan.changes == ()


@pytest.mark.parametrize("source", [f"models:/{MODEL}", f"runs:/{RUN}/model",
                                    "s3://bucket/model", f"mlflow-artifacts:/{EXP}/{RUN}/artifacts/model"])
def test_plan_model_version_non_local_source_left_alone(source):
    doc = version_doc(source=source, storage_location=f"mlflow-artifacts:/{EXP}/models/{MODEL}/artifacts")
    plan = plan_file(VERSION_KIND, doc, OWN_A)
    assert plan.changes == ()
    assert plan.findings == ()


def test_plan_model_version_storage_location_outside_store_is_unportable():
    doc = version_doc(storage_location="file:///data/models/adder")
    plan = plan_file(VERSION_KIND, doc, OWN_A)
    assert plan.changes == ()
    assert [(f.key, f.problem) for f in plan.findings] == [("storage_location", UNPORTABLE)]


def test_plan_model_version_dotdot_is_unsafe():
    bad = f"file:///x/12/../../etc/12/models/{MODEL}/artifacts"
    plan = plan_file(VERSION_KIND, version_doc(storage_location=bad), OWN_A)
    assert plan.changes == ()
    assert [(f.key, f.problem, f.value) for f in plan.findings] == \
        [("storage_location", UNSAFE, bad)]


@pytest.mark.parametrize("kind, doc, key", [
    (EXP_KIND, experiment_doc(location="file:///data/elsewhere"), "artifact_location"),
    (EXP_KIND, experiment_doc(location="C:\\custom\\place"), "artifact_location"),
    (RUN_KIND, run_doc("/data/elsewhere/artifacts"), "artifact_uri"),
    (MODEL_KIND, model_doc("\\\\nas\\share\\models\\x"), "artifact_location"),
])
def test_plan_custom_location_outside_store_is_a_finding_not_a_change(kind, doc, key):
    plan = plan_file(kind, doc, OWN_A)
    assert plan.changes == ()
    assert len(plan.findings) == 1
    finding = plan.findings[0]
    assert (finding.key, finding.value, finding.problem) == (key, doc[key], UNPORTABLE)
    assert finding.why
    assert not plan.foreign
    assert apply(doc, plan.changes) == doc


def test_plan_dotdot_run_is_unsafe():
    bad = f"file:///x/{EXP}/../../etc/{EXP}/{RUN}/artifacts"
    plan = plan_file(RUN_KIND, run_doc(bad), OWN_A)
    assert plan.changes == ()
    assert [(f.key, f.problem) for f in plan.findings] == [("artifact_uri", UNSAFE)]


@pytest.mark.parametrize("kind, key, value", [
    (EXP_KIND, "artifact_location", 12),
    (EXP_KIND, "artifact_location", ["file:///x"]),
    (RUN_KIND, "artifact_uri", {"a": 1}),
    (RUN_KIND, "artifact_uri", True),
    (MODEL_KIND, "artifact_location", 1.5),
    (VERSION_KIND, "storage_location", 7),
    (VERSION_KIND, "source", ["x"]),
])
def test_plan_non_string_value_is_a_finding(kind, key, value):
    base = {"experiment": experiment_doc, "run": run_doc, "logged_model": model_doc,
            "model_version": version_doc}[kind.name]()
    base[key] = value
    plan = plan_file(kind, base, OWN_A)
    assert not any(c.key == key for c in plan.changes)
    assert [(f.key, f.value, f.problem) for f in plan.findings if f.key == key] == \
        [(key, value, UNSAFE)]


@pytest.mark.parametrize("kind, doc", [
    (EXP_KIND, experiment_doc(location=f"mlflow-artifacts:/{EXP}")),
    (RUN_KIND, run_doc(f"mlflow-artifacts:/{EXP}/{RUN}/artifacts")),
    (RUN_KIND, run_doc("s3://bucket/runs/x")),
    (MODEL_KIND, model_doc(f"mlflow-artifacts:/{EXP}/models/{MODEL}/artifacts")),
    (EXP_KIND, {"name": "no location"}),
    (RUN_KIND, {**run_doc(), "artifact_uri": None}),
    (REGISTERED_KIND, {"name": "adder", "aliases": {}, "description": "file:///home/a/x"}),
])
def test_plan_nothing_to_do(kind, doc):
    assert plan_file(kind, doc, OWN_A) == Plan(kind.name)


@pytest.mark.parametrize("value, own", [
    (f"file://{ROOT_A}/{EXP}/{RUN}/artifacts", True),
    (f"{ROOT_A}/{EXP}/{RUN}/artifacts", True),
    (f"file:///tmp/d3/rootA/mlruns-copy/{EXP}/{RUN}/artifacts", False),
    (f"file:///tmp/d3/rootB/mlruns/{EXP}/{RUN}/artifacts", False),
    (f"file:///C:/tmp/d3/rootA/mlruns/{EXP}/{RUN}/artifacts", False),
])
def test_change_own_under_own_root(value, own):
    plan = plan_file(RUN_KIND, run_doc(value), OWN_A)
    assert [c.own for c in plan.changes] == [own]
    assert plan.foreign is (not own)


def test_change_own_false_without_an_own_root():
    plan = plan_file(RUN_KIND, run_doc(), None)
    assert [c.own for c in plan.changes] == [False]
    assert plan.foreign


def test_plan_foreign_when_any_change_is_foreign():
    own_src = f"{ROOT_A}/12/{RUN}/artifacts/model"
    foreign_loc = f"C:\\Users\\alice\\mlruns\\12\\{RUN}\\artifacts\\model"
    plan = plan_file(VERSION_KIND, version_doc(model_id=None, source=own_src,
                                               storage_location=foreign_loc), OWN_A)
    assert {c.key: c.own for c in plan.changes} == {"source": True, "storage_location": False}
    assert plan.foreign
    assert not Plan("run").foreign


def test_apply_changes_only_those_keys_and_copies():
    doc = version_doc(model_id=None, source=f"/home/a/mlruns/12/{RUN}/artifacts/model",
                      storage_location=f"/home/a/mlruns/12/{RUN}/artifacts/model")
    before = dict(doc)
    plan = plan_file(VERSION_KIND, doc, None)
    out = apply(doc, plan.changes)
    assert doc == before  # the input is not mutated
    changed = {k for k in out if out[k] != doc[k]}
    assert changed == {"source", "storage_location"}
    assert out["source"] == out["storage_location"] == f"mlflow-artifacts:/12/{RUN}/artifacts/model"
    assert list(out) == list(doc)
    assert apply(doc, ()) == doc


def test_apply_single_change():
    doc = run_doc()
    out = apply(doc, (Change("artifact_uri", doc["artifact_uri"], "mlflow-artifacts:/x", False),))
    assert out == {**doc, "artifact_uri": "mlflow-artifacts:/x"}


def test_finding_type():
    plan = plan_file(RUN_KIND, run_doc("/data/elsewhere"), None)
    assert isinstance(plan.findings[0], Finding)
