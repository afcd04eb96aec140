"""guard.tombstones: sanctioned removals recorded in the shared store, one file per removal."""

from __future__ import annotations

import json
import os

import pytest

from guard.core.layout import COORDINATION
from guard.protection.deletions import Tombstone
from guard.protection.tombstones import parse, prune, read_all, tombstone_dir, write

RUN = ("123", "0123456789abcdef0123456789abcdef")


def test_tombstones_live_in_the_coordination_folder(tmp_path):
    assert tombstone_dir(tmp_path) == tmp_path / COORDINATION / "tombstones"
    path = write(tmp_path, "host-a", RUN, "guardctl gc: run x")
    assert path.parent == tmp_path / COORDINATION / "tombstones" / "host-a"
    assert path.name.endswith(".json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["rel"] == list(RUN) and doc["reason"] == "guardctl gc: run x"
    assert doc["host_id"] == "host-a" and doc["created"] is None


def test_write_then_read_all_across_hosts(tmp_path):
    write(tmp_path, "host-a", RUN, "gc")
    write(tmp_path, "host-a", (".trash", "7"), "gc")
    write(tmp_path, "host-b", ("models", "churn"), "server: delete", created=1700000000123)
    stones = read_all(tmp_path)
    assert sorted(stones, key=lambda s: s.rel) == [
        Tombstone((".trash", "7")),
        Tombstone(RUN),
        Tombstone(("models", "churn"), 1700000000123),
    ]


def test_two_writes_of_the_same_rel_are_two_files(tmp_path):
    """One file per removal, never rewritten: nothing a sync client could turn into a conflict."""
    a = write(tmp_path, "host-a", RUN, "gc")
    b = write(tmp_path, "host-a", RUN, "gc")
    assert a != b and a.exists() and b.exists()
    assert read_all(tmp_path) == [Tombstone(RUN), Tombstone(RUN)]


def test_no_leftover_temp_files(tmp_path):
    write(tmp_path, "host-a", RUN, "gc")
    assert [p.name.endswith(".json") for p in (tombstone_dir(tmp_path) / "host-a").iterdir()] \
        == [True]


def test_read_all_without_any_tombstones(tmp_path):
    assert read_all(tmp_path) == []
    assert read_all(tmp_path / "missing-store") == []


def test_read_all_skips_half_synced_hostile_and_foreign_files(tmp_path):
    write(tmp_path, "host-a", RUN, "gc")
    folder = tombstone_dir(tmp_path) / "host-b"
    folder.mkdir(parents=True)
    (folder / "half.json").write_text('{"rel": ["1"', encoding="utf-8")
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00")
    (folder / "climb.json").write_text(json.dumps({"rel": ["..", "etc"]}), encoding="utf-8")
    (folder / "list.json").write_text("[1, 2]", encoding="utf-8")
    (folder / "notes.txt").write_text(json.dumps({"rel": ["9"]}), encoding="utf-8")
    (folder / "dir.json").mkdir()
    (tombstone_dir(tmp_path) / "stray.json").write_text(json.dumps({"rel": ["8"]}),
                                                        encoding="utf-8")  # not in a host folder
    assert read_all(tmp_path) == [Tombstone(RUN)]


# --- parse ------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc, stone", [
    ({"rel": ["1"]}, Tombstone(("1",))),
    ({"rel": ["models", "churn"], "created": 5}, Tombstone(("models", "churn"), 5)),
    ({"rel": list(RUN), "created": None, "reason": "x", "extra": 1}, Tombstone(RUN)),
    ({"rel": [".trash", "1"]}, Tombstone((".trash", "1"))),
])
def test_parse_accepts_tombstones(doc, stone):
    assert parse(doc) == stone


@pytest.mark.parametrize("doc", [
    None,
    [],
    "rel",
    ["1"],
    {},
    {"rel": None},
    {"rel": "1/2"},          # a string, not a list
    {"rel": ("1", "2")},     # JSON never gives tuples; only a list is accepted
    {"rel": []},             # would sanction removing the whole store
    {"rel": [""]},
    {"rel": ["1", ""]},
    {"rel": [".."]},
    {"rel": ["1", "..", "2"]},
    {"rel": ["."]},
    {"rel": ["a/b"]},
    {"rel": ["a\\b"]},
    {"rel": ["1", 2]},
    {"rel": [["1"]]},
])
def test_parse_rejects_hostile_rels(doc):
    assert parse(doc) is None


@pytest.mark.parametrize("created", [True, False, "123", 1.5, [1], {"t": 1}])
def test_parse_rejects_bad_created(created):
    assert parse({"rel": ["models", "churn"], "created": created}) is None


# --- prune ------------------------------------------------------------------------------------

DAY = 86_400.0


def aged(path, now: float, age: float) -> None:
    os.utime(path, (now - age, now - age))


def test_prune_removes_only_own_old_tombstones(tmp_path):
    now = 2_000_000_000.0
    mine_old = write(tmp_path, "host-a", RUN, "gc")
    mine_new = write(tmp_path, "host-a", ("1",), "gc")
    theirs_old = write(tmp_path, "host-b", ("2",), "gc")
    other_file = tombstone_dir(tmp_path) / "host-a" / "README.txt"
    other_file.write_text("not a tombstone", encoding="utf-8")
    aged(mine_old, now, 31 * DAY)
    aged(mine_new, now, 29 * DAY)
    aged(theirs_old, now, 90 * DAY)
    aged(other_file, now, 90 * DAY)
    assert prune(tmp_path, "host-a", 30 * DAY, now=now) == 1
    assert not mine_old.exists()
    assert mine_new.exists() and theirs_old.exists() and other_file.exists()
    assert sorted(s.rel for s in read_all(tmp_path)) == [("1",), ("2",)]


def test_prune_keeps_a_tombstone_exactly_at_the_limit(tmp_path):
    now = 2_000_000_000.0
    path = write(tmp_path, "host-a", RUN, "gc")
    aged(path, now, 30 * DAY)
    assert prune(tmp_path, "host-a", 30 * DAY, now=now) == 0
    aged(path, now, 30 * DAY + 1)
    assert prune(tmp_path, "host-a", 30 * DAY, now=now) == 1


def test_prune_without_own_folder_removes_nothing(tmp_path):
    write(tmp_path, "host-b", RUN, "gc")
    assert prune(tmp_path, "host-a", 0.0) == 0
    assert prune(tmp_path / "missing", "host-a", 0.0) == 0
    assert read_all(tmp_path) == [Tombstone(RUN)]


def test_read_all_never_opens_a_fifo_or_follows_a_symlink(tmp_path):
    """A FIFO tombstone would block every reader in open(); a symlinked one points anywhere."""
    import threading

    write(tmp_path, "host-a", RUN, "gc")
    folder = tombstone_dir(tmp_path) / "host-b"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "fifo.json")
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"rel": ["7"]}), encoding="utf-8")
    os.symlink(outside, folder / "link.json")
    found = []
    thread = threading.Thread(target=lambda: found.extend(read_all(tmp_path)), daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "read_all blocked on the FIFO"
    assert found == [Tombstone(RUN)]
