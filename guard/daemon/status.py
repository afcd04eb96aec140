"""`guardctl status`: what the daemon says about itself, checked against what is live now.

The daemon's status file can be stale (a daemon killed with -9 cannot clean up, a hung one
stops writing it), so the report re-checks the pids it names, probes /health itself and never
trusts a file older than STALE_AFTER. `assess`, `responding` and `parts_verdict` are the pure
verdicts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from guard.core.config import Config
from guard.core.parts import PartPhase, PartState
from guard.core.safeio import printable
from guard.core.state import StateDir
from guard.core.strenum import StrEnum
from guard.core.timefmt import duration
from guard.daemon.statusdoc import Off, Portability, StatusDoc, read_status
from guard.portability.fixer import RewriteFigures
from guard.protection.restorer import VaultFigures
from guard.supervision.processes import (
    GcProcess,
    alive,
    classify,
    orphans,
    recorded_refs,
    snapshot,
)
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

# The daemon's loop writes its status about once a second (every STORE_CHECK_INTERVAL while the
# store is away): a live daemon whose file is older than this is not responding.
STALE_AFTER = 10.0

# The parts, in the words of the people who read `guardctl status`.
TITLES = {"server": "server", "rewrite": "path rewriting", "conflicts": "conflict copies",
          "vault": "vault", "peers": "heartbeats", "gc": "gc watch", "watch": "watcher"}


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
class Orphan:
    """A process of this guard's server tree still running after its daemon died."""
    pid: int
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
    orphans: tuple[Orphan, ...] = ()
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
    if isinstance(doc.vault, VaultFigures) and doc.vault.incomplete:
        first, more = doc.vault.incomplete[0], len(doc.vault.incomplete) - 1
        return Verdict(DEGRADED, f"restore incomplete: {first.path} ({first.kind}): "
                                 f"{first.reason}" + (f"; and {more} more" if more else ""))
    return None


def orphan_verdict(daemon_alive: bool, daemon_pid: int | None,
                   orphans: tuple[Orphan, ...]) -> Verdict | None:
    """A dead daemon's server still serving is the orphan the guard exists to prevent:
    degraded (not "not running"), naming the pids and `guardctl stop`, which ends it."""
    if daemon_alive or not orphans:
        return None
    was = f" (pid {daemon_pid})" if daemon_pid else ""
    return Verdict(DEGRADED, f"the daemon{was} is not running but its server is: orphan pids "
                             f"{', '.join(str(o.pid) for o in orphans)}; `guardctl stop` "
                             "ends it")


def orphan_lines(orphans: tuple[Orphan, ...]) -> list[str]:
    """The ORPHAN section of the text form: each process of the dead daemon's server."""
    if not orphans:
        return []
    lines = ["  ORPHAN    server of a dead daemon, still running (`guardctl stop` ends it):"]
    lines.extend(f"            pid {o.pid}: {o.command[:120]}" for o in orphans)
    return lines


def responding(doc: StatusDoc, now: float) -> Verdict | None:
    """A live daemon whose status file is older than STALE_AFTER has a hung loop (or is
    stopped): what the file says is stale, so the guard is never reported OK then."""
    if doc.updated_at is None:
        return None
    age = now - doc.updated_at
    if age <= STALE_AFTER:
        return None
    where = f"; see {doc.log_file}" if doc.log_file else ""
    return Verdict(DEGRADED, f"daemon not responding (status file {age:.0f} s old){where}")


def title(name: str) -> str:
    return TITLES.get(name, name)


def part_problem(name: str, p: PartState, now: float) -> str | None:
    """What is wrong with a part and what to do about it, in one line; None when it works."""
    what, error = title(name), p.last_error or p.error
    if p.state is PartPhase.BACKOFF:
        due = p.next_start_at
        when = f" in {duration(due - now)}" if due is not None and due > now else ""
        return f"{what} failed ({error}); restarting it{when}"
    if p.state is PartPhase.CRASH_LOOP:
        return (f"{what} keeps failing and is not restarted any more (crash loop; last: "
                f"{error}); fix the cause, then run `guardctl restart`")
    if p.state is PartPhase.STUCK:
        since = duration(now - p.last_tick) if p.last_tick is not None else "long"
        return (f"{what} stuck: no progress for {since}; the log says where; a service "
                "manager restarts the daemon, otherwise run `guardctl stop` then `guardctl run`")
    if p.state is PartPhase.HELD:
        return f"{what} paused: {p.held}; it resumes by itself once that is fixed"
    if p.state is PartPhase.PAUSED:
        return f"{what} paused: the store is not usable; it resumes once the store is back"
    return None


def part_problems(parts: dict[str, PartState], now: float) -> list[str]:
    return [line for name, p in parts.items() if (line := part_problem(name, p, now))]


