"""Sync clients' conflict-copy names: which names are copies, of what, by which client."""

from __future__ import annotations

import pytest

from guard.core.conflictnames import ConflictName, parse_conflict_name


@pytest.mark.parametrize("name, expected", [
    # Synology Drive: the FIELD-NOTES example, no extension, '_' in the stem, other reasons
    ("meta_Andy-PC_Jan-03-0901-2013_Conflict_1.yaml",
     ConflictName("meta.yaml", "synology", "Andy-PC", "Jan-03-0901-2013", 1, "Conflict")),
    ("loss_Andy-PC_Jan-03-0901-2013_Conflict_1",
     ConflictName("loss", "synology", "Andy-PC", "Jan-03-0901-2013", 1, "Conflict")),
    ("val_loss_LAB-2_Dec-31-2359-2024_CaseConflict_2",
     ConflictName("val_loss", "synology", "LAB-2", "Dec-31-2359-2024", 2, "CaseConflict")),
    ("train.acc_nas_Feb-28-0000-2025_WhiteSpaceConflict_3.acc",
     ConflictName("train.acc.acc", "synology", "nas", "Feb-28-0000-2025", 3,
                  "WhiteSpaceConflict")),
    ("mlflow.source.name_PC_Jul-04-1200-2024_TailCharacterConflict_1",
     ConflictName("mlflow.source.name", "synology", "PC", "Jul-04-1200-2024", 1,
                  "TailCharacterConflict")),
    ("my run notes_PC_Jul-04-1200-2024_Conflict_10.txt",
     ConflictName("my run notes.txt", "synology", "PC", "Jul-04-1200-2024", 10, "Conflict")),
    # the date anchors the parse: a stem holding a date-like part is still the stem
    ("a_PC_Jan-01-0000-2020_Conflict_1_PC_Jan-02-0000-2020_Conflict_1",
     ConflictName("a_PC_Jan-01-0000-2020_Conflict_1", "synology", "PC", "Jan-02-0000-2020", 1,
                  "Conflict")),
    # Syncthing
    ("meta.sync-conflict-20240105-101500-ABCDEFG.yaml",
     ConflictName("meta.yaml", "syncthing", "ABCDEFG", "20240105-101500")),
    ("loss.sync-conflict-20240105-101500-ABCDEFG",
     ConflictName("loss", "syncthing", "ABCDEFG", "20240105-101500")),
    ("val-loss.sync-conflict-20240105-101500-ABC-123",
     ConflictName("val-loss", "syncthing", "ABC-123", "20240105-101500")),
    ("model.tar.sync-conflict-20240105-101500-ABCDEFG.gz",
     ConflictName("model.tar.gz", "syncthing", "ABCDEFG", "20240105-101500")),
    ("my loss_1.sync-conflict-20240105-101500-ZZZZZZZ",
     ConflictName("my loss_1", "syncthing", "ZZZZZZZ", "20240105-101500")),
    # a copy of a copy: the last marker is this copy's; its original is the older copy
    ("a.sync-conflict-20240101-000000-AAAAAAA.sync-conflict-20240102-000000-BBBBBBB.yaml",
     ConflictName("a.sync-conflict-20240101-000000-AAAAAAA.yaml", "syncthing", "BBBBBBB",
                  "20240102-000000")),
    # Dropbox, with the optional counter either inside or after the parenthesis
    ("meta (Bob's conflicted copy 2024-01-05).yaml",
     ConflictName("meta.yaml", "dropbox", "Bob", "2024-01-05")),
    ("loss (Ann Lee's conflicted copy 2024-01-05)",
     ConflictName("loss", "dropbox", "Ann Lee", "2024-01-05")),
    ("val_loss (O'Brien's conflicted copy 2024-01-05)",
     ConflictName("val_loss", "dropbox", "O'Brien", "2024-01-05")),
    ("meta (Bob's conflicted copy 2024-01-05) (2).yaml",
     ConflictName("meta.yaml", "dropbox", "Bob", "2024-01-05", 2)),
    ("meta (Bob's conflicted copy 2024-01-05 (3)).yaml",
     ConflictName("meta.yaml", "dropbox", "Bob", "2024-01-05", 3)),
    ("mlflow.runName (Bob\u2019s conflicted copy 2024-01-05)",
     ConflictName("mlflow.runName", "dropbox", "Bob", "2024-01-05")),
    # Nextcloud / ownCloud
    ("meta (conflicted copy 2024-01-05 101500).yaml",
     ConflictName("meta.yaml", "nextcloud", None, "2024-01-05 101500")),
    ("train-loss (conflicted copy 2024-01-05 101500)",
     ConflictName("train-loss", "nextcloud", None, "2024-01-05 101500")),
    ("lr.decay rate (conflicted copy 2024-01-05 101500).x",
     ConflictName("lr.decay rate.x", "nextcloud", None, "2024-01-05 101500")),
])
def test_conflict_names(name, expected):
    assert parse_conflict_name(name) == expected


