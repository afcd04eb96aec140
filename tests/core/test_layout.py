"""Table tests for the one model of the store layout (guard.core.layout) and its one walk.

Each row is a path below the store and what MLflow's file stores make of it: the kind, the
innermost unit it belongs to, whether it is under .trash, whether it is its unit's meta.yaml,
and its key below a value folder. The same rows hold under .trash for everything but the
registry and the guard's own folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guard.core.layout import (
    COORDINATION,
    Kind,
    can_hold_meta,
    classify_meta,
    describe,
    is_experiment_folder,
    made_experiment_id,
    trash_twin,
    version_folder,
    version_number,
    version_target,
    walk,
)
from guard.core.paths import parse_local
from guard.portability.fixer import iter_meta_files
from tests.helpers.store import EXP, MODEL, RUN, rel

TR = "tr-0a1b2c"


def unit(path: str | None) -> tuple[str, ...] | None:
    return None if path is None else rel(path)


# path, kind, unit (innermost), meta, key
TABLE = [
    # experiments
    (f"{EXP}", Kind.EXPERIMENT, EXP, False, ""),
    (f"{EXP}/meta.yaml", Kind.EXPERIMENT, EXP, True, ""),
    ("0/meta.yaml", Kind.EXPERIMENT, "0", True, ""),  # the Default experiment
    (f"{EXP}/tags", Kind.TAG, EXP, False, ""),
    (f"{EXP}/tags/mlflow.note.content", Kind.TAG, EXP, False, "mlflow.note.content"),
    (f"{EXP}/tags/team/owner", Kind.TAG, EXP, False, "team/owner"),  # a key with '/'
    (f"{EXP}/datasets", Kind.DATASET, EXP, False, ""),
    (f"{EXP}/datasets/d1/meta.yaml", Kind.DATASET, EXP, False, "d1/meta.yaml"),
    (f"{EXP}/stray.txt", Kind.RUN, f"{EXP}/stray.txt", False, ""),  # by path, any entry
    # traces: part of their experiment, with their own tags and artifacts
    (f"{EXP}/traces", Kind.TRACE, EXP, False, ""),
    (f"{EXP}/traces/{TR}", Kind.TRACE, f"{EXP}/traces/{TR}", False, ""),
    (f"{EXP}/traces/{TR}/trace_info.yaml", Kind.TRACE, f"{EXP}/traces/{TR}", False,
     "trace_info.yaml"),
    (f"{EXP}/traces/{TR}/request_metadata/k", Kind.TRACE, f"{EXP}/traces/{TR}", False,
     "request_metadata/k"),
    (f"{EXP}/traces/{TR}/meta.yaml", Kind.TRACE, f"{EXP}/traces/{TR}", False, "meta.yaml"),
    (f"{EXP}/traces/{TR}/tags/mlflow.traceName", Kind.TAG, f"{EXP}/traces/{TR}", False,
     "mlflow.traceName"),
    (f"{EXP}/traces/{TR}/artifacts/traces.json", Kind.ARTIFACT, f"{EXP}/traces/{TR}", False,
     "traces.json"),
    # runs
    (f"{EXP}/{RUN}", Kind.RUN, f"{EXP}/{RUN}", False, ""),
    (f"{EXP}/{RUN}/meta.yaml", Kind.RUN, f"{EXP}/{RUN}", True, ""),
    (f"{EXP}/{RUN}/metrics", Kind.METRIC, f"{EXP}/{RUN}", False, ""),
    (f"{EXP}/{RUN}/metrics/loss", Kind.METRIC, f"{EXP}/{RUN}", False, "loss"),
    (f"{EXP}/{RUN}/metrics/train/loss", Kind.METRIC, f"{EXP}/{RUN}", False, "train/loss"),
    (f"{EXP}/{RUN}/metrics/meta.yaml", Kind.METRIC, f"{EXP}/{RUN}", False, "meta.yaml"),
    (f"{EXP}/{RUN}/params/lr", Kind.PARAM, f"{EXP}/{RUN}", False, "lr"),
    (f"{EXP}/{RUN}/tags/mlflow.runName", Kind.TAG, f"{EXP}/{RUN}", False, "mlflow.runName"),
    (f"{EXP}/{RUN}/artifacts", Kind.ARTIFACT, f"{EXP}/{RUN}", False, ""),
    (f"{EXP}/{RUN}/artifacts/model/MLmodel", Kind.ARTIFACT, f"{EXP}/{RUN}", False,
     "model/MLmodel"),
    (f"{EXP}/{RUN}/artifacts/meta.yaml", Kind.ARTIFACT, f"{EXP}/{RUN}", False, "meta.yaml"),
    (f"{EXP}/{RUN}/inputs/abc/meta.yaml", Kind.INPUT, f"{EXP}/{RUN}", False, "abc/meta.yaml"),
    (f"{EXP}/{RUN}/outputs/{MODEL}/meta.yaml", Kind.OUTPUT, f"{EXP}/{RUN}", False,
     f"{MODEL}/meta.yaml"),
    (f"{EXP}/{RUN}/notes.txt", Kind.OTHER, f"{EXP}/{RUN}", False, ""),
    (f"{EXP}/{RUN}/META.yaml", Kind.OTHER, f"{EXP}/{RUN}", False, ""),
    # logged models
    (f"{EXP}/models", Kind.LOGGED_MODEL, EXP, False, ""),  # the folder of logged models
    (f"{EXP}/models/{MODEL}", Kind.LOGGED_MODEL, f"{EXP}/models/{MODEL}", False, ""),
    (f"{EXP}/models/{MODEL}/meta.yaml", Kind.LOGGED_MODEL, f"{EXP}/models/{MODEL}", True, ""),
    (f"{EXP}/models/{MODEL}/metrics/m", Kind.METRIC, f"{EXP}/models/{MODEL}", False, "m"),
    (f"{EXP}/models/{MODEL}/params/p", Kind.PARAM, f"{EXP}/models/{MODEL}", False, "p"),
    (f"{EXP}/models/{MODEL}/tags/mlflow.user", Kind.TAG, f"{EXP}/models/{MODEL}", False,
     "mlflow.user"),
    (f"{EXP}/models/{MODEL}/artifacts/MLmodel", Kind.ARTIFACT, f"{EXP}/models/{MODEL}", False,
     "MLmodel"),
    # the model registry
    ("models", Kind.REGISTRY, None, False, ""),
    ("models/meta.yaml", Kind.REGISTERED_MODEL, "models/meta.yaml", False, ""),  # by path
    ("models/adder", Kind.REGISTERED_MODEL, "models/adder", False, ""),
    ("models/adder/meta.yaml", Kind.REGISTERED_MODEL, "models/adder", True, ""),
    ("models/adder/tags/team", Kind.TAG, "models/adder", False, "team"),
    ("models/adder/tags/x/y", Kind.TAG, "models/adder", False, "x/y"),
    ("models/adder/aliases", Kind.ALIAS, "models/adder", False, ""),
    ("models/adder/aliases/champion", Kind.ALIAS, "models/adder", False, "champion"),
    ("models/adder/aliases/x/y", Kind.OTHER, "models/adder", False, ""),  # one segment
    ("models/adder/version-x/meta.yaml", Kind.OTHER, "models/adder", False, ""),
    ("models/adder/version-3", Kind.MODEL_VERSION, "models/adder/version-3", False, ""),
    ("models/adder/version-12/meta.yaml", Kind.MODEL_VERSION, "models/adder/version-12",
     True, ""),
    ("models/adder/version-3/tags/validated", Kind.TAG, "models/adder/version-3", False,
     "validated"),
    ("models/adder/version-3/aliases/x", Kind.OTHER, "models/adder/version-3", False, ""),
    ("models/adder/version-3/MLmodel", Kind.OTHER, "models/adder/version-3", False, ""),
    # the store, .trash and the guard's own folder
    ("", Kind.STORE, None, False, ""),
    (".trash", Kind.TRASH, None, False, ""),
    (COORDINATION, Kind.COORDINATION, None, False, ""),
    (f"{COORDINATION}/tombstones/host-a/x.json", Kind.COORDINATION, None, False, ""),
    (f"{COORDINATION}/meta.yaml", Kind.COORDINATION, None, False, ""),
    # root folders MLflow does not read as experiments (its id pattern, `models`, `*.trash`)
    (".stfolder", Kind.OTHER, None, False, ""),
    (".stversions/1/meta.yaml", Kind.OTHER, None, False, ""),
    ("@eaDir/x", Kind.OTHER, None, False, ""),
    (".SynologyWorkingDirectory", Kind.OTHER, None, False, ""),
    ("desktop.ini", Kind.OTHER, None, False, ""),
    ("meta.yaml", Kind.OTHER, None, False, ""),
    ("other.trash/1/meta.yaml", Kind.OTHER, None, False, ""),
    ("-1/meta.yaml", Kind.OTHER, None, False, ""),
    ("x" * 65, Kind.OTHER, None, False, ""),
    ("my-exp_2", Kind.EXPERIMENT, "my-exp_2", False, ""),  # a valid id need not be digits
    ("x" * 64, Kind.EXPERIMENT, "x" * 64, False, ""),
]

# Under .trash: MLflow's deleted experiments, moved there whole. Never the registry.
TRASHED = [
    (f".trash/{EXP}", Kind.EXPERIMENT, f".trash/{EXP}", False, ""),
    (f".trash/{EXP}/meta.yaml", Kind.EXPERIMENT, f".trash/{EXP}", True, ""),
    (f".trash/{EXP}/tags/t", Kind.TAG, f".trash/{EXP}", False, "t"),
    (f".trash/{EXP}/{RUN}/meta.yaml", Kind.RUN, f".trash/{EXP}/{RUN}", True, ""),
    (f".trash/{EXP}/{RUN}/metrics/loss", Kind.METRIC, f".trash/{EXP}/{RUN}", False, "loss"),
    (f".trash/{EXP}/{RUN}/params/lr", Kind.PARAM, f".trash/{EXP}/{RUN}", False, "lr"),
    (f".trash/{EXP}/{RUN}/artifacts/a", Kind.ARTIFACT, f".trash/{EXP}/{RUN}", False, "a"),
    (f".trash/{EXP}/{RUN}/outputs/{MODEL}/meta.yaml", Kind.OUTPUT, f".trash/{EXP}/{RUN}", False,
     f"{MODEL}/meta.yaml"),
    (f".trash/{EXP}/models/{MODEL}/meta.yaml", Kind.LOGGED_MODEL, f".trash/{EXP}/models/{MODEL}",
     True, ""),
    (f".trash/{EXP}/traces/{TR}/tags/k", Kind.TAG, f".trash/{EXP}/traces/{TR}", False, "k"),
    (".trash/meta.yaml", Kind.OTHER, None, False, ""),
    (".trash/models", Kind.OTHER, None, False, ""),
    (".trash/models/adder/version-1/meta.yaml", Kind.OTHER, None, False, ""),
    (f".trash/{COORDINATION}/x", Kind.OTHER, None, False, ""),
    (".trash/.trash", Kind.OTHER, None, False, ""),
]


@pytest.mark.parametrize("path, kind, unit_path, meta, key", TABLE)
def test_describe_rows(path, kind, unit_path, meta, key):
    got = describe(rel(path))
    assert (got.kind, got.unit, got.meta, got.key) == (kind, unit(unit_path), meta, rel(key))
    assert got.rel == rel(path) and got.trashed is False


@pytest.mark.parametrize("path, kind, unit_path, meta, key", TRASHED)
def test_describe_trashed_rows(path, kind, unit_path, meta, key):
    got = describe(rel(path))
    assert (got.kind, got.unit, got.meta, got.key) == (kind, unit(unit_path), meta, rel(key))
    assert got.trashed is (path != ".trash")


def test_every_kind_has_a_row():
    assert {row[1] for row in TABLE + TRASHED} == set(Kind)


def test_kinds_are_their_plain_strings():
    assert Kind.MODEL_VERSION == "model_version" and f"{Kind.RUN}" == "run"


@pytest.mark.parametrize("path, units", [
    (f"{EXP}/{RUN}/metrics/loss", [("experiment", EXP), ("run", f"{EXP}/{RUN}")]),
    (f".trash/{EXP}/models/{MODEL}/artifacts/MLmodel",
     [("experiment", f".trash/{EXP}"), ("logged_model", f".trash/{EXP}/models/{MODEL}")]),
    (f"{EXP}/traces/{TR}/tags/k", [("experiment", EXP), ("trace", f"{EXP}/traces/{TR}")]),
    ("models/adder/version-3/tags/v",
     [("registered_model", "models/adder"), ("model_version", "models/adder/version-3")]),
    (f"{EXP}/models", [("experiment", EXP)]),
    ("models", []),
    (".stfolder/x", []),
])
def test_units_outermost_first(path, units):
    assert [(k.value, "/".join(r)) for k, r in describe(rel(path)).units] == units


@pytest.mark.parametrize("path, is_unit", [
    (f"{EXP}", True), (f"{EXP}/{RUN}", True), (f"{EXP}/models/{MODEL}", True),
    ("models/adder", True), ("models/adder/version-1", True), (f"{EXP}/traces/{TR}", True),
    (f"{EXP}/meta.yaml", False), (f"{EXP}/models", False), (f"{EXP}/traces", False),
    (f"{EXP}/{RUN}/params", False), ("models", False), ("", False),
])
def test_is_unit_means_the_units_own_folder(path, is_unit):
    assert describe(rel(path)).is_unit is is_unit


# --- the questions built on describe ------------------------------------------------------------

@pytest.mark.parametrize("name, reads, made", [
    ("0", True, True), (EXP, True, True), ("Default", True, False), ("a-b_c", True, False),
    ("models", False, False), (".trash", False, False), (COORDINATION, False, False),
    ("x.trash", False, False), (".stfolder", False, False), ("@eaDir", False, False),
    ("-1", False, False), ("", False, False), ("1\n", False, False), ("٣", False, False),
])
def test_experiment_folder_rules(name, reads, made):
    """MLflow reads a root folder as an experiment by its id pattern; it makes decimal ids."""
    assert is_experiment_folder(name) is reads
    assert made_experiment_id(name) is made


@pytest.mark.parametrize("name, number", [
    ("version-1", 1), ("version-12", 12), ("version-007", 7),
    ("version-", None), ("version-x", None), ("version-1a", None), ("Version-1", None),
    ("version-1/", None), ("v1", None),
])
def test_version_number(name, number):
    assert version_number(name) == number


def test_version_folder_round_trips():
    assert version_folder(12) == "version-12" and version_number(version_folder(12)) == 12


def test_trash_twin():
    assert trash_twin((EXP,)) == (".trash", EXP)
    assert trash_twin((".trash", EXP)) == (EXP,)


@pytest.mark.parametrize("path, holds", [
    ("", True), (".trash", True), (f".trash/{EXP}", True), (EXP, True), (f"{EXP}/{RUN}", True),
    (f"{EXP}/models", True), (f"{EXP}/models/{MODEL}", True), ("models", True),
    ("models/adder", True), ("models/adder/version-3", True),
    (f".trash/{EXP}/models/{MODEL}", True),
    (f"{EXP}/{RUN}/params", False), (f"{EXP}/{RUN}/artifacts", False), (f"{EXP}/tags", False),
    (f"{EXP}/traces", False), (f"{EXP}/traces/{TR}", False), (f"{EXP}/datasets", False),
    ("models/adder/aliases", False), ("models/adder/version-3/tags", False),
    (".trash/models", False), (COORDINATION, False), (".stfolder", False),
    (f"{EXP}/meta.yaml", False),
])
def test_can_hold_meta(path, holds):
    assert can_hold_meta(rel(path)) is holds


def test_classify_meta_is_the_meta_rows_with_their_locations():
    for path, kind, _unit, meta, _key in TABLE + TRASHED:
        got = classify_meta(rel(path))
        assert got.name == (kind.value if meta else "other"), path
    assert classify_meta(rel(f".trash/{EXP}/{RUN}/meta.yaml")).keys == {
        "artifact_uri": (EXP, RUN, "artifacts")}


# --- the one walk ----------------------------------------------------------------------------

def make_store(root: Path) -> Path:
    store = root / "mlruns"
    for folder in [f"{EXP}/{RUN}/params", f"{EXP}/{RUN}/artifacts/deep", f"{EXP}/tags",
                   f"{EXP}/traces/{TR}/tags", f"{EXP}/models/{MODEL}/artifacts",
                   f".trash/7/{RUN}/metrics", "models/adder/version-1/tags",
                   "models/adder/aliases", f"{COORDINATION}/peers", ".stfolder/1"]:
        (store / folder).mkdir(parents=True)
    for meta in [f"{EXP}/meta.yaml", f"{EXP}/{RUN}/meta.yaml", f"{EXP}/models/{MODEL}/meta.yaml",
                 ".trash/7/meta.yaml", "models/adder/meta.yaml", "models/adder/version-1/meta.yaml",
                 f"{EXP}/{RUN}/artifacts/deep/meta.yaml", ".stfolder/1/meta.yaml"]:
        (store / meta).write_text("x: 1\n")
    outside = root / "elsewhere"
    (outside / "r9").mkdir(parents=True)
    os.symlink(outside, store / "8")  # an experiment folder that is a symlink
    os.symlink(outside / "r9", store / EXP / "r9")  # a run folder that is a symlink
    return store


WALKED = ["", ".trash", ".trash/7", f".trash/7/{RUN}", EXP, f"{EXP}/{RUN}", f"{EXP}/models",
          f"{EXP}/models/{MODEL}", "models", "models/adder", "models/adder/version-1"]


def test_walk_yields_the_folders_that_can_hold_a_meta_yaml(tmp_path):
    store = make_store(tmp_path)
    problems: dict = {}
    got = list(walk(store, (), problems))
    assert sorted("/".join(e.rel) for _, e in got) == sorted(WALKED)
    assert all(path == store.joinpath(*e.rel) for path, e in got)
    assert sorted(problems) == sorted(["8", f"{EXP}/r9"])  # symlinks noted, not followed
    assert problems["8"] == [{"problem": "symlink", "why": "symlink skipped"}]


def test_walk_yields_each_folder_before_its_children(tmp_path):
    store = make_store(tmp_path)
    order = ["/".join(e.rel) for _, e in walk(store)]
    for i, folder in enumerate(order):
        assert all(not f.startswith(folder + "/") for f in order[:i]) or folder == ""
    assert order[0] == ""


def test_walk_does_not_list_runs_logged_models_or_versions(tmp_path):
    """Nothing below them can hold a meta.yaml: a 10,000-run store costs no listing per run,
    and a symlink among a run's files is the run's business, not a problem of the walk."""
    store = make_store(tmp_path)
    os.symlink(tmp_path / "elsewhere", store / EXP / RUN / "artifacts" / "linked")
    os.symlink(tmp_path / "elsewhere", store / EXP / RUN / "linked")
    problems: dict = {}
    assert sorted("/".join(e.rel) for _, e in walk(store, (), problems)) == sorted(WALKED)
    assert sorted(problems) == sorted(["8", f"{EXP}/r9"])


def test_walk_from_a_folder_inside_the_store(tmp_path):
    store = make_store(tmp_path)
    got = ["/".join(e.rel) for _, e in walk(store / EXP, (EXP,))]
    assert sorted(got) == sorted(f for f in WALKED if f.startswith(EXP))
    assert list(walk(store / EXP / RUN / "params", (EXP, RUN, "params"))) == []
    assert list(walk(store / COORDINATION, (COORDINATION,))) == []
    assert list(walk(store / "missing", ("missing",))) == [(store / "missing",
                                                              describe(("missing",)))]


def test_fixer_and_watcher_share_the_walk(tmp_path):
    """fixer.iter_meta_files and watch.watched_folders (inotify, doctor's count) are the walk."""
    from guard.core.watch import watched_folders
    from guard.portability.fixer import iter_meta_files

    store = make_store(tmp_path)
    watched = sorted("/".join(r) for _, r in watched_folders(store))
    assert watched == sorted(WALKED)
    links: dict = {}
    metas = sorted(p.relative_to(store).as_posix() for p in iter_meta_files(store, links))
    assert metas == sorted([f"{EXP}/meta.yaml", f"{EXP}/{RUN}/meta.yaml",
                            f"{EXP}/models/{MODEL}/meta.yaml", ".trash/7/meta.yaml",
                            f".trash/7/{RUN}/meta.yaml", "models/adder/version-1/meta.yaml"])
    assert sorted(links) == sorted(["8", f"{EXP}/r9"])


# --- classify_meta on real-looking paths ------------------------------------------------------

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


# --- the guard's own folder --------------------------------------------------------------------

def test_coordination_folder_is_invisible_to_mlflow_and_to_the_rewriter(tmp_path):
    assert not is_experiment_folder(COORDINATION) and is_experiment_folder("12345")
    assert not is_experiment_folder(".trash") and not is_experiment_folder("models")
    assert classify_meta((COORDINATION, "peers", "meta.yaml")).name == "other"
    assert classify_meta((COORDINATION, "meta.yaml")).name == "other"
    assert not can_hold_meta((COORDINATION,)) and not can_hold_meta((COORDINATION, "peers"))
    (tmp_path / COORDINATION / "peers").mkdir(parents=True)
    (tmp_path / COORDINATION / "meta.yaml").write_text("artifact_location: /x\n")
    (tmp_path / "7").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in iter_meta_files(tmp_path)]
    assert found == ["7/meta.yaml"]
    assert list(iter_meta_files(tmp_path, None, tmp_path / COORDINATION)) == []
