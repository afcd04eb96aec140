"""Writing under a root folder without ever leaving it: the one path layer for every write the
guard makes in the store, the vault, its trash and the quarantine.

Rules:
1. A root is trusted as configured (the user may point `store` at a symlink, e.g. a sync
   client's folder); every component *below* it is not: it arrived by sync, or someone
   local made it.
2. No component below the root may be a symlink (or a Windows junction): a write through
   one is refused with `Escape`, never followed.
3. On POSIX every operation walks from the root with directory file descriptors, each
   component opened with `O_NOFOLLOW | O_DIRECTORY`, and does its work relative to the
   last descriptor (`mkdirat`, `openat`, `linkat`, `renameat`). A folder swapped for a
   symlink after the walk opened it changes nothing: the descriptor still names the folder
   that was checked. There is no window between check and use.
4. Where the OS has no `dir_fd` (Windows), each component is checked with `lstat` just
   before the path-based call; a swap in between is possible there, so the check narrows
   the window rather than closing it (creating symlinks on Windows needs admin rights or
   developer mode; junctions do not, and are refused like symlinks).
5. Only names are accepted as components: no `""`, `"."`, `".."`, separators or NUL.
6. Only regular files are linked, copied or moved file-wise; a file's kind is checked on
   the descriptor-relative `lstat`, so a symlink in the last component is refused too.

`Target` names a place as (root, relative segments); `target_of(root, path)` makes one from
an absolute path and refuses a path that is not below the root.

Every rename, replace and hard link here (and the state folder's `replace_path`) goes through
`retrying`: on Windows a file another program holds open (a sync client, Explorer, an
antivirus scan) cannot be moved for a moment; past about HELD_OPEN_WAIT_S, `HeldOpen` says so.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from guard.core import safeio
from guard.core.layout import TEMP_PREFIX
from guard.core.safeio import CHUNK, NotARegularFile, TooLarge, kind_of, open_regular, printable

Rel = tuple[str, ...]

DIR_FLAGS = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0))
# (os.replace takes the same dir_fd arguments as os.rename, but is not listed)
_NEEDED = (os.open, os.mkdir, os.link, os.rename, os.stat, os.unlink, os.utime)
# POSIX: descriptor-relative calls; elsewhere (Windows) component checks
USE_FDS = (hasattr(os, "O_DIRECTORY") and hasattr(os, "O_NOFOLLOW")
           and all(f in os.supports_dir_fd for f in _NEEDED))
_REPARSE = getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0x400)

# Test seam: called after a walk has opened the last folder and before the operation
# itself, so a test can swap a folder for a symlink exactly there.
def between() -> None:
    """Nothing; tests replace it (monkeypatch `safepath.between`)."""


class Escape(OSError):
    """A write that would leave its root: a component below it is a symlink, a junction or
    not a folder, or the path names no place below the root. `reason` says which."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(errno.ELOOP, f"{printable(path)}: {reason}; not followed, nothing "
                                      "written")
        self.path, self.reason = path, reason


# ---- files another program holds open (Windows) ----------------------------------------------
# A rename, replace or hard link of a file a sync client (Synology Drive), Explorer or an
# antivirus scan holds open fails on Windows with winerror 32 (ERROR_SHARING_VIOLATION) or 33
# (ERROR_LOCK_VIOLATION), and with 5 (ERROR_ACCESS_DENIED) while the file is pending deletion;
# each passes in a moment. The error decides, not the platform (POSIX errors have no winerror).
HELD_OPEN_WINERRORS = frozenset({5, 32, 33})
HELD_OPEN_FIRST_PAUSE_S = 0.02  # doubled after each failure ...
HELD_OPEN_MAX_PAUSE_S = 0.5  # ... up to this
HELD_OPEN_WAIT_S = 5.0  # then HeldOpen, once the pauses add up to this

T = TypeVar("T")


def pause(seconds: float) -> None:
    """time.sleep between attempts; tests replace it (monkeypatch `safepath.pause`)."""
    time.sleep(seconds)


def held_open(exc: BaseException) -> bool:
    """Whether `exc` says another program holds the file open, for a moment (pure)."""
    return getattr(exc, "winerror", None) in HELD_OPEN_WINERRORS


