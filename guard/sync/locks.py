"""Cross-machine locks in the store's coordination folder: the I/O shell around leases.py.

Two backends (`locks.backend`):
- lease: for a folder a sync client replicates. One file per resource and host,
  `mlflow-guard.trash/locks/<resource>/<host_id>.json`, written only by that host; the
  decisions (claim, settle, take, withdraw) are leases.decide_acquire's.
- os: for a NAS share mounted on every machine: an OS file lock (filelock) on
  `mlflow-guard.trash/locks/<resource>.lock`, which the share's server arbitrates.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from guard.core import safeio, safepath
from guard.core.config import Config, LockBackend
from guard.core.layout import COORDINATION
from guard.core.store import mkdirs_in_store
from guard.sync import leases
from guard.sync.leases import Lease
from guard.sync.peers import read_all

log = logging.getLogger("guard.locks")
LOCKS = "locks"


ENV = "MLFLOW_GUARD_LOCKS"  # the settings, as JSON, for the server processes the guard starts


class LockTimeout(Exception):
    """The lock could not be had in time; the message names who has it."""


@dataclass(frozen=True)
class LockSettings:
    """Everything a process needs to take this host's cross-machine locks."""

    store: str
    state_dir: str
    host_id: str
    backend: str
    settle: float
    ttl: float
    renew_every: float
    skew: float
    timeout: float
    stale_after: float

    @classmethod
    def from_config(cls, cfg: Config) -> LockSettings:
        return cls(str(cfg.require_store()), str(cfg.state_dir), cfg.host_id, cfg.locks.backend,
                   cfg.locks.settle, cfg.locks.ttl, cfg.locks.renew_every, cfg.locks.skew,
                   cfg.locks.timeout, cfg.peers.stale_after)

    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, text: str) -> LockSettings:
        return cls(**json.loads(text))


def locks_dir(store: Path) -> Path:
    return Path(store) / COORDINATION / LOCKS


def _in_store(path: Path) -> None:
    """Create the folders of a lock file below the coordination area, never the store."""
    area = next(p for p in path.parents if p.name == COORDINATION)
    mkdirs_in_store(area.parent, path.parent)


def _below_store(path: Path) -> safepath.Target:
    """A lock file as a Target below the store (the folder above the coordination area)."""
    area = next(p for p in path.parents if p.name == COORDINATION)
    return safepath.target_of(area.parent, path)


def _write_json(path: Path, data: dict) -> None:
    _in_store(path)
    safepath.write_json(_below_store(path), data)


def _unlink(path: Path) -> None:
    """Remove our own lock file, never through a symlinked folder (absent: nothing to do)."""
    try:
        safepath.unlink(_below_store(path))
    except FileNotFoundError:
        pass


def _read_record(path: str | Path) -> Any:
    """A lock record's JSON; a FIFO or symlink in its place is refused unopened (OSError)."""
    return json.loads(safeio.read_bytes(path, safeio.RECORD_MAX_BYTES))


def read_leases(folder: Path) -> list[Lease]:
    """The well-formed lease files of one resource (each named after its host)."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    names = {f.name for f in fields(Lease)}
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        try:
            data = _read_record(entry.path)
            lease = Lease(**{k: v for k, v in data.items() if k in names})
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if entry.name == f"{lease.host_id}.json":
            out.append(lease)
    return out


class LeaseLock:
    """One resource's lease lock for this host, over a sync-replicated store."""

    def __init__(self, store: Path, host_id: str, resource: str, settle: float, ttl: float,
                 renew_every: float, skew: float = 0.0, stale_after: float = float("inf"),
                 heartbeats: Callable[[], Mapping[str, float]] | None = None) -> None:
        self.folder = locks_dir(store) / resource
        self.host_id, self.resource = host_id, resource
        self.settle, self.ttl, self.renew_every = settle, ttl, renew_every
        self.skew, self.stale_after = skew, stale_after
        self.heartbeats = heartbeats or (lambda: {})
        self.mine: Lease | None = None
        self.poll = max(0.05, min(0.5, settle / 5))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.folder / f"{self.host_id}.json"

    def _write(self, lease: Lease) -> None:
        _write_json(self.path, asdict(lease))
        self.mine = lease

    def _decide(self, now: float) -> leases.Decision:
        return leases.decide_acquire(self.mine, read_leases(self.folder), self.host_id, now,
                                     self.settle, dict(self.heartbeats()), self.stale_after,
                                     self.skew)

    def acquire(self, timeout: float) -> None:
        """Block until this host holds the lock, or raise LockTimeout naming the holder."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.time()
            with self._lock:
                decision = self._decide(now)
                if decision.action == leases.CLAIM:
                    self._write(leases.claim(self.resource, self.host_id, now, self.ttl,
                                             uuid.uuid4().hex))
                    continue
                if decision.action == leases.TAKE:
                    assert self.mine is not None  # only a claim of ours is ever taken
                    self._write(leases.take(self.mine, now, self.ttl))
                    self._start_renewer()
                    return
                if decision.action == leases.HOLD:
                    return
                if decision.action == leases.WITHDRAW:
                    assert self.mine is not None  # only a lease of ours is ever withdrawn
                    self._write(leases.release(self.mine, now))
                    self.mine = None
            if time.monotonic() > deadline:
                self._give_up(now)
                raise LockTimeout(f"{self.resource}: not acquired within {timeout:g} s "
                                  f"({decision.why})")
            wake = decision.until if decision.until is not None else now + self.poll
            time.sleep(max(0.0, min(wake - time.time(), self.poll)))

    def _give_up(self, now: float) -> None:
        with self._lock:
            if self.mine is not None and not self.mine.released:
                self._write(leases.release(self.mine, now))
            self.mine = None

    def _start_renewer(self) -> None:
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.resource}",
                                         daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(min(self.renew_every, self.poll * 4)):
            now = time.time()
            with self._lock:
                if self.mine is None or self.mine.released:
                    return
                beaten = leases.must_step_down(self.mine, read_leases(self.folder), now,
                                               dict(self.heartbeats()), self.stale_after,
                                               self.skew)
                if beaten is not None:
                    log.error("%s: %s holds it too and claimed first; stepping down",
                              self.resource, beaten.host_id)
                    self._write(leases.release(self.mine, now))
                    return
                if leases.renew_due(self.mine, now, self.renew_every):
                    self._write(leases.renew(self.mine, now, self.ttl))

    def holding(self) -> bool:
        return leases.holding(self.mine, time.time())

    def release(self) -> None:
        """Give the lock up: stop renewing, mark ours released, then remove our file."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self._give_up(time.time())
        _unlink(self.path)


