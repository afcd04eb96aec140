"""copy_store: a real client's file store into SQLite and PostgreSQL, in one transaction.

These run MLflow's private fs2db functions end to end: an MLflow upgrade that renames or
changes them fails here."""

from __future__ import annotations

import pytest

from guard.migration.copy import MigrationError, copy_store, database_ids
from guard.migration.verify import verify_copy
from tests.migration.conftest import row_counts

EXPECTED = {"experiments": 3, "runs": 5, "params": 7, "metrics": 24, "datasets": 1,
            "inputs": 1, "traces": 2, "logged_models": 1, "registered_models": 1,
            "model_versions": 3, "registered_model_aliases": 1}


def test_copy_writes_every_entity_and_verifies(source, db_url):
    said: list[str] = []
    stats = copy_store(source, db_url, said.append)
    assert {k: stats[k] for k in EXPECTED} == EXPECTED
    assert {k: row_counts(db_url)[k] for k in EXPECTED} == EXPECTED
    check = verify_copy(source, db_url)
    assert check.ok, check.table() + "\n" + "\n".join(map(str, check.differences))
    assert check.file_store == check.database
    assert check.database["metric points"] == 24
    # the guard's and the sync clients' folders were neither copied nor warned about
    assert not any("guard.trash" in s or "@eaDir" in s or ".stfolder" in s for s in said)


def test_portable_artifact_uris_come_through_unchanged(source, sqlite_url):
    from mlflow.entities import ViewType
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    copy_store(source, sqlite_url)
    db = SqlAlchemyStore(sqlite_url, "mlflow-artifacts:/")
    try:
        assert db.get_experiment("0").artifact_location == "mlflow-artifacts:/0"
        (run,) = db.search_runs(["0"], "", ViewType.ALL)
        assert run.info.artifact_uri == f"mlflow-artifacts:/0/{run.info.run_id}/artifacts"
    finally:
        db.engine.dispose()


def test_a_new_experiment_after_the_copy_gets_a_fresh_id(source, db_url):
    """fs2db inserts experiment ids explicitly; PostgreSQL's sequence must be moved past them."""
    from mlflow.entities import ViewType
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    copy_store(source, db_url)
    db = SqlAlchemyStore(db_url, "mlflow-artifacts:/")
    try:
        copied = {e.experiment_id for e in db.search_experiments(ViewType.ALL)}
        assert len(copied) == 3
        new = db.create_experiment("after the move")
        assert new not in copied
        assert db.get_experiment(new).name == "after the move"
    finally:
        db.engine.dispose()


def test_a_database_with_data_is_refused_and_left_alone(source, db_url):
    copy_store(source, db_url)
    before = row_counts(db_url)
    with pytest.raises(MigrationError, match="empty database"):
        copy_store(source, db_url)
    assert row_counts(db_url) == before


def test_a_failure_mid_copy_leaves_the_database_empty(source, db_url, monkeypatch):
    from mlflow.store.fs2db import _tracking

    original = _tracking._migrate_runs_in_dir
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 2:
            raise RuntimeError("disk gone")
        return original(*args, **kwargs)

    monkeypatch.setattr(_tracking, "_migrate_runs_in_dir", fail_on_second)
    with pytest.raises(RuntimeError, match="disk gone"):
        copy_store(source, db_url)
    assert len(calls) == 2
    counts = row_counts(db_url)
    assert counts["experiments"] == 0  # the schema is there, no data
    assert set(counts.values()) == {0}


def test_a_missing_store_is_refused(tmp_path, sqlite_url):
    with pytest.raises(MigrationError, match="not a folder"):
        copy_store(tmp_path / "nowhere", sqlite_url)


def test_database_ids_are_kept_when_they_fit_else_renumbered():
    big = ["0", "841151950540102334", "12"]
    assert database_ids(big, "sqlite:///x.db") == {"0": 0, "841151950540102334": 841151950540102334,
                                                   "12": 12}
    assert database_ids(big, "postgresql://h/db") == {"0": 0, "841151950540102334": 1, "12": 2}
    assert database_ids(["0", "5"], "postgresql+psycopg://h/db") == {"0": 0, "5": 5}
    assert database_ids([str(2**31 - 1)], "mysql://h/db") == {str(2**31 - 1): 2**31 - 1}
    assert database_ids([str(2**31)], "mysql://h/db") == {str(2**31): 1}