class HeldOpen(PermissionError):
    """A file that could not be moved (or linked) because another program kept it open
    through every attempt. Keeps the errno of the last failure (`except OSError` callers and
    `except PermissionError` ones still catch it); `path` names it."""

    def __init__(self, what: str, path: str | os.PathLike[str],
                 to: str | os.PathLike[str] | None, waited: float, last: OSError) -> None:
        where = printable(os.fspath(path)) + ("" if to is None
                                              else f" to {printable(os.fspath(to))}")
        super().__init__(
            last.errno if last.errno is not None else errno.EACCES,
            f"could not {what} {where}: another program holds it open (Synology Drive, "
            f"Explorer, an antivirus scan; Windows error {getattr(last, 'winerror', None)}) "
            f"through {waited:.1f} s of retries; close it there, or wait: the daemon tries "
            "again on its next pass, a guardctl command can be run again")
        self.path, self.to = os.fspath(path), None if to is None else os.fspath(to)


def retrying(op: Callable[[], T], what: str, path: str | os.PathLike[str],
             to: str | os.PathLike[str] | None = None) -> T:
    """`op()` (a rename, replace or link), tried again while it fails because another program
    holds the file open (`held_open`): pauses from HELD_OPEN_FIRST_PAUSE_S doubling up to
    HELD_OPEN_MAX_PAUSE_S, about HELD_OPEN_WAIT_S in all, then HeldOpen ("could not `what`
    `path` [to `to`]"). Any other error is raised at once."""
    waited, delay = 0.0, HELD_OPEN_FIRST_PAUSE_S
    while True:
        try:
            return op()
        except OSError as exc:
            if isinstance(exc, HeldOpen) or not held_open(exc):
                raise
            if waited >= HELD_OPEN_WAIT_S:
                raise HeldOpen(what, path, to, waited, exc) from exc
        pause(delay)
        waited += delay
        delay = min(delay * 2, HELD_OPEN_MAX_PAUSE_S)


def moving(op: Callable[[], T], src: str | os.PathLike[str],
           dst: str | os.PathLike[str]) -> T:
    """`retrying` a move of `src` to `dst`; a temp file renamed over its target is told as a
    write of the target (the name the user knows)."""
    if os.path.basename(src).startswith(TEMP_PREFIX):
        return retrying(op, "write", dst)
    return retrying(op, "move", src, dst)


def replace_path(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """os.replace of plain paths (the guard's own files in its state and vault folders, no
    root to stay below), retried while another program holds one open (`retrying`)."""
    moving(lambda: os.replace(src, dst), src, dst)


@dataclass(frozen=True)
class Target:
    """A place below a root: the root as configured, and the names below it."""
    root: Path
    rel: Rel

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.rel)

    @property
    def parent(self) -> Target:
        return Target(self.root, self.rel[:-1])

    @property
    def name(self) -> str:
        return self.rel[-1]

    def child(self, *names: str) -> Target:
        return Target(self.root, self.rel + names)


def bad_name(name: str) -> bool:
    """Whether `name` cannot be one path component (pure)."""
    return (name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name
            or os.sep in name or (os.altsep is not None and os.altsep in name))


