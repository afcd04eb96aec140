"""The pure rewrite decisions: one location value (decide), one meta.yaml (plan_file, apply),
and what must wait (in_flight, experiment_wait), on data modelled on real MLflow files.

The dicts below follow the meta.yaml files a direct MLflow file client wrote (MLflow 3.x):
an experiment, a run, a logged model and a model version.
"""

from __future__ import annotations

import pytest

from guard.core.layout import classify_meta
from guard.core.paths import parse_local
from guard.portability.rewrite import (
    KEEP,
    REWRITE,
    UNPORTABLE,
    UNSAFE,
    Change,
    Finding,
    Plan,
    apply,
    decide,
    experiment_wait,
    in_flight,
    plan_file,
)
from tests.helpers.store import EXP, MODEL, RUN, rel

ROOT_A = "/tmp/d3/rootA/mlruns"
OWN_A = parse_local(ROOT_A)
OWN_B = parse_local("/home/bob/lab/mlruns")


WIN_MODEL = "file:///C:/Users/alice/SynologyDrive/lab/mlruns/12/models/m-abc/artifacts"


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
                                    "s3://bucket/model",
                                    f"mlflow-artifacts:/{EXP}/{RUN}/artifacts/model"])
def test_plan_model_version_non_local_source_left_alone(source):
    doc = version_doc(source=source,
                      storage_location=f"mlflow-artifacts:/{EXP}/models/{MODEL}/artifacts")
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


# --- decide: what happens to one location value -----------------------------------------------

TARGET = ("12", "abc", "artifacts")
NEW = "mlflow-artifacts:/12/abc/artifacts"

REWRITE_FORMS = [
    "file:///home/a/mlruns/12/abc/artifacts",
    "file:/home/a/mlruns/12/abc/artifacts",
    "/home/a/mlruns/12/abc/artifacts",
    "/home/a/mlruns/12/abc/artifacts/",
    "file://localhost/home/a/mlruns/12/abc/artifacts",
    "file:///C:/Users/a/mlruns/12/abc/artifacts",
    "file:/C:/Users/a/mlruns/12/abc/artifacts",
    "C:\\Users\\a\\mlruns\\12\\abc\\artifacts",
    "C:\\Users\\a\\mlruns\\12\\abc\\artifacts\\",
    "C:/Users/a/mlruns/12/abc/artifacts",
    "c:/Users/a/mlruns/12/abc/artifacts",
    "C:\\Users/a\\mlruns/12\\abc/artifacts",
    "\\\\nas\\share\\mlruns\\12\\abc\\artifacts",
    "file://nas/share/mlruns/12/abc/artifacts",
    "//nas/share/mlruns/12/abc/artifacts",
    "/mnt/c/Users/a/mlruns/12/abc/artifacts",
    "/Volumes/lab/mlruns/12/abc/artifacts",
    "file:///home/a%20b/mlruns/12/abc/artifacts",
    "file:///C:/My%20Drive/mlruns/12/abc/artifacts",
    "C:\\My Drive\\mlruns\\12\\abc\\artifacts",
]


@pytest.mark.parametrize("value", REWRITE_FORMS)
def test_decide_rewrites_every_local_form_ending_in_the_target(value):
    d = decide(value, TARGET)
    assert (d.action, d.new) == (REWRITE, NEW)


@pytest.mark.parametrize("value", [
    "C:\\Users\\a\\mlruns\\12\\ABC\\Artifacts",
    "file:///C:/Users/a/mlruns/12/Abc/ARTIFACTS",
    "c:/users/a/MLRUNS/12/aBc/artifacts",
    "\\\\nas\\share\\mlruns\\12\\ABC\\artifacts",
    "file://nas/share/mlruns/12/ABC/artifacts",
])
def test_decide_windows_tail_matches_case_insensitively(value):
    d = decide(value, TARGET)
    # the new value names the store's folder as the file's own place says, not as typed
    assert (d.action, d.new) == (REWRITE, NEW)


@pytest.mark.parametrize("value", [
    "/home/a/mlruns/12/ABC/artifacts",
    "file:///home/a/mlruns/12/abc/Artifacts",
    "/mnt/c/Users/a/mlruns/12/ABC/Artifacts",
    "/Volumes/lab/mlruns/12/ABC/artifacts",
])
def test_decide_posix_tail_is_case_sensitive(value):
    assert decide(value, TARGET).action == UNPORTABLE


@pytest.mark.parametrize("value", [
    "/data/elsewhere",
    "file:///data/elsewhere",
    "C:\\data\\elsewhere",
    "\\\\nas\\share\\custom",
    "/home/a/mlruns/12/abc",  # the run folder, not its artifacts
    "/home/a/mlruns/12/abc/artifacts/sub",  # below the artifacts folder
    "/home/a/mlruns/99/abc/artifacts",  # another experiment
    "/home/a/mlruns/x12/abc/artifacts",  # segment-wise, not a string suffix
    "/home/a/mlruns/12/xabc/artifacts",
    "abc/artifacts",  # too short to hold the tail
])
def test_decide_path_ending_elsewhere_is_unportable(value):
    d = decide(value, TARGET)
    assert d.action == UNPORTABLE
    assert d.new is None


