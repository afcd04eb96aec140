"""Tombstones: the record, in the shared store, that a removal was sanctioned.

`guardctl gc` and the guard's server write one before they remove something, so no machine's
vault puts it back. They live in `<store>/mlflow-guard.trash/tombstones/<host_id>/`, one file
per removal, written once by one host: they cannot produce conflict copies. The writer prunes
its own after gc.retention_days.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from guard.core import safeio, safepath
from guard.core.layout import COORDINATION
from guard.core.safepath import Target
from guard.core.store import mkdirs_in_store
from guard.protection.deletions import Rel, Tombstone

TOMBSTONES = "tombstones"


def tombstone_dir(store: Path) -> Path:
    return Path(store) / COORDINATION / TOMBSTONES


def write(store: Path, host_id: str, rel: Rel, reason: str, created: int | None = None) -> Path:
    """Sanction removing `rel` (store-relative segments) and everything below it."""
    folder = tombstone_dir(store) / host_id
    mkdirs_in_store(store, folder)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.json"
    safepath.write_json(safepath.target_of(store, path),
                        {"rel": list(rel), "created": created, "reason": reason,
                         "host_id": host_id, "at": time.time()})
    return path


def parse(doc: object) -> Tombstone | None:
    """A tombstone from parsed JSON, or None when it is not one (never raises)."""
    if not isinstance(doc, dict):
        return None
    rel, created = doc.get("rel"), doc.get("created")
    if not isinstance(rel, list) or not rel or not all(isinstance(p, str) and p for p in rel):
        return None
    if any(p in (".", "..") or "/" in p or "\\" in p for p in rel):
        return None
    if created is not None and (isinstance(created, bool) or not isinstance(created, int)):
        return None
    return Tombstone(tuple(rel), created)


def read_all(store: Path) -> list[Tombstone]:
    """Every host's tombstones (unreadable or half-synced files are skipped)."""
    found = []
    root = tombstone_dir(store)
    try:
        hosts = [e.path for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for host in hosts:
        try:
            names = [e.path for e in os.scandir(host) if e.name.endswith(".json")]
        except OSError:
            continue
        for path in names:
            raw = safeio.read_small(path, safeio.RECORD_MAX_BYTES)  # never a FIFO or symlink
            try:
                stone = parse(json.loads(raw)) if raw is not None else None
            except ValueError:
                continue
            if stone is not None:
                found.append(stone)
    return found


def prune(store: Path, host_id: str, older_than_s: float, now: float | None = None) -> int:
    """Remove this host's own tombstones older than `older_than_s` (only the writer prunes)."""
    now = time.time() if now is None else now
    removed = 0
    mine = Target(Path(store), (COORDINATION, TOMBSTONES, host_id))
    try:
        entries = safepath.entries(mine)  # a symlinked folder: Escape, nothing removed
    except OSError:
        return 0
    for name, st in entries:
        try:
            if name.endswith(".json") and now - st.st_mtime > older_than_s:
                safepath.unlink(mine.child(name))
                removed += 1
        except OSError:
            continue
    return removed
