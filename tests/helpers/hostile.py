"""Hostile stores for the security tests: decoy folders beside the store, exact snapshots of
what lies outside it, and the checks that the daemon neither wrote there nor read from there.

A snapshot records every entry below a folder (the folder too) by its raw bytes path, with
its kind, size, mtime in ns and, for a symlink, its target; no symlink is followed and no file
is opened, so taking one changes nothing it records.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from guard.protection.vault import index_holds
from tests.helpers.daemons import Guard, guardctl

SECRET = b"TOP-SECRET-TOKEN-5e1d"
OLD = 1_577_836_800  # 2020-01-01: older than any retention, any temp-file staleness
STAMP = ".sync-conflict-20240103-090113-ABCDEF7"

Entry = tuple[int, int, int, bytes | None]  # file type, size, mtime_ns, symlink target


def snapshot(root: Path, exclude: Iterable[Path] = (), skip_prefix: str = "") -> dict[bytes,
                                                                                      Entry]:
    """Every entry below `root` (and `root` itself), symlinks not followed, `exclude`d folders
    and names starting with `skip_prefix` left out (with what lies below them)."""
    out: dict[bytes, Entry] = {}
    skipped = {os.fsencode(os.path.abspath(p)) for p in exclude}
    top = os.fsencode(os.path.abspath(root))

    def note(path: bytes) -> None:
        st = os.lstat(path)
        target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        out[os.path.relpath(path, top)] = (stat.S_IFMT(st.st_mode), st.st_size,
                                           st.st_mtime_ns, target)

    note(top)
    for folder, dirs, files in os.walk(top):
        keep = []
        for name in dirs:
            path = os.path.join(folder, name)
            if path in skipped or (skip_prefix and name.startswith(os.fsencode(skip_prefix))):
                continue
            note(path)
            keep.append(name)
        dirs[:] = keep
        for name in files:
            if skip_prefix and name.startswith(os.fsencode(skip_prefix)):
                continue
            note(os.path.join(folder, name))
    return out


def changes(before: dict[bytes, Entry], after: dict[bytes, Entry]) -> dict[str, str]:
    """What differs between two snapshots, worded for an assertion message."""
    out = {}
    for path in sorted(set(before) | set(after)):
        shown = os.fsdecode(path)
        if path not in after:
            out[shown] = "removed"
        elif path not in before:
            out[shown] = f"created ({stat.filemode(after[path][0])}, {after[path][1]} bytes)"
        elif before[path] != after[path]:
            out[shown] = f"changed {before[path]} -> {after[path]}"
    return out


def make_decoy(folder: Path) -> Path:
    """A folder beside the store with files of its own: a secret, an old tombstone-like
    record and an old file named like the guard's temp files (a prune or a sweep that follows
    a symlink removes those), a subfolder; every mtime set in the past."""
    folder.mkdir(parents=True)
    (folder / "secret.txt").write_bytes(SECRET)
    (folder / "notes.md").write_text("decoy: nothing here may change\n")
    (folder / "20200101-000000-deadbeef.json").write_text(
        json.dumps({"rel": ["0", "x"], "created": None, "reason": "decoy", "host_id": "x",
                    "at": OLD}))
    (folder / ".guard-tmp-decoy").write_bytes(b"not the guard's")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.txt").write_text("inner")
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    return folder


def inodes(root: Path) -> dict[tuple[int, int], str]:
    """(device, inode) of every regular file below `root` -> its path (no symlink followed)."""
    out = {}
    for folder, _dirs, files in os.walk(os.fsencode(root)):
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                out[(st.st_dev, st.st_ino)] = os.fsdecode(path)
    return out


def shared_inodes(outside: Path, inside: Iterable[Path]) -> list[str]:
    """Files below the `inside` folders (store, state folder) that are hard links to a file
    below `outside`: an outside file the guard linked in (into the vault, say) is read."""
    theirs = inodes(outside)
    return [f"{path} is {theirs[key]}" for root in inside for key, path in inodes(root).items()
            if key in theirs]


def holding(secret: bytes, *roots: Path) -> list[str]:
    """Regular files below `roots` that contain `secret` (the secret pulled inside)."""
    found = []
    for root in roots:
        for folder, _dirs, files in os.walk(os.fsencode(root)):
            for name in files:
                path = os.path.join(folder, name)
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode) or st.st_size > 64 * 1024 * 1024:
                    continue
                with open(path, "rb") as fh:
                    if secret in fh.read():
                        found.append(os.fsdecode(path))
    return found


def log_size(guard: Guard) -> int:
    try:
        return (guard.state_dir / "logs" / "guard.log").stat().st_size
    except FileNotFoundError:
        return 0


def log_since(guard: Guard, offset: int) -> str:
    with open(guard.state_dir / "logs" / "guard.log", "rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", "replace")


def answers(guard: Guard) -> dict:
    """`guardctl status --json` answers with the daemon's document (DEGRADED is fine: the
    store is hostile), and says the daemon and its server are running."""
    done = guardctl("status", "--json", *guard.opts, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    doc = json.loads(done.stdout)
    assert guard.proc is not None and guard.proc.poll() is None, guard.output()[-3000:]
    assert doc.get("phase") == "running", doc
    return doc


def serving(guard: Guard) -> bool:
    import urllib.request

    with urllib.request.urlopen(guard.url + "/health", timeout=10) as resp:
        return resp.read().strip() == b"OK"


def vault_journal(guard: Guard) -> list[dict]:
    path = guard.state_dir / "journal" / "vault.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kept(guard: Guard, *rel: str) -> bool:
    """Whether the vault's saved index holds store-relative `rel` (a file or a folder)."""
    return index_holds(guard.state_dir / "vault", rel)


def passes_after(guard: Guard, since: float, n: int = 2, timeout: float = 30) -> None:
    """Wait until the vault has finished `n` full passes after the epoch time `since`."""
    from tests.helpers.daemons import wait_for

    seen: set[float] = set()

    def done() -> bool:
        last = (guard.status().get("vault") or {}).get("last_pass") or 0
        if last > since:
            seen.add(last)
        return len(seen) >= n

    wait_for(done, timeout, interval=0.3, what=f"{n} vault passes")


def now() -> float:
    return time.time()
