"""The vault's trash: what was removed on purpose, kept gc.retention_days.

    <vault>/trash/<batch>/<store path>   a second name (hard link, else copy) or the moved data
    <vault>/trash/<batch>/RECORD.json    what, why, when

Its own module because three writers share it: the daemon's vault, `guardctl gc` (collector)
and the in-server plugin (app), which should not load the whole vault for a registry deletion.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from guard.core import safeio
from guard.protection.deletions import Rel

log = logging.getLogger("guard.vault")

CREATED_KEYS = ("creation_timestamp", "creation_time", "start_time")


def created_of(doc: dict) -> int | None:
    """A unit's creation time from its meta.yaml (the key differs per kind)."""
    for key in CREATED_KEYS:
        value = doc.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def new_batch(vault_root: Path, reason: str, **record) -> Path:
    """A fresh trash batch folder with its RECORD.json (what, why, when)."""
    batch = Path(vault_root) / "trash" / (time.strftime("%Y%m%d-%H%M%S") + "-"
                                          + uuid.uuid4().hex[:6])
    batch.mkdir(parents=True)
    with open(batch / "RECORD.json", "w", encoding="utf-8") as fh:
        json.dump({"reason": reason, "at": time.time(), **record}, fh, indent=2)
    return batch


def link_or_copy(src: str, dst: str) -> None:
    """A second name for a file: a hard link where the volume allows, else a copy. A symlink
    is kept as the link it is (never followed); a FIFO or device raises NotARegularFile."""
    try:
        os.link(src, dst)
    except OSError:
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            safeio.copy_regular(src, dst)


def copy_into_trash(src: Path, rel: Rel, batch: Path) -> int:
    """Keep a second name (hard link, else copy) of every file under `src` in the batch."""
    target = batch.joinpath(*rel)
    if src.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(str(src), str(target))
        return 1
    count = 0
    for folder, _dirs, files in os.walk(src):
        dest = target / os.path.relpath(folder, src)
        dest.mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                link_or_copy(os.path.join(folder, name), str(dest / name))
            except safeio.NotARegularFile as exc:  # a FIFO or device: nothing to keep
                log.warning("not kept in the trash: %s", exc)
                continue
            count += 1
    return count


def move_into_trash(src: Path, rel: Rel, batch: Path) -> None:
    """Move a store folder into the batch: a rename on one volume, else copy then remove."""
    target = batch.joinpath(*rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copytree(src, target, symlinks=True)
        shutil.rmtree(src)


def prune_trash(vault_root: Path, older_than_s: float, now: float | None = None) -> list[str]:
    """Remove trash batches older than the retention; returns their names."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        batches = sorted(os.scandir(Path(vault_root) / "trash"), key=lambda e: e.name)
    except OSError:
        return removed
    for batch in batches:
        try:
            with open(os.path.join(batch.path, "RECORD.json"), encoding="utf-8") as fh:
                at = float(json.load(fh)["at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours, or half-written: leave it
        if now - at > older_than_s:
            shutil.rmtree(batch.path, ignore_errors=True)
            removed.append(batch.name)
    return removed