class OsLock:
    """One resource's lock on a NAS share that every machine mounts: the OS arbitrates."""

    def __init__(self, store: Path, host_id: str, resource: str) -> None:
        self.path = locks_dir(store) / f"{resource}.lock"
        self.holder = locks_dir(store) / f"{resource}.holder.json"
        self.host_id, self.resource = host_id, resource
        self._lock = FileLock(str(self.path))

    def acquire(self, timeout: float) -> None:
        _in_store(self.path)
        try:
            self._lock.acquire(timeout=timeout)
        except FileLockTimeout:
            holder = self.holder_info()
            who = f" (held by {holder['host_id']})" if holder else ""
            raise LockTimeout(f"{self.resource}: not acquired within {timeout:g} s{who}") from None
        _write_json(self.holder, {"host_id": self.host_id, "since": time.time()})

    def holder_info(self) -> dict | None:
        try:
            return _read_record(self.holder)
        except (OSError, ValueError):
            return None

    def holding(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        _unlink(self.holder)
        self._lock.release()


def _os_lock_taken(path: Path) -> bool:
    probe = FileLock(str(path))
    try:
        probe.acquire(timeout=0)
    except FileLockTimeout:
        return True
    probe.release()
    return False


def list_locks(store: Path, now: float) -> list[dict]:
    """Every lock record in the store, for `guardctl locks`."""
    root = locks_dir(store)
    out = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            for lease in read_leases(Path(entry.path)):
                out.append({"backend": LockBackend.LEASE, "resource": lease.resource,
                            "holder": lease.host_id, "state": lease.state,
                            "released": lease.released, "age_s": round(now - lease.claimed_at, 1),
                            "text": leases.describe(lease, now)})
        elif entry.name.endswith(".holder.json"):
            try:
                info = _read_record(entry.path)
            except (OSError, ValueError):
                continue
            resource = entry.name[:-len(".holder.json")]
            if not _os_lock_taken(root / f"{resource}.lock"):
                continue  # a holder that died without cleaning up; the OS freed its lock
            out.append({"backend": LockBackend.OS, "resource": resource,
                        "holder": info.get("host_id"), "state": "held", "released": False,
                        "age_s": round(now - float(info.get("since", now)), 1),
                        "text": f"{resource}: held by {info.get('host_id')} (OS lock)"})
    return out


def heartbeat_times(store: Path) -> dict[str, float]:
    """Each host's last heartbeat, as lease liveness needs it."""
    return {beat.host_id: beat.last_seen for beat in read_all(store)}


class HostLock:
    """A cross-machine lock that also serializes this host's own processes.

    Every process of one host (the server's workers, guardctl) shares one lease file per
    resource, so they first take a local file lock in the state folder; only then does the
    backend lock (lease or OS) arbitrate between machines.
    """

    def __init__(self, settings: LockSettings, resource: str) -> None:
        self.settings, self.resource = settings, resource
        local = Path(settings.state_dir) / LOCKS
        local.mkdir(parents=True, exist_ok=True)
        self.local = FileLock(str(local / f"{resource}.lock"))
        store = Path(settings.store)
        if settings.backend == LockBackend.OS:
            self.backend: LeaseLock | OsLock = OsLock(store, settings.host_id, resource)
        else:
            self.backend = LeaseLock(store, settings.host_id, resource, settings.settle,
                                     settings.ttl, settings.renew_every, settings.skew,
                                     settings.stale_after, lambda: heartbeat_times(store))

    def acquire(self, timeout: float | None = None) -> None:
        """Block until held, or raise LockTimeout saying who holds it."""
        timeout = self.settings.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            self.local.acquire(timeout=timeout)
        except FileLockTimeout:
            raise LockTimeout(f"{self.resource}: another process of this host "
                              f"({self.settings.host_id}) held it for {timeout:g} s") from None
        try:
            self.backend.acquire(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.local.release()
            raise

    def release(self) -> None:
        try:
            self.backend.release()
        finally:
            self.local.release()

    def __enter__(self) -> HostLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
