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
import stat
import time
import uuid
from pathlib import Path

from guard.core import safeio, safepath
from guard.core.safepath import Escape, Target
from guard.protection.deletions import Rel

log = logging.getLogger("guard.vault")

CREATED_KEYS = ("creation_timestamp", "creation_time", "start_time")
TRASH, RECORD = "trash", "RECORD.json"


def created_of(doc: dict) -> int | None:
    """A unit's creation time from its meta.yaml (the key differs per kind)."""
    for key in CREATED_KEYS:
        value = doc.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def new_batch(vault_root: Path, reason: str, **record) -> Path:
    """A fresh trash batch folder with its RECORD.json (what, why, when)."""
    Path(vault_root).mkdir(parents=True, exist_ok=True)  # the vault root, as configured
    name = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    batch = Target(Path(vault_root), (TRASH, name))
    safepath.mkdirs(batch.parent)
    safepath.mkdir_new(batch)
    safepath.write_new(batch.child(RECORD),
                       json.dumps({"reason": reason, "at": time.time(), **record},
                                  indent=2).encode("utf-8"))
    return batch.path


def _batch_target(batch: Path) -> Target:
    """A batch folder as a Target below its vault (<vault>/trash/<batch>): trash/ and the
    batch are walked, never followed."""
    batch = Path(batch)
    return Target(batch.parent.parent, (batch.parent.name, batch.name))


def _store_target(src: Path, rel: Rel) -> Target:
    """`src`, the store path `rel`, as a Target below the store."""
    src = Path(src)
    if not rel or tuple(src.parts[-len(rel):]) != tuple(rel):
        raise Escape(str(src), f"is not the store path {'/'.join(rel)}")
    return Target(src.parents[len(rel) - 1], tuple(rel))


def link_or_copy(src: Target, dst: Target, max_bytes: int | None = None) -> None:
    """A second name for a regular file: a hard link where the volume allows, else a copy
    (bounded by `max_bytes`). Neither side follows a symlink: a symlink, FIFO or device at
    `src` raises NotARegularFile, a symlinked folder safepath.Escape."""
    try:
        safepath.link(src, dst)
    except (safeio.UnsafeFile, safepath.Escape, FileExistsError, FileNotFoundError):
        raise
    except OSError:  # another volume, or a file system without hard links
        safepath.copy_new(src, dst, max_bytes=max_bytes)


def copy_into_trash(src: Path, rel: Rel, batch: Path) -> int:
    """Keep a second name (hard link, else copy) of every regular file under `src` (the
    store path `rel`) in the batch; symlinks, FIFOs and devices are left out, never followed."""
    source, target = _store_target(src, rel), _batch_target(batch).child(*rel)
    kind = safeio.kind_of(safepath.lstat(source).st_mode)
    if kind is None:
        link_or_copy(source, target)
        return 1
    if kind != "folder":
        raise safeio.NotARegularFile(source.path, kind)
    safepath.mkdirs(target)
    count = 0
    for sub, kind in safepath.walk_files(source):
        if kind == "folder":
            safepath.mkdirs(target.child(*sub))
            continue
        try:
            if kind is not None:
                raise safeio.NotARegularFile(source.child(*sub).path, kind)
            link_or_copy(source.child(*sub), target.child(*sub))
        except (safeio.UnsafeFile, safepath.Escape) as exc:  # nothing to keep, or to follow
            log.warning("not kept in the trash: %s", exc)
            continue
        count += 1
    return count


def move_into_trash(src: Path, rel: Rel, batch: Path) -> None:
    """Move a store folder into the batch: a rename on one volume, else a copy (folders,
    regular files, symlinks as links; never what they point to) then a removal; never
    through a symlinked folder on either side."""
    source, target = _store_target(src, rel), _batch_target(batch).child(*rel)
    safepath.mkdirs(target.parent)
    try:
        safepath.rename_new(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        if safeio.kind_of(safepath.lstat(source).st_mode) != "folder":
            safepath.copy_new(source, target)
            safepath.unlink(source)
            return
        for sub, kind in safepath.copy_tree(source, target):
            log.warning("not kept in the trash: %s is a %s", source.child(*sub).path, kind)
        safepath.rmtree(source)


def prune_trash(vault_root: Path, older_than_s: float, now: float | None = None) -> list[str]:
    """Remove trash batches older than the retention; returns their names. A batch that is
    a symlink, or without a readable RECORD.json, is left alone; nothing is followed."""
    now = time.time() if now is None else now
    removed: list[str] = []
    trash = Target(Path(vault_root), (TRASH,))
    try:
        batches = safepath.entries(trash)
    except OSError:
        return removed
    for name, st in batches:
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            at = float(json.loads(safepath.read_bytes(trash.child(name, RECORD),
                                                      safeio.RECORD_MAX_BYTES))["at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours, or half-written: leave it
        if now - at > older_than_s:
            try:
                safepath.rmtree(trash.child(name))
            except OSError as exc:
                log.warning("trash batch %s not fully removed: %s", name, exc)
            removed.append(name)
    return removed
