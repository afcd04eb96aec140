"""The server keeper: one MLflow server kept serving over the store, its I/O injected.

The life cycle: wait for the store; clear leftovers (end this guard's orphans and servers
started by hand over the store, refuse a foreign listener on the port); start; probe until
healthy; watch for an exit or failing probes and restart with backoff, or stop in a crash loop;
end the server while the store is lost and start again once it is back; restart on request;
end the whole tree at shutdown. `supervisor` decides every step; the keeper carries the
decisions out through an `Effects` object: `RealEffects` on a machine, a fake in the tests,
which run store loss, crash loops and orphans in milliseconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from guard.core.config import Config
from guard.core.logs import server_output_logger
from guard.core.state import StateDir, write_json_atomic
from guard.core.store import StoreCheck, inspect_store
from guard.supervision import supervisor
from guard.supervision.processes import (
    Census,
    ProcInfo,
    ProcRef,
    alive,
    classify,
    end_tree,
    recorded_refs,
    snapshot,
)
from guard.supervision.server import ServerProcess, port_bindable, probe_health, server_url
from guard.supervision.supervisor import Phase

log = logging.getLogger("guard.daemon")

STARTING_PROBE_INTERVAL = 0.5  # probes while the server starts: ready as soon as it answers
STORE_CHECK_INTERVAL = 2.0
WAIT_REPORT_INTERVAL = 5.0     # how often "waiting for the store" goes to the log
PORT_FREE_WAIT = 5.0           # for the port to be free once leftovers are ended


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do about it."""


class Server(Protocol):
    """A started server (server.ServerProcess, or a fake)."""

    ref: ProcRef | None

    def poll(self) -> int | None: ...

    def tree(self) -> list[ProcRef]: ...

    def stop(self, extra: list[ProcRef] | None = None) -> list[int]: ...


class Effects(Protocol):
    """Everything the keeper does to the world, and every look it takes at it."""

    def clock(self) -> float:
        """Wall time, seconds."""

    def sleep(self, seconds: float) -> None: ...

    def census(self, known: Iterable[ProcRef]) -> Census:
        """The processes around the store and the port, sorted (`known`: refs of our own)."""

    def start_server(self) -> Server: ...

    def end_tree(self, refs: list[ProcRef]) -> list[int]:
        """End these processes and their children; the pids that survived."""

    def probe_health(self) -> tuple[bool, str]: ...

    def inspect_store(self) -> StoreCheck: ...

    def port_bindable(self) -> bool: ...

    def alive(self, ref: ProcRef) -> bool: ...

    def save_pids(self, refs: list[ProcRef]) -> None:
        """Record the server tree, so a daemon killed with -9 leaves findable orphans."""

    def forget_pids(self) -> None: ...


@dataclass(frozen=True)
class Settings:
    store: str
    host: str
    port: int
    url: str
    health_interval: float

    @classmethod
    def from_config(cls, cfg: Config) -> Settings:
        return cls(str(cfg.require_store()), cfg.server.host, cfg.server.port,
                   server_url(cfg.server.host, cfg.server.port), cfg.server.health_interval)


@dataclass(frozen=True)
class HealthProbe:
    """The last /health probe (or why there is none: "starting", "server ended: ...")."""

    ok: bool = False
    detail: str = "not probed yet"
    at: float | None = None


@dataclass(frozen=True)
class ServerFigures:
    """The server the keeper runs: the "server" section of the status."""

    pid: int | None = None
    tree: tuple[ProcRef, ...] = ()  # the last seen tree, the server first
    url: str | None = None
    started_at: float | None = None
    health: HealthProbe = field(default_factory=HealthProbe)


@dataclass(frozen=True)
class KeeperFigures:
    """The keeper's figures: the status document's top-level server keys."""

    phase: Phase | None = None
    message: str = ""
    server: ServerFigures = field(default_factory=ServerFigures)
    restarts: int = 0
    last_reason: str | None = None
    next_start_at: float | None = None


def policy_of(cfg: Config) -> supervisor.Policy:
    return supervisor.Policy(
        backoff_initial=cfg.restart.backoff_initial, backoff_max=cfg.restart.backoff_max,
        crash_loop_count=cfg.restart.crash_loop_count,
        crash_loop_window=cfg.restart.crash_loop_window,
        startup_timeout=cfg.server.startup_timeout,
        health_failures=cfg.server.health_failures, stable_after=cfg.restart.stable_after,
    )


def describe(procs: Iterable[ProcInfo]) -> str:
    return "; ".join(f"pid {p.pid} ({p.command[:160]})" for p in procs)


