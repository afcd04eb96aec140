"""The quarantine: where the guard puts store files it takes out of the store.

The guard never deletes user data. A file it removes (a sync client's conflict copy) or
overwrites (the original it merged into) is kept under state_dir/quarantine/<batch>/<path in
the store>, and the journal line that says why names it there. Only regular files are moved
(a rename within one volume, else a bounded copy then a removal), and neither side is ever
reached through a symlinked folder (core.safepath).
"""

from __future__ import annotations

import errno
import time
import uuid
from pathlib import Path

from guard.core import safepath
from guard.core.safepath import Target

BEFORE = ".before"  # added to the name of what a store file held before the guard replaced it


class Quarantine:
    def __init__(self, root: Path, store: Path, max_bytes: int | None = None) -> None:
        self.root, self.store = Path(root), Path(store)
        self.batch = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.max_bytes = max_bytes  # the largest file copied across volumes

    def _target(self, rel: tuple[str, ...]) -> Target:
        self.root.mkdir(parents=True, exist_ok=True)  # the quarantine root, as configured
        target = Target(self.root, (self.batch,) + rel)
        n = 1
        while safepath.exists(target):  # the same path twice in one batch: keep both
            target = target.parent.child(f"{rel[-1]}.{n}")
            n += 1
        safepath.mkdirs(target.parent)
        return target

    def move(self, path: Path) -> str:
        """Move a store file (a regular file only) into the quarantine; returns where it
        went."""
        source = safepath.target_of(self.store, path)
        safepath.lstat_regular(source)
        target = self._target(source.rel)
        try:
            safepath.rename_new(source, target, create=False)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            safepath.copy_new(source, target, max_bytes=self.max_bytes, create=False)
            safepath.unlink(source)
        return str(target.path)

    def keep_bytes(self, path: Path, data: bytes) -> str:
        """Keep a copy of what a store file held before the guard replaced it."""
        rel = safepath.target_of(self.store, path).rel
        target = self._target(rel[:-1] + (rel[-1] + BEFORE,))
        safepath.write_new(target, data, create=False)
        return str(target.path)
