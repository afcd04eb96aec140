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
from guard.sync import settle as settling
from guard.sync.leases import Lease
from guard.sync.peers import read_all, read_with_arrival

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


# Lag samples this process has seen, by store: (host, written) -> Beat, for settle.RECENT s
_SAMPLES: dict[str, dict[tuple[str, float], settling.Beat]] = {}
_SAMPLES_LOCK = threading.Lock()


def remember(key: str, beats: list[settling.Beat], now: float) -> list[settling.Beat]:
    """The heartbeats seen now plus the ones seen in the last settle.RECENT seconds."""
    with _SAMPLES_LOCK:
        kept = _SAMPLES.setdefault(key, {})
        for beat in beats:
            kept[beat.host_id, beat.written] = beat
        for k in [k for k, b in kept.items() if b.arrived < now - settling.RECENT]:
            del kept[k]
        return list(kept.values())


def waiting_words(decision: leases.Decision, now: float) -> str:
    """What a waiting acquire is waiting for, for a person: the decision's reason, and how
    long at most when the situation changes on its own then."""
    left = f" ({decision.until - now:.0f} s more at most)" \
        if decision.until is not None and decision.until > now else ""
    return f"{decision.why}{left}"


class LeaseLock:
    """One resource's lease lock for this host, over a sync-replicated store.

    `settle` is the ceiling (locks.settle). With `beats` (the heartbeats as seen here, with
    their arrival) each claim settles for the sync delay measured from them
    (settling.effective_settle); without, every claim settles the ceiling."""

    def __init__(self, store: Path, host_id: str, resource: str, settle: float, ttl: float,
                 renew_every: float, skew: float = 0.0, stale_after: float = float("inf"),
                 heartbeats: Callable[[], Mapping[str, float]] | None = None,
                 beats: Callable[[], list[settling.Beat]] | None = None) -> None:
        self.folder = locks_dir(store) / resource
        self.store = str(store)
        self.host_id, self.resource = host_id, resource
        self.settle, self.ttl, self.renew_every = settle, ttl, renew_every
        self.skew, self.stale_after = skew, stale_after
        self.heartbeats = heartbeats or (lambda: {})
        self.beats = beats
        self.mine: Lease | None = None
        self.claim_settle: settling.Settle | None = None  # our current claim's, highest seen
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

    def _settle(self, now: float, beats: list[settling.Beat] | None) -> settling.Settle:
        """Our claim's settle as seen now: the highest value since we claimed."""
        if beats is None:
            return settling.Settle(self.settle, False, "locks.settle")
        mine = self.mine
        at = mine.claimed_at if mine is not None and mine.state == leases.CLAIMING else now
        got = settling.effective_settle(remember(self.store, beats, now), self.host_id, now,
                                      self.settle, self.stale_after, self.skew, claimed_at=at)
        if self.claim_settle is not None and mine is not None \
                and mine.state == leases.CLAIMING:
            got = settling.Settle(max(got.seconds, self.claim_settle.seconds),
                                  got.unannounced or self.claim_settle.unannounced, got.why)
        return got

    def _decide(self, now: float) -> leases.Decision:
        if self.beats is not None:
            beats: list[settling.Beat] | None = self.beats()
            assert beats is not None
            times: dict[str, float] = {}
            for beat in beats:
                times[beat.host_id] = max(beat.written, times.get(beat.host_id, beat.written))
        else:
            beats, times = None, dict(self.heartbeats())
        self.claim_settle = self._settle(now, beats)
        return leases.decide_acquire(self.mine, read_leases(self.folder), self.host_id, now,
                                     self.claim_settle.seconds, times, self.stale_after,
                                     self.skew, unannounced=self.claim_settle.unannounced)

    def acquire(self, timeout: float, on_wait: Callable[[str], None] | None = None) -> None:
        """Block until this host holds the lock, or raise LockTimeout naming the holder.
        `on_wait` hears why, each time round while it waits (settling a claim takes up to
        locks.settle, 15 s: a person at a terminal is told what the wait is)."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.time()
            with self._lock:
                decision = self._decide(now)
                if decision.action == leases.CLAIM:
                    self._write(leases.claim(self.resource, self.host_id, now, self.ttl,
                                             uuid.uuid4().hex))
                    self.claim_settle = None  # a fresh claim: its own settle from now on
                    continue
                if decision.action == leases.QUEUE:
                    self._write(leases.queue(self.resource, self.host_id, now, self.ttl,
                                             uuid.uuid4().hex))
                    continue
                if decision.action == leases.TAKE:
                    assert self.mine is not None  # only a claim of ours is ever taken
                    if self.claim_settle is not None:
                        log.debug("%s: taken after settling %.1f s (%s)", self.resource,
                                  self.claim_settle.seconds, self.claim_settle.why)
                    self._write(leases.take(self.mine, now, self.ttl))
                    self._start_renewer()
                    return
                if decision.action == leases.HOLD:
                    return
                if decision.action == leases.WITHDRAW:
                    assert self.mine is not None  # only a lease of ours is ever withdrawn
                    self._write(leases.release(self.mine, now))
                    self.mine = None
                elif self.mine is not None and leases.renew_due(self.mine, now,
                                                               self.renew_every):
                    self._write(leases.renew(self.mine, now, self.ttl))  # waiting, settling
            if time.monotonic() > deadline:
                self._give_up(now)
                raise LockTimeout(f"{self.resource}: not acquired within {timeout:g} s "
                                  f"({decision.why})")
            wake = decision.until if decision.until is not None else now + self.poll
            if on_wait is not None:
                on_wait(waiting_words(decision, now))
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

    def others_waiting(self) -> bool:
        """Whether a live 'waiting' record of another host is visible: it wants the lock."""
        now = time.time()
        if self.beats is not None:
            times: dict[str, float] = {}
            for beat in self.beats():
                times[beat.host_id] = max(beat.written, times.get(beat.host_id, beat.written))
        else:
            times = dict(self.heartbeats())
        return any(lease.host_id != self.host_id and lease.state == leases.WAITING
                   and leases.live(lease, now, times, self.stale_after, self.skew)
                   for lease in read_leases(self.folder))

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
        self._lock = FileLock(str(self.path), thread_local=False)  # released by any thread

    def acquire(self, timeout: float, on_wait: Callable[[str], None] | None = None) -> None:
        _in_store(self.path)
        try:
            _acquire_file_lock(self._lock, timeout, on_wait,
                               f"another machine holds {self.resource}")
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

    def others_waiting(self) -> bool:
        return False  # the share's server queues them, unseen

    def release(self) -> None:
        _unlink(self.holder)
        self._lock.release()


def _acquire_file_lock(lock: FileLock, timeout: float, on_wait: Callable[[str], None] | None,
                       why: str) -> None:
    """`lock.acquire(timeout)`, telling `on_wait` why about twice a second while it waits."""
    if on_wait is None:
        lock.acquire(timeout=timeout)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.acquire(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            return
        except FileLockTimeout:
            if time.monotonic() >= deadline:
                raise
            on_wait(why)


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


def heartbeat_beats(store: Path) -> list[settling.Beat]:
    """Each host's last heartbeat with its arrival here, as the settle needs it."""
    return [settling.Beat(beat.host_id, beat.last_seen, arrived, beat.state == "running",
                          beat.beating_since, beat.interval)
            for beat, arrived in read_with_arrival(store)]


