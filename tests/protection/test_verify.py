"""What a restored unit is checked for (pure), and the check itself through MLflow's own file
stores in a child process (real MLflow, real store)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from guard.protection.deletions import Unit
from guard.protection.verify import (
    Probe,
    artifact_folder,
    check,
    failures_of,
    probe_for,
    probes_for,
    summary,
)

RUN = ("123", "a" * 32)


def kept(unit: tuple[str, ...], files: list[str], folders: list[str] = ()) -> list:
    """(path, is a file) below `unit`, as the vault lists them (folders first)."""
    out = [(unit, False)] + [(unit + tuple(f.split("/")), False) for f in folders]
    return out + [(unit + tuple(f.split("/")), True) for f in files]


# ---- probe_for / probes_for ------------------------------------------------------------------

def test_a_run_probe_lists_its_metric_keys_from_files_and_artifact_names_from_both():
    probe = probe_for(Unit("run", RUN), kept(
        RUN, ["meta.yaml", "metrics/loss", "metrics/val/acc", "params/lr", "tags/t",
              "artifacts/notes.txt", "artifacts/model/MLmodel"],
        ["metrics", "metrics/val", "metrics/empty", "params", "artifacts", "artifacts/model",
         "artifacts/plots"]))
    assert probe == Probe("run", RUN, RUN[1], 0, ("loss", "val/acc"),
                          ("model", "notes.txt", "plots"))


def test_a_run_with_nothing_but_its_meta_asks_only_that_it_opens():
    probe = probe_for(Unit("run", RUN), kept(RUN, ["meta.yaml"],
                                             ["metrics", "params", "artifacts", "tags"]))
    assert probe == Probe("run", RUN, RUN[1])


def test_a_trashed_run_is_asked_by_its_id():
    rel = (".trash",) + RUN
    assert probe_for(Unit("run", rel), kept(rel, ["metrics/loss"])) == \
        Probe("run", rel, RUN[1], 0, ("loss",))


@pytest.mark.parametrize("unit,probe", [
    (Unit("experiment", ("123",)), Probe("experiment", ("123",), "123")),
    (Unit("experiment", (".trash", "123")), Probe("experiment", (".trash", "123"), "123")),
    (Unit("registered_model", ("models", "m")), Probe("registered_model", ("models", "m"), "m")),
    (Unit("model_version", ("models", "m", "version-7")),
     Probe("model_version", ("models", "m", "version-7"), "m", 7)),
    (Unit("logged_model", ("123", "models", "m-1")),
     Probe("logged_model", ("123", "models", "m-1"), "m-1")),
])
def test_each_kind_is_asked_by_its_name(unit, probe):
    assert probe_for(unit, []) == probe


def test_an_experiment_restored_whole_checks_its_runs_and_logged_models_too():
    exp = ("123",)
    entries = kept(exp, ["meta.yaml", f"{RUN[1]}/meta.yaml", f"{RUN[1]}/metrics/loss",
                         "models/m-1/meta.yaml", "models/m-1/artifacts/MLmodel", "tags/x"],
                   [RUN[1], f"{RUN[1]}/metrics", "models", "models/m-1",
                    "models/m-1/artifacts", "tags"])
    probes = probes_for(Unit("experiment", exp), entries)
    assert probes[0] == Probe("experiment", exp, "123")  # the unit itself first
    assert set(probes[1:]) == {
        Probe("logged_model", exp + ("models", "m-1"), "m-1", 0, (), ("MLmodel",)),
        Probe("run", RUN, RUN[1], 0, ("loss",))}


def test_a_registered_model_restored_whole_checks_each_version():
    rm = ("models", "m")
    probes = probes_for(Unit("registered_model", rm),
                        kept(rm, ["meta.yaml", "version-1/meta.yaml", "version-2/meta.yaml",
                                  "aliases/champion"], ["version-1", "version-2", "aliases"]))
    assert [(p.kind, p.version) for p in probes] == [
        ("registered_model", 0), ("model_version", 1), ("model_version", 2)]


def test_a_folder_the_vault_has_no_meta_yaml_of_is_not_asked_about():
    """A stray folder in an experiment reads as a run in the layout, but MLflow never made it:
    it comes back unchecked; inside a restored experiment, it is left out."""
    stray = ("123", "notes")
    assert probes_for(Unit("run", stray), kept(stray, ["todo.txt"])) == []
    exp = ("123",)
    probes = probes_for(Unit("experiment", exp), kept(exp, ["meta.yaml", "notes/todo.txt"],
                                                          ["notes"]))
    assert probes == [Probe("experiment", exp, "123")]


def test_failures_of_an_inner_unit_name_it():
    exp = Unit("experiment", ("123",))
    probes = [Probe("experiment", ("123",), "123"), Probe("run", RUN, RUN[1])]
    assert failures_of(exp, probes, [[], ["get_run: not found"]]) == \
        [f"123/{RUN[1]}: get_run: not found"]
    assert failures_of(exp, probes, [[], []]) == []
    assert summary(["a", "b"]) == "a; b"


# ---- artifact_folder ---------------------------------------------------------------------------

@pytest.mark.parametrize("uri,expected", [
    ("mlflow-artifacts:/123/abc/artifacts", "/s/123/abc/artifacts"),
    ("mlflow-artifacts:///123/models/m-1/artifacts", "/s/123/models/m-1/artifacts"),
    ("file:///elsewhere/123/abc/artifacts", "/elsewhere/123/abc/artifacts"),
    ("/elsewhere/x", "/elsewhere/x"),
    ("mlflow-artifacts:/123/../../etc", None),
    ("s3://bucket/123/abc/artifacts", None),
    ("models:/m-1", None),
    ("relative/path", None),
])
def test_artifact_locations_resolve_only_to_local_folders(uri, expected):
    got = artifact_folder(Path("/s"), uri)
    assert (str(got) if got else None) == expected


# ---- check: MLflow's own store API in a child process ------------------------------------------

def log_run(store: Path, metric: bool, artifact: bool) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(store.as_uri())
    run = client.create_run("0").info.run_id
    if metric:
        client.log_metric(run, "loss", 0.5, step=1)
    if artifact:  # where the guard's server puts it (the experiment is mlflow-artifacts:/0)
        (store / "0" / run / "artifacts" / "notes.txt").write_text("w=1")
    return run


@pytest.fixture
def store(tmp_path, monkeypatch):
    from guard.core.store import init_store

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    init_store(store)
    # MLflow's registry reads model versions through a default client: on this store, not a
    # mlflow.db in the working folder.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    return store


@pytest.mark.integration  # a child process imports MLflow
def test_check_opens_runs_through_mlflow_and_names_what_it_cannot(store, tmp_path):
    good = log_run(store, metric=True, artifact=True)
    bare = log_run(store, metric=True, artifact=False)
    shutil.rmtree(store / "0" / bare / "params")  # what the old vault left: no params/ folder
    lost = log_run(store, metric=True, artifact=True)
    (store / "0" / lost / "artifacts" / "notes.txt").unlink()
    (store / "0" / lost / "metrics" / "loss").unlink()
    torn = log_run(store, metric=True, artifact=False)
    (store / "0" / torn / "metrics" / "loss").write_text("")
    before = sorted(p.name for p in tmp_path.iterdir())
    answers = check(store, [
        Probe("run", ("0", good), good, 0, ("loss",), ("notes.txt",)),
        Probe("run", ("0", bare), bare, 0, ("loss",)),
        Probe("run", ("0", lost), lost, 0, ("loss",), ("notes.txt",)),
        Probe("experiment", ("0",), "0"),
        Probe("experiment", ("999",), "999"),
        Probe("registered_model", ("models", "nope"), "nope"),
        Probe("run", ("0", torn), torn, 0, ("loss",)),
    ], cwd=tmp_path)
    assert answers[0] == []
    assert answers[1] and answers[1][0].startswith("get_run: ") and "not found" in answers[1][0]
    assert answers[2] == ["metric loss lists no values", "list_artifacts does not list notes.txt"]
    assert answers[3] == []
    assert answers[4] and "999" in answers[4][0]
    assert answers[5] and "nope" in answers[5][0]
    assert answers[6] == ["get_run: Metric 'loss' is malformed. No data found."]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mlflow.db, no mlruns


@pytest.mark.integration
def test_a_check_that_cannot_finish_fails_every_probe(store, tmp_path):
    run = log_run(store, metric=False, artifact=False)
    probes = [Probe("run", ("0", run), run), Probe("experiment", ("0",), "0")]
    answers = check(store, probes, timeout=0.5, cwd=tmp_path)
    assert answers == [["the check through MLflow did not finish (more than 0.5 s)"]] * 2
    stopped = check(store, probes, cwd=tmp_path, stopping=lambda: True)
    assert stopped == [["the check through MLflow did not finish (the guard stopped)"]] * 2


@pytest.mark.integration
def test_a_model_version_opens_only_with_a_readable_mlmodel_where_it_points(store, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(store.as_uri())
    run = client.create_run("0").info.run_id
    model = store / "0" / run / "artifacts" / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    client.create_registered_model("m")
    client.create_model_version("m", f"mlflow-artifacts:/0/{run}/artifacts/model", run)
    probes = [Probe("model_version", ("models", "m", "version-1"), "m", 1),
              Probe("registered_model", ("models", "m"), "m")]
    assert check(store, probes, cwd=tmp_path) == [[], []]
    (model / "MLmodel").write_text("[: not yaml\n")
    broken = check(store, probes, cwd=tmp_path)
    assert broken[0][0].startswith("MLmodel: ") and broken[1] == []
    (model / "MLmodel").unlink()
    assert check(store, probes, cwd=tmp_path) == [[f"no MLmodel file in {model}"], []]
    (store / "models" / "m" / "version-1" / "meta.yaml").unlink()
    gone = check(store, probes, cwd=tmp_path)
    assert gone[0] and gone[0][0].startswith("get_model_version: ")
