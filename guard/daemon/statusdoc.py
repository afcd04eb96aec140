"""The status document: what the daemon says about itself in status.json, typed.

The daemon composes it from its parts' figures (each declared beside its part) and writes it
about once a second; `guardctl status`, `restart` and `stop` read it back with `read_status`.
The JSON keys are those of `guardctl status --json` users' scripts: a part switched off is
`{"enabled": false}`, and the "portability" object holds the rewrite part's and the
watcher's keys side by side. Reading goes through `guard.core.records`, so a document from an
older or newer daemon, or a half-written one, gives defaults where it says nothing usable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from guard.core.parts import PartState
from guard.core.records import FLAT, from_json, to_json
from guard.core.state import read_json, write_json_atomic
from guard.core.watch import WatchFigures
from guard.portability.fixer import RewriteFigures
from guard.protection.restorer import VaultFigures
from guard.supervision.keeper import KeeperFigures
from guard.supervision.processes import DaemonRecord, GcProcess
from guard.sync.heartbeats import PeerReport
from guard.sync.reconcile import ConflictFigures


@dataclass(frozen=True)
class Off:
    """The section of a part switched off in the config."""

    enabled: Literal[False] = False


@dataclass(frozen=True)
class Portability:
    """Rewriting's figures (or Off) and, while it runs, the watcher's, in one JSON object
    (Off first: rewriting's figures carry no "enabled" key to tell them apart)."""

    rewrite: Off | RewriteFigures = field(default_factory=Off, metadata=FLAT)
    watch: WatchFigures | None = field(default=None, metadata=FLAT)


@dataclass(frozen=True)
class StatusDoc:
    """status.json: the daemon, its server (the keeper's keys sit at the top level), where
    things are, and each part's figures."""

    guard_version: str | None = None
    daemon: DaemonRecord = field(default_factory=DaemonRecord)
    # phase, message, server, restarts, last_reason, next_start_at
    keeper: KeeperFigures = field(default_factory=KeeperFigures, metadata=FLAT)
    store: str | None = None
    host_id: str | None = None
    mlflow_version: str | None = None
    config_file: str | None = None
    state_dir: str | None = None
    log_file: str | None = None
    server_log_file: str | None = None
    port: int | None = None
    portability: Portability = field(default_factory=Portability)
    peers: PeerReport = field(default_factory=PeerReport)
    conflicts: Off | ConflictFigures = field(default_factory=Off)
    vault: Off | VaultFigures = field(default_factory=Off)
    gc_processes: tuple[GcProcess, ...] = ()
    parts: dict[str, PartState] = field(default_factory=dict)
    updated_at: float | None = None


def parse_status(data: object) -> StatusDoc | None:
    """The document in parsed JSON; None when there is none (no file, not an object, empty)."""
    if not isinstance(data, dict) or not data:
        return None
    return from_json(StatusDoc, data)


def read_status(path: Path) -> StatusDoc | None:
    return parse_status(read_json(path))


def write_status(path: Path, doc: StatusDoc) -> None:
    write_json_atomic(path, to_json(doc))
