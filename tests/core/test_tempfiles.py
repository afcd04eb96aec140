"""The guard's own stale temp files: only regular files with the prefix, never via symlinks."""

from __future__ import annotations

import os
import stat
import time

from guard.core.layout import TEMP_PREFIX
from guard.core.tempfiles import STALE_AFTER, discard, is_stale, sweep

REG, DIR, LNK = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777


def test_is_stale_only_for_old_regular_files_with_the_prefix():
    now = 1000.0
    assert is_stale(f"{TEMP_PREFIX}abc", REG, now - STALE_AFTER, now)
    assert not is_stale(f"{TEMP_PREFIX}abc", REG, now - STALE_AFTER + 1, now)  # in progress
    assert not is_stale("meta.yaml", REG, 0, now)
    assert not is_stale(f"x{TEMP_PREFIX}", REG, 0, now)
    assert not is_stale(f"{TEMP_PREFIX}dir", DIR, 0, now)
    assert not is_stale(f"{TEMP_PREFIX}link", LNK, 0, now)


def old(path, age: float = 3600) -> None:
    t = time.time() - age
    os.utime(path, (t, t), follow_symlinks=False)


def test_sweep_removes_stale_temp_files_and_nothing_else(tmp_path):
    stale = tmp_path / f"{TEMP_PREFIX}stale"
    fresh = tmp_path / f"{TEMP_PREFIX}fresh"
    user = tmp_path / "meta.yaml"
    for p in (stale, fresh, user):
        p.write_bytes(b"x")
    old(stale)
    old(user)
    target = tmp_path / "precious"
    target.write_bytes(b"keep")
    old(target)
    link = tmp_path / f"{TEMP_PREFIX}link"
    link.symlink_to(target)
    old(link)
    folder = tmp_path / f"{TEMP_PREFIX}folder"
    folder.mkdir()
    old(folder)
    assert sweep(tmp_path) == [stale]
    assert not stale.exists() and fresh.exists() and user.exists() and folder.is_dir()
    assert link.is_symlink() and target.read_bytes() == b"keep"


def test_sweep_goes_below_only_when_recursive_and_never_through_a_symlink(tmp_path):
    deep = tmp_path / "peers" / "x"
    deep.mkdir(parents=True)
    inner = deep / f"{TEMP_PREFIX}1"
    inner.write_bytes(b"")
    old(inner)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    foreign = outside / f"{TEMP_PREFIX}2"
    foreign.write_bytes(b"")
    old(foreign)
    (tmp_path / "linked").symlink_to(outside)
    assert sweep(tmp_path) == []
    assert sweep(tmp_path, recursive=True) == [inner]
    assert foreign.exists()


def test_sweep_of_a_missing_folder_and_discard_of_a_missing_file_are_quiet(tmp_path):
    assert sweep(tmp_path / "gone") == []
    discard(tmp_path / "gone")
