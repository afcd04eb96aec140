"""Real daemons, the real CLI and waiting for them: the machinery behind the fixtures in
tests/conftest.py, for tests that start processes.

Every process a test starts is tracked by pid and ended by pid at teardown, together with the
server tree the daemon recorded; nothing is ever ended by name (the machine is shared).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from guard.core.store import init_store
from guard.supervision.processes import ProcRef, end_tree, ref_of

SERVER_TIMEOUT = 120.0
PORT_COMMANDS = ("run", "status", "doctor", "config")  # the commands that take --port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def guardctl(*args: str, timeout: float = 120,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process."""
    return subprocess.run([sys.executable, "-m", "guard.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def read_status(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def end_started(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """End a process this test started, with its descendants, by pid (SIGTERM, then SIGKILL
    after `grace`), and reap it."""
    try:
        ref = ref_of(psutil.Process(proc.pid))
    except psutil.NoSuchProcess:
        ref = None
    if ref is not None:
        end_tree([ref], grace)
    proc.wait(timeout=10)


def wait_for(predicate, timeout: float = SERVER_TIMEOUT, interval: float = 0.2, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")


def tree_pids(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid} | {c.pid for c in proc.children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def any_alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


class Guard:
    """One real `guardctl run` daemon over a store, with helpers to observe it."""

    def __init__(self, store: Path, state_dir: Path, port: int, config: Path | None = None,
                 extra: tuple[str, ...] = (), env: dict | None = None) -> None:
        self.store, self.state_dir, self.port, self.config = store, state_dir, port, config
        self.extra = extra
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.seen_server_pids: set[int] = set()

    @property
    def opts(self) -> list[str]:
        opts = ["--state-dir", str(self.state_dir), "--port", str(self.port)]
        if self.config:
            opts += ["--config", str(self.config)]
        return opts

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Guard:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir.parent / f"guard-run-{self.state_dir.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guard.cli", "run", "--store", str(self.store), *self.opts,
             *self.extra], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        log.close()
        return self

    def status(self) -> dict:
        return read_status(self.state_dir)

    def opts_for(self, command: str) -> list[str]:
        """`opts` as `command` takes them: --port only for the commands that use it."""
        if command in PORT_COMMANDS:
            return self.opts
        return [o for o in self.opts if o not in ("--port", str(self.port))]

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return guardctl(*args, *self.opts_for(args[0] if args else ""))

    def wait_healthy(self, timeout: float = SERVER_TIMEOUT, not_pid: int | None = None) -> dict:
        def ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.output()}")
            doc = self.status()
            pid = (doc.get("server") or {}).get("pid")
            mine = self.proc is None or (doc.get("daemon") or {}).get("pid") == self.proc.pid
            if mine and doc.get("phase") == "running" and pid and pid != not_pid:
                self.seen_server_pids |= tree_pids(pid)
                return doc
            return None
        return wait_for(ready, timeout, what=f"guard on port {self.port} to be healthy")

    def server_pids(self) -> set[int]:
        doc = self.status()
        pids = {r["pid"] for r in (doc.get("server") or {}).get("tree", [])}
        self.seen_server_pids |= pids
        return pids

    def output(self) -> str:
        path = self.state_dir.parent / f"guard-run-{self.state_dir.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def recorded_refs(self) -> list[ProcRef]:
        doc = self.status()
        refs = [ProcRef.from_json(r) for r in (doc.get("server") or {}).get("tree", [])]
        try:
            pids = json.loads((self.state_dir / "pids.json").read_text())
            refs += [ProcRef.from_json(r) for r in pids.get("server", [])]
        except (OSError, ValueError):
            pass
        return refs

    def teardown(self) -> None:
        """Stop what this test started: the daemon by pid, then any server tree it recorded."""
        refs = self.recorded_refs()
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("stop")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        end_tree(refs, 5)
        for pid in any_alive(self.seen_server_pids):
            proc = psutil.Process(pid)
            if "mlflow" in " ".join(proc.cmdline()) and str(self.port) in " ".join(proc.cmdline()):
                proc.kill()


def healthy_guard(store: Path, make_guard, tmp_path: Path, extra: str = ""):
    """A real daemon over `store`, healthy, with fast settings (locks.settle 1 s, heartbeats
    every second) and `extra` config lines."""
    config = tmp_path / "guard.yaml"
    config.write_text("server:\n  health_interval: 1\nlocks:\n  settle: 1\n  ttl: 20\n"
                      "  renew_every: 2\npeers:\n  heartbeat_interval: 1\n  stale_after: 10\n"
                      + extra)
    guard = make_guard(store, config=config).start()
    guard.wait_healthy()
    return guard


LAB_SETTLE = 1.5  # locks.settle in a lab: above the simulated sync delay (0.3 s) plus a scan


@contextlib.contextmanager
def guarded_lab(root: Path, hosts: list[str], guarded: int, extra_config: str = ""):
    """Hosts with a store each at a different path, synced with a 0.3 s delay; the first
    `guarded` run a real guard daemon (fast heartbeats, settle LAB_SETTLE). Yields (guards,
    stores, syncer); stops everything it started."""
    from guard.core.layout import COORDINATION
    from tests.helpers.syncsim import Syncer

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    stores = [root / name / "sync" / "mlruns" for name in hosts]
    for store in stores:
        store.mkdir(parents=True)
    # Heartbeats are rewritten every 0.5 s: synced, but never waited for by settle().
    syncer = Syncer(stores, delay=0.3, host_names=hosts,
                    volatile=(f"{COORDINATION}/peers/",)).start()
    init_store(stores[0])
    syncer.settle(30)
    guards: list[Guard] = []
    try:
        start_lab_guards(guards, root, zip(hosts[:guarded], stores),
                         "peers:\n  heartbeat_interval: 0.5\n  stale_after: 5\n"
                         f"locks:\n  settle: {LAB_SETTLE}\n  ttl: 20\n  renew_every: 2\n"
                         "  timeout: 60\n" + extra_config)
        yield guards, stores, syncer
    finally:
        for guard in guards:
            guard.teardown()
        syncer.stop()


def start_lab_guards(guards: list[Guard], root: Path, hosts: Iterable[tuple[str, Path]],
                     config: str) -> None:
    """A healthy guard per (host id, store), each with its own config, state folder and port,
    appended to `guards` as they are made (so the caller's teardown ends every one)."""
    for name, store in hosts:
        path = root / f"{name}.yaml"
        path.write_text(f"host_id: {name}\nserver:\n  health_interval: 1\n"
                        "conflicts:\n  scan_interval: 1\n" + config)
        guards.append(Guard(store, root / f"state-{name}", free_port(), config=path))
    for guard in guards:
        guard.start()
    for guard in guards:
        guard.wait_healthy()


def auth_guard(store: Path, make_guard, tmp_path: Path) -> tuple[Guard, tuple[str, str]]:
    """A healthy daemon with server.auth: basic on 127.0.0.1, its admin password from the env;
    returns it and the admin's login."""
    import secrets

    password = secrets.token_urlsafe(16)
    ini = tmp_path / "basic_auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = READ\n"
                   f"database_uri = sqlite:///{tmp_path / 'auth.db'}\nadmin_username = admin\n")
    config = tmp_path / "guard.yaml"
    config.write_text(f"server:\n  health_interval: 1\n  auth: basic\n  auth_config: {ini}\n")
    guard = make_guard(store, config=config,
                       env={"MLFLOW_AUTH_ADMIN_PASSWORD": password}).start()
    guard.wait_healthy()  # the daemon's /health probe passes under auth
    return guard, ("admin", password)
