"""Finding and ending MLflow server processes, by identity, never by name alone.

The decisions (is this an MLflow server? over which store? ours, a stray, or foreign?) are pure
functions over `ProcInfo` records and the `Folders` they are given; `snapshot` and `end_tree`
are the thin psutil shell.
A process is identified by (pid, create_time), so a recycled pid is never mistaken for ours;
and one is ended only if it is also an MLflow server (or worker) over the guard's store
(`may_end`): pids.json and the owner mark can be forged, a command line over the store cannot
make an unrelated process look like a server. Command lines are redacted (guard.core.redact)
as they are captured, so no consumer (log, status, `guardctl status`) sees a credential.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil

from guard.core.paths import same_folder, uri_to_local_path
from guard.core.records import from_json
from guard.core.redact import redact_argv
from guard.core.state import StateDir, read_json, read_trusted_json

log = logging.getLogger("guard.processes")

# Set on every server the guard starts; children inherit it, so an orphaned worker whose
# parent was killed is still recognisable as the guard's own.
OWNER_ENV = "MLFLOW_GUARD_STATE_DIR"
# Set by `mlflow server` for its uvicorn/gunicorn/waitress workers.
MLFLOW_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"
WORKER_APPS = ("mlflow.server.fastapi_app:app", "mlflow.server:app", "mlflow.server.auth",
               "guard.app:create_app")
_INTERESTING = ("mlflow", "uvicorn", "gunicorn", "waitress", "multiprocessing")


@dataclass(frozen=True)
class ProcRef:
    """A process identity that survives pid reuse."""

    pid: int
    create_time: float

    def to_json(self) -> dict:
        return {"pid": self.pid, "create_time": self.create_time}

    @classmethod
    def from_json(cls, data: dict) -> ProcRef:
        return cls(int(data["pid"]), float(data["create_time"]))


@dataclass(frozen=True)
class DaemonRecord:
    """The daemon as its status file names it: the "daemon" section."""

    pid: int | None = None
    create_time: float | None = None
    started_at: float | None = None

    @property
    def ref(self) -> ProcRef | None:
        """Its identity, when the record has one."""
        if self.pid is None or self.create_time is None:
            return None
        return ProcRef(self.pid, self.create_time)


@dataclass(frozen=True)
class GcProcess:
    """An `mlflow gc` aimed at the store, as status shows it while it runs."""

    pid: int
    user: str | None
    command: str
    started_at: float = 0.0


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    create_time: float
    cmdline: tuple[str, ...]
    cwd: str | None = None
    username: str | None = None
    env: dict = field(default_factory=dict, hash=False, compare=False)
    listen_ports: tuple[int, ...] = ()

    @property
    def ref(self) -> ProcRef:
        return ProcRef(self.pid, self.create_time)

    @property
    def command(self) -> str:
        return " ".join(self.cmdline)


@dataclass(frozen=True)
class Folders:
    """The two questions the decisions ask of the disk, injected so they stay pure: the shell
    passes LOCAL_FOLDERS, tests a table of folders and symlinks."""

    resolve: Callable[[str], str]  # follow symlinks (os.path.realpath)
    is_dir: Callable[[str], bool]


LOCAL_FOLDERS = Folders(os.path.realpath, os.path.isdir)


def _mlflow_index(cmdline: tuple[str, ...]) -> int | None:
    for i, arg in enumerate(cmdline):
        base = arg.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if base in ("mlflow", "mlflow.exe", "mlflow-script.py"):
            return i
        if arg == "-m" and i + 1 < len(cmdline) and cmdline[i + 1] == "mlflow":
            return i + 1
    return None


def mlflow_role(cmdline: tuple[str, ...]) -> str | None:
    """'server' or 'ui' for an `mlflow server|ui` command, 'worker' for its SGI worker."""
    idx = _mlflow_index(cmdline)
    if idx is not None:
        for arg in cmdline[idx + 1:]:
            if not arg.startswith("-"):
                return arg if arg in ("server", "ui") else None
        return None
    if any(app in arg for arg in cmdline for app in WORKER_APPS):
        return "worker"
    return None


def _flag(args: tuple[str, ...], *flags: str) -> str | None:
    for i, arg in enumerate(args):
        for flag in flags:
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def gc_aimed_at(info: ProcInfo, store: str, port: int, folders: Folders) -> bool:
    """Whether this is an `mlflow gc` that deletes from `store`: named by its backend store,
    by a tracking URI on the guard's port, or by ./mlruns in its working folder (pure)."""
    idx = _mlflow_index(info.cmdline)
    if idx is None:
        return False
    words = [a for a in info.cmdline[idx + 1:] if not a.startswith("-")]
    if not words or words[0] != "gc":
        return False
    args = info.cmdline[idx + 1:]
    backend = _flag(args, "--backend-store-uri")
    if backend:
        local = uri_to_local_path(backend, info.cwd)
        if local and same_folder(local, store, folders.resolve):
            return True
    tracking = _flag(args, "--tracking-uri") or ""
    if re.search(rf"^https?://([^@/]*@)?(localhost|127\.0\.0\.1|\[::1\])(:{port})(/|$)",
                 tracking):
        return True
    if backend or not info.cwd:
        return False
    return same_folder(os.path.join(info.cwd, "mlruns"), store, folders.resolve)


