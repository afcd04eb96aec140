"""Experiments sharing a name: found from their meta.yaml data, and the merge planned (pure),
then the same over a copy of a real store written by MLflow (the shell reads only)."""

from __future__ import annotations

import pytest

from guard.core import metayaml
from guard.sync.experiment_names import find_same_names, plan_for
from guard.sync.experiments import Contents, SameName, plan_merge, same_names
from tests.helpers.store import EXP, RUN, copy_direct_store

MODEL = "m-da48845d65f640198a3930713e766e00"


def exp(name: str, created: int | None, stage: str = "active") -> dict:
    return {"name": name, "creation_time": created, "lifecycle_stage": stage}


def test_active_experiments_sharing_a_name_oldest_first():
    found = same_names([("9", exp("shared", 300)), ("4", exp("shared", 100)),
                        ("7", exp("shared", None)), ("5", exp("alone", 1)),
                        ("6", exp("gone", 1, "deleted")), ("8", exp("gone", 2)),
                        ("3", {"name": None}), ("2", {})])
    assert found == [SameName("shared", ("4", "9", "7"))]  # no time: last
    (group,) = found
    assert (group.keep, group.merged) == ("4", ("9", "7"))
    assert group.command() == "guardctl conflicts --merge-experiments shared"
    assert SameName("a b", ("1", "2")).command() == "guardctl conflicts --merge-experiments 'a b'"
    assert "ids 4, 9, 7; 4 is the oldest" in group.describe()
    assert same_names([("1", exp("x", 5)), ("2", exp("y", 5))]) == []


def run_doc(exp_id: str, run: str) -> dict:
    return {"run_id": run, "experiment_id": exp_id,
            "artifact_uri": f"mlflow-artifacts:/{exp_id}/{run}/artifacts"}


def test_the_plan_moves_every_run_and_logged_model_and_repoints_model_versions():
    group = SameName("shared", ("1", "2"))
    moved = Contents("2", runs=(("r2", run_doc("2", "r2")),),
                     models=(("m-2", {"experiment_id": "2",
                                      "artifact_location": "file:///x/mlruns/2/models/m-2/artifacts"}),),
                     other=("meta.yaml", "tags"))
    versions = [
        (("models", "a", "version-1", "meta.yaml"),
         {"run_id": "r2", "source": "mlflow-artifacts:/2/r2/artifacts/model",
          "storage_location": "mlflow-artifacts:/2/r2/artifacts/model"}),
        (("models", "a", "version-2", "meta.yaml"),
         {"model_id": "m-2", "source": "models:/m-2",
          "storage_location": "/home/bob/mlruns/2/models/m-2/artifacts"}),
        (("models", "a", "version-3", "meta.yaml"),  # the kept experiment's: untouched
         {"run_id": "r1", "storage_location": "mlflow-artifacts:/1/r1/artifacts/model"}),
    ]
    plan = plan_merge(group, [moved], ["meta.yaml", "r1"], [], versions)
    assert plan.blockers == ()
    run, model = plan.moves
    assert (run.src, run.dst) == (("2", "r2"), ("1", "r2"))
    assert run.rewrites == (("experiment_id", "2", "1"),
                            ("artifact_uri", "mlflow-artifacts:/2/r2/artifacts",
                             "mlflow-artifacts:/1/r2/artifacts"))
    assert (model.src, model.dst) == (("2", "models", "m-2"), ("1", "models", "m-2"))
    assert model.rewrites[1][2] == "mlflow-artifacts:/1/models/m-2/artifacts"
    assert [(r.version[2], r.key, r.new) for r in plan.repoints] == [
        ("version-1", "storage_location", "mlflow-artifacts:/1/r2/artifacts/model"),
        ("version-1", "source", "mlflow-artifacts:/1/r2/artifacts/model"),
        ("version-2", "storage_location", "mlflow-artifacts:/1/models/m-2/artifacts")]
    text = "\n".join(plan.lines())
    assert "move run 2/r2 -> 1/r2" in text and "tombstone" in text and "trash" in text
    assert "cannot merge" not in text


