"""`guardctl status`: what the daemon says about itself, checked against what is live now.

The daemon's status file can be stale (a daemon killed with -9 cannot clean up), so the report
re-checks the pids it names and probes /health itself. `assess` is the pure verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from guard.core.config import Config
from guard.core.parts import PartState
from guard.core.state import StateDir
from guard.core.strenum import StrEnum
from guard.core.timefmt import duration
from guard.daemon.statusdoc import Off, Portability, StatusDoc, read_status
from guard.portability.fixer import RewriteFigures
from guard.protection.restorer import VaultFigures
from guard.supervision.processes import GcProcess, alive, classify, snapshot
from guard.supervision.server import probe_health
from guard.supervision.supervisor import Phase
from guard.sync.heartbeats import PeerReport
from guard.sync.reconcile import ConflictFigures


class Health(StrEnum):
    """The verdict of `guardctl status`; the value is the "state" of its --json output."""
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NOT_RUNNING = "not running"


HEALTHY, DEGRADED, NOT_RUNNING = Health.HEALTHY, Health.DEGRADED, Health.NOT_RUNNING
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, NOT_RUNNING: 3}


@dataclass(frozen=True)
class Verdict:
    label: Health
    reason: str

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.label]


@dataclass(frozen=True)
class DaemonView:
    pid: int | None = None
    alive: bool = False
    uptime_s: float | None = None


@dataclass(frozen=True)
class TreeEntry:
    pid: int
    alive: bool


@dataclass(frozen=True)
class HealthCheck:
    """The /health probe `guardctl status` made itself."""
    ok: bool = False
    detail: str = "not probed"


@dataclass(frozen=True)
class ServerView:
    pid: int | None = None
    tree: tuple[TreeEntry, ...] = ()
    url: str | None = None
    health: HealthCheck = field(default_factory=HealthCheck)


@dataclass(frozen=True)
class Stray:
    """An MLflow server over the store that the guard did not start."""
    pid: int
    user: str | None
    command: str


@dataclass(frozen=True)
class Report:
    """Everything `guardctl status` shows: the status document checked against what is live
    now (its JSON is the --json output). The daemon's sections are None when it is not alive."""
    state: Health
    exit_code: int
    reason: str
    daemon: DaemonView = field(default_factory=DaemonView)
    phase: Phase | None = None
    server: ServerView = field(default_factory=ServerView)
    restarts: int = 0
    last_reason: str | None = None
    store: str | None = None
    host_id: str | None = None
    mlflow_version: str | None = None
    guard_version: str | None = None
    config_file: str | None = None
    state_dir: str = ""
    log_file: str = ""
    server_log_file: str = ""
    strays: tuple[Stray, ...] = ()
    portability: Portability | None = None
    peers: PeerReport | None = None
    conflicts: Off | ConflictFigures | None = None
    vault: Off | VaultFigures | None = None
    gc_processes: tuple[GcProcess, ...] = ()
    parts: dict[str, PartState] = field(default_factory=dict)
    status_age_s: float | None = None


def assess(doc: StatusDoc | None, daemon_alive: bool, server_alive: bool,
           health_ok: bool) -> Verdict:
    """Healthy only when the daemon lives, its server lives, is running and answers /health."""
    if doc is None:
        return Verdict(NOT_RUNNING, "no status file: the daemon has not run with this state folder")
    if not daemon_alive:
        return Verdict(NOT_RUNNING, f"the daemon (pid {doc.daemon.pid}) is not "
                                    "running; start it with `guardctl run`")
    phase = doc.keeper.phase
    if phase is not Phase.RUNNING:
        why = doc.keeper.message or doc.keeper.last_reason or ""
        return Verdict(DEGRADED, f"server {_phase(phase)}" + (f": {why}" if why else ""))
    if not server_alive:
        return Verdict(DEGRADED, "the server process is gone; the daemon is restarting it")
    if not health_ok:
        return Verdict(DEGRADED, "the server does not answer /health")
    return Verdict(HEALTHY, "serving")


def protection(doc: StatusDoc) -> Verdict | None:
    """A serving guard whose deletion protection is failing or under attack is degraded."""
    if doc.gc_processes:
        return Verdict(DEGRADED, f"`mlflow gc` is running against the store (pid "
                                 f"{doc.gc_processes[0].pid}); use `guardctl gc`")
    if isinstance(doc.vault, VaultFigures) and doc.vault.error:
        return Verdict(DEGRADED, doc.vault.error)
    return None


@dataclass(frozen=True)
class Live:
    """What `guardctl status` found live now, where the status file may be stale."""
    daemon: bool = False  # the daemon the file names runs
    tree: tuple[TreeEntry, ...] = ()  # the server tree the file names, each alive or not
    health: HealthCheck = field(default_factory=HealthCheck)
    strays: tuple[Stray, ...] = ()