def gc_processes(store: str, port: int) -> list[GcProcess]:
    """Running `mlflow gc` processes aimed at the store (pid, user, command), for status."""
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "create_time", "cmdline", "username"]):
        cmdline = redact_argv(proc.info.get("cmdline") or ())
        if not any("mlflow" in arg for arg in cmdline) or "gc" not in cmdline:
            continue
        try:
            cwd = proc.cwd()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            cwd = None
        info = ProcInfo(proc.pid, proc.info.get("ppid") or 0, proc.info.get("create_time") or 0,
                        cmdline, cwd, proc.info.get("username"))
        if gc_aimed_at(info, store, port, LOCAL_FOLDERS):
            found.append(GcProcess(info.pid, info.username, info.command[:300],
                                   info.create_time))
    return found


def served_store(info: ProcInfo, folders: Folders) -> str | None:
    """The local store folder an MLflow server process serves, or None if unknown/not local."""
    if info.env.get(MLFLOW_STORE_ENV):
        return uri_to_local_path(info.env[MLFLOW_STORE_ENV], info.cwd)
    role = mlflow_role(info.cmdline)
    if role not in ("server", "ui"):
        return None
    args = list(info.cmdline)
    for i, arg in enumerate(args):
        for flag in ("--backend-store-uri", "--file-store"):
            if arg == flag and i + 1 < len(args):
                return uri_to_local_path(args[i + 1], info.cwd)
            if arg.startswith(flag + "="):
                return uri_to_local_path(arg.split("=", 1)[1], info.cwd)
    # No store flag: MLflow falls back to ./mlruns when that folder exists.
    if info.cwd and folders.is_dir(os.path.join(info.cwd, "mlruns")):
        return os.path.join(info.cwd, "mlruns")
    return None


def server_port(info: ProcInfo) -> int | None:
    """The port an MLflow server process listens on: what the system says it listens on,
    else its --port / -p flag, else MLflow's default 5000 for `mlflow server`/`ui`."""
    if info.listen_ports:
        return info.listen_ports[0]
    value = _flag(info.cmdline, "--port", "-p")
    if value is not None and value.isdigit():
        return int(value)
    return 5000 if mlflow_role(info.cmdline) in ("server", "ui") else None


def server_line(pid: int, user: str | None, port: int | None, store: str | None) -> str:
    """One line for an MLflow server process, the same in `status` and `doctor`."""
    return (f"pid {pid}" + (f" ({user})" if user else "")
            + (f", port {port}" if port is not None else ", port unknown")
            + (f", store {store}" if store else ""))


def server_trees(procs: Iterable[ProcInfo]) -> list[tuple[ProcInfo, int | None]]:
    """MLflow server processes grouped into one entry per server: the root of each tree (a
    process whose parent is not among them; its workers are not listed) and the port the tree
    listens on: any member's listening socket, else the root's flag (pure)."""
    procs = list(procs)
    by_pid = {p.pid: p for p in procs}
    roots: dict[int, ProcInfo] = {}
    members: dict[int, list[ProcInfo]] = {}
    for p in procs:
        top, seen = p, {p.pid}
        while top.ppid in by_pid and top.ppid not in seen:
            top = by_pid[top.ppid]
            seen.add(top.pid)
        roots[top.pid] = top
        members.setdefault(top.pid, []).append(p)
    out = []
    for pid in sorted(roots):
        listening = [port for m in members[pid] for port in m.listen_ports]
        out.append((roots[pid], listening[0] if listening else server_port(roots[pid])))
    return out