class Keeper:
    """The server part: `start()` clears leftovers, `check_store(now)` and `tick(now)` run from
    the daemon's loop, `restart(now)` answers `guardctl restart`, `stop()` ends the tree."""

    name = "server"

    def __init__(self, fx: Effects, policy: supervisor.Policy, settings: Settings) -> None:
        self.fx, self.policy, self.site = fx, policy, settings
        self.sup = supervisor.State()
        self.server: Server | None = None
        self.known: list[ProcRef] = []  # last seen server tree, kept to end orphans
        self.health = HealthProbe()
        self.message = ""  # why there is no server, while waiting for the store
        self.error: str | None = None  # the keeper's failures are the supervisor's last_reason
        self.paused = threading.Event()  # set while the store is away
        self.last_tick: float | None = None
        self.store_ok = True
        self.survivors: list[int] = []  # pids the last stop could not end
        self._next_probe = 0.0
        self._next_store_check = 0.0
        self._last_wait_report: float | None = None

    @property
    def phase(self) -> Phase:
        return self.sup.phase

    # ---- before the first start -----------------------------------------------------------
    def store_ready(self, wait: bool) -> bool:
        """One look at the store before the first start: True once it is usable. A missing or
        empty store is a StartupError, or with `wait` a wait (phase "waiting for store")."""
        check = self.fx.inspect_store()
        if check.ok:
            self.message = ""
            return True
        if not wait:
            raise StartupError(f"{check.detail}. Nothing was created or written. "
                               f"{check.startup_advice()}")
        self.sup = supervisor.waiting_for_store(self.sup)
        self.message = f"waiting for the store: {check.detail}"
        now = self.fx.clock()
        if self._last_wait_report is None or now - self._last_wait_report >= WAIT_REPORT_INTERVAL:
            log.warning("%s", self.message)
            self._last_wait_report = now
        return False

    def start(self) -> None:
        """End this guard's orphans and hand-started servers over the store; refuse
        foreigners on the port (StartupError), and wait for the port to be free."""
        census = self.fx.census(self.known)
        port = self.site.port
        if census.foreign_on_port:
            raise StartupError(
                f"port {port} is taken by {describe(census.foreign_on_port)}; "
                "it is not an MLflow server over this store, so it was left alone: stop it or "
                "choose another port (--port or server.port)")
        for group, what in ((census.ours, "orphaned guard server"),
                            (census.same_store, "hand-started MLflow server over this store")):
            if group:
                log.warning("ending %s: %s", what, describe(group))
                left = self.fx.end_tree([p.ref for p in group])
                if left:
                    raise StartupError(f"could not end {what} pids {left}; end them by hand")
        self.fx.save_pids([])
        deadline = self.fx.clock() + PORT_FREE_WAIT
        while not self.fx.port_bindable():
            if self.fx.clock() > deadline:
                raise StartupError(
                    f"port {port} on {self.site.host} is in use by a process this user cannot "
                    "see; choose another port (--port or server.port)")
            self.fx.sleep(0.2)

    # ---- every turn of the daemon's loop --------------------------------------------------
    def check_store(self, now: float) -> bool:
        """Every STORE_CHECK_INTERVAL: a store that vanishes (an unmounted drive) ends the
        server until it is back. Returns whether the store is usable (the daemon pauses every
        other part while it is not)."""
        if now < self._next_store_check:
            return self.store_ok
        self._next_store_check = now + STORE_CHECK_INTERVAL
        check = self.fx.inspect_store()
        self.store_ok = check.ok
        if check.ok:
            self.paused.clear()
            if self.sup.phase is Phase.WAITING_STORE:
                log.info("store is back: %s", self.site.store)
                self.message = ""
                self.sup = supervisor.store_back(self.sup, now)
            return True
        self.paused.set()
        if self.sup.phase is not Phase.WAITING_STORE:
            log.error("store lost, pausing the server: %s", check.detail)
            self._end_server("store lost")
            self.sup = supervisor.store_lost(self.sup, check.detail)
        self.message = f"waiting for the store: {check.detail}"
        return False

    def tick(self, now: float) -> None:
        """Watch the server (exit, health probes) and start it when the supervisor says so."""
        self.last_tick = now
        if self.server is not None:
            self._watch(now)
        if supervisor.due(self.sup, now):
            self._start(now)

    def restart(self, now: float) -> None:
        """`guardctl restart`: end the tree, forget past failures, start again at once."""
        self._end_server("restart requested")
        self.sup = supervisor.resumed(self.sup, now)

    # ---- shutdown ---------------------------------------------------------------------------
    def begin_stop(self) -> None:
        """The daemon is shutting down: say so before the parts take their time to stop."""
        self.sup = supervisor.stopping(self.sup)

    def stop(self) -> None:
        """End the server tree and every orphan; `survivors` names what could not be ended.
        The tree is ended before anything is written, and a state folder that cannot be
        written (full, read-only) is logged, never raised: shutdown must not leave a server."""
        self.survivors = self._end_tree("daemon stopping")
        try:
            self.fx.forget_pids()
        except OSError as exc:
            log.error("could not clear the pid records: %s", exc)
        self.sup = supervisor.stopped(self.sup)

    def snapshot(self) -> KeeperFigures:
        s = self.sup
        server = ServerFigures(self.server.ref.pid if self.server and self.server.ref else None,
                               tuple(self.known), self.site.url, s.started_at, self.health)
        return KeeperFigures(s.phase, self.message, server, s.restarts, s.last_reason,
                             s.next_start_at)

    # ---- the steps ----------------------------------------------------------------------------
    def _watch(self, now: float) -> None:
        assert self.server is not None
        code = self.server.poll()
        if code is not None:
            log.error("server exited with code %s", code)
            self.sup = supervisor.exited(self.sup, code, now, self.policy)
            self._end_server(f"exited with code {code}")
            return
        if now < self._next_probe:
            return
        ok, detail = self.fx.probe_health()
        at = self.fx.clock()
        self.health = HealthProbe(ok, detail, at)
        before = self.sup.phase
        self.sup, end = supervisor.probed(self.sup, ok, at, self.policy)
        if before is Phase.STARTING and self.sup.phase is Phase.RUNNING:
            log.info("server healthy at %s (pid %s)", self.site.url,
                     self.server.ref.pid if self.server.ref else None)
        if not ok and before is Phase.RUNNING:
            log.warning("health probe failed: %s", detail)
        self._remember_tree()
        if end:
            log.error("%s; ending the server tree", self.sup.last_reason)
            self._end_server(self.sup.last_reason or "unhealthy")
        interval = (STARTING_PROBE_INTERVAL if self.sup.phase is Phase.STARTING
                    else self.site.health_interval)
        self._next_probe = self.fx.clock() + interval

    def _start(self, now: float) -> None:
        census = self.fx.census(self.known)
        stale = [p.ref for p in census.ours]
        if stale:
            log.warning("ending leftover guard processes before start: %s", describe(census.ours))
            self.fx.end_tree(stale)
        if census.foreign_on_port:
            self.sup = supervisor.failed(
                self.sup, f"port {self.site.port} taken by {describe(census.foreign_on_port)}",
                now, self.policy)
            log.error("%s", self.sup.last_reason)
            return
        if self.sup.starts:
            log.warning("restarting the server (restart %d; last: %s)", self.sup.starts,
                        self.sup.last_reason)
        self.server = self.fx.start_server()
        self.sup = supervisor.started(self.sup, now)
        self.health = HealthProbe(False, "starting")
        self._next_probe = self.fx.clock() + STARTING_PROBE_INTERVAL
        self._remember_tree()

    def _remember_tree(self) -> None:
        if self.server is None:
            return
        merged = {r.pid: r for r in self.known + self.server.tree() if self.fx.alive(r)}
        if set(merged) != {r.pid for r in self.known}:
            self.known = list(merged.values())
            self.fx.save_pids(self.known)

    def _end_server(self, reason: str) -> list[int]:
        """End the tree (see `_end_tree`) and record that none is left."""
        survivors = self._end_tree(reason)
        self.fx.save_pids([])
        return survivors

    def _end_tree(self, reason: str) -> list[int]:
        """End the current tree, remembered orphans, and anything carrying our owner mark;
        writes nothing. Returns the pids that could not be ended."""
        orphans = [p.ref for p in self.fx.census(self.known).ours]
        survivors: list[int] = []
        if self.server is not None:
            survivors = self.server.stop(self.known + orphans)
            self.server = None
        elif self.known or orphans:
            survivors = self.fx.end_tree(self.known + orphans)
        self.known = []
        self.health = HealthProbe(False, f"server ended: {reason}", self.fx.clock())
        return survivors


