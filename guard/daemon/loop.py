"""The daemon: one per machine and state folder, owning exactly one MLflow server.

The daemon is a supervisor of parts (guard.core.parts): the server keeper, the heartbeats, the
gc watch and, as configured, rewriting, conflicts and the vault, all fed by one watcher of the
store. It takes the lock, installs the signals, composes the parts, runs the loop that ticks
them, answers control requests, writes the status assembled from the parts' snapshots and
tells a service manager about readiness. The parts do the work; see each one for what it
never does (create the store, end a process it cannot identify, fill an empty mount point).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib import metadata

import psutil
from filelock import FileLock, Timeout

from guard import __version__
from guard.core import memory, tempfiles
from guard.core.config import Config
from guard.core.journal import Journal
from guard.core.logs import setup_logging
from guard.core.parts import DEADLINE_MIN, Part, PartState, Supervised, ThreadPart
from guard.core.state import StateDir
from guard.core.watch import WatchPart
from guard.daemon import statusdoc
from guard.daemon.statusdoc import Off, Portability, StatusDoc
from guard.portability.fixer import Fixer, RewritePart
from guard.protection.gcwatch import GcWatch
from guard.protection.restorer import RestoreService
from guard.protection.vault import Vault, VaultError
from guard.service import notify, readiness
from guard.supervision import partlife
from guard.supervision.keeper import (
    STORE_CHECK_INTERVAL,
    Keeper,
    RealEffects,
    Settings,
    StartupError,
    policy_of,
)
from guard.supervision.processes import DaemonRecord, ProcRef, running_daemon_pid
from guard.sync import peers
from guard.sync.heartbeats import Heartbeats
from guard.sync.locks import LockSettings
from guard.sync.reconcile import ConflictService, Reconciler

log = logging.getLogger("guard.daemon")

TICK = 0.25
TRIM_EVERY = 30.0  # seconds between giving freed memory back (malloc_trim: about a millisecond)

__all__ = ["AlreadyRunning", "Daemon", "StartupError"]


class AlreadyRunning(Exception):
    pass


def mlflow_version() -> str:
    try:
        return metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        return "not installed"


# ---- the optional parts, as configured ------------------------------------------------------

def conflicts_part(cfg: Config, state: StateDir, hosts: Heartbeats) -> ConflictService | None:
    """Conflict copies: resolved in the background, under the cross-machine lock."""
    if not cfg.conflicts.enabled:
        return None
    reconciler = Reconciler(cfg.require_store(), state.quarantine,
                            Journal(state.conflict_journal), cfg.host_id,
                            state.registration_journal)
    part = ConflictService(reconciler, LockSettings.from_config(cfg),
                           cfg.conflicts.scan_interval, hosts.hosts)
    # a pass may wait for the cross-machine lock that long before it can make progress
    part.deadline = cfg.locks.timeout + cfg.locks.settle + DEADLINE_MIN
    return part


def vault_part(cfg: Config, state: StateDir,
               live_hosts: Callable[[], Sequence[str]] = lambda: ()) -> RestoreService | None:
    """The vault: a local second name of every store file; deletions put back, in turn with
    the other hosts' vaults (`live_hosts`)."""
    v = cfg.vault
    if not v.enabled:
        return None
    vault = Vault(cfg.vault_root, cfg.require_store(), v.copy_max_bytes)
    try:
        vault.open()
    except VaultError as exc:
        raise StartupError(str(exc)) from None
    log.info("vault on (%s, %s) at %s", vault.mode, v.policy, vault.root)
    return RestoreService(vault, Journal(state.vault_journal), cfg.host_id, v.policy,
                          cfg.locks.settle, v.scan_interval, cfg.gc.retention_days * 86400,
                          live_hosts=live_hosts)


def rewrite_part(cfg: Config, state: StateDir, watch: WatchPart) -> RewritePart | None:
    """Portable paths: a full pass now (in its own thread), then on every change."""
    rw = cfg.rewrite
    if not rw.enabled:
        return None
    fixer = Fixer(cfg.require_store(), Journal(state.rewrite_journal), cfg.host_id,
                  foreign_delay=rw.foreign_delay, in_flight_grace=rw.in_flight_grace,
                  experiment_quiet=rw.experiment_quiet, temp_folders=(state.root,))
    return RewritePart(fixer, lambda: watch.mode, rw.poll_interval, rw.full_pass_interval)