def test_dropbox_dotted_name_without_extension_keeps_whole_stem():
    # Dropbox splits `mlflow.runName` as stem `mlflow` + extension `.runName`
    got = parse_conflict_name("mlflow (Bob's conflicted copy 2024-01-05).runName")
    assert got is not None and got.original == "mlflow.runName"


@pytest.mark.parametrize("name", [
    "meta.yaml", "loss", "val-loss", "val_loss", "my_run_Jan_notes.txt", "version-3",
    "mlflow.runName", "mlflow.source.git.commit", "requirements.txt", "MLmodel",
    "meta_PC_Jan-03-0901-2013.yaml",  # no Conflict reason
    "meta_PC_Foo-03-0901-2013_Conflict_1.yaml",  # not a month
    "meta_Jan-03-0901-2013_Conflict_1.yaml",  # no client part
    "loss.sync-conflict-2024-101500-ABCDEFG",  # short date
    "loss.sync-conflict-20240105-101500-",  # no device
    "sync-conflict-20240105-101500-ABCDEFG",  # no stem
    "notes (conflicted copy).txt", "notes (Bob's conflicted copy).txt",
    "notes (conflicted copy 2024-01-05).txt",  # Nextcloud needs the time
    "loss (Bob's copy 2024-01-05)",
    "meta.yaml\n",
])
def test_not_conflict_names(name):
    assert parse_conflict_name(name) is None


def test_onedrive_needs_known_hosts():
    assert parse_conflict_name("val-loss") is None
    assert parse_conflict_name("meta-LAPTOP.yaml") is None
    assert parse_conflict_name("meta-LAPTOP.yaml", hosts=frozenset()) is None
    assert parse_conflict_name("val-loss", hosts=frozenset({"laptop"})) is None


@pytest.mark.parametrize("name, hosts, expected", [
    ("meta-LAPTOP.yaml", {"laptop"}, ConflictName("meta.yaml", "onedrive", "LAPTOP")),
    ("loss-LAPTOP", {"Laptop"}, ConflictName("loss", "onedrive", "LAPTOP")),
    ("val-loss-DESKTOP-7QX", {"desktop-7qx"},
     ConflictName("val-loss", "onedrive", "DESKTOP-7QX")),
    # the ambiguity, accepted when told: `val-loss` read as a copy of `val` from host `loss`
    ("val-loss", {"LOSS"}, ConflictName("val", "onedrive", "loss")),
    ("train.acc-PC1.acc", {"pc1"}, ConflictName("train.acc.acc", "onedrive", "PC1")),
    ("mlflow.user-PC1", {"pc1"}, ConflictName("mlflow.user", "onedrive", "PC1")),
    # longest known host wins
    ("a-my-pc.txt", {"pc", "my-pc"}, ConflictName("a.txt", "onedrive", "my-pc")),
])
def test_onedrive_with_hosts(name, hosts, expected):
    assert parse_conflict_name(name, hosts=frozenset(hosts)) == expected


@pytest.mark.parametrize("name", ["-LAPTOP.yaml", "LAPTOP", "meta-LAPTOPX.yaml", "meta.yaml"])
def test_onedrive_rejects(name):
    assert parse_conflict_name(name, hosts=frozenset({"laptop"})) is None


def test_synology_client_with_underscore_settled_by_hosts():
    name = "val_loss_my_pc_Feb-28-2359-2024_CaseConflict_2.yaml"
    assert parse_conflict_name(name).original == "val_loss_my.yaml"  # guessed: no '_' in host
    got = parse_conflict_name(name, hosts=frozenset({"MY_PC"}))
    assert (got.original, got.who, got.client) == ("val_loss.yaml", "my_pc", "synology")


def test_other_clients_win_over_onedrive():
    got = parse_conflict_name("loss.sync-conflict-20240105-101500-ABCDEFG", frozenset({"ABCDEFG"}))
    assert got.client == "syncthing"
