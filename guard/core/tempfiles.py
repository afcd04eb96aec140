"""The guard's own temp files (`layout.TEMP_PREFIX`): what a write leaves when it is killed
between creating its temp file and renaming it into place.

They are the guard's, never user data: a stale one is simply removed, not moved aside (the
file it was meant to replace is intact, since the rename never happened). Only regular files
whose name starts with the prefix are touched, symlinks are never followed, and only those
older than `STALE_AFTER` (a write in progress takes milliseconds and keeps its mtime fresh).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from guard.core.layout import TEMP_PREFIX

STALE_AFTER = 60.0  # seconds


def is_stale(name: str, mode: int, mtime: float, now: float,
             older_than: float = STALE_AFTER) -> bool:
    """Whether a directory entry is a leftover temp file of the guard's (pure)."""
    return (name.startswith(TEMP_PREFIX) and stat.S_ISREG(mode)
            and now - mtime >= older_than)


def sweep(folder: Path, now: float | None = None, older_than: float = STALE_AFTER,
          recursive: bool = False) -> list[Path]:
    """Remove the guard's stale temp files in `folder` (and, with `recursive`, below it,
    never through a symlink); returns what was removed. Errors are skipped: the next sweep
    looks again."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    stack = [Path(folder)]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if is_stale(entry.name, st.st_mode, st.st_mtime, now, older_than):
                try:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                except OSError:
                    pass
            elif recursive and stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))
    return removed


def discard(path: Path) -> None:
    """Remove a temp file after a failed write, quietly (the write's own error is the one
    to report; if even this fails, the next sweep removes it)."""
    try:
        os.unlink(path)
    except OSError:
        pass