def _attempt(what: str, step: Callable[[], object]) -> None:
    """Run one shutdown step; a failure is logged, never raised, so the next step runs."""
    try:
        step()
    except OSError as exc:  # a full or read-only state folder: expected, no traceback
        log.error("shutdown: %s failed: %s; going on", what, exc)
    except Exception:
        log.exception("shutdown: %s failed; going on", what)


def seen_of(part: Supervised) -> partlife.Seen:
    """What the daemon sees of a part this turn, for its life's next step."""
    return partlife.Seen(part.crashes, part.error, part.alive, part.idle, part.last_tick,
                         part.deadline, part.held, part.paused.is_set())


def _log_phase(name: str, before: partlife.Life, life: partlife.Life) -> None:
    if life.phase is partlife.CRASH_LOOP:
        log.error("%s failed %d times within restart.crash_loop_window; not restarted until "
                  "`guardctl restart`: %s", name, len(life.failures), life.last_error)
    elif life.phase is partlife.BACKOFF and before.phase is not partlife.BACKOFF:
        log.error("%s failed: %s; restarting it in %.1f s", name, life.last_error,
                  (life.next_start_at or 0) - time.time())
    elif life.phase is partlife.STUCK:
        log.error("%s is stuck: no progress for more than its deadline; the service "
                  "manager's watchdog restarts the daemon (if there is one)", name)
    elif before.phase is partlife.STUCK:
        log.warning("%s is making progress again", name)