def parts_verdict(parts: dict[str, PartState], now: float) -> Verdict | None:
    """Any part failed, stuck, in a crash loop, held or paused: the guard is degraded."""
    problems = part_problems(parts, now)
    if not problems:
        return None
    more = len(problems) - 1
    return Verdict(DEGRADED, problems[0] + (f"; and {more} more parts (below)" if more else ""))


@dataclass(frozen=True)
class Live:
    """What `guardctl status` found live now, where the status file may be stale."""
    daemon: bool = False  # the daemon the file names runs
    tree: tuple[TreeEntry, ...] = ()  # the server tree the file names, each alive or not
    health: HealthCheck = field(default_factory=HealthCheck)
    strays: tuple[Stray, ...] = ()
    orphans: tuple[Orphan, ...] = ()  # this guard's server, serving with no daemon


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
        procs = snapshot()
        census = classify(procs, store, cfg.server.port, str(cfg.state_dir), own)
        left = () if live.daemon else orphans(
            procs, store, str(cfg.state_dir), [*recorded_refs(StateDir(cfg.state_dir)), *own])
        live = replace(live, strays=tuple(Stray(p.pid, p.username, p.command)
                                          for p in census.same_store),
                       orphans=tuple(Orphan(p.pid, p.command) for p in left))
    return summarize(doc, live, fallback, time.time())


def summarize(doc: StatusDoc | None, live: Live, fallback: StatusDoc, now: float) -> Report:
    """The report from the status file, what is live, and the configuration's fallbacks."""
    d = doc if doc is not None else fallback
    server = d.keeper.server
    server_ok = any(t.alive and t.pid == server.pid for t in live.tree)
    verdict = assess(doc, live.daemon, server_ok, live.health.ok)
    if verdict.label == HEALTHY and doc is not None:
        verdict = parts_verdict(doc.parts, now) or protection(doc) or verdict
    if live.daemon and doc is not None:
        verdict = responding(doc, now) or verdict
    verdict = orphan_verdict(live.daemon, d.daemon.pid, live.orphans) or verdict
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
        orphans=live.orphans,
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
    lines.extend(orphan_lines(r.orphans))
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
    lines.extend(_part_lines(r.parts, time.time()))
    if r.strays:
        lines.append("  STRAYS    MLflow servers over this store not started by the guard:")
        for p in r.strays:
            lines.append(f"            pid {p.pid} ({p.user}): {p.command[:120]}")
    else:
        lines.append("  strays    none")
    return printable("\n".join(lines))  # a non-UTF-8 file name shows as \xNN escapes


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


RENUMBERED_SHOWN = 5  # renumbered model versions listed by name; the rest counted


def _conflict_lines(c: Off | ConflictFigures | None) -> list[str]:
    if c is None:
        return []
    if not isinstance(c, ConflictFigures):
        return ["  conflicts not resolved (conflicts.enabled: false)"]
    line = (f"  conflicts {c.resolved} copies resolved since start, "
            f"{c.needs_attention} need a look (`guardctl conflicts`)")
    lines = [line, f"            last scan {_ago(c.last_scan)}"
             + (f"; {c.waiting} copies waiting" if c.waiting else "")
             + (f"; {c.left_alone} left alone (not regular files or too large; see the log)"
                if c.left_alone else "")
             + ("; paused: store lost" if c.paused else "")]
    for r in c.renumbered[:RENUMBERED_SHOWN]:
        lines.append(f"            renumbered {r.describe()}")
    if len(c.renumbered) > RENUMBERED_SHOWN:
        lines.append(f"            and {len(c.renumbered) - RENUMBERED_SHOWN} more renumbered "
                     "(`guardctl conflicts`)")
    for same in c.same_names:
        lines.append(f"  WARNING   {same.describe()}; merge them: `{same.command()}`")
    if c.error:
        lines.append(f"  WARNING   conflicts: {c.error}")
    return lines


def _part_lines(parts: dict[str, PartState], now: float) -> list[str]:
    """A line for each unhealthy part, and a warning for the errors of working parts that no
    section above reports (conflicts and the vault report theirs)."""
    lines = []
    for name, p in parts.items():
        problem = part_problem(name, p, now)
        if problem:
            lines.append(f"  PART      {problem}")
        elif p.error and name not in ("conflicts", "vault"):
            lines.append(f"  WARNING   {name}: {p.error}")
    return lines


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
    if v.not_regular:
        lines.append(f"            {v.not_regular} symlinks, FIFOs or devices in the store left "
                     "alone: not kept, never followed (see the log)")
    for entry in v.incomplete:
        lines.append(f"  WARNING   vault: restore incomplete: {entry.path} ({entry.kind}): "
                     f"{entry.reason}; the vault checks it again every few minutes")
    if v.error:
        lines.append(f"  WARNING   vault: {v.error}")
    return lines
