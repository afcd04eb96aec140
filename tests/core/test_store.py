"""Recognising a synced MLflow file store, and creating one only on purpose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from guard.core.store import (
    ALLOW_FILE_STORE_ENV,
    SYNC_MARKERS,
    StoreCheck,
    StoreState,
    classify_entries,
    init_store,
    inspect_store,
    store_first,
    store_uri,
)

# --- classify_entries -------------------------------------------------------------------------

def test_empty_listing_is_empty():
    assert classify_entries([], set()) is StoreState.EMPTY


@pytest.mark.parametrize("names", [
    [".stfolder"],
    ["@eaDir"],
    ["desktop.ini"],
    [".stfolder", ".stignore", "@eaDir", "desktop.ini", "Thumbs.db", ".DS_Store"],
    [".dropbox", ".dropbox.cache", ".sync", ".SynologyWorkingDirectory"],
])
def test_only_sync_markers_is_empty(names):
    assert classify_entries(names, set()) is StoreState.EMPTY


def test_every_sync_marker_alone_is_empty():
    for name in SYNC_MARKERS:
        assert classify_entries([name], set()) is StoreState.EMPTY, name


@pytest.mark.parametrize("names", [[".trash"], ["models"], [".stfolder", ".trash"],
                                   ["models", "notes.txt"]])
def test_trash_or_models_is_a_store(names):
    assert classify_entries(names, set()) is StoreState.OK


def test_digit_folder_with_meta_is_a_store():
    assert classify_entries(["0"], {"0"}) is StoreState.OK
    assert classify_entries(["desktop.ini", "123456789", "x.txt"], {"123456789"}) is StoreState.OK


def test_digit_folder_without_meta_is_not_a_store():
    assert classify_entries(["0"], set()) is StoreState.NOT_A_STORE
    assert classify_entries(["0", "1"], {"2"}) is StoreState.NOT_A_STORE


def test_non_digit_folder_with_meta_is_not_a_store():
    assert classify_entries(["abc"], {"abc"}) is StoreState.NOT_A_STORE
    assert classify_entries(["1a"], {"1a"}) is StoreState.NOT_A_STORE


@pytest.mark.parametrize("names", [["photo.jpg"], ["README.md", "src"], [".stfolder", "x"],
                                   ["Trash"], ["model"], ["mlruns"]])
def test_random_files_are_not_a_store(names):
    assert classify_entries(names, set()) is StoreState.NOT_A_STORE


# --- inspect_store ----------------------------------------------------------------------------

def test_inspect_missing(tmp_path):
    path = tmp_path / "mlruns"
    check = inspect_store(path)
    assert isinstance(check, StoreCheck)
    assert check.state is StoreState.MISSING
    assert check.ok is False
    assert check.path == path
    assert str(path) in check.detail
    assert "does not exist" in check.detail
    assert not path.exists()  # looking creates nothing


def test_inspect_file(tmp_path):
    path = tmp_path / "mlruns"
    path.write_text("not a folder")
    check = inspect_store(path)
    assert check.state is StoreState.NOT_A_FOLDER
    assert check.ok is False
    assert str(path) in check.detail
    assert "file, not a folder" in check.detail


def test_inspect_empty(tmp_path):
    path = tmp_path / "mlruns"
    path.mkdir()
    check = inspect_store(path)
    assert check.state is StoreState.EMPTY
    assert check.ok is False
    assert str(path) in check.detail
    assert "guardctl init" in check.detail
    assert f"guardctl init --store {path}" in check.detail
    assert os.listdir(path) == []


def test_inspect_only_sync_markers_is_empty(tmp_path):
    path = tmp_path / "mlruns"
    (path / ".stfolder").mkdir(parents=True)
    (path / "desktop.ini").write_text("")
    check = inspect_store(path)
    assert check.state is StoreState.EMPTY
    assert "guardctl init" in check.detail


def test_inspect_real_store(tmp_path):
    path = tmp_path / "mlruns"
    (path / "0").mkdir(parents=True)
    (path / "0" / "meta.yaml").write_text("experiment_id: '0'\n")
    check = inspect_store(path)
    assert check.state is StoreState.OK
    assert check.ok is True
    assert str(path) in check.detail


def test_inspect_experiment_folder_with_meta_folder_is_not_a_store(tmp_path):
    path = tmp_path / "mlruns"
    (path / "0" / "meta.yaml").mkdir(parents=True)  # a folder named meta.yaml, not a file
    check = inspect_store(path)
    assert check.state is StoreState.NOT_A_STORE


def test_inspect_not_a_store_lists_what_it_found(tmp_path):
    path = tmp_path / "photos"
    path.mkdir()
    for name in ("b.jpg", "a.jpg", "0"):
        (path / name).write_text("")
    check = inspect_store(path)
    assert check.state is StoreState.NOT_A_STORE
    assert check.ok is False
    assert str(path) in check.detail
    assert "0, a.jpg, b.jpg" in check.detail


def test_store_uri_is_a_file_uri(tmp_path):
    assert store_uri(tmp_path / "a b") == (tmp_path / "a b").as_uri()
    assert store_uri(tmp_path).startswith("file://")


# --- init_store -------------------------------------------------------------------------------

@pytest.fixture
def allow_file_store(monkeypatch):
    monkeypatch.setenv(ALLOW_FILE_STORE_ENV, "true")


def assert_new_store(path: Path) -> None:
    meta = path / "0" / "meta.yaml"
    assert meta.is_file()
    data = yaml.safe_load(meta.read_text())
    assert data["artifact_location"] == "mlflow-artifacts:/0"
    assert str(data["experiment_id"]) == "0"
    assert data["name"] == "Default"
    assert "artifact_location: mlflow-artifacts:/0" in meta.read_text()
    assert inspect_store(path).state is StoreState.OK


def test_init_store_on_missing_folder(tmp_path, allow_file_store):
    path = tmp_path / "sync" / "mlruns"
    msg = init_store(path)
    assert msg == f"created a new MLflow file store at {path}"
    assert_new_store(path)
    assert (path / "models").is_dir()


def test_init_store_on_empty_folder(tmp_path, allow_file_store):
    path = tmp_path / "mlruns"
    path.mkdir()
    msg = init_store(path)
    assert "created a new MLflow file store" in msg
    assert_new_store(path)


def test_init_store_on_folder_with_only_sync_markers(tmp_path, allow_file_store):
    path = tmp_path / "mlruns"
    (path / ".stfolder").mkdir(parents=True)
    init_store(path)
    assert_new_store(path)
    assert (path / ".stfolder").is_dir()


def test_init_store_on_existing_store_is_a_no_op(tmp_path, allow_file_store):
    path = tmp_path / "mlruns"
    init_store(path)
    meta = path / "0" / "meta.yaml"
    before = meta.read_bytes()
    listing = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    msg = init_store(path)
    assert "already an MLflow file store" in msg
    assert "nothing to do" in msg
    assert meta.read_bytes() == before
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == listing


def test_init_store_refuses_a_non_empty_non_store_folder(tmp_path, allow_file_store):
    path = tmp_path / "documents"
    path.mkdir()
    (path / "thesis.tex").write_text("\\documentclass{article}")
    (path / "figures").mkdir()
    before = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    with pytest.raises(ValueError) as info:
        init_store(path)
    assert "refusing to create a store" in str(info.value)
    assert str(path) in str(info.value)
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before
    assert not (path / "0").exists()
    assert not (path / "models").exists()


def test_init_store_refuses_a_file(tmp_path, allow_file_store):
    path = tmp_path / "mlruns"
    path.write_text("x")
    with pytest.raises(ValueError) as info:
        init_store(path)
    assert "file, not a folder" in str(info.value)
    assert path.read_text() == "x"


# --- advice for a folder that is not a store (issue 16) ---------------------------------------

def test_the_parent_of_mlruns_suggests_mlruns(tmp_path, monkeypatch):
    monkeypatch.setenv(ALLOW_FILE_STORE_ENV, "true")
    (tmp_path / "notes.txt").write_text("x")
    init_store(tmp_path / "mlruns")
    check = inspect_store(tmp_path)
    assert check.state is StoreState.NOT_A_STORE and not check.waitable
    assert check.child_store == tmp_path / "mlruns"
    assert f"use --store {tmp_path / 'mlruns'}" in check.detail
    advice = check.startup_advice()
    assert f"--store {tmp_path / 'mlruns'}" in advice and "--wait-for-store" not in advice


def test_a_folder_with_other_content_is_not_worth_waiting_for(tmp_path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "chapter1.tex").write_text("x")
    check = inspect_store(tmp_path)
    assert check.child_store is None and not check.waitable
    assert "--wait-for-store" not in check.startup_advice()
    assert "synced mlruns folder" in check.startup_advice()


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()], ids=["missing", "empty"])
def test_a_missing_or_empty_folder_may_be_waited_for(tmp_path, make):
    make(tmp_path / "drive")
    check = inspect_store(tmp_path / "drive")
    assert check.waitable and "--wait-for-store" in check.startup_advice()


def test_mlruns_is_looked_at_first_and_sync_folders_never():
    assert store_first(["b", "mlruns", ".stfolder", "a"]) == ["mlruns", "a", "b"]
