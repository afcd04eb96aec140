"""The vault's trash: second names for what is removed, never following what it finds."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from guard.core import safepath
from guard.core.safeio import NotARegularFile
from guard.core.safepath import HeldOpen, Target
from guard.protection import trash
from guard.protection.trash import copy_into_trash, link_or_copy
from tests.helpers.heldopen import failing, no_waiting
from tests.helpers.store import listing


def no_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hard links (and renames) impossible, as across volumes."""
    def cross(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(safepath.os, "link", cross)
    monkeypatch.setattr(safepath.os, "rename", cross)


@pytest.fixture
def other_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trash on another volume: the copy path is taken."""
    no_links(monkeypatch)


def here(tmp_path: Path, name: str) -> Target:
    return Target(tmp_path, (name,))


@pytest.mark.parametrize("volume", ["same", "other"])
def test_a_symlink_is_never_followed_nor_kept(tmp_path: Path, monkeypatch, volume) -> None:
    """os.link follows a symlink by default on Linux: the trash (and the vault) got a hard
    link to the file behind it, outside the store."""
    if volume == "other":
        no_links(monkeypatch)
    (tmp_path / "secret").write_bytes(b"outside the store")
    os.symlink(tmp_path / "secret", tmp_path / "link")
    os.symlink("/dev/zero", tmp_path / "zero")  # copy2 would read it until the disk is full
    for name in ("link", "zero"):
        with pytest.raises(NotARegularFile, match="symlink"):
            link_or_copy(here(tmp_path, name), here(tmp_path, f"kept-{name}"))
        assert not os.path.lexists(tmp_path / f"kept-{name}")
    assert os.stat(tmp_path / "secret").st_nlink == 1


def test_a_regular_file_is_copied(tmp_path: Path, other_volume: None) -> None:
    (tmp_path / "a").write_bytes(b"data")
    link_or_copy(here(tmp_path, "a"), here(tmp_path, "b"))
    assert (tmp_path / "b").read_bytes() == b"data" and not (tmp_path / "b").is_symlink()


def test_copy_into_trash_skips_a_fifo_and_keeps_the_rest(tmp_path: Path,
                                                         other_volume: None) -> None:
    model = tmp_path / "store" / "models" / "m"
    (model / "version-1").mkdir(parents=True)
    (model / "meta.yaml").write_text("name: m\n")
    os.mkfifo(model / "version-1" / "meta.yaml")
    batch = tmp_path / "batch"
    assert copy_into_trash(model, ("models", "m"), batch) == 1
    assert (batch / "models" / "m" / "meta.yaml").read_text() == "name: m\n"
    assert not os.path.lexists(batch / "models" / "m" / "version-1" / "meta.yaml")


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A store model folder holding a symlinked sub-folder and a symlinked file (both to a
    decoy outside), a vault beside it."""
    store, decoy, vault = tmp_path / "store", tmp_path / "decoy", tmp_path / "vault"
    model = store / "models" / "m"
    (model / "version-1").mkdir(parents=True)
    (model / "meta.yaml").write_text("name: m\n")
    (model / "version-1" / "meta.yaml").write_text("version: 1\n")
    decoy.mkdir()
    (decoy / "secret").write_text("secret")
    (decoy / "inner").mkdir()
    (decoy / "inner" / "meta.yaml").write_text("outside")
    os.symlink(decoy / "inner", model / "version-2")
    os.symlink(decoy / "secret", model / "version-1" / "tags")
    vault.mkdir()
    return model, decoy, vault


@pytest.mark.parametrize("volume", ["same", "other"])
def test_copy_into_trash_follows_no_symlink(hostile, monkeypatch, volume) -> None:
    model, decoy, vault = hostile
    if volume == "other":
        no_links(monkeypatch)
    before = listing(decoy)
    batch = trash.new_batch(vault, "test")
    assert copy_into_trash(model, ("models", "m"), batch) == 2
    kept = batch / "models" / "m"
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*")) == [
        "meta.yaml", "version-1", "version-1/meta.yaml"]
    assert listing(decoy) == before  # no hard link to the secret (its st_nlink is still 1)


