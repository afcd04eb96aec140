"""Peers: every guard publishes a heartbeat into the shared store and reads the others'.

The heartbeats live in the coordination folder (`<store>/mlflow-guard.trash/peers/`, see
layout.COORDINATION), one file per host, written only by that host: two machines never write
the same file, so heartbeats cannot produce conflict copies. A heartbeat's age as seen on
another machine is the sync lag plus at most one interval, which makes it the lab's view of
whether the other machines are syncing at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from guard.core import safeio, safepath
from guard.core.conflictnames import parse_conflict_name
from guard.core.layout import COORDINATION
from guard.core.store import mkdirs_in_store

PEERS = "peers"


@dataclass(frozen=True)
class Heartbeat:
    host_id: str
    pid: int
    guard_version: str
    mlflow_version: str
    platform: str
    store: str  # this host's local path of the store (where its absolute paths start)
    started_at: float
    last_seen: float
    interval: float
    state: str = "running"  # running | stopped
    # the first heartbeat of this unbroken series (after a start or a gap): from this plus
    # locks.settle on, every host knows this one exists (leases: settle.py); None: unknown
    beating_since: float | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Heartbeat | None:
        """A heartbeat from parsed JSON, or None when it is not one (never raises)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(host_id=_text(data["host_id"]), pid=_integer(data["pid"]),
                       guard_version=_text(data["guard_version"]),
                       mlflow_version=_text(data["mlflow_version"]),
                       platform=_text(data["platform"]), store=_text(data["store"]),
                       started_at=_number(data["started_at"]),
                       last_seen=_number(data["last_seen"]), interval=_number(data["interval"]),
                       state=_text(data.get("state", "running")),
                       beating_since=_optional_number(data.get("beating_since")))
        except (KeyError, TypeError):
            return None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"not an integer: {value!r}")
    return value


def _optional_number(value: object) -> float | None:
    return None if value is None else _number(value)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    return value


@dataclass(frozen=True)
class PeerView:
    """Another host as this one sees it now."""

    host_id: str
    age_s: float
    stale: bool
    state: str
    mlflow_version: str
    guard_version: str
    platform: str
    store: str
    pid: int


def minor(version: str) -> str:
    """'3.17.2' -> '3.17' (what must match for two servers to share one file store)."""
    return ".".join(version.split(".")[:2])


def assess(beats: list[Heartbeat], me: str, now: float, stale_after: float) -> list[PeerView]:
    """The other hosts, oldest heartbeat last; stale when older than `stale_after` or stopped."""
    views = [PeerView(b.host_id, round(max(0.0, now - b.last_seen), 1),
                      b.state != "running" or now - b.last_seen > stale_after, b.state,
                      b.mlflow_version, b.guard_version, b.platform, b.store, b.pid)
             for b in beats if b.host_id != me]
    return sorted(views, key=lambda v: (v.age_s, v.host_id))


SLOW_WINDOW = 600.0  # s: the arrivals a slow-sync warning looks at
SLOW_JUMPS = 2       # this many late arrivals within the window make a warning, not one


def slow_sync_warning(jumps: list[tuple[float, str, float, float]], now: float,
                      settle: float) -> str | None:
    """A warning when another host's heartbeats keep arriving far apart (pure). `jumps`: one
    (arrived, host, seconds since its previous heartbeat seen here, its interval) per new
    heartbeat seen. A host writes one every interval; when each new one is much more than
    that after the previous one seen, the sync client is holding the file back (Syncthing's
    default watcher delay of 10 s stretches a file that keeps changing to about a minute), so
    a lease claim can take as long to arrive: longer than locks.settle breaks the locks.
    A single long jump is a host that was offline or asleep, not a slow sync."""
    late: dict[str, list[float]] = {}
    for arrived, host, gap, interval in jumps:
        if arrived >= now - SLOW_WINDOW and gap - interval > settle:
            late.setdefault(host, []).append(gap - interval)
    slow = {h: max(v) for h, v in late.items() if len(v) >= SLOW_JUMPS}
    if not slow:
        return None
    hosts = ", ".join(f"{h} (up to {round(d)} s)" for h, d in sorted(slow.items()))
    return (f"the sync delivers other hosts' files late: {hosts}, longer than locks.settle "
            f"({settle:g} s), so cross-machine locks cannot be trusted. In Syncthing set the "
            "folder's watcher delay to 1 s (Advanced: fsWatcherDelayS); otherwise raise "
            "locks.settle above that delay")


def version_warning(mine: str, peers: list[PeerView]) -> str | None:
    """A warning when live peers run another MLflow minor version than this host."""
    other = sorted({f"{p.host_id} ({p.mlflow_version})" for p in peers
                    if not p.stale and minor(p.mlflow_version) != minor(mine)})
    if not other:
        return None
    return (f"peers run another MLflow minor version than this host's {mine}: "
            f"{', '.join(other)}; one store should be served by one MLflow version")


def clash(found: Heartbeat | None, mine: Heartbeat | None) -> str | None:
    """A warning when our own heartbeat file was written by another guard since our last
    write: two machines share one host_id, and their files would turn into conflict copies."""
    if found is None or mine is None or found == mine:
        return None
    if (found.pid, found.started_at, found.store) == (mine.pid, mine.started_at, mine.store):
        return None
    return (f"another guard also uses host_id '{mine.host_id}' (pid {found.pid}, store "
            f"{found.store}); give each machine its own host_id in its config")


def clash_copies(names: list[str], host_id: str) -> list[str]:
    """Sync clients' conflict copies of this host's heartbeat file: only another machine
    writing the same file (the same host_id) makes them."""
    own = f"{host_id}.json"
    return sorted(n for n in names
                  if (c := parse_conflict_name(n)) is not None and c.original == own)


def peers_dir(store: Path) -> Path:
    return Path(store) / COORDINATION / PEERS


def publish(store: Path, beat: Heartbeat) -> None:
    """Replace this host's heartbeat file atomically (temp name that sync tools skip)."""
    folder = peers_dir(store)
    mkdirs_in_store(store, folder)
    safepath.write_json(safepath.target_of(store, folder / f"{beat.host_id}.json"),
                        beat.to_json())


def read_all(store: Path) -> list[Heartbeat]:
    """Every well-formed heartbeat; a file must be named after its own host (no copies)."""
    return [beat for beat, _ in read_with_arrival(store)]


def read_with_arrival(store: Path) -> list[tuple[Heartbeat, float]]:
    """Every well-formed heartbeat with its file's ctime: when it arrived here, by this
    machine's clock (a sync client can set mtime, not ctime)."""
    beats = []
    try:
        entries = list(os.scandir(peers_dir(store)))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    for entry in entries:
        if not entry.name.endswith(".json") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            with safeio.open_regular(entry.path) as (fh, st):  # never a FIFO or symlink
                raw = safeio.read_bounded(fh, safeio.RECORD_MAX_BYTES + 1)
            if len(raw) > safeio.RECORD_MAX_BYTES:
                continue
            beat = Heartbeat.from_json(json.loads(raw))
            arrived = st.st_ctime
        except (OSError, ValueError):
            continue
        if beat is not None and entry.name == f"{beat.host_id}.json":
            beats.append((beat, arrived))
    return beats