@pytest.mark.parametrize("value", [
    "file:///x/12/../../etc/12/abc/artifacts",
    "/x/12/../../etc/12/abc/artifacts",
    "/home/a/mlruns/12/abc/artifacts/../../12/abc/artifacts",
    "C:\\x\\..\\12\\abc\\artifacts",
    "\\\\nas\\share\\..\\..\\12\\abc\\artifacts",
    "file:///x/%2E%2E/12/abc/artifacts",
    "file:///x/..%2F..%2F12/abc/artifacts",
    "../12/abc/artifacts",
    "/12/abc/artifacts/..",
])
def test_decide_dotdot_is_unsafe(value):
    d = decide(value, TARGET)
    assert d.action == UNSAFE
    assert d.new is None


@pytest.mark.parametrize("value", [
    "s3://bucket/mlruns/12/abc/artifacts",
    "gs://bucket/12/abc/artifacts",
    "wasbs://c@a.blob.core.windows.net/12/abc/artifacts",
    "hdfs://nn/12/abc/artifacts",
    "http://host/12/abc/artifacts",
    "https://host/12/abc/artifacts",
    "dbfs:/12/abc/artifacts",
    "runs:/abc/artifacts",
    "models:/m-abc",
    "mlflow-artifacts:/12/abc/artifacts",
    "mlflow-artifacts:/99/other/artifacts",  # portable is never touched, even if odd
    "",
])
def test_decide_non_local_and_portable_values_are_kept(value):
    d = decide(value, TARGET)
    assert d.action == KEEP
    assert d.new is None


@pytest.mark.parametrize("value", [
    "mlflow-artifacts:/12/../../etc",
    "s3://bucket/../12/abc/artifacts",
])
def test_decide_never_rewrites_non_local_values_with_dotdot(value):
    assert decide(value, TARGET).action in (KEEP, UNSAFE)


@pytest.mark.parametrize("target", [(), ("12", ".."), ("..",), ("12", "C:"), ("a/b",), ("a\\b",),
                                    ("12", ""), (".",)])
def test_decide_refuses_targets_that_leave_the_store(target):
    d = decide("/home/a/mlruns/12/abc/artifacts", target)
    assert d.action == UNSAFE


def test_decide_experiment_target():
    d = decide("file:///C:/Users/alice/mlruns/12", ("12",))
    assert (d.action, d.new) == (REWRITE, "mlflow-artifacts:/12")


# --- in_flight and experiment_wait: what must wait before its location is rewritten ------

NOW = 1_800_000_000_000  # ms
HOUR = 3_600_000
GRACE = 72 * HOUR


@pytest.mark.parametrize("kind,doc,expected", [
    ("run", {"status": 1, "start_time": NOW - HOUR}, True),           # RUNNING
    ("run", {"status": 2, "start_time": NOW - HOUR}, True),           # SCHEDULED
    ("run", {"status": 3, "start_time": NOW - HOUR}, False),          # FINISHED
    ("run", {"status": 4, "start_time": NOW - HOUR}, False),          # FAILED
    ("run", {"status": 1, "start_time": NOW - 73 * HOUR}, False),     # abandoned
    ("run", {"status": 1}, True),                                      # no start time: wait
    ("logged_model", {"status": 1, "creation_timestamp": NOW - HOUR}, True),   # PENDING
    ("logged_model", {"status": 2, "creation_timestamp": NOW - HOUR}, False),  # READY
    ("model_version", {"status": "PENDING_REGISTRATION", "creation_timestamp": NOW}, True),
    ("model_version", {"status": "READY", "creation_timestamp": NOW}, False),
    ("experiment", {"status": 1}, False),
])
def test_in_flight(kind, doc, expected):
    assert in_flight(kind, doc, NOW, GRACE) is expected


def test_experiment_with_a_running_run_waits_until_its_runs_finish():
    runs = [{"status": 3, "start_time": NOW - 5 * HOUR, "end_time": NOW - 4 * HOUR},
            {"status": 1, "start_time": NOW - 2 * HOUR}]
    why, until = experiment_wait({"creation_time": NOW - 9 * HOUR}, runs, NOW, 600_000, GRACE)
    assert "in progress" in why and until is None


def test_experiment_waits_for_a_quiet_spell_after_its_last_run():
    runs = [{"status": 3, "start_time": NOW - 200_000, "end_time": NOW - 100_000}]
    why, until = experiment_wait({"creation_time": NOW - HOUR}, runs, NOW, 600_000, GRACE)
    assert "100 s ago" in why and until == NOW - 100_000 + 600_000
    assert experiment_wait({"creation_time": NOW - HOUR}, runs, until, 600_000, GRACE) is None


def test_new_empty_experiment_waits_then_may_be_rewritten():
    doc = {"creation_time": NOW - 1000}
    assert experiment_wait(doc, [], NOW, 600_000, GRACE)[1] == NOW - 1000 + 600_000
    assert experiment_wait(doc, [], NOW + 600_000, 600_000, GRACE) is None


def test_zero_quiet_never_waits_even_for_future_timestamps():
    runs = [{"status": 3, "start_time": NOW + HOUR, "end_time": NOW + 2 * HOUR}]  # clock skew
    assert experiment_wait({"creation_time": NOW}, runs, NOW, 0, GRACE) is None
    assert experiment_wait({"creation_time": NOW}, runs, NOW, 600_000, GRACE) is not None


def test_abandoned_running_run_does_not_hold_its_experiment_forever():
    runs = [{"status": 1, "start_time": NOW - 100 * HOUR}]
    assert experiment_wait({"creation_time": NOW - 100 * HOUR}, runs, NOW, 600_000, GRACE) is None


def test_odd_timestamps_are_ignored_not_crashed_on():
    runs = [{"status": 3, "start_time": "yesterday", "end_time": True}, {}]
    assert experiment_wait({"creation_time": None}, runs, NOW, 600_000, GRACE) is None
