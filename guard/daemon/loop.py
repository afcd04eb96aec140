"""The daemon: one per machine and state folder, owning exactly one MLflow server.

The loop wires the pure parts together: `supervisor` decides, `server` and `processes` act,
`state` records. It never creates the store, never ends a process it cannot identify as an
MLflow server over this store (or its own), and leaves nothing of the server tree behind.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Sequence

import psutil
from filelock import FileLock, Timeout

from guard import __version__
from guard.service import notify
from guard.sync import peers
from guard.service import readiness
from guard.supervision import supervisor
from guard.core.config import Config
from guard.portability.fixer import Fixer, FixerService
from guard.core.journal import Journal
from guard.sync.locks import LockSettings
from guard.core.logs import server_output_logger, setup_logging
from guard.supervision.processes import Census, ProcRef, alive, classify, end_tree, gc_processes, snapshot
from guard.sync.reconcile import ConflictService, Reconciler
from guard.protection.restorer import RestoreService
from guard.supervision.server import ServerProcess, probe_health, server_url
from guard.core.state import StateDir, read_json, write_json_atomic
from guard.core.store import inspect_store
from guard.supervision.supervisor import Phase
from guard.protection.vault import Vault, VaultError

log = logging.getLogger("guard.daemon")

TICK = 0.25
STARTING_PROBE_INTERVAL = 0.5
STORE_CHECK_INTERVAL = 2.0
WAIT_REPORT_INTERVAL = 5.0
GC_CHECK_INTERVAL = 5.0


class AlreadyRunning(Exception):
    pass


class StartupError(Exception):
    pass


def running_daemon_pid(state: StateDir) -> int | None:
    """The pid of the live daemon named in the status file, if any."""
    doc = read_json(state.status) or {}
    try:
        ref = ProcRef.from_json(doc["daemon"])
    except (KeyError, TypeError, ValueError):
        return None
    return ref.pid if alive(ref) else None


def port_bindable(host: str, port: int) -> bool:
    """Whether we could listen on host:port now (catches listeners we cannot see)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def mlflow_version() -> str:
    try:
        return metadata.version("mlflow")
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(procs) -> str:
    return "; ".join(f"pid {p.pid} ({p.command[:160]})" for p in procs)


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
        self.policy = supervisor.Policy(
            backoff_initial=cfg.restart.backoff_initial, backoff_max=cfg.restart.backoff_max,
            crash_loop_count=cfg.restart.crash_loop_count,
            crash_loop_window=cfg.restart.crash_loop_window,
            startup_timeout=cfg.server.startup_timeout,
            health_failures=cfg.server.health_failures, stable_after=cfg.restart.stable_after,
        )
        self.sup = supervisor.State()
        self.url = server_url(cfg.server.host, cfg.server.port)
        self.server: ServerProcess | None = None
        self.fixer: FixerService | None = None
        self.conflicts: ConflictService | None = None
        self.vault: RestoreService | None = None
        self.gc_seen: list[dict] = []
        self._next_gc_check = 0.0
        self.known: list[ProcRef] = []  # last seen server tree, kept to end orphans
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.me = ProcRef(os.getpid(), psutil.Process().create_time())
        self.health: dict = {"ok": False, "detail": "not probed yet", "at": None}
        self.message = ""
        self._next_probe = 0.0
        self._next_store_check = 0.0
        self._last_status_write = 0.0
        self._next_heartbeat = 0.0
        self.peer_report: dict = {"list": [], "warning": None, "clash": None}
        self._last_beat: peers.Heartbeat | None = None
        self.mlflow_version = mlflow_version()  # looked up once: it cannot change under us

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
            self.write_status(force=True)
            if not self._await_store():
                return 0 if self.stopping.is_set() else 2
            self._clear_leftovers()
            self._start_conflicts()
            self._start_vault()
            self._start_fixer()
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
        """Return once the store is usable; False if told to stop (or not waiting)."""
        last_report = 0.0
        while not self.stopping.is_set():
            check = inspect_store(self.store)
            if check.ok:
                self.message = ""
                return True
            if not self.wait_for_store:
                raise StartupError(f"{check.detail}. Nothing was created or written. Start with "
                                   "--wait-for-store to wait for the drive to appear.")
            self.sup = supervisor.State(phase=Phase.WAITING_STORE, starts=self.sup.starts,
                                        last_reason=self.sup.last_reason)
            self.message = f"waiting for the store: {check.detail}"
            if time.monotonic() - last_report >= WAIT_REPORT_INTERVAL:
                log.warning("%s", self.message)
                last_report = time.monotonic()
            self.write_status(force=True)
            self._tell()
            self.stopping.wait(1.0)
        return False

    def census(self) -> Census:
        records = [ProcRef.from_json(r) for r in (read_json(self.state.pids) or {}).get("server", [])]
        return classify(snapshot(), str(self.store), self.cfg.server.port,
                        str(self.cfg.state_dir), records + self.known, self_pid=self.me.pid)

    def _clear_leftovers(self) -> None:
        """End this guard's orphans and hand-started servers over the store; refuse foreigners."""
        census = self.census()
        if census.foreign_on_port:
            raise StartupError(
                f"port {self.cfg.server.port} is taken by {describe(census.foreign_on_port)}; "
                "it is not an MLflow server over this store, so it was left alone: stop it or "
                "choose another port (--port or server.port)")
        for group, what in ((census.ours, "orphaned guard server"),
                            (census.same_store, "hand-started MLflow server over this store")):
            if group:
                log.warning("ending %s: %s", what, describe(group))
                left = end_tree([p.ref for p in group], self.cfg.server.stop_grace)
                if left:
                    raise StartupError(f"could not end {what} pids {left}; end them by hand")
        self._save_pids([])
        deadline = time.monotonic() + 5
        while not port_bindable(self.cfg.server.host, self.cfg.server.port):
            if time.monotonic() > deadline:
                raise StartupError(
                    f"port {self.cfg.server.port} on {self.cfg.server.host} is in use by a "
                    "process this user cannot see; choose another port (--port or server.port)")
            time.sleep(0.2)

    def _start_fixer(self) -> None:
        """Portable paths: a full pass now (in its own thread), then on every change."""
        rw = self.cfg.rewrite
        if not rw.enabled:
            return
        fixer = Fixer(self.store, Journal(self.state.rewrite_journal), self.cfg.host_id,
                      foreign_delay=rw.foreign_delay, in_flight_grace=rw.in_flight_grace,
                      experiment_quiet=rw.experiment_quiet)
        self.fixer = FixerService(fixer, rw.watch, rw.poll_interval, rw.full_pass_interval,
                                  self._dispatch)
        self.fixer.start()
        log.info("path rewriting on (%s)", self.fixer.mode)

    def _dispatch(self, kind: str, path: Path) -> None:
        """Watcher events the fixer does not handle itself."""
        if kind == "copy" and self.conflicts is not None:
            self.conflicts.notice(path)
        if self.vault is not None:
            self.vault.notice(kind, path)

    def _start_vault(self) -> None:
        """The vault: a local second name of every store file; deletions put back."""
        v = self.cfg.vault
        if not v.enabled:
            return
        vault = Vault(self.cfg.vault_root, self.store, v.copy_max_bytes)
        try:
            vault.open()
        except VaultError as exc:
            raise StartupError(str(exc)) from None
        retention = self.cfg.gc.retention_days * 86400
        self.vault = RestoreService(vault, Journal(self.state.vault_journal), self.cfg.host_id,
                                    v.policy, self.cfg.locks.settle, v.scan_interval, retention)
        self.vault.start()
        log.info("vault on (%s, %s) at %s", vault.mode, v.policy, vault.root)

    def _start_conflicts(self) -> None:
        """Conflict copies: resolved in the background, under the cross-machine lock."""
        if not self.cfg.conflicts.enabled:
            return
        reconciler = Reconciler(self.store, self.state.quarantine,
                                Journal(self.state.conflict_journal))
        self.conflicts = ConflictService(
            reconciler, LockSettings.from_config(self.cfg), self.cfg.conflicts.scan_interval,
            lambda: [self.cfg.host_id] + [p["host_id"] for p in self.peer_report["list"]])
        self.conflicts.start()

    # ---- the loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._tell()
            self._handle_request()
            now = time.time()
            if self._store_lost(now):
                continue
            if now >= self._next_heartbeat:
                self._heartbeat(now)
            if now >= self._next_gc_check:
                self._check_gc(now)
            if self.server is not None:
                self._watch_server(now)
            if supervisor.due(self.sup, now):
                self._start_server(now)
            self.write_status()
            self.stopping.wait(TICK)

    def _tell(self) -> None:
        """Readiness, liveness and a status line for the service manager, if there is one.
        Called from the loop's own thread, so a hung loop stops the watchdog pings."""
        if self.reporter is None:
            return
        advice, self.told = readiness.advise(
            self.sup.phase, bool(self.health.get("ok")), self.url, self.message, self.told,
            time.monotonic(), self.reporter.every)
        if advice != readiness.Advice():
            self.reporter.send(advice)

    def _heartbeat(self, now: float, state: str = "running") -> None:
        """Publish this host's heartbeat, read the other hosts', and notice a host_id clash."""
        self._next_heartbeat = now + self.cfg.peers.heartbeat_interval
        beat = peers.Heartbeat(
            host_id=self.cfg.host_id, pid=self.me.pid, guard_version=__version__,
            mlflow_version=self.mlflow_version, platform=sys.platform, store=str(self.store),
            started_at=self.started_at, last_seen=now,
            interval=self.cfg.peers.heartbeat_interval, state=state)
        beats = peers.read_all(self.store)
        found = next((b for b in beats if b.host_id == self.cfg.host_id), None)
        clash = peers.clash(found, self._last_beat)
        try:
            copies = peers.clash_copies(os.listdir(peers.peers_dir(self.store)),
                                        self.cfg.host_id)
        except OSError:
            copies = []
        if copies and not clash:
            clash = (f"the sync client made conflict copies of this host's heartbeat "
                     f"({copies[0]}): another machine also uses host_id "
                     f"'{self.cfg.host_id}'; give each machine its own host_id in its config")
        if clash and clash != self.peer_report.get("clash"):
            log.error("%s", clash)
        try:
            peers.publish(self.store, beat)
            self._last_beat = beat
        except OSError as exc:
            log.warning("cannot publish the heartbeat into the store: %s", exc)
        views = peers.assess(beats, self.cfg.host_id, now, self.cfg.peers.stale_after)
        self.peer_report = {"list": [v.__dict__ for v in views], "clash": clash,
                            "warning": peers.version_warning(beat.mlflow_version, views)}

    def _check_gc(self, now: float) -> None:
        """`mlflow gc` processes aimed at this store: shown in status while they run."""
        self._next_gc_check = now + GC_CHECK_INTERVAL
        found = gc_processes(str(self.store), self.cfg.server.port)
        for proc in found:
            if proc["pid"] not in {p["pid"] for p in self.gc_seen}:
                log.error("`mlflow gc` is running against this store: pid %s (user %s): %s",
                          proc["pid"], proc["user"], proc["command"])
        self.gc_seen = found

    def _handle_request(self) -> None:
        req = self.state.take_request()
        if not req:
            return
        command = req.get("command")
        log.info("request: %s", command)
        if command == "stop":
            self.stopping.set()
        elif command == "restart":
            self._end_server("restart requested")
            self.sup = supervisor.resumed(self.sup, time.time())
        else:
            log.warning("ignoring unknown request %r", command)

    def _store_lost(self, now: float) -> bool:
        """A store that vanishes (unmounted drive) pauses the server until it is back."""
        if now < self._next_store_check:
            return False
        self._next_store_check = now + STORE_CHECK_INTERVAL
        check = inspect_store(self.store)
        for service in (self.fixer, self.conflicts, self.vault):
            if service is not None and check.ok:
                service.paused.clear()
            elif service is not None:
                service.paused.set()  # never write into a store that is not there
        if check.ok:
            if self.sup.phase is Phase.WAITING_STORE:
                log.info("store is back: %s", self.store)
                self.message = ""
                self.sup = supervisor.resumed(self.sup, now)
            return False
        if self.sup.phase is not Phase.WAITING_STORE:
            log.error("store lost, pausing the server: %s", check.detail)
            self._end_server("store lost")
            self.sup = supervisor.State(phase=Phase.WAITING_STORE, starts=self.sup.starts,
                                        last_reason=f"store lost: {check.detail}")
        self.message = f"waiting for the store: {check.detail}"
        self.write_status()
        self.stopping.wait(STORE_CHECK_INTERVAL)
        return True

    def _watch_server(self, now: float) -> None:
        code = self.server.poll()
        if code is not None:
            log.error("server exited with code %s", code)
            self.sup = supervisor.exited(self.sup, code, now, self.policy)
            self._end_server(f"exited with code {code}")
            return
        if now < self._next_probe:
            return
        ok, detail = probe_health(self.url, self.cfg.server.health_timeout)
        self.health = {"ok": ok, "detail": detail, "at": time.time()}
        before = self.sup.phase
        self.sup, end = supervisor.probed(self.sup, ok, time.time(), self.policy)
        if before is Phase.STARTING and self.sup.phase is Phase.RUNNING:
            log.info("server healthy at %s (pid %s)", self.url, self.server.ref.pid)
        if not ok and before is Phase.RUNNING:
            log.warning("health probe failed: %s", detail)
        self._remember_tree()
        if end:
            log.error("%s; ending the server tree", self.sup.last_reason)
            self._end_server(self.sup.last_reason or "unhealthy")
        interval = (STARTING_PROBE_INTERVAL if self.sup.phase is Phase.STARTING
                    else self.cfg.server.health_interval)
        self._next_probe = time.time() + interval

    def _start_server(self, now: float) -> None:
        census = self.census()
        stale = [p.ref for p in census.ours]
        if stale:
            log.warning("ending leftover guard processes before start: %s", describe(census.ours))
            end_tree(stale, self.cfg.server.stop_grace)
        if census.foreign_on_port:
            self.sup = supervisor.failed(
                self.sup, f"port {self.cfg.server.port} taken by {describe(census.foreign_on_port)}",
                now, self.policy)
            log.error("%s", self.sup.last_reason)
            return
        if self.sup.starts:
            log.warning("restarting the server (restart %d; last: %s)", self.sup.starts,
                        self.sup.last_reason)
        self.server = ServerProcess(self.cfg, server_output_logger(self.state.server_log,
                                                                   self.cfg.log))
        self.server.start()
        self.sup = supervisor.started(self.sup, now)
        self.health = {"ok": False, "detail": "starting", "at": None}
        self._next_probe = time.time() + STARTING_PROBE_INTERVAL
        self._remember_tree()
        self.write_status(force=True)

    def _remember_tree(self) -> None:
        if self.server is None:
            return
        tree = self.server.tree()
        merged = {r.pid: r for r in self.known + tree if alive(r)}
        if set(merged) != {r.pid for r in self.known}:
            self.known = list(merged.values())
            self._save_pids(self.known)

    def _end_server(self, reason: str) -> list[int]:
        """End the current tree, remembered orphans, and anything carrying our owner mark."""
        orphans = [p.ref for p in self.census().ours]
        survivors: list[int] = []
        if self.server is not None:
            survivors = self.server.stop(self.known + orphans)
            self.server = None
        elif self.known or orphans:
            survivors = end_tree(self.known + orphans, self.cfg.server.stop_grace)
        self.known = []
        self._save_pids([])
        self.health = {"ok": False, "detail": f"server ended: {reason}", "at": time.time()}
        return survivors

    def _shutdown(self) -> list[int]:
        self.sup = supervisor.State(phase=Phase.STOPPING, starts=self.sup.starts,
                                    last_reason=self.sup.last_reason)
        self.write_status(force=True)
        self._tell()
        for service in (self.fixer, self.conflicts, self.vault):
            if service is not None:
                service.stop()
        survivors = self._end_server("daemon stopping")
        if self._next_heartbeat and inspect_store(self.store).ok:
            self._heartbeat(time.time(), state="stopped")  # peers see a clean stop at once
        try:
            self.state.pids.unlink()
        except OSError:
            pass
        self.sup = supervisor.State(phase=Phase.STOPPED, starts=self.sup.starts,
                                    last_reason=self.sup.last_reason)
        self.write_status(force=True)
        log.info("stopped")
        return survivors

    # ---- records ----------------------------------------------------------------------
    def _save_pids(self, refs: list[ProcRef]) -> None:
        write_json_atomic(self.state.pids, {"daemon": self.me.to_json(),
                                            "server": [r.to_json() for r in refs]})

    def status_doc(self) -> dict:
        s = self.sup
        return {
            "guard_version": __version__,
            "daemon": {**self.me.to_json(), "started_at": self.started_at},
            "phase": s.phase.value,
            "message": self.message,
            "server": {
                "pid": self.server.ref.pid if self.server and self.server.ref else None,
                "tree": [r.to_json() for r in self.known],
                "url": self.url,
                "started_at": s.started_at,
                "health": self.health,
            },
            "restarts": s.restarts,
            "last_reason": s.last_reason,
            "next_start_at": s.next_start_at,
            "store": str(self.store),
            "host_id": self.cfg.host_id,
            "mlflow_version": self.mlflow_version,
            "config_file": str(self.cfg.file) if self.cfg.file else None,
            "state_dir": str(self.state.root),
            "log_file": str(self.state.guard_log),
            "server_log_file": str(self.state.server_log),
            "port": self.cfg.server.port,
            "portability": self.fixer.snapshot() if self.fixer else {"enabled": False},
            "peers": self.peer_report,
            "conflicts": self.conflicts.snapshot() if self.conflicts else {"enabled": False},
            "vault": self.vault.snapshot() if self.vault else {"enabled": False},
            "gc_processes": self.gc_seen,
            "updated_at": time.time(),
        }

    def write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status_write < 1.0:
            return
        write_json_atomic(self.state.status, self.status_doc())
        self._last_status_write = now