def fallback_of(cfg: Config) -> StatusDoc:
    """What the configuration says where the status file says nothing."""
    state = StateDir(cfg.state_dir)
    return StatusDoc(store=str(cfg.store) if cfg.store else None, host_id=cfg.host_id,
                     config_file=str(cfg.file) if cfg.file else None, state_dir=str(state.root),
                     log_file=str(state.guard_log), server_log_file=str(state.server_log))


def store_of(doc: StatusDoc | None, fallback: StatusDoc) -> str | None:
    return (doc.store if doc else None) or fallback.store


def report(cfg: Config, probe_timeout: float = 3.0) -> Report:
    """Everything `guardctl status` shows: the status file, checked against what is live."""
    doc = read_status(StateDir(cfg.state_dir).status)
    fallback = fallback_of(cfg)
    live = Live()
    if doc is not None:
        ref = doc.daemon.ref
        daemon_ok = ref is not None and alive(ref)
        server = doc.keeper.server
        tree = tuple(TreeEntry(r.pid, daemon_ok and alive(r)) for r in server.tree)
        health = (HealthCheck(*probe_health(server.url, probe_timeout))
                  if daemon_ok and server.url else HealthCheck())
        live = Live(daemon_ok, tree, health)
    store = store_of(doc, fallback)
    if store:
        own = list(doc.keeper.server.tree) if doc else []
        census = classify(snapshot(), store, cfg.server.port, str(cfg.state_dir), own)
        live = replace(live, strays=tuple(Stray(p.pid, p.username, p.command)
                                          for p in census.same_store))
    return summarize(doc, live, fallback, time.time())


def summarize(doc: StatusDoc | None, live: Live, fallback: StatusDoc, now: float) -> Report:
    """The report from the status file, what is live, and the configuration's fallbacks."""
    d = doc if doc is not None else fallback
    server = d.keeper.server
    server_ok = any(t.alive and t.pid == server.pid for t in live.tree)
    verdict = assess(doc, live.daemon, server_ok, live.health.ok)
    if verdict.label == HEALTHY and doc is not None:
        verdict = protection(doc) or verdict
    started = d.daemon.started_at
    shown = d if live.daemon else None  # the daemon's own sections, while it runs
    return Report(
        state=verdict.label,
        exit_code=verdict.exit_code,
        reason=verdict.reason,
        daemon=DaemonView(d.daemon.pid, live.daemon,
                          round(now - started, 1) if live.daemon and started else None),
        phase=shown.keeper.phase if shown else None,
        server=ServerView(server.pid if shown else None, live.tree if shown else (),
                          server.url, live.health),
        restarts=d.keeper.restarts,
        last_reason=d.keeper.last_reason,
        store=store_of(doc, fallback),
        host_id=d.host_id or fallback.host_id,
        mlflow_version=d.mlflow_version,
        guard_version=d.guard_version,
        config_file=d.config_file,
        state_dir=fallback.state_dir or "",
        log_file=d.log_file or fallback.log_file or "",
        server_log_file=d.server_log_file or fallback.server_log_file or "",
        strays=live.strays,
        portability=shown.portability if shown else None,
        peers=shown.peers if shown else None,
        conflicts=shown.conflicts if shown else None,
        vault=shown.vault if shown else None,
        gc_processes=shown.gc_processes if shown else (),
        parts=shown.parts if shown else {},
        status_age_s=round(now - d.updated_at, 1) if doc and d.updated_at else None,
    )


def render(r: Report) -> str:
    """The at-a-glance text form."""
    mark = {HEALTHY: "OK", DEGRADED: "DEGRADED", NOT_RUNNING: "NOT RUNNING"}[r.state]
    lines = [f"mlflow-guard: {mark} - {r.reason}"]
    d, s = r.daemon, r.server
    lines.append(f"  daemon    pid {d.pid}, up {duration(d.uptime_s)}" if d.alive
                 else "  daemon    not running")
    if d.alive:
        tree = ", ".join(f"{t.pid}{'' if t.alive else ' (gone)'}" for t in s.tree) or "-"
        lines.append(f"  server    {_phase(r.phase)}; pid {s.pid} (tree: {tree})")
        lines.append(f"  url       {s.url}  health: {s.health.detail}")
    lines.append(f"  restarts  {r.restarts}" +
                 (f"; last reason: {r.last_reason}" if r.last_reason else ""))
    lines.append(f"  store     {r.store or '(not configured)'}")
    lines.append(f"  host_id   {r.host_id}")
    lines.append(f"  mlflow    {r.mlflow_version or '-'}")
    lines.append(f"  config    {r.config_file or '(defaults and flags only)'}")
    lines.append(f"  logs      {r.log_file}")
    lines.append(f"            {r.server_log_file}")
    lines.extend(_portability_lines(r.portability))
    lines.extend(_peer_lines(r.peers))
    lines.extend(_conflict_lines(r.conflicts))
    lines.extend(_vault_lines(r.vault, r.gc_processes))
    lines.extend(_part_lines(r.parts))
    if r.strays:
        lines.append("  STRAYS    MLflow servers over this store not started by the guard:")
        for p in r.strays:
            lines.append(f"            pid {p.pid} ({p.user}): {p.command[:120]}")
    else:
        lines.append("  strays    none")
    return "\n".join(lines)