@dataclass(frozen=True)
class Census:
    """Who is around the store and the port, sorted into what the daemon may do with them."""

    ours: tuple[ProcInfo, ...]        # this guard's servers (records or owner marker)
    same_store: tuple[ProcInfo, ...]  # hand-started MLflow servers over this store
    foreign_on_port: tuple[ProcInfo, ...]  # anything else listening on the port
    # recorded or marked as ours, but no MLflow server over this store: never ended
    refused: tuple[tuple[ProcInfo, str], ...] = ()


def may_end(info: ProcInfo, store: str, folders: Folders) -> str | None:
    """Why a process recorded (or marked) as this guard's must not be ended, or None when it
    may be: only an MLflow server or worker over `store` may (pure given `folders`)."""
    served = served_store(info, folders)
    if served is None:
        role = mlflow_role(info.cmdline)
        return (f"its command line is no MLflow server ({info.command[:120]})" if role is None
                else "it is an MLflow process over no local store")
    if not same_folder(served, store, folders.resolve):
        return f"it is an MLflow server over another store ({served})"
    return None


def sort_processes(
    procs: Iterable[ProcInfo],
    store: str,
    port: int,
    owner: str,
    records: Iterable[ProcRef] = (),
    self_pid: int | None = None,
    folders: Folders = LOCAL_FOLDERS,
) -> Census:
    """Sort processes: ours, strays over the same store, foreign listeners on our port (pure
    given `folders`; its default, the real disk, is for the shell callers). A process named by
    `records` or the owner mark is ours only if `may_end` agrees; else it is `refused` (and
    foreign if it holds our port)."""
    records = set(records)
    ours, same, foreign, refused = [], [], [], []
    for p in procs:
        if p.pid == self_pid:
            continue
        if p.ref in records or (p.env.get(OWNER_ENV)
                                and same_folder(p.env[OWNER_ENV], owner, folders.resolve)):
            why = may_end(p, store, folders)
            if why is None:
                ours.append(p)
                continue
            refused.append((p, why))
        served = served_store(p, folders)
        if served and same_folder(served, store, folders.resolve):
            same.append(p)
        elif port in p.listen_ports:
            foreign.append(p)
    return Census(tuple(ours), tuple(same), tuple(foreign), tuple(refused))


def classify(
    procs: Iterable[ProcInfo],
    store: str,
    port: int,
    owner: str,
    records: Iterable[ProcRef] = (),
    self_pid: int | None = None,
    folders: Folders = LOCAL_FOLDERS,
) -> Census:
    """`sort_processes`, saying in the log (once per process) why a process the state folder
    names as this guard's is not ended."""
    census = sort_processes(procs, store, port, owner, records, self_pid, folders)
    _say_refused(census.refused)
    return census


_told: set[ProcRef] = set()


def _say_refused(refused: Iterable[tuple[ProcInfo, str]]) -> None:
    """Log, once per process, a recorded pid the guard will not end (a forged pids.json)."""
    for p, why in refused:
        if p.ref not in _told:
            _told.add(p.ref)
            log.warning("not ending pid %s although the state folder names it as this guard's "
                        "server: %s", p.pid, why)


def snapshot() -> list[ProcInfo]:
    """Every visible process that could be an MLflow server, plus whatever listens on a port."""
    listeners: dict[int, set[int]] = {}
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.pid and conn.laddr:
                listeners.setdefault(conn.pid, set()).add(conn.laddr.port)
    except (psutil.AccessDenied, OSError) as exc:
        log.debug("cannot list sockets: %s", exc)
    out = []
    for proc in psutil.process_iter(["pid", "ppid", "create_time", "cmdline", "username"]):
        info = proc.info
        cmdline = redact_argv(info.get("cmdline") or ())
        text = " ".join(cmdline).lower()
        interesting = any(word in text for word in _INTERESTING)
        if not interesting and proc.pid not in listeners:
            continue
        env, cwd = {}, None
        if interesting:
            try:
                full = proc.environ()
                env = {k: full[k] for k in (OWNER_ENV, MLFLOW_STORE_ENV) if k in full}
                cwd = proc.cwd()
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
                pass
        out.append(ProcInfo(
            pid=proc.pid, ppid=info.get("ppid") or 0, create_time=info.get("create_time") or 0.0,
            cmdline=cmdline, cwd=cwd, username=info.get("username"), env=env,
            listen_ports=tuple(sorted(listeners.get(proc.pid, ()))),
        ))
    return out


