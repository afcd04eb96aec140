"""Small disks for fault tests: a tmpfs the test mounts and unmounts itself (CI runs as root),
filled until a write fails with ENOSPC."""

from __future__ import annotations

import errno
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(mount: Path, size: str, inodes: int) -> Iterator[Path]:
    """A tmpfs of `size` with `inodes` inodes at `mount`, unmounted afterwards (lazily if a
    file in it is still open)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (CI runs as root)")
    mount.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes}", "tmpfs",
                    str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_blocks(folder: Path, name: str = "filler") -> Path:
    """Write ever smaller blocks into one file until not a byte is free; returns that file."""
    filler = folder / name
    with open(filler, "wb", buffering=0) as fh:
        size = 1 << 20
        while size:
            try:
                fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    return filler


def files_of(root: Path, skip: str = "") -> dict[str, bytes]:
    """Every file under `root` with its bytes (`skip`: a top folder left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not (skip and rel.startswith(skip + "/")):
            out[rel] = path.read_bytes()
    return out


def health(url: str) -> str:
    """The body of the server's /health answer."""
    with urllib.request.urlopen(url + "/health", timeout=5) as resp:
        return resp.read().decode()
