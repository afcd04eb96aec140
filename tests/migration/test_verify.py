"""verify: the pure comparison of two snapshots, and the readers over a real copy (SQLite and
PostgreSQL) finding tampering by the entity it touched."""

from __future__ import annotations

import dataclasses

from guard.migration.copy import copy_store
from guard.migration.verify import (
    Difference,
    Experiment,
    ModelVersion,
    RegisteredModel,
    Run,
    Snapshot,
    compare,
    differences,
    read_file_store,
    render_table,
    verify_copy,
)
from tests.helpers.migration import MODEL_NAME
from tests.migration.conftest import execute

# ---- pure ----------------------------------------------------------------------------------


def snapshot() -> Snapshot:
    run = Run("train", "r", "FINISHED", 10, 20, "active", {"lr": "0.1"}, {"k": "v"},
              {"loss": ((0, 10, "1.0"), (1, 11, "0.5"))}, 1)
    return Snapshot(
        experiments={"train": Experiment("active", {"team": "x"})},
        runs={"r1": run},
        traces={"train": 2},
        registered_models={"m": RegisteredModel({}, {"champion": "1"})},
        model_versions={"m/1": ModelVersion("runs:/r1/model", "r1", "READY", {})},
    )


def test_identical_snapshots_have_no_differences():
    assert differences(snapshot(), snapshot()) == []
    assert compare(snapshot(), snapshot()).ok


def test_a_changed_param_names_the_run_and_the_key():
    db = snapshot()
    db.runs["r1"] = dataclasses.replace(db.runs["r1"], params={"lr": "0.2"})
    (diff,) = differences(snapshot(), db)
    assert diff == Difference("params", "run r1", "params 'lr': '0.1' (file store) != '0.2' "
                                                  "(database)")


def test_a_missing_metric_point_and_a_missing_run_and_an_extra_alias():
    db = snapshot()
    db.runs["r1"] = dataclasses.replace(db.runs["r1"], metrics={"loss": ((0, 10, "1.0"),)})
    a = snapshot()
    a.runs["r2"] = a.runs["r1"]
    db.registered_models["m"] = RegisteredModel({}, {"champion": "1", "old": "1"})
    found = {(d.row, d.entity, d.what.split(":")[0]) for d in differences(a, db)}
    assert found == {("metric points", "run r1", "metrics 'loss'"),
                     ("runs", "run r2", "missing from the database"),
                     ("aliases", "registered model m", "aliases 'old' only in the database")}


def test_a_changed_lifecycle_names_the_experiment():
    a, db = snapshot(), snapshot()
    db.experiments["train"] = Experiment("deleted", {"team": "x"})
    check = compare(a, db)
    assert not check.ok
    assert [str(d) for d in check.differences] == [
        "experiment train: lifecycle_stage: 'active' (file store) != 'deleted' (database)"]


def test_the_table_shows_counts_and_differences_per_entity():
    db = snapshot()
    db.runs["r1"] = dataclasses.replace(db.runs["r1"], params={})
    check = compare(snapshot(), db)
    lines = check.table().splitlines()
    assert lines[0].split() == ["entity", "file", "store", "database", "differences"]
    rows = {line.rsplit(None, 3)[0]: line.rsplit(None, 3)[1:] for line in lines[2:]}
    assert rows["params"] == ["1", "0", "1"]
    assert rows["metric points"] == ["2", "2", "0"]
    assert rows["traces"] == ["2", "2", "0"]
    assert render_table({}, {}, []).count("\n") == 1


# ---- over a real copy ----------------------------------------------------------------------


def _run_with_lr(source) -> tuple[str, str]:
    snap = read_file_store(source)
    run_id = next(r for r, run in snap.runs.items() if run.params.get("lr") == "0.1")
    return run_id, snap.runs[run_id].params["lr"]


def test_a_deleted_metric_row_is_found_with_its_run(source, db_url):
    copy_store(source, db_url)
    run_id, _ = _run_with_lr(source)
    assert execute(db_url, "DELETE FROM metrics WHERE run_uuid = :r AND key = 'loss' "
                           "AND step = 3", r=run_id) == 1
    check = verify_copy(source, db_url)
    assert not check.ok
    assert [(d.row, d.entity) for d in check.differences] == [("metric points", f"run {run_id}")]
    assert "metrics 'loss'" in check.differences[0].what
    row = next(line for line in check.table().splitlines() if line.startswith("metric points"))
    assert row.split()[-3:] == ["24", "23", "1"]


def test_a_changed_param_is_found_with_its_run(source, db_url):
    copy_store(source, db_url)
    run_id, _ = _run_with_lr(source)
    execute(db_url, "UPDATE params SET value = '9' WHERE run_uuid = :r AND key = 'lr'", r=run_id)
    (diff,) = verify_copy(source, db_url).differences
    assert diff.entity == f"run {run_id}"
    assert diff.what == "params 'lr': '0.1' (file store) != '9' (database)"


def test_registry_tampering_is_found(source, sqlite_url):
    copy_store(source, sqlite_url)
    execute(sqlite_url, "DELETE FROM registered_model_aliases")
    execute(sqlite_url, "UPDATE model_versions SET source = 'elsewhere' WHERE version = 1")
    found = {(d.row, d.entity) for d in verify_copy(source, sqlite_url).differences}
    assert found == {("aliases", f"registered model {MODEL_NAME}"),
                     ("model versions", f"model version {MODEL_NAME}/1")}
