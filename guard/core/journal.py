"""Append-only local journals (JSON lines) of everything the guard changed, for audit and undo."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, **record) -> None:
        record.setdefault("time", time.time())
        line = json.dumps(record, sort_keys=True, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")


def read_journal(path: Path) -> Iterator[dict]:
    """Every well-formed record; a torn last line (crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record
