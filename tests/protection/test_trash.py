"""The vault's trash: second names for what is removed, never following what it finds."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from guard.protection import trash
from guard.protection.trash import copy_into_trash, link_or_copy


@pytest.fixture
def other_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hard links impossible (the trash on another volume): the copy path is taken."""
    def no_link(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(trash.os, "link", no_link)


def test_a_symlink_is_kept_as_a_link_never_followed(tmp_path: Path, other_volume: None) -> None:
    (tmp_path / "secret").write_bytes(b"outside the store")
    os.symlink(tmp_path / "secret", tmp_path / "link")
    link_or_copy(str(tmp_path / "link"), str(tmp_path / "kept"))
    assert os.readlink(tmp_path / "kept") == str(tmp_path / "secret")
    os.symlink("/dev/zero", tmp_path / "zero")  # copy2 would read it until the disk is full
    link_or_copy(str(tmp_path / "zero"), str(tmp_path / "kept-zero"))
    assert os.readlink(tmp_path / "kept-zero") == "/dev/zero"


def test_a_regular_file_is_copied(tmp_path: Path, other_volume: None) -> None:
    (tmp_path / "a").write_bytes(b"data")
    link_or_copy(str(tmp_path / "a"), str(tmp_path / "b"))
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