def rel_of(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Rel | None:
    """`path` as names below `root`, lexically (no file system access; pure); None when it is
    not below (or is) the root, or has `..` in it."""
    root_s, path_s = os.path.abspath(root), os.path.abspath(path)
    if os.path.normcase(root_s) == os.path.normcase(path_s):
        return ()
    try:
        rel = os.path.relpath(path_s, root_s)
    except ValueError:  # another drive on Windows
        return None
    parts = tuple(Path(rel).parts)
    if not parts or any(bad_name(p) for p in parts):
        return None
    return parts


def target_of(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> Target:
    """The Target for an absolute `path` below `root`; Escape when it is not below it."""
    rel = rel_of(root, path)
    if rel is None:
        raise Escape(os.fspath(path), f"not inside {printable(os.fspath(root))}")
    return Target(Path(root), rel)


def _check_names(target: Target) -> None:
    for name in target.rel:
        if bad_name(name):
            raise Escape(os.fspath(target.path), f"{name!r} is not a file name")


def _escape_for(target: Target, depth: int, exc: OSError) -> OSError:
    """The error for a component that could not be opened as a folder: Escape for a symlink
    or a non-folder, else the OSError itself."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        where = Target(target.root, target.rel[:depth + 1])
        kind = _kind_at(where) or "file"
        return Escape(os.fspath(where.path), f"is a {kind}, not a folder")
    return exc


def _kind_at(target: Target) -> str | None:
    try:
        return kind_of(os.lstat(target.path).st_mode)
    except OSError:
        return None


@contextmanager
def folder(target: Target, create: bool = False, mode: int = 0o777) -> Iterator[int | None]:
    """The folder `target` opened without following a symlink below its root: its descriptor
    on POSIX (None where the OS has no dir_fd, after a check of each component). `create`
    makes missing folders (with `mode`, less the umask); the root itself must exist (an
    unmounted sync drive must not get a fresh folder)."""
    _check_names(target)
    if not USE_FDS:
        _check_components(target, create, mode)
        yield None
        return
    try:
        fd = os.open(target.root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"{target.root} is not there (is the drive "
                                              "mounted?)", str(target.root)) from None
    try:
        for depth, name in enumerate(target.rel):
            if create:
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _escape_for(target, depth, exc) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _check_components(target: Target, create: bool, mode: int) -> None:
    """The dir_fd-less walk: each component must be a real folder (not a symlink, not a
    junction), made when missing and `create`."""
    if not target.root.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"{target.root} is not there (is the drive "
                                              "mounted?)", str(target.root))
    here = target.root
    for depth, name in enumerate(target.rel):
        here = here / name
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(here, mode)
            except FileExistsError:
                pass
            st = os.lstat(here)
        kind = kind_of(st.st_mode)
        if kind is not None and kind != "folder" or getattr(st, "st_file_attributes", 0) \
                & _REPARSE:
            where = Target(target.root, target.rel[:depth + 1])
            raise Escape(os.fspath(where.path),
                         f"is a {kind if kind != 'folder' else 'junction'}, not a folder")


def mkdirs(target: Target, mode: int = 0o777) -> None:
    """Make the folder `target` and its missing parents, below its root only."""
    with folder(target, create=True, mode=mode):
        pass


def exists(target: Target) -> bool:
    """Whether anything (a symlink too) is at `target`; False when a parent is a symlink (what
    is behind it is not below the root)."""
    if not target.rel:
        return target.root.is_dir()
    try:
        with folder(target.parent) as fd:
            if fd is None:
                os.lstat(target.path)
            else:
                os.stat(target.name, dir_fd=fd, follow_symlinks=False)
        return True
    except (FileNotFoundError, NotADirectoryError, Escape):
        return False


def lstat(target: Target) -> os.stat_result:
    """`lstat` of `target`, its parents walked safely."""
    with folder(target.parent) as fd:
        if fd is None:
            return os.lstat(target.path)
        return os.stat(target.name, dir_fd=fd, follow_symlinks=False)


def lstat_regular(target: Target) -> os.stat_result:
    """`lstat` of `target`, which must be a regular file (NotARegularFile otherwise)."""
    with folder(target.parent) as fd:
        return _regular(target, fd)


def _regular(target: Target, fd: int | None) -> os.stat_result:
    st = (os.lstat(target.path) if fd is None
          else os.stat(target.name, dir_fd=fd, follow_symlinks=False))
    kind = kind_of(st.st_mode)
    if kind is not None:
        raise NotARegularFile(target.path, kind)
    return st


def link(src: Target, dst: Target, create: bool = True) -> None:
    """A hard link at `dst` (which must not exist) to the regular file `src`; neither side
    follows a symlink. Raises NotARegularFile, Escape, FileExistsError or OSError."""
    with folder(src.parent) as sfd, folder(dst.parent, create=create) as dfd:
        _regular(src, sfd)
        between()
        retrying(_between(os.link, src, dst, sfd, dfd, follow_symlinks=False), "hard-link",
                 src.path, dst.path)


def replace(src: Target, dst: Target, create: bool = False) -> None:
    """Rename `src` onto `dst` (replacing a file there), both below their roots, never
    through a symlinked folder. Renaming moves a symlink itself, never what it points to."""
    with folder(src.parent) as sfd, folder(dst.parent, create=create) as dfd:
        between()
        _replace_in(src, dst, sfd, dfd)


def rename_new(src: Target, dst: Target, create: bool = True) -> None:
    """Rename `src` to `dst`, which must not exist (FileExistsError), never through a
    symlinked folder: a move within one volume. os.link + unlink would refuse folders, so
    the check and the rename are separate here; a file that appears at `dst` in between is
    replaced only where it is an empty folder (rename's own rule)."""
    with folder(src.parent) as sfd, folder(dst.parent, create=create) as dfd:
        try:
            if dfd is None:
                os.lstat(dst.path)
            else:
                os.stat(dst.name, dir_fd=dfd, follow_symlinks=False)
            raise FileExistsError(errno.EEXIST, "already there", str(dst.path))
        except FileNotFoundError:
            pass
        between()
        moving(_between(os.rename, src, dst, sfd, dfd), src.path, dst.path)


def write_new(target: Target, data: bytes, mode: int = 0o666, create: bool = True,
              sync: bool = True) -> None:
    """Write `data` to a new file at `target` (FileExistsError when something, a symlink
    too, is there); a failed write leaves no file."""
    with folder(target.parent, create=create) as fd:
        between()
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
        if fd is None:
            _check_components(target.parent, False, 0o777)
            out = os.open(target.path, flags, mode)
        else:
            out = os.open(target.name, flags, mode, dir_fd=fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]
            if sync:
                os.fsync(out)
        except BaseException:
            os.close(out)
            _unlink_quietly(target.name, fd, target.path)
            raise
        os.close(out)


def copy_new(src: Target, dst: Target, max_bytes: int | None = None,
             create: bool = True, mtime_ns: int | None = None) -> os.stat_result:
    """Copy the regular file `src` to a new file `dst`, with its permission bits and times
    (`mtime_ns`: these times instead), in chunks; reads at most the size it had when opened
    (a file that grows meanwhile is copied as it was then). Returns the source's stat; a
    failed copy leaves no `dst`."""
    with folder(src.parent) as sfd, folder(dst.parent, create=create) as dfd:
        with open_regular(src.path if sfd is None else src.name, dir_fd=sfd) as (fh, st):
            if max_bytes is not None and st.st_size > max_bytes:
                raise TooLarge(src.path, st.st_size, max_bytes)
            between()
            flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
            if dfd is None:
                _check_components(dst.parent, False, 0o777)
                out = os.open(dst.path, flags, stat.S_IMODE(st.st_mode))
            else:
                out = os.open(dst.name, flags, stat.S_IMODE(st.st_mode), dir_fd=dfd)
            try:
                left = st.st_size
                while left > 0:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        break  # shrank meanwhile: what is there is the copy
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view):]
                    left -= len(chunk)
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns) if mtime_ns is None
                         else (mtime_ns, mtime_ns))
            except BaseException:
                os.close(out)
                _unlink_quietly(dst.name, dfd, dst.path)
                raise
            os.close(out)
    return st


