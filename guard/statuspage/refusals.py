"""The refusal journal: every request the guard's server refused (403 from the gate, 503 on a
lock timeout), for `guardctl status` and the status page, because MLflow's UI may show only
"Something went wrong" (a refused trace deletion leaves its dialog open with that).

Kept small: past MAX_BYTES the oldest half is dropped (the report shows only the last day).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from filelock import FileLock, Timeout

from guard.core import safepath
from guard.core.journal import Journal
from guard.core.tempfiles import discard

log = logging.getLogger("guard.statuspage")

MAX_BYTES = 256 * 1024

# The operations the guard can refuse, in words (the rest: their handler's name, spelled out).
WHAT = {
    "_delete_artifact_mlflow_artifacts": "delete an artifact",
    "_delete_traces": "delete traces",
    "_delete_demo": "delete the demo data",
    "_delete_registered_model": "delete a registered model",
    "_rename_registered_model": "rename a registered model",
    "_delete_model_version": "delete a model version",
    "_create_registered_model": "create a registered model",
    "_create_model_version": "register a model version",
    "_create_experiment": "create an experiment",
}


def what_of(endpoint: str | None) -> str:
    """The operation a request was routed to, in words."""
    if endpoint is None:
        return "unknown operation"
    return WHAT.get(endpoint) or endpoint.strip("_").replace("_", " ")


def kept_tail(data: bytes, keep: int) -> bytes:
    """The whole lines among the last `keep` bytes of a journal (pure)."""
    if len(data) <= keep:
        return data
    tail = data[-keep:]
    cut = tail.find(b"\n")
    return tail[cut + 1:] if cut >= 0 else b""


def record(path: Path, method: str, url_path: str, what: str, reason: str,
           status: int) -> None:
    """Append one refusal (and prune past MAX_BYTES); never raises: a journal that cannot be
    written must not change the answer the client gets (the server's log has the refusal)."""
    try:
        with FileLock(str(path) + ".lock", timeout=5):
            Journal(path).append(method=method, path=url_path, what=what, reason=reason,
                                 status=status)
            if path.stat().st_size > MAX_BYTES:
                prune(path, MAX_BYTES // 2)
    except (OSError, Timeout) as exc:
        log.warning("could not journal the refusal of %s %s: %s", method, url_path, exc)


def prune(path: Path, keep: int) -> None:
    """Replace the journal by its last `keep` bytes of whole lines (under the caller's lock)."""
    data = path.read_bytes()
    tmp = path.with_name(path.name + ".prune")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as fh:
            fh.write(kept_tail(data, keep))
            fh.flush()
            os.fsync(fh.fileno())
        safepath.replace_path(tmp, path)  # retried while a reader holds it open
    except BaseException:
        discard(tmp)
        raise