def test_the_plan_is_blocked_by_ids_on_both_sides_and_by_traces():
    group = SameName("shared", ("1", "2"))
    moved = Contents("2", runs=(("r1", run_doc("2", "r1")), ("r2", run_doc("2", "r2")),
                                ("r3", dict(run_doc("2", "r3"), status=1))),
                     models=(("m-1", {}), ("m-2", {"status": 1})), other=("traces",))
    plan = plan_merge(group, [moved], ["r1"], ["m-1"], [])
    assert [m.src for m in plan.moves] == [("2", "r2"), ("2", "r3"), ("2", "models", "m-2")]
    assert len(plan.blockers) == 5
    assert any("2/r3 is still running" in b for b in plan.blockers)
    assert any("2/m-2 is still pending" in b for b in plan.blockers)
    assert any("run r1 is in both 2 and 1" in b for b in plan.blockers)
    assert any("'traces'" in b for b in plan.blockers)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The shipped store plus an older experiment "111" with the same name as EXP: EXP (its
    run, its logged model, the registered version pointing at that model) is the one to
    merge."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = copy_direct_store(tmp_path)
    doc = metayaml.parse((store / EXP / "meta.yaml").read_bytes())
    (store / "111").mkdir()
    (store / "111" / "meta.yaml").write_bytes(metayaml.dump(dict(
        doc, experiment_id="111", artifact_location="mlflow-artifacts:/111",
        creation_time=doc["creation_time"] - 1000)))
    return store


def test_same_named_experiments_in_a_real_store_and_their_merge_plan(store):
    name = metayaml.parse((store / EXP / "meta.yaml").read_bytes())["name"]
    assert find_same_names(store) == [SameName(name, ("111", EXP))]
    plan = plan_for(store, name)
    assert plan is not None and plan.blockers == ()
    assert [(m.what, m.dst) for m in plan.moves] == [
        ("run", ("111", RUN)), ("logged model", ("111", "models", MODEL))]
    assert [(r.key, r.new) for r in plan.repoints] == [
        ("storage_location", f"mlflow-artifacts:/111/models/{MODEL}/artifacts")]
    assert plan_for(store, "no such name") is None


def test_merging_moves_every_run_and_logged_model_and_mlflow_reads_them(store, tmp_path):
    from mlflow.store.model_registry.file_store import FileStore as Registry
    from mlflow.store.tracking.file_store import FileStore

    from guard.core.journal import Journal, read_journal
    from guard.protection import tombstones
    from guard.sync.experiment_names import merge

    before = FileStore(store.as_uri()).get_run(RUN)
    history = FileStore(store.as_uri()).get_metric_history(RUN, "m")
    name = metayaml.parse((store / EXP / "meta.yaml").read_bytes())["name"]
    plan = plan_for(store, name)
    journal = tmp_path / "state" / "journal" / "conflicts.jsonl"
    batch, failures = merge(store, tmp_path / "vault", "hostA", plan, Journal(journal))
    assert failures == []
    assert not (store / EXP).exists() and (batch / EXP / "meta.yaml").is_file()  # kept
    moved = metayaml.parse((store / "111" / RUN / "meta.yaml").read_bytes())
    assert (moved["experiment_id"], moved["artifact_uri"]) == (
        "111", f"mlflow-artifacts:/111/{RUN}/artifacts")
    tracking = FileStore(store.as_uri())
    after = tracking.get_run(RUN)
    assert after.info.experiment_id == "111"
    assert after.data.params == before.data.params and after.data.tags == before.data.tags
    assert [(m.step, m.value) for m in tracking.get_metric_history(RUN, "m")] == [
        (m.step, m.value) for m in history]
    assert [e.experiment_id for e in tracking.search_experiments() if e.name == name] == ["111"]
    assert tracking.get_logged_model(MODEL).experiment_id == "111"
    version = metayaml.parse((store / "models" / "adder" / "version-1" / "meta.yaml")
                             .read_bytes())
    assert version["storage_location"] == f"mlflow-artifacts:/111/models/{MODEL}/artifacts"
    assert Registry(store.as_uri()).get_model_version("adder", "1").run_id == RUN
    sanctioned = {tuple(t.rel) for t in tombstones.read_all(store)}
    assert {(EXP, RUN), (EXP, "models", MODEL), (EXP,)} <= sanctioned
    actions = [r["action"] for r in read_journal(journal)]
    assert actions == ["merge_move", "merge_move", "merge_repoint", "merge_trash"]
    assert find_same_names(store) == []