def unlink(target: Target) -> None:
    """Remove the file (or symlink) at `target`, never through a symlinked folder; for the
    guard's own temp files and objects only: user data is moved aside, never removed."""
    with folder(target.parent) as fd:
        if fd is None:
            _check_components(target.parent, False, 0o777)
            os.unlink(target.path)
        else:
            os.unlink(target.name, dir_fd=fd)


def _unlink_quietly(name: str, fd: int | None, path: Path) -> None:
    try:
        if fd is None:
            os.unlink(path)
        else:
            os.unlink(name, dir_fd=fd)
    except OSError:
        pass


def walk_files(top: Target) -> Iterator[tuple[Rel, str | None]]:
    """(folder names below `top`, kind) of every entry under the folder `top`, never
    descending into a symlinked folder; kind is None for a regular file, "folder" for a
    folder (yielded before what it holds), else what it is (symlink, FIFO, ...)."""
    stack: list[Rel] = [()]
    while stack:
        rel = stack.pop()
        here = top.child(*rel)
        try:
            with folder(here) as fd:
                entries = sorted(os.scandir(fd if fd is not None else here.path),
                                 key=lambda e: e.name)
                kinds = [(e.name, kind_of(e.stat(follow_symlinks=False).st_mode))
                         for e in entries]
        except (FileNotFoundError, NotADirectoryError, Escape):
            continue
        for name, kind in kinds:
            yield rel + (name,), kind
            if kind == "folder":
                stack.append(rel + (name,))


