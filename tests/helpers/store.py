"""The shipped store: tests/data/direct_store, written by a direct MLflow 3.17 client (file:
tracking URI) under /tmp/d3/rootA/mlruns, with a run, an artifact, a logged pyfunc model and a
registered version; its ids, and store-relative paths as segments.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DIRECT_STORE = Path(__file__).resolve().parent.parent / "data" / "direct_store"


def copy_direct_store(tmp_path: Path) -> Path:
    """A private copy of the shipped direct-client store, to modify freely."""
    dst = tmp_path / "mlruns"
    shutil.copytree(DIRECT_STORE, dst, symlinks=True)
    return dst


# The ids in the shipped store.
EXP = "401878344117323602"
RUN = "57718c19fb0047259fbe7565bb4c52ea"
MODEL = "m-da48845d65f640198a3930713e766e00"


def rel(path: str) -> tuple[str, ...]:
    """A store-relative path written with "/" as its segments ("" is the store itself)."""
    return tuple(path.split("/")) if path else ()


def listing(folder: Path) -> list[tuple[str, int, int, int]]:
    """Every entry below `folder`, symlinks not followed: (relative path, size, link count,
    mtime in ns), to compare a decoy folder before and after."""
    out = []
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.relpath(os.path.join(dirpath, name), folder), st.st_size,
                        st.st_nlink, st.st_mtime_ns))
    return sorted(out)
