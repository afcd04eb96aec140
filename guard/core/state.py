"""The local state folder: the only place besides the store the daemon writes to.

Layout: daemon.lock (one daemon per state folder), status.json (what `guardctl status` reads),
pids.json (the server tree, to end orphans after a crash), control.json (requests from
`guardctl stop|restart`), logs/ (rotating logs), journal/ (what the guard changed). JSON files
are replaced atomically so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from guard.core.layout import TEMP_PREFIX
from guard.core.tempfiles import discard


def write_json_atomic(path: Path, data: Any) -> None:
    """Write via a temp file in the same folder and rename over the target, so a reader (or a
    sync client) never sees half a file."""
    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            # ASCII only: a non-UTF-8 file name (lone surrogates) becomes a \udcNN escape that
            # json.loads gives back as the same string, where UTF-8 output would raise
            json.dump(data, fh, indent=2, sort_keys=True, ensure_ascii=True)
            fh.flush()
            os.fsync(fh.fileno())
        for attempt in range(10):
            try:
                os.replace(tmp, path)
                return
            except PermissionError:  # Windows: a reader holds the target open; retry briefly
                if attempt == 9:
                    raise
                time.sleep(0.05 * (attempt + 1))
    except BaseException as exc:
        discard(tmp)  # a full or read-only disk leaves no temp file behind
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(tmp)):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file
        raise


def read_json(path: Path) -> Any | None:
    """The file's JSON, or None when it is missing or unreadable (e.g. mid-replace on Windows)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    lock = property(lambda self: self.root / "daemon.lock")
    status = property(lambda self: self.root / "status.json")
    pids = property(lambda self: self.root / "pids.json")
    control = property(lambda self: self.root / "control.json")
    logs = property(lambda self: self.root / "logs")
    guard_log = property(lambda self: self.root / "logs" / "guard.log")
    server_log = property(lambda self: self.root / "logs" / "mlflow-server.log")
    journals = property(lambda self: self.root / "journal")
    rewrite_journal = property(lambda self: self.root / "journal" / "rewrites.jsonl")
    conflict_journal = property(lambda self: self.root / "journal" / "conflicts.jsonl")
    quarantine = property(lambda self: self.root / "quarantine")
    vault_journal = property(lambda self: self.root / "journal" / "vault.jsonl")

    def create(self) -> None:
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the state folder {self.root}: {exc}; "
                          "set state_dir to a writable local folder") from exc

    def request(self, command: str) -> str:
        """Leave a request for the running daemon (works the same on every platform)."""
        token = uuid.uuid4().hex
        write_json_atomic(self.control, {"command": command, "id": token, "at": time.time()})
        return token

    def take_request(self) -> dict | None:
        """Read and remove a pending request, if any."""
        data = read_json(self.control)
        if data is None:
            return None
        try:
            self.control.unlink()
        except OSError:
            pass
        return data if isinstance(data, dict) else None