# ---- reads below a root ----------------------------------------------------------------------

@contextmanager
def open_file(target: Target) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """The regular file `target` opened for reading (safeio.open_regular), its folders walked
    without following a symlink: nothing outside the root is ever read."""
    with folder(target.parent) as fd:
        path = target.path if fd is None else target.name
        with open_regular(path, dir_fd=fd) as opened:
            yield opened


def read_bytes(target: Target, max_bytes: int) -> bytes:
    """The content of the regular file `target`, at most `max_bytes` (TooLarge beyond)."""
    with open_file(target) as (fh, st):
        if st.st_size > max_bytes:
            raise TooLarge(target.path, st.st_size, max_bytes)
        data = safeio.read_bounded(fh, max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(target.path, len(data), max_bytes)
    return data


def entries(target: Target) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry of the folder `target`, sorted by name; nothing is
    followed (an entry vanishing meanwhile is left out)."""
    out = []
    with folder(target) as fd:
        with os.scandir(fd if fd is not None else target.path) as it:
            found = list(it)
        for entry in found:
            try:
                out.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    return sorted(out, key=lambda item: item[0])


# ---- more writes -----------------------------------------------------------------------------

def mkdir_new(target: Target, mode: int = 0o777) -> None:
    """Make the folder `target`, which must not exist (FileExistsError); its parent must."""
    with folder(target.parent) as fd:
        between()
        if fd is None:
            _check_components(target.parent, False, 0o777)
            os.mkdir(target.path, mode)
        else:
            os.mkdir(target.name, mode, dir_fd=fd)


def _replace_in(src: Target, dst: Target, sfd: int | None, dfd: int | None) -> None:
    """os.replace of `src` onto `dst` in their open folders, retried while another program
    holds one open (`retrying`; a test seam too)."""
    moving(_between(os.replace, src, dst, sfd, dfd), src.path, dst.path)


def _between(op: Callable[..., None], src: Target, dst: Target, sfd: int | None,
             dfd: int | None, **kw: bool) -> Callable[[], None]:
    """One attempt of the two-folder call `op` (os.link, os.rename, os.replace): by name in
    the open folders, or, without descriptors, by path after checking `dst`'s folders."""
    def attempt() -> None:
        if sfd is None or dfd is None:
            _check_components(dst.parent, False, 0o777)
            op(src.path, dst.path, **kw)
        else:
            op(src.name, dst.name, src_dir_fd=sfd, dst_dir_fd=dfd, **kw)
    return attempt


def write_atomic(target: Target, data: bytes, mode: int | None = 0o666, create: bool = True,
                 expected: bytes | None = None, limit: int | None = None,
                 before_rename: Callable[[], None] | None = None) -> bool:
    """Replace (or create) the file `target` with `data` atomically: a temp file in the same
    safely opened folder, fsynced, renamed over it; a reader never sees half a file.
    `mode` is the new file's permission bits less the umask, like open(); None keeps the bits
    of the file there exactly (FileNotFoundError when none is).
    `expected`: write only while the file still holds these bytes (compared up to `limit`),
    else return False and write nothing; a non-regular file there never matches.
    `before_rename` runs last, just before the rename (if it raises, nothing is renamed).
    A failed write leaves no temp file."""
    with folder(target.parent, create=create) as fd:
        tmp = target.parent.child(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}")
        keep = None if mode is not None else stat.S_IMODE(_lstat_in(target, fd).st_mode)
        between()
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
        if fd is None:
            _check_components(target.parent, False, 0o777)
            out = os.open(tmp.path, flags, 0o600 if mode is None else mode)
        else:
            out = os.open(tmp.name, flags, 0o600 if mode is None else mode, dir_fd=fd)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
                os.fsync(out)
                if keep is not None and hasattr(os, "fchmod"):
                    os.fchmod(out, keep)
            finally:
                os.close(out)
            if keep is not None and not hasattr(os, "fchmod"):
                os.chmod(tmp.path, keep)
            if expected is not None and not _holds(target, fd, expected, limit):
                return False
            if before_rename is not None:
                before_rename()
            _replace_in(tmp, target, fd, fd)
            return True
        finally:
            if _lexists_in(tmp, fd):
                _unlink_quietly(tmp.name, fd, tmp.path)


def _lstat_in(target: Target, fd: int | None) -> os.stat_result:
    return (os.lstat(target.path) if fd is None
            else os.stat(target.name, dir_fd=fd, follow_symlinks=False))


def _lexists_in(target: Target, fd: int | None) -> bool:
    try:
        _lstat_in(target, fd)
        return True
    except OSError:
        return False


def _holds(target: Target, fd: int | None, expected: bytes, limit: int | None) -> bool:
    """Whether the regular file `target` (in the open folder `fd`) holds `expected`."""
    try:
        with open_regular(target.path if fd is None else target.name, dir_fd=fd) as (fh, _):
            return fh.read(-1 if limit is None else limit + 1) == expected
    except NotARegularFile:
        return False


def replace_file(src: Target, dst: Target) -> None:
    """Rename the regular file `src` onto `dst` (`replace` for files only: a symlink, FIFO
    or folder at `src` raises NotARegularFile, so what lands at `dst` is a regular file)."""
    with folder(src.parent) as sfd, folder(dst.parent) as dfd:
        _regular(src, sfd)
        between()
        _replace_in(src, dst, sfd, dfd)


def rmtree(target: Target) -> None:
    """Remove the folder `target` and all below it, never following a symlink: its own
    folders walked safely, a symlink inside removed as a link, never entered (shutil.rmtree's
    fd-based walk on POSIX with Python 3.11+; else one entry at a time through `folder`)."""
    if not target.rel:
        raise Escape(os.fspath(target.path), "is the root itself; never removed")
    with folder(target.parent) as fd:
        kind = kind_of(_lstat_in(target, fd).st_mode)
        if kind != "folder":
            raise Escape(os.fspath(target.path), f"is a {kind or 'file'}, not a folder")
        between()
        if fd is not None and sys.version_info >= (3, 11):
            shutil.rmtree(target.name, dir_fd=fd)  # type: ignore[call-arg]
            return
    for name, st in entries(target):  # Python 3.10, Windows: one entry at a time
        if stat.S_ISDIR(st.st_mode):
            rmtree(target.child(name))
        else:
            unlink(target.child(name))
    with folder(target.parent) as fd:
        if fd is None:
            _check_components(target, False, 0o777)
            os.rmdir(target.path)
        else:
            os.rmdir(target.name, dir_fd=fd)


def copy_tree(src: Target, dst: Target, max_bytes: int | None = None
              ) -> list[tuple[Rel, str]]:
    """Copy the folder `src` to a new folder `dst`: folders made, regular files copied
    (copy_new), a symlink recreated as the same link (never followed, nothing behind it
    read); FIFOs, sockets and devices are left out. Returns (path below src, kind) of what
    was left out."""
    mkdir_new(dst)
    left: list[tuple[Rel, str]] = []
    for rel, kind in walk_files(src):
        here, there = src.child(*rel), dst.child(*rel)
        if kind == "folder":
            mkdir_new(there)
        elif kind is None:
            copy_new(here, there, max_bytes=max_bytes, create=False)
        elif kind == "symlink":
            with folder(here.parent) as sfd, folder(there.parent) as dfd:
                text = os.readlink(here.path if sfd is None else here.name, dir_fd=sfd)
                if dfd is None:
                    os.symlink(text, there.path)
                else:
                    os.symlink(text, there.name, dir_fd=dfd)
        else:
            left.append((rel, kind))
    return left


def write_json(target: Target, data: object) -> None:
    """A small JSON record (heartbeat, lease, tombstone) written atomically below its root
    (made with the umask's mode: other machines' guards and servers read it)."""
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True)
    write_atomic(target, text.encode("ascii"))