WANTED = ".wanted"  # the marker a process of this host adds a byte to when it must wait


class HostLock:
    """A cross-machine lock that also serializes this host's own processes.

    Every process of one host (the server's workers, guardctl) shares one lease file per
    resource, so they first take a local file lock in the state folder; only then does the
    backend lock (lease or OS) arbitrate between machines. A process that finds the local
    lock taken adds a byte to `<resource>.wanted` beside it before it waits, so that a lock kept
    lingering (Lingering) is given up for it at once. The local lock is not thread-local: a
    lingering lock is released by another thread than the one that took it.
    """

    def __init__(self, settings: LockSettings, resource: str) -> None:
        self.settings, self.resource = settings, resource
        local = Path(settings.state_dir) / LOCKS
        local.mkdir(parents=True, exist_ok=True)
        self.local = FileLock(str(local / f"{resource}.lock"), thread_local=False)
        self.wanted = local / f"{resource}{WANTED}"
        self._wants_seen = 0
        store = Path(settings.store)
        if settings.backend == LockBackend.OS:
            self.backend: LeaseLock | OsLock = OsLock(store, settings.host_id, resource)
        else:
            self.backend = LeaseLock(store, settings.host_id, resource, settings.settle,
                                     settings.ttl, settings.renew_every, settings.skew,
                                     settings.stale_after, beats=lambda: heartbeat_beats(store))

    def acquire(self, timeout: float | None = None,
                on_wait: Callable[[str], None] | None = None) -> None:
        """Block until held, or raise LockTimeout saying who holds it; `on_wait` hears what
        the wait is for while it lasts (for a progress line)."""
        timeout = self.settings.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            try:
                self.local.acquire(timeout=0)
            except FileLockTimeout:
                self._want()
                _acquire_file_lock(self.local, timeout, on_wait,
                                   f"another process of this host holds {self.resource}")
        except FileLockTimeout:
            raise LockTimeout(f"{self.resource}: another process of this host "
                              f"({self.settings.host_id}) held it for {timeout:g} s") from None
        try:
            self.backend.acquire(max(0.0, deadline - time.monotonic()), on_wait)
        except BaseException:
            self.local.release()
            raise
        self._wants_seen = self._wants()

    def _want(self) -> None:
        """Tell a process of this host keeping the lock lingering that we wait for it: one
        byte more in the marker (its size counts the waits; a file time would be too coarse)."""
        try:
            with open(self.wanted, "ab") as marker:
                marker.write(b".")
        except OSError:
            pass  # it then lingers to the end: at most LINGER seconds

    def _wants(self) -> int:
        """The marker's count of waits, emptied now and then while we hold the local lock (a
        wait written meanwhile may be missed: that waiter waits out the linger)."""
        try:
            size = self.wanted.stat().st_size
            if size > 4096:
                os.truncate(self.wanted, 0)
                size = 0
        except OSError:
            return 0
        return size

    def wanted_here(self) -> bool:
        """Whether a process (or thread) of this host began waiting since we took the lock."""
        try:
            return self.wanted.stat().st_size != self._wants_seen
        except OSError:
            return False

    def holding(self) -> bool:
        return self.backend.holding()

    def others_waiting(self) -> bool:
        """Whether another host shows that it waits for the lock ('waiting' record)."""
        try:
            return self.backend.others_waiting()
        except OSError:
            return True  # unsure: do not keep it from anyone

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