class RealEffects:
    """The keeper's I/O on this machine: psutil, a subprocess, a socket, the store and the
    state folder's pids file."""

    def __init__(self, cfg: Config, state: StateDir, me: ProcRef) -> None:
        self.cfg, self.state, self.me = cfg, state, me
        self.store = cfg.require_store()
        self.url = server_url(cfg.server.host, cfg.server.port)

    def clock(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def census(self, known: Iterable[ProcRef]) -> Census:
        return classify(snapshot(), str(self.store), self.cfg.server.port,
                        str(self.cfg.state_dir), [*recorded_refs(self.state), *known],
                        self_pid=self.me.pid)

    def start_server(self) -> Server:
        server = ServerProcess(self.cfg, server_output_logger(self.state.server_log,
                                                              self.cfg.log))
        server.start()
        return server

    def end_tree(self, refs: list[ProcRef]) -> list[int]:
        return end_tree(refs, self.cfg.server.stop_grace)

    def probe_health(self) -> tuple[bool, str]:
        return probe_health(self.url, self.cfg.server.health_timeout)

    def inspect_store(self) -> StoreCheck:
        return inspect_store(self.store)

    def port_bindable(self) -> bool:
        return port_bindable(self.cfg.server.host, self.cfg.server.port)

    def alive(self, ref: ProcRef) -> bool:
        return alive(ref)

    def save_pids(self, refs: list[ProcRef]) -> None:
        write_json_atomic(self.state.pids, {"daemon": self.me.to_json(),
                                            "server": [r.to_json() for r in refs]})

    def forget_pids(self) -> None:
        try:
            self.state.pids.unlink()
        except OSError:
            pass
