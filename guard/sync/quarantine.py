"""The quarantine: where the guard puts store files it takes out of the store.

The guard never deletes user data. A file it removes (a sync client's conflict copy) or
overwrites (the original it merged into) is kept under state_dir/quarantine/<batch>/<path in
the store>, and the journal line that says why names it there.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path


class Quarantine:
    def __init__(self, root: Path, store: Path) -> None:
        self.root, self.store = Path(root), Path(store)
        self.batch = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]

    def _target(self, rel: str) -> Path:
        target = self.root / self.batch / rel
        n = 1
        while target.exists():  # the same path twice in one batch: keep both
            target = target.with_name(f"{target.name}.{n}")
            n += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def move(self, path: Path) -> str:
        """Move a store file into the quarantine; returns where it went."""
        target = self._target(self._rel(path))
        shutil.move(str(path), str(target))
        return str(target)

    def keep_bytes(self, path: Path, data: bytes) -> str:
        """Keep a copy of what a store file held before the guard replaced it."""
        target = self._target(self._rel(path) + ".before")
        with open(target, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return str(target)

    def _rel(self, path: Path) -> str:
        rel = os.path.relpath(path, self.store)
        if rel.startswith(os.pardir):
            raise ValueError(f"{path} is not inside the store {self.store}")
        return rel