class Daemon:
    def __init__(self, cfg: Config, wait_for_store: bool = False,
                 reporter: readiness.Reporter | None = None,
                 log_handlers: Sequence[logging.Handler] = ()) -> None:
        """`reporter` hears readiness and liveness (by default systemd, when it started us);
        `log_handlers` get the daemon's log too (the Windows Event Log)."""
        self.cfg = cfg
        self.log_handlers = log_handlers
        self.reporter = reporter if reporter is not None else notify.from_environment()
        self.told = readiness.Told()
        self.store = cfg.require_store()
        self.wait_for_store = wait_for_store
        self.state = StateDir(cfg.state_dir)
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.me = ProcRef(os.getpid(), psutil.Process().create_time())
        self.mlflow_version = mlflow_version()  # looked up once: it cannot change under us
        settings = Settings.from_config(cfg)
        self.url = settings.url
        self.keeper = Keeper(RealEffects(cfg, self.state, self.me), policy_of(cfg), settings)
        self.peers = Heartbeats(self.store, peers.Heartbeat(
            host_id=cfg.host_id, pid=self.me.pid, guard_version=__version__,
            mlflow_version=self.mlflow_version, platform=sys.platform, store=str(self.store),
            started_at=self.started_at, last_seen=0.0, interval=cfg.peers.heartbeat_interval),
            cfg.peers.stale_after, max_gap=cfg.peers.stale_after - cfg.locks.settle,
            settle=cfg.locks.settle)
        self.gc = GcWatch(str(self.store), cfg.server.port)
        self.watch = WatchPart(self.store, cfg.rewrite.watch, [])
        self.conflicts: ConflictService | None = None
        self.vault: RestoreService | None = None
        self.rewrite: RewritePart | None = None
        self.background: list[ThreadPart] = []  # the parts with a thread, as started
        self.lives: dict[str, partlife.Life] = {}  # each supervised part's life, by name
        self._last_status_write = 0.0
        self._last_trim = 0.0
        self._status_write_failed = False

    @property
    def parts(self) -> list[Part]:
        return [self.keeper, self.peers, self.gc, *self.background]

    @property
    def supervised(self) -> list[Supervised]:
        """The parts the daemon restarts (the keeper supervises its server itself)."""
        return [self.peers, self.gc, *self.background]

    # ---- entry point -------------------------------------------------------------------
    def run(self) -> int:
        self.state.create()
        lock = FileLock(str(self.state.lock), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            pid = running_daemon_pid(self.state)
            raise AlreadyRunning(
                f"already running (pid {pid if pid else 'unknown'}) for state folder "
                f"{self.state.root}; `guardctl status` shows it, `guardctl stop` ends it"
            ) from None
        try:
            setup_logging(self.state.guard_log, self.cfg.log, self.log_handlers)
            self._install_signals()
            log.info("mlflow-guard %s starting (pid %s) for store %s", __version__,
                     self.me.pid, self.store)
            tempfiles.sweep(self.state.root)  # what a killed daemon left (status, pids...)
            self.write_status(force=True)
            if not self._await_store():
                return 0 if self.stopping.is_set() else 2
            self.keeper.start()
            self._start_background()
            self._loop()
            return 0
        finally:
            survivors = self._shutdown()
            lock.release()
            if survivors:
                log.error("could not end pids %s", survivors)

    # ---- startup ----------------------------------------------------------------------
    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in ("SIGTERM", "SIGINT", "SIGBREAK", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), lambda *_: self.stopping.set())

    def _await_store(self) -> bool:
        """Return once the store is usable; False if told to stop first."""
        while not self.stopping.is_set():
            if self.keeper.store_ready(self.wait_for_store):
                return True
            self.write_status(force=True)
            self._tell()
            self.stopping.wait(1.0)
        return False

    def _live_hosts(self) -> list[str]:
        """The other hosts whose guard runs now (fresh heartbeats), as the vault's turn needs."""
        return [v.host_id for v in self.peers.report.hosts if not v.stale]

    def _start_background(self) -> None:
        """The parts with threads, as configured, all fed by the one watcher. The watcher
        starts first: a change made during a part's first pass waits in its inbox."""
        self.rewrite = rewrite_part(self.cfg, self.state, self.watch)
        self.conflicts = conflicts_part(self.cfg, self.state, self.peers)
        # may refuse to start: StartupError
        self.vault = vault_part(self.cfg, self.state, self._live_hosts)
        services = [p for p in (self.rewrite, self.conflicts, self.vault) if p]
        if not services:
            return
        self.watch.subscribers.extend(services)
        self.background = [self.watch, *services]
        self.watch.start()
        for part in services:
            part.start()
        if self.rewrite is not None:
            log.info("path rewriting on (%s)", self.watch.mode)
        else:
            log.info("watching the store by %s", self.watch.mode)

    # ---- the loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._tell()
            self._handle_request()
            now = time.time()
            store_ok = self.keeper.check_store(now)
            self._pause(not store_ok)
            phase = self.keeper.phase
            self._supervise(now)
            if store_ok:
                for ticked in (self.peers, self.gc):
                    if partlife.runs(self.life(ticked)):
                        ticked.tick(now)
                self.keeper.tick(now)
            self.write_status(force=self.keeper.phase is not phase)
            self._give_back_memory()
            self.stopping.wait(TICK if store_ok else STORE_CHECK_INTERVAL)

    def _pause(self, paused: bool) -> None:
        """Every part but the keeper (which pauses itself) stops touching a lost store."""
        for part in self.parts:
            if part is self.keeper:
                continue
            if paused:
                part.paused.set()
            else:
                part.paused.clear()

    # ---- the parts' lives ----------------------------------------------------------------
    def life(self, part: Part) -> partlife.Life:
        return self.lives.get(part.name, partlife.Life())

    def _supervise(self, now: float) -> None:
        """Each part's life after a look at it (guard.supervision.partlife decides): a part
        that failed is restarted after its backoff, or left in a crash loop."""
        for part in self.supervised:
            before = self.life(part)
            life, restart = partlife.step(before, seen_of(part), now, self.keeper.policy)
            self.lives[part.name] = life
            if life.phase is not before.phase:
                _log_phase(part.name, before, life)
            if restart:
                log.warning("restarting %s (restart %d)", part.name, life.restarts)
                part.restart()

    def _resume_parts(self, now: float) -> None:
        """`guardctl restart`: the parts that failed are restarted at once, crash loop or not."""
        for name, life in self.lives.items():
            self.lives[name] = partlife.resumed(life, now)

    def part_state(self, part: Part) -> PartState:
        """The part's entry in the status: how it is doing and where it is in its life."""
        life = self.life(part)
        return PartState(part.error, part.paused.is_set(), part.last_tick, life.phase,
                         getattr(part, "held", None), life.restarts, life.last_error,
                         life.next_start_at)

    def _tell(self) -> None:
        """Readiness, liveness and a status line for the service manager, if there is one.
        Called from the loop's own thread, so a hung loop stops the watchdog pings, and so
        does a stuck part: the manager then restarts the daemon, which ends the stuck thread."""
        if self.reporter is None:
            return
        stuck = any(life.phase is partlife.STUCK for life in self.lives.values())
        advice, self.told = readiness.advise(
            self.keeper.phase, self.keeper.health.ok, self.url,
            self.keeper.message, self.told, time.monotonic(), self.reporter.every, stuck=stuck)
        if advice != readiness.Advice():
            self.reporter.send(advice)

    def _give_back_memory(self) -> None:
        """Every TRIM_EVERY seconds, hand the memory the parts' passes freed back to the
        system (guard.core.memory): the idle daemon stays small on a large store."""
        now = time.monotonic()
        if now - self._last_trim >= TRIM_EVERY:
            self._last_trim = now
            memory.give_back()

    def _handle_request(self) -> None:
        req = self.state.take_request()
        if not req:
            return
        command = req.get("command")
        log.info("request: %s", command)
        if command == "stop":
            self.stopping.set()
        elif command == "restart":
            now = time.time()
            self.keeper.restart(now)
            self._resume_parts(now)
        else:
            log.warning("ignoring unknown request %r", command)

    def _shutdown(self) -> list[int]:
        """End the server tree first, then stop the parts and write the last status. Each step
        that fails (a full or read-only state folder, a part that raises) is logged and the
        next one runs: no failure here may leave a server behind or skip the lock's release."""
        self.keeper.begin_stop()
        _attempt("telling the service manager", self._tell)
        _attempt("ending the server tree", self.keeper.stop)
        for part in self.background:
            _attempt(f"stopping {part.name}", part.stop)
        _attempt("the last heartbeat", self.peers.stop)  # peers see a clean stop at once
        _attempt("writing the status", lambda: self.write_status(force=True))
        log.info("stopped")
        return self.keeper.survivors

    # ---- status -------------------------------------------------------------------------
    def status_doc(self) -> StatusDoc:
        """The status, from the parts' figures (a part not configured is `Off`)."""
        return StatusDoc(
            guard_version=__version__,
            daemon=DaemonRecord(self.me.pid, self.me.create_time, self.started_at),
            keeper=self.keeper.snapshot(),
            store=str(self.store),
            host_id=self.cfg.host_id,
            mlflow_version=self.mlflow_version,
            config_file=str(self.cfg.file) if self.cfg.file else None,
            state_dir=str(self.state.root),
            log_file=str(self.state.guard_log),
            server_log_file=str(self.state.server_log),
            port=self.cfg.server.port,
            portability=Portability(
                self.rewrite.snapshot() if self.rewrite else Off(),
                self.watch.snapshot() if self.watch in self.background else None),
            peers=self.peers.snapshot(),
            conflicts=self.conflicts.snapshot() if self.conflicts else Off(),
            vault=self.vault.snapshot() if self.vault else Off(),
            gc_processes=tuple(self.gc.seen),
            parts={p.name: self.part_state(p) for p in self.parts},
            updated_at=time.time(),
        )

    def write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status_write < 1.0:
            return
        self._last_status_write = now
        try:
            statusdoc.write_status(self.state.status, self.status_doc())
        except OSError as exc:
            # A full or read-only state folder must not take the server down with the daemon:
            # keep guarding; `guardctl status` sees the file age and says "not responding".
            if not self._status_write_failed:
                log.error("cannot write the status file %s: %s; the guard keeps running, "
                          "free space in the state folder", self.state.status, exc)
            self._status_write_failed = True
        else:
            if self._status_write_failed:
                log.info("status file written again")
            self._status_write_failed = False
