"""Opening store files: only regular files, never following a symlink, never blocking, with
bounded reads; and the printable form of names that are not UTF-8."""

from __future__ import annotations

import io
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from guard.core import safeio
from guard.core.safeio import (
    NotARegularFile,
    TooLarge,
    copy_regular,
    kind_of,
    open_regular,
    printable,
    read_bounded,
    read_bytes,
    read_small,
)


def in_thread(fn: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Run `fn` in a thread; fail (rather than hang the suite) if it does not return."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the read blocked"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# ---- pure -----------------------------------------------------------------------------------

def test_kind_of_names_every_file_type() -> None:
    assert kind_of(stat.S_IFREG | 0o644) is None
    assert kind_of(stat.S_IFLNK | 0o777) == "symlink"
    assert kind_of(stat.S_IFIFO | 0o644) == "FIFO"
    assert kind_of(stat.S_IFSOCK | 0o755) == "socket"
    assert kind_of(stat.S_IFCHR | 0o666) == "character device"
    assert kind_of(stat.S_IFBLK | 0o660) == "block device"
    assert kind_of(stat.S_IFDIR | 0o755) == "folder"


def test_printable_leaves_unicode_alone_and_escapes_the_bytes_of_a_bad_name() -> None:
    assert printable("métrique ✓") == "métrique ✓"
    bad = os.fsdecode(b"run-\xff\xfe")  # how Python hands over a non-UTF-8 name
    shown = printable(bad)
    assert shown == "run-\\xff\\xfe"
    shown.encode("utf-8")  # writable anywhere
    assert printable("\ud800x") == "\\ud800x"  # a surrogate no file name makes


# ---- what is refused ------------------------------------------------------------------------

def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    f = tmp_path / "meta.yaml"
    f.write_bytes(b"name: x\n")
    assert read_bytes(f, 100) == b"name: x\n"
    assert read_bytes(f, 8) == b"name: x\n"  # exactly the bound is fine


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "meta.yaml"
    os.mkfifo(fifo)
    with pytest.raises(NotARegularFile) as err:
        in_thread(lambda: read_bytes(fifo, 1024))
    assert err.value.kind == "FIFO"
    assert err.value.reason == "not a regular file but a FIFO"  # by its lstat, never opened
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # left alone


def test_a_fifo_swapped_in_after_the_lstat_opens_without_blocking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: lstat saw a regular file, a FIFO took its name before the open."""
    f = tmp_path / "meta.yaml"
    f.write_bytes(b"x")
    real_lstat = os.lstat
    seen = real_lstat(f)

    def lstat_then_swap(path: Any) -> os.stat_result:
        os.unlink(f)
        os.mkfifo(f)
        return seen

    monkeypatch.setattr(safeio.os, "lstat", lstat_then_swap)
    with pytest.raises(NotARegularFile, match="replaced while being opened"):
        in_thread(lambda: read_bytes(f, 1024))


def test_a_symlink_swapped_in_after_the_lstat_is_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"password")
    f = tmp_path / "tag"
    f.write_bytes(b"x")
    seen = os.lstat(f)
    calls = []

    def lstat_then_swap(path: Any) -> os.stat_result:
        calls.append(path)
        if len(calls) == 1:
            os.unlink(f)
            os.symlink(secret, f)
            return seen
        return os.stat(path, follow_symlinks=False)

    monkeypatch.setattr(safeio.os, "lstat", lstat_then_swap)
    with pytest.raises(NotARegularFile) as err:
        read_bytes(f, 1024)
    assert err.value.kind == "symlink"  # O_NOFOLLOW refused it; nothing of it was opened


def test_another_file_swapped_in_after_the_lstat_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "tag"
    f.write_bytes(b"old")
    seen = os.lstat(f)
    other = tmp_path / "other"
    other.write_bytes(b"new")

    def lstat_then_swap(path: Any) -> os.stat_result:
        os.replace(other, f)
        return seen

    monkeypatch.setattr(safeio.os, "lstat", lstat_then_swap)
    with pytest.raises(NotARegularFile, match="replaced while being opened"):
        read_bytes(f, 1024)


def test_a_symlink_to_dev_zero_is_not_read(tmp_path: Path) -> None:
    link = tmp_path / "loss.sync-conflict-20240103-090113-ABCDEF7"
    os.symlink("/dev/zero", link)
    with pytest.raises(NotARegularFile) as err:
        in_thread(lambda: read_bytes(link, 10**12))
    assert err.value.kind == "symlink"


def test_a_symlink_to_a_file_outside_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"PRIVATE KEY")
    link = tmp_path / "store" / "tag"
    link.parent.mkdir()
    os.symlink(secret, link)
    with pytest.raises(NotARegularFile, match="symlink"):
        read_bytes(link, 1024)
    assert read_small(link, 1024) is None


def test_a_character_device_is_not_opened(tmp_path: Path) -> None:
    with pytest.raises(NotARegularFile) as err:
        in_thread(lambda: read_bytes("/dev/null", 1024))
    assert err.value.reason == "not a regular file but a character device"


def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotARegularFile) as err:
        read_bytes(tmp_path, 1024)
    assert err.value.kind == "folder"


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "gone", 1024)
    assert read_small(tmp_path / "gone", 1024) is None


def test_a_huge_sparse_file_is_refused_without_reading_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huge = tmp_path / "loss"
    with open(huge, "wb") as fh:
        fh.truncate(10 * 1024**3)  # 10 GB, sparse: costs nothing on disk
    read_calls: list[int] = []

    def spy(fh: Any, limit: int) -> bytes:
        read_calls.append(limit)
        return b""

    monkeypatch.setattr(safeio, "read_bounded", spy)
    with pytest.raises(TooLarge) as err:
        read_bytes(huge, 1024 * 1024)
    assert err.value.size == 10 * 1024**3 and err.value.limit == 1024 * 1024
    assert read_calls == []  # refused on its size alone
    assert isinstance(err.value, OSError)  # callers that skip unreadable files skip it


def test_a_file_growing_past_the_bound_while_read_is_cut_off(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    f = tmp_path / "metric"
    f.write_bytes(b"1 0.5 0\n")
    real_fstat = os.fstat

    def fstat_then_grow(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        with open(f, "ab") as fh:
            fh.write(b"x" * 5000)
        return st

    monkeypatch.setattr(safeio.os, "fstat", fstat_then_grow)
    reads: list[int] = []
    real_read = safeio.read_bounded

    def spy(fh: Any, limit: int) -> bytes:
        reads.append(limit)
        return real_read(fh, limit)

    monkeypatch.setattr(safeio, "read_bounded", spy)
    with pytest.raises(TooLarge):
        read_bytes(f, 100)
    assert reads == [101]  # one byte past the bound tells it is too large


def test_read_bounded_stops_at_the_limit_of_an_endless_stream() -> None:
    class Zeros(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buf: Any) -> int:
            buf[:] = bytes(len(buf))
            return len(buf)

    assert read_bounded(io.BufferedReader(Zeros()), 3 * 1024 * 1024 + 5) == \
        bytes(3 * 1024 * 1024 + 5)


# ---- copying --------------------------------------------------------------------------------

def test_copy_keeps_bytes_mode_and_times(tmp_path: Path) -> None:
    src = tmp_path / "loss"
    src.write_bytes(b"1 0.5 0\n" * 1000)
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    dst = tmp_path / "copy"
    st = copy_regular(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(os.stat(dst).st_mode) == 0o640
    assert os.stat(dst).st_mtime_ns == 1_600_000_000_123_456_789 == st.st_mtime_ns


def test_copy_reads_no_more_than_the_size_at_open(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "loss"
    src.write_bytes(b"a" * 10)
    real_fstat = os.fstat

    def fstat_then_grow(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        with open(src, "ab") as fh:
            fh.write(b"b" * 10)
        return st

    monkeypatch.setattr(safeio.os, "fstat", fstat_then_grow)
    copy_regular(src, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"a" * 10


def test_copy_refuses_a_symlink_or_fifo_and_leaves_no_target(tmp_path: Path) -> None:
    os.symlink("/dev/zero", tmp_path / "zero")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotARegularFile):
        in_thread(lambda: copy_regular(tmp_path / "zero", tmp_path / "zero.copy"))
    with pytest.raises(NotARegularFile):
        in_thread(lambda: copy_regular(tmp_path / "fifo", tmp_path / "fifo.copy"))
    assert not os.path.lexists(tmp_path / "zero.copy")
    assert not os.path.lexists(tmp_path / "fifo.copy")


def test_copy_over_the_bound_or_onto_an_existing_file(tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(b"x" * 100)
    with pytest.raises(TooLarge):
        copy_regular(src, tmp_path / "copy", max_bytes=10)
    assert not (tmp_path / "copy").exists()
    (tmp_path / "taken").write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        copy_regular(src, tmp_path / "taken")
    assert (tmp_path / "taken").read_bytes() == b"keep me"  # never removed what was there


def test_open_regular_hands_over_the_fstat(tmp_path: Path) -> None:
    f = tmp_path / "host.json"
    f.write_bytes(b"{}")
    with open_regular(f) as (fh, st):
        assert fh.read() == b"{}"
        assert st.st_ino == os.lstat(f).st_ino