LINGER = 3.0
"""Seconds a model name's lock is kept after a successful registered-models/create.

MLflow's `register_model` sends registered-models/create and, a few requests later,
model-versions/create for the same name; both hold the name's lock. Released in between, the
second would claim again and settle again (the measured sync delay with a live peer, up to
locks.settle), so registering a new model cost two settles. Kept, the version create finds the
lock held by this process and goes on at once (Lingering.take). Holding longer never breaks
mutual exclusion (the lease is renewed while held). It ends early when anyone else wants the
lock: another host's 'waiting' record visible here, or a process or thread of this host
waiting for the local lock (the wanted marker); so a waiting host waits at most this much
longer than it would have, and none once its record has synced."""


def linger_over(now: float, until: float, holding: bool, wanted_here: bool,
                others_waiting: bool) -> str | None:
    """Why a lingering lock must be given up now (None: keep it a while longer)."""
    if not holding:
        return "no longer held"
    if wanted_here:
        return "a process of this host waits for it"
    if others_waiting:
        return "another host waits for it"
    if now >= until:
        return "the linger is over"
    return None


class Lingering:
    """Held locks kept by one process after the request that took them, by resource: the
    next request on the resource takes the lock over (`take`) instead of claiming again;
    otherwise a watcher releases it when `linger_over` says so. `release_all` at shutdown."""

    def __init__(self, poll: float = 0.1) -> None:
        self.poll = poll
        self._kept: dict[str, tuple[HostLock, threading.Event]] = {}
        self._lock = threading.Lock()

    def keep(self, lock: HostLock, seconds: float) -> None:
        """Keep a held lock for `seconds` (0 or less: release it now)."""
        if seconds <= 0:
            lock.release()
            return
        stop = threading.Event()
        with self._lock:
            old = self._kept.pop(lock.resource, None)
            self._kept[lock.resource] = (lock, stop)
        if old is not None:  # cannot happen: the local lock keeps a resource to one holder
            old[1].set()
            old[0].release()
        until = time.time() + seconds
        try:
            threading.Thread(target=self._watch, args=(lock, stop, until), daemon=True,
                             name=f"linger-{lock.resource}").start()
        except RuntimeError:  # no thread to end the linger: no linger
            if self.take(lock.resource) is lock:
                lock.release()

    def take(self, resource: str) -> HostLock | None:
        """The kept lock of `resource`, now the caller's to release; None when none is kept
        (or it is no longer held: then it is released here)."""
        with self._lock:
            found = self._kept.pop(resource, None)
        if found is None:
            return None
        lock, stop = found
        stop.set()
        if lock.holding():
            return lock
        lock.release()
        return None

    def _watch(self, lock: HostLock, stop: threading.Event, until: float) -> None:
        while not stop.wait(self.poll):
            try:
                why = linger_over(time.time(), until, lock.holding(), lock.wanted_here(),
                                  lock.others_waiting())
            except Exception as exc:  # never keep a lock nobody watches
                why = f"could not look: {exc}"
            if why is None:
                continue
            with self._lock:
                if self._kept.get(lock.resource, (None, None))[0] is not lock:
                    return  # taken over meanwhile
                del self._kept[lock.resource]
            log.debug("%s: released after lingering (%s)", lock.resource, why)
            try:
                lock.release()
            except Exception as exc:  # its lease then expires (locks.ttl)
                log.warning("%s: could not release: %s", lock.resource, exc)
            return

    def release_all(self) -> None:
        """Release every kept lock (the server shuts down)."""
        with self._lock:
            kept = list(self._kept.values())
            self._kept.clear()
        for lock, stop in kept:
            stop.set()
            try:
                lock.release()
            except Exception as exc:  # the others still get released
                log.warning("%s: could not release: %s", lock.resource, exc)