def test_move_into_trash_across_volumes_copies_files_and_links_as_links(hostile, monkeypatch):
    model, decoy, vault = hostile
    no_links(monkeypatch)
    before = listing(decoy)
    batch = trash.new_batch(vault, "test")
    trash.move_into_trash(model, ("models", "m"), batch)
    kept = batch / "models" / "m"
    assert not os.path.lexists(model)
    assert (kept / "version-1" / "meta.yaml").read_text() == "version: 1\n"
    assert os.readlink(kept / "version-2") == str(decoy / "inner")
    assert listing(decoy) == before  # nothing behind the links was removed or read


def test_nothing_is_moved_or_removed_through_a_symlinked_trash(hostile, tmp_path):
    model, decoy, vault = hostile
    batch = trash.new_batch(vault, "test")
    os.rename(vault / "trash", tmp_path / "moved-trash")
    os.symlink(decoy, vault / "trash")  # trash/ now points outside
    (decoy / batch.name).mkdir()
    (decoy / batch.name / "RECORD.json").write_text('{"at": 0}')
    before = listing(decoy)
    with pytest.raises(safepath.Escape):
        trash.move_into_trash(model, ("models", "m"), batch)
    assert trash.prune_trash(vault, older_than_s=1.0) == []
    assert listing(decoy) == before
    assert (model / "meta.yaml").read_text() == "name: m\n"


def test_prune_removes_old_batches_but_never_follows_a_symlink_inside(hostile, tmp_path):
    model, decoy, vault = hostile
    batch = trash.new_batch(vault, "test")
    copy_into_trash(model, ("models", "m"), batch)
    os.symlink(decoy, batch / "models" / "escape")
    before = listing(decoy)
    assert trash.prune_trash(vault, older_than_s=3600.0) == []
    assert trash.prune_trash(vault, older_than_s=-1.0) == [batch.name]
    assert not batch.exists() and listing(decoy) == before


# ---- a store file another program holds open (Windows; issue 15) ------------------------------

def test_gc_moves_a_folder_into_the_trash_once_its_holder_lets_go(hostile, monkeypatch):
    model, decoy, vault = hostile
    pauses = no_waiting(monkeypatch)
    calls = failing(monkeypatch, "rename", 3)  # Synology Drive is uploading it
    batch = trash.new_batch(vault, "test")
    trash.move_into_trash(model, ("models", "m"), batch)
    kept = batch / "models" / "m"
    assert not os.path.lexists(model)
    assert (kept / "version-1" / "meta.yaml").read_text() == "version: 1\n"
    assert len(calls) == 4 and len(pauses) == 3  # renamed, not copied


def test_gc_held_off_throughout_says_what_holds_the_folder_and_moves_nothing(hostile,
                                                                             monkeypatch):
    model, decoy, vault = hostile
    no_waiting(monkeypatch)
    failing(monkeypatch, "rename", None)
    batch = trash.new_batch(vault, "test")
    with pytest.raises(HeldOpen, match="another program holds it open") as raised:
        trash.move_into_trash(model, ("models", "m"), batch)
    assert str(model) in str(raised.value) and "Synology Drive" in str(raised.value)
    assert (model / "version-1" / "meta.yaml").read_text() == "version: 1\n"
    assert not (batch / "models" / "m").exists()


def test_keeping_a_file_held_open_for_a_moment_still_links_it(hostile, monkeypatch):
    model, _, vault = hostile
    no_waiting(monkeypatch)
    calls = failing(monkeypatch, "link", 3)
    batch = trash.new_batch(vault, "test")
    assert copy_into_trash(model, ("models", "m"), batch) == 2
    assert os.stat(model / "meta.yaml").st_nlink == 2  # a hard link, not a fallback copy
    assert len(calls) == 5  # 3 failures, then both files
