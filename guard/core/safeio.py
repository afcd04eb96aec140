"""Opening files that arrived by sync: only regular files, never following a symlink, never
blocking, never reading more than asked.

Anything can arrive in a synced store: a FIFO (whose `open()` blocks until a writer comes, so
a thread that opens it hangs), a symlink to `/dev/zero` (endless bytes) or to a secret outside
the store, a device, a folder where a file was. So a store file is opened in three steps:

1. `lstat` the name: anything but a regular file is refused with its kind, unopened;
2. `os.open` with `O_NOFOLLOW | O_NONBLOCK` (a symlink swapped in meanwhile fails, a FIFO
   swapped in opens at once instead of waiting for a writer);
3. `fstat` the descriptor: it must be a regular file and the very inode `lstat` saw.

Reads are bounded (`max_bytes`): a larger file is refused before a byte is read, and a file
that grows while it is read is cut off at the bound and refused too. O_NONBLOCK has no effect
on regular files, so it is left set.

Windows has neither O_NOFOLLOW nor O_NONBLOCK (nor FIFOs in the file system): there the
`lstat` and `fstat` checks alone stand guard; `open` follows a symlink swapped in between
them, and the inode comparison refuses what it opened.

File names: on POSIX a name is any bytes; Python hands names that are not UTF-8 over as
strings with lone surrogates (surrogateescape), which a strict UTF-8 encoder refuses.
`printable` gives the escaped form shown to people (logs, status text).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

StrPath = str | os.PathLike[str]

OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
              | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
CHUNK = 1024 * 1024
RECORD_MAX_BYTES = 1024 * 1024  # a heartbeat, tombstone or lease file is a few hundred bytes


class UnsafeFile(OSError):
    """A store file the guard will not read; `reason` says why, in words."""

    def __init__(self, path: StrPath, reason: str) -> None:
        super().__init__(f"{printable(os.fspath(path))}: {reason}")
        self.path, self.reason = os.fspath(path), reason


class NotARegularFile(UnsafeFile):
    """A symlink, FIFO, socket, device or folder where a regular file was expected; `kind`
    names which (see `kind_of`)."""

    def __init__(self, path: StrPath, kind: str, detail: str = "") -> None:
        super().__init__(path, f"not a regular file but a {kind}{detail}")
        self.kind = kind


class TooLarge(UnsafeFile):
    """Larger than the reader's bound; nothing beyond the bound was read."""

    def __init__(self, path: StrPath, size: int, limit: int) -> None:
        super().__init__(path, f"larger than {limit} bytes ({size} or more); not read")
        self.size, self.limit = size, limit


def kind_of(mode: int) -> str | None:
    """None for a regular file, else what the mode says it is (pure)."""
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"


def printable(text: str) -> str:
    """`text` as people should see it: unchanged when it is valid Unicode; else each byte of a
    non-UTF-8 file name as `\\xNN` (other lone surrogates as `\\udNNN`), so it can be written
    to any UTF-8 log or terminal and still names the same bytes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


@contextmanager
def open_regular(path: StrPath, dir_fd: int | None = None
                 ) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """The file at `path` opened for reading, with its `fstat`, only if it is a regular file
    (the three steps above). With `dir_fd`, `path` is a name in that open folder (safepath
    walks to it without following symlinks). Raises NotARegularFile, or the OSError of
    lstat/open (FileNotFoundError when it is gone)."""
    before = (os.lstat(path) if dir_fd is None
              else os.stat(path, dir_fd=dir_fd, follow_symlinks=False))
    kind = kind_of(before.st_mode)
    if kind is not None:
        raise NotARegularFile(path, kind)
    try:
        fd = os.open(path, OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        # ELOOP (a symlink under O_NOFOLLOW) or ENXIO: swapped since the lstat
        now = _lstat_kind(path, dir_fd)
        if now is not None:
            raise NotARegularFile(path, now, " (replaced while being opened)") from None
        raise exc from None
    try:
        st = os.fstat(fd)
        kind = kind_of(st.st_mode)
        if kind is not None:
            raise NotARegularFile(path, kind, " (replaced while being opened)")
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise NotARegularFile(path, "different file", " (replaced while being opened)")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh, st


def _lstat_kind(path: StrPath, dir_fd: int | None = None) -> str | None:
    try:
        st = (os.lstat(path) if dir_fd is None
              else os.stat(path, dir_fd=dir_fd, follow_symlinks=False))
        return kind_of(st.st_mode)
    except OSError:
        return None


def read_bytes(path: StrPath, max_bytes: int) -> bytes:
    """The whole content of a regular file of at most `max_bytes` bytes. Raises
    NotARegularFile, TooLarge (without reading past the bound) or the OSError of opening."""
    with open_regular(path) as (fh, st):
        if st.st_size > max_bytes:
            raise TooLarge(path, st.st_size, max_bytes)
        data = read_bounded(fh, max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(path, len(data), max_bytes)
    return data


def read_bounded(fh: BinaryIO, limit: int) -> bytes:
    """At most `limit` bytes from `fh`, in chunks (a short read is not the end)."""
    chunks, left = [], limit
    while left > 0:
        chunk = fh.read(min(CHUNK, left))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def copy_regular(src: StrPath, dst: StrPath, max_bytes: int | None = None) -> os.stat_result:
    """Copy a regular file to a new file `dst` (which must not exist), with the source's
    permission bits and times, as `shutil.copy2` would; reads no more than the size `fstat`
    gave when it was opened (a file that grows meanwhile is copied as it was then). Returns
    the source's stat. Raises NotARegularFile, TooLarge (over `max_bytes`) or OSError; a
    failed copy leaves no `dst`."""
    with open_regular(src) as (fh, st):
        if max_bytes is not None and st.st_size > max_bytes:
            raise TooLarge(src, st.st_size, max_bytes)
        out = open(dst, "xb")  # noqa: SIM115 - closed below, removed on failure
        try:
            with out:
                left = st.st_size
                while left > 0:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        break  # shrank meanwhile: what is there is the copy
                    out.write(chunk)
                    left -= len(chunk)
            os.chmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        except BaseException:
            try:
                os.unlink(dst)
            except OSError:
                pass
            raise
    return st


def read_small(path: StrPath, max_bytes: int) -> bytes | None:
    """The bytes of a small record file in the store (a heartbeat, a tombstone, a lease), or
    None when it is missing, not a regular file, unreadable or over the bound: such records
    are read by many and each reader skips what it cannot use."""
    try:
        return read_bytes(path, max_bytes)
    except OSError:
        return None