def resolve(ref: ProcRef) -> psutil.Process | None:
    """The live process behind a reference, or None if it is gone or the pid was reused."""
    try:
        proc = psutil.Process(ref.pid)
        if abs(proc.create_time() - ref.create_time) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def ref_of(proc: psutil.Process) -> ProcRef | None:
    try:
        return ProcRef(proc.pid, proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def alive(ref: ProcRef) -> bool:
    return resolve(ref) is not None


def running_daemon_pid(state: StateDir) -> int | None:
    """The pid of the live daemon named in the status file, if any."""
    doc = read_json(state.status)
    ref = from_json(DaemonRecord, doc.get("daemon") if isinstance(doc, dict) else None).ref
    return ref.pid if ref is not None and alive(ref) else None


def tree_of(refs: Iterable[ProcRef]) -> list[psutil.Process]:
    """The live processes named by `refs` and all their descendants, without duplicates."""
    seen: dict[int, psutil.Process] = {}
    for ref in refs:
        proc = resolve(ref)
        if proc is None:
            continue
        seen.setdefault(proc.pid, proc)
        try:
            for child in proc.children(recursive=True):
                seen.setdefault(child.pid, child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return list(seen.values())


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running; a zombie (ended, not yet reaped by its parent) counts as ended."""
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return out


def _wait_ended(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    psutil.wait_procs(procs, timeout=0)  # reaps our own children
    left = _running(procs)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        psutil.wait_procs(left, timeout=0)
        left = _running(left)
    return left


def _signal(procs: list[psutil.Process], kill: bool) -> None:
    for proc in procs:
        try:
            proc.kill() if kill else proc.terminate()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
        except psutil.AccessDenied:
            log.warning("not allowed to end pid %s", proc.pid)


def end_tree(refs: Iterable[ProcRef], grace: float) -> list[int]:
    """Terminate the processes and their descendants, kill what outlives `grace`.

    Returns the pids that could not be ended (normally none).
    """
    procs = tree_of(refs)
    if not procs:
        return []
    _signal(procs, kill=False)
    left = _wait_ended(procs, grace)
    _signal(left, kill=True)
    return [p.pid for p in _wait_ended(left, 5)]


def orphans(
    procs: Iterable[ProcInfo],
    store: str,
    owner: str,
    records: Iterable[ProcRef] = (),
    self_pid: int | None = None,
    folders: Folders = LOCAL_FOLDERS,
) -> tuple[ProcInfo, ...]:
    """This guard's server processes, for when its daemon is gone (pure given `folders`).

    Each must be both this guard's (recorded by its state folder with pid *and* start time, or
    carrying its owner mark) and an MLflow server or worker over `store` (its command line, or
    the store `mlflow server` hands its workers). A look-alike over another store, or a process
    that only inherited the mark, is never one: `guardctl stop` ends what this returns.
    """
    records = set(records)
    found = []
    for p in procs:
        if p.pid == self_pid:
            continue
        mark = p.env.get(OWNER_ENV)
        if not (p.ref in records or (mark and same_folder(mark, owner, folders.resolve))):
            continue
        if may_end(p, store, folders) is None:
            found.append(p)
    return tuple(found)


def recorded_refs(state: StateDir) -> list[ProcRef]:
    """The server tree the daemon last recorded in pids.json (none when unreadable, or when
    the file is not the daemon's user's own: `state.file_problem`)."""
    data, problem = read_trusted_json(state.pids)
    if problem is not None:
        log.error("ignoring %s: %s; no process it names is ended", state.pids, problem)
    entries = data.get("server", []) if isinstance(data, dict) else []
    refs = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            refs.append(ProcRef.from_json(entry))
        except (KeyError, TypeError, ValueError):
            continue
    return refs


def orphans_now(store: str, state: StateDir, known: Iterable[ProcRef] = ()) -> tuple[ProcInfo, ...]:
    """The live processes `orphans` picks, from this machine's processes and the records of the
    state folder (pids.json plus `known`, e.g. the tree its status file names)."""
    return orphans(snapshot(), store, str(state.root), [*recorded_refs(state), *known],
                   self_pid=os.getpid())
