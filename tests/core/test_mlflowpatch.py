"""MLflow's file stores skip the sync clients' folders in the store root once the guard's
patch is installed (guard/core/mlflowpatch.py); in-process, each test restoring MLflow's own
methods afterwards. The real servers are in tests/supervision/test_sync_folders.py."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from guard.core import mlflowpatch
from guard.core.store import SYNC_MARKERS, init_store

SYNC_FOLDERS = (".stfolder", ".stversions/x", "@eaDir", ".trash/@eaDir", "models/@eaDir",
                "#recycle")


@pytest.fixture
def mlflow_restored(monkeypatch):
    """MLflow's listings as MLflow made them, put back after the test (the patch is
    process-wide)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    for module, name, _ in mlflowpatch.LISTINGS:
        cls = importlib.import_module(module).FileStore
        original = getattr(cls, name)
        while getattr(original, mlflowpatch.MARK, False):  # another test's install
            original = original.__wrapped__
        monkeypatch.setattr(cls, name, original)


@pytest.fixture
def marked_store(tmp_path, mlflow_restored) -> Path:
    """A store with the Default experiment, one registered model, and sync folders around."""
    from mlflow.store.model_registry.file_store import FileStore as Registry

    store = tmp_path / "mlruns"
    init_store(store)
    Registry(store.as_uri()).create_registered_model("m1")
    for rel in SYNC_FOLDERS:
        (store / rel).mkdir(parents=True, exist_ok=True)
    return store


def stores(store: Path):
    from mlflow.store.model_registry.file_store import FileStore as Registry
    from mlflow.store.tracking.file_store import FileStore as Tracking

    return Tracking(store.as_uri()), Registry(store.as_uri())


def test_this_mlflow_has_the_listings_the_patch_wraps():
    """The name and signature check: fails when an MLflow upgrade renames or changes one of
    the three methods, so the patch cannot silently stop working."""
    assert mlflowpatch.problems() == []


def test_the_markers_the_patch_skips():
    for name in (".stfolder", ".stversions", ".stignore", "@eaDir", "#recycle",
                 ".SynologyWorkingDirectory"):
        assert name in SYNC_MARKERS
    assert mlflowpatch.skip_markers(["0", ".stfolder", "/s/mlruns/@eaDir", "/s/mlruns/12",
                                     "x.trash", "/s/mlruns/.stversions/"]) == \
        ["0", "/s/mlruns/12", "x.trash"]


def test_without_the_patch_sync_folders_break_mlflow(marked_store):
    """The fact the patch is for (MLflow 3.17): listing experiments meets '.stfolder', listing
    registered models meets 'models/@eaDir'. If MLflow ever skips them itself, this fails and
    the patch can go."""
    from mlflow.exceptions import MlflowException

    tracking, registry = stores(marked_store)
    with pytest.raises(MlflowException, match="Invalid experiment ID"):
        tracking.search_experiments()
    with pytest.raises(MlflowException, match="Invalid experiment ID"):
        tracking.get_experiment_by_name("Default")
    with pytest.raises(MlflowException, match="Invalid experiment ID"):
        tracking.create_experiment("new")
    with pytest.raises(Exception, match="@eaDir"):
        registry.search_registered_models(max_results=10)


def test_with_the_patch_mlflow_reads_the_store(marked_store):
    from mlflow.entities import ViewType

    assert mlflowpatch.install() and mlflowpatch.installed()
    tracking, registry = stores(marked_store)
    assert [e.name for e in tracking.search_experiments()] == ["Default"]
    assert tracking.get_experiment_by_name("Default").experiment_id == "0"
    new = tracking.create_experiment("new")
    tracking.delete_experiment(new)
    assert {e.name for e in tracking.search_experiments(view_type=ViewType.ALL)} == \
        {"Default", "new"}  # .trash/@eaDir skipped too
    run = tracking.create_run("0", "u", 0, [], "r")
    assert tracking.get_run(run.info.run_id).info.experiment_id == "0"
    assert [m.name for m in registry.search_registered_models(max_results=10)] == ["m1"]
    for rel in SYNC_FOLDERS:
        assert (marked_store / rel).is_dir()  # skipped, never touched


def test_install_is_idempotent(mlflow_restored):
    from mlflow.store.tracking.file_store import FileStore

    assert mlflowpatch.install()
    once = FileStore._get_active_experiments
    assert mlflowpatch.install()
    assert FileStore._get_active_experiments is once
    assert once.__wrapped__.__name__ == "_get_active_experiments"


def test_an_mlflow_that_differs_is_left_alone(mlflow_restored, monkeypatch, caplog):
    """A changed signature: nothing is patched (not even the listings that still match), and
    the server log says why."""
    from mlflow.store.model_registry.file_store import FileStore as Registry
    from mlflow.store.tracking.file_store import FileStore as Tracking

    monkeypatch.setattr(Registry, "_get_all_registered_model_paths",
                        lambda self, prefix="": [])
    before = Tracking._get_active_experiments
    assert mlflowpatch.problems() == [
        f"{mlflowpatch.REGISTRY}.FileStore._get_all_registered_model_paths(self, prefix='') "
        "is not (self)"]
    assert not mlflowpatch.install()
    assert Tracking._get_active_experiments is before and not mlflowpatch.installed()
    assert "cannot make MLflow skip the sync clients' folders" in caplog.text
    monkeypatch.delattr(Tracking, "_get_deleted_experiments")
    assert f"{mlflowpatch.TRACKING}.FileStore._get_deleted_experiments is gone" in \
        mlflowpatch.problems()