def _phase(phase: Phase | None) -> str:
    return phase.value if phase is not None else "None"


def _ago(t: float | None) -> str:
    return "-" if t is None else f"{duration(time.time() - t)} ago"


def _portability_lines(p: Portability | None) -> list[str]:
    if p is None:
        return []
    rw, watch = p.rewrite, p.watch
    if not isinstance(rw, RewriteFigures):
        return ["  paths     rewriting disabled (rewrite.enabled: false)"]
    mode = (watch.watch_mode if watch else "-") + (" (paused: store lost)" if rw.paused else "")
    lines = [f"  paths     watching by {mode}; {rw.rewrites_total} rewrites, "
             f"{rw.rewrites_last_hour} in the last hour"]
    last = rw.last_rewrite
    if last:
        lines.append(f"            last rewrite {_ago(last.time)}: {last.file} ({last.key})")
    full = rw.last_full_pass
    lines.append(f"            last full pass: {full.duration_s:.2f} s over {full.files} files"
                 if full else "            first full pass running")
    if watch and watch.watch_overflows:
        lines.append(f"            {watch.watch_overflows} event overflows (each followed by a "
                     "full check; raise fs.inotify.max_queued_events if frequent)")
    if rw.pending_foreign:
        lines.append(f"            {rw.pending_foreign} foreign paths waiting for their "
                     "own machine's guard (rewrite.foreign_delay)")
    if rw.deferred_in_flight:
        lines.append(f"            {rw.deferred_in_flight} locations left alone while their "
                     "run or model is in progress")
    if rw.problem_count:
        lines.append(f"  UNPORTABLE {rw.unportable_count} unportable, "
                     f"{rw.problem_count - rw.unportable_count} other problems "
                     "(`guardctl fix --dry-run` lists them)")
    return lines


def _peer_lines(p: PeerReport | None) -> list[str]:
    if p is None:
        return []
    warnings = [f"  WARNING   {text}" for text in (p.clash, p.warning) if text]
    if not p.hosts:
        return ["  peers     none seen (no other guard's heartbeat has synced in)"] + warnings
    lines = ["  peers     host          age      mlflow    guard   state"]
    for v in p.hosts:
        state = ("STALE" if v.state == "running" else v.state) if v.stale else "ok"
        lines.append(f"            {v.host_id:<13} {duration(v.age_s):<8} "
                     f"{v.mlflow_version:<9} {v.guard_version:<7} {state}")
    return lines + warnings


def _conflict_lines(c: Off | ConflictFigures | None) -> list[str]:
    if c is None:
        return []
    if not isinstance(c, ConflictFigures):
        return ["  conflicts not resolved (conflicts.enabled: false)"]
    line = (f"  conflicts {c.resolved} copies resolved since start, "
            f"{c.needs_attention} need a look (`guardctl conflicts`)")
    lines = [line, f"            last scan {_ago(c.last_scan)}"
             + (f"; {c.waiting} copies waiting" if c.waiting else "")
             + ("; paused: store lost" if c.paused else "")]
    if c.error:
        lines.append(f"  WARNING   conflicts: {c.error}")
    return lines


def _part_lines(parts: dict[str, PartState]) -> list[str]:
    """Failed parts that no section above reports (conflicts and the vault report theirs)."""
    return [f"  WARNING   {name}: {p.error}" for name, p in parts.items()
            if p.error and name not in ("conflicts", "vault")]


def _vault_lines(v: Off | VaultFigures | None, gcs: tuple[GcProcess, ...]) -> list[str]:
    lines = []
    for p in gcs:
        lines.append(f"  MLFLOW GC running against this store: pid {p.pid} ({p.user}): "
                     f"{p.command[:100]}; deletions it makes are put back from the vault; "
                     "use `guardctl gc` instead")
    if v is None:
        return lines
    if not isinstance(v, VaultFigures):
        return ["  vault     off (vault.enabled: false): deletions are not put back"] + lines
    state = ("PAUSED: the store looks unmounted, nothing is restored" if v.unmounted
             or v.paused else "building" if not v.ready else "ok")
    lines.insert(0, f"  vault     {state}; {v.mode} mode, policy {v.policy}, {v.path}")
    lines.insert(1, f"            {v.restored} restored, {v.alerts} alerts, "
                    f"{v.followed} sanctioned or moved since start; last pass "
                    f"{_ago(v.last_pass)}")
    for entry in v.recent:
        lines.append(f"            {entry.action} {entry.path} ({entry.kind}, "
                     f"{_ago(entry.at)}): {entry.reason}")
    if v.too_large:
        lines.append(f"  WARNING   vault: {v.too_large} artifacts above vault.copy_max_bytes "
                     "are not kept (copy mode)")
    if v.error:
        lines.append(f"  WARNING   vault: {v.error}")
    return lines
