"""`guardctl status`: what the daemon says about itself, checked against what is live now.

The daemon's status file can be stale (a daemon killed with -9 cannot clean up, a hung one
stops writing it), so the report re-checks the pids it names, probes /health itself and never
trusts a file older than STALE_AFTER. `assess`, `responding` and `parts_verdict` are the pure
verdicts.
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from guard.core.config import Config
from guard.core.parts import PartPhase, PartState
from guard.core.safeio import printable
from guard.core.state import StateDir
from guard.core.strenum import StrEnum
from guard.core.timefmt import duration
from guard.core.words import count, said
from guard.daemon.statusdoc import Off, Portability, StatusDoc, read_status
from guard.portability.fixer import RewriteFigures
from guard.protection.restorer import Unprotected, VaultFigures
from guard.supervision.processes import (
    LOCAL_FOLDERS,
    GcProcess,
    alive,
    classify,
    orphans,
    recorded_refs,
    served_store,
    server_line,
    server_port,
    snapshot,
)
from guard.supervision.server import probe_health
from guard.supervision.supervisor import Phase
from guard.sync.heartbeats import PeerReport
from guard.sync.locks import list_locks
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
    port: int | None = None
    store: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A request the guard's server refused (the state folder's refusal journal): MLflow's UI
    may show only "Something went wrong", so status and the status page say what and why."""
    at: float
    method: str
    path: str
    what: str    # the operation, in words ("delete traces")
    reason: str  # the refusal's message
    status: int = 403


@dataclass(frozen=True)
class HeldLock:
    """A cross-machine lock held in the store now (as `guardctl locks` lists it)."""
    resource: str
    holder: str | None
    state: str
    age_s: float
    text: str


@dataclass(frozen=True)
class JournalLine:
    """One of the latest lines of the state folder's journals, in words."""
    at: float
    journal: str  # rewrites, conflicts, vault, registrations, refusals
    text: str


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
    locks: tuple[HeldLock, ...] = ()
    refusals: tuple[Refusal, ...] = ()  # the latest first (REFUSALS_SHOWN within REFUSALS_AGE)
    journal: tuple[JournalLine, ...] = ()  # the latest first
    problems: tuple[str, ...] = ()  # each problem and what to do about it, one line each


def assess(doc: StatusDoc | None, daemon_alive: bool, server_alive: bool,
           health_ok: bool) -> Verdict:
    """Healthy only when the daemon lives, its server lives, is running and answers /health."""
    if doc is None:
        return Verdict(NOT_RUNNING, "no status file: the daemon has not run with this state folder")
    if not daemon_alive:
        was = f" (pid {doc.daemon.pid})" if doc.daemon.pid is not None else ""
        return Verdict(NOT_RUNNING, f"the daemon{was} is not running; start it with "
                                    "`guardctl run`")
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
    locks: tuple[HeldLock, ...] = ()  # held in the store now
    refusals: tuple[Refusal, ...] = ()  # the refusal journal's latest lines
    journal: tuple[JournalLine, ...] = ()  # the journals' latest lines


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
    return gather(StateDir(cfg.state_dir), fallback_of(cfg), cfg.server.port,
                  lambda url: HealthCheck(*probe_health(url, probe_timeout)))


def gather(state: StateDir, fallback: StatusDoc, port: int,
           health: Callable[[str], HealthCheck]) -> Report:
    """The report from the state folder, the store and the processes live now. `health`
    answers for the server at a URL: `guardctl status` probes /health; the status page, served
    by that very server, knows it answers and must not call itself."""
    doc = read_status(state.status)
    live = Live()
    if doc is not None:
        ref = doc.daemon.ref
        daemon_ok = ref is not None and alive(ref)
        server = doc.keeper.server
        tree = tuple(TreeEntry(r.pid, daemon_ok and alive(r)) for r in server.tree)
        checked = health(server.url) if daemon_ok and server.url else HealthCheck()
        live = Live(daemon_ok, tree, checked)
    store = store_of(doc, fallback)
    now = time.time()
    if store:
        own = list(doc.keeper.server.tree) if doc else []
        procs = snapshot()
        census = classify(procs, store, port, str(state.root), own)
        left = () if live.daemon else orphans(
            procs, store, str(state.root), [*recorded_refs(state), *own])
        live = replace(live, strays=tuple(
            Stray(p.pid, p.username, p.command, server_port(p), served_store(p, LOCAL_FOLDERS))
            for p in census.same_store),
            orphans=tuple(Orphan(p.pid, p.command) for p in left),
            locks=held_locks(list_locks(Path(store), now)))
    journals = {name: tail_records(path) for name, path in journal_files(state).items()}
    refused = journals.pop("refusals", [])  # listed on their own
    live = replace(live, refusals=recent_refusals(refused, now), journal=latest_lines(journals))
    return summarize(doc, live, fallback, now)


# ---- the locks, refusals and journals (pure but for tail_records) ------------------------------

REFUSALS_SHOWN = 20          # the latest refused requests in the report
REFUSALS_AGE = 24 * 3600.0   # ... of the last day
JOURNAL_SHOWN = 15           # the latest journal lines in the report
TAIL_BYTES = 64 * 1024       # read from the end of each journal: enough for those lines


def journal_files(state: StateDir) -> dict[str, Path]:
    """The state folder's journals, by the name the report gives them."""
    return {"rewrites": state.rewrite_journal, "conflicts": state.conflict_journal,
            "vault": state.vault_journal, "registrations": state.registration_journal,
            "refusals": state.refusal_journal}


def tail_records(path: Path, size: int = TAIL_BYTES) -> list[dict]:
    """The records of the last `size` bytes of a journal, oldest first (a line cut by the
    start of the window, or torn by a crash, is skipped); [] when there is no journal."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(max(0, end - size))
            data = fh.read(size)
    except OSError:
        return []
    lines = data.split(b"\n")
    if end > size:
        lines = lines[1:]
    out = []
    for raw in lines:
        try:
            record = json.loads(raw.decode("utf-8", "surrogateescape"))
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def held_locks(found: Iterable[Mapping]) -> tuple[HeldLock, ...]:
    """The locks `list_locks` found that are held (not released leases)."""
    return tuple(HeldLock(str(f.get("resource")), _text_or_none(f.get("holder")),
                          str(f.get("state")), float(f.get("age_s") or 0.0), str(f.get("text")))
                 for f in found if not f.get("released"))


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else default


def recent_refusals(records: Iterable[dict], now: float, within: float = REFUSALS_AGE,
                    limit: int = REFUSALS_SHOWN) -> tuple[Refusal, ...]:
    """The latest `limit` refusals of the last `within` seconds, newest first."""
    found = [Refusal(_number(r.get("time")), str(r.get("method", "")), str(r.get("path", "")),
                     str(r.get("what", "")), str(r.get("reason", "")),
                     int(_number(r.get("status"), 403)))
             for r in records]
    fresh = [f for f in found if now - within <= f.at <= now + 60]
    return tuple(sorted(fresh, key=lambda f: f.at, reverse=True)[:limit])


_QUIET_FIELDS = frozenset({"time", "txn", "before", "after", "old_text", "old_b64", "host"})


def journal_text(record: Mapping) -> str:
    """A journal record in one short line: its fields but the bulky or internal ones."""
    parts = [f"{k}={v}" for k, v in record.items()
             if k not in _QUIET_FIELDS and not k.endswith("_b64") and v not in (None, "")]
    text = ", ".join(parts)
    return text if len(text) <= 200 else text[:199] + "…"


def latest_lines(journals: Mapping[str, Iterable[dict]],
                 limit: int = JOURNAL_SHOWN) -> tuple[JournalLine, ...]:
    """The latest `limit` lines over all journals, newest first."""
    lines = [JournalLine(_number(r.get("time")), name, journal_text(r))
             for name, records in journals.items() for r in records]
    return tuple(sorted(lines, key=lambda ln: ln.at, reverse=True)[:limit])


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
    r = Report(
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
        locks=live.locks,
        refusals=live.refusals,
        journal=live.journal,
    )
    return replace(r, problems=problems(r, now))


UNPROTECTED_MORE = "and more store files the vault could not keep than it lists (see the log)"


def unprotected_text(u: Unprotected) -> str:
    """Store files the vault could not keep for one reason, a few of them, and what to do:
    a warning (the guard works; only deleting those files cannot be undone), as too_large."""
    shown = ", ".join(one_line(e) for e in u.examples)
    more = u.count - len(u.examples)
    them = "it" if u.count == 1 else "them"
    return (f"{count(u.count, 'store file')} not kept by the vault ({one_line(u.reason)}): "
            f"{shown}{f' and {more} more' if more > 0 else ''}; deleting {them} cannot be "
            f"undone: {u.fix or 'see the log'}")


def problems(r: Report, now: float) -> tuple[str, ...]:
    """Each problem the report shows, with what to do about it, one line each (the status
    page's list; the verdict's reason first when no line below says it)."""
    out = list(part_problems(r.parts, now))
    for p in r.gc_processes:
        out.append(f"`mlflow gc` is running against this store (pid {p.pid}, "
                   f"{said(p.user, 'user unknown')}): the deletions it makes are put back from "
                   "the vault; stop it and use `guardctl gc` instead")
    for o in r.orphans:
        out.append(f"pid {o.pid} is a server of a dead daemon, still running: "
                   "`guardctl stop` ends it")
    for st in r.strays:
        out.append(f"an MLflow server not started by the guard serves this store ("
                   f"{server_line(st.pid, st.user, st.port, st.store)}): it writes without the "
                   "guard's locks; stop it and use the guard's server")
    v = r.vault
    if isinstance(v, VaultFigures):
        if v.unmounted or v.paused:
            out.append("the vault is paused: the store looks unmounted, nothing is restored; "
                       "it resumes once the store is back")
        for e in v.incomplete:
            out.append(f"restore incomplete: {e.path} ({e.kind}): {e.reason}; the vault "
                       "checks it again every few minutes")
        out.extend(unprotected_text(u) for u in v.unprotected)
        if v.unprotected_more:
            out.append(UNPROTECTED_MORE)
        if v.too_large:
            out.append(f"{count(v.too_large, 'artifact')} above vault.copy_max_bytes "
                       f"{'is' if v.too_large == 1 else 'are'} not kept (copy mode): raise "
                       "vault.copy_max_bytes, or use the hardlink mode")
        if v.error:
            out.append(f"vault: {v.error}")
    elif isinstance(v, Off):
        out.append("the vault is off (vault.enabled: false): deletions are not put back")
    c = r.conflicts
    if isinstance(c, ConflictFigures):
        if c.needs_attention:
            out.append(f"{count(c.needs_attention, 'conflict copy')} "
                       f"{'needs' if c.needs_attention == 1 else 'need'} a person: "
                       "`guardctl conflicts` lists them")
        for same in c.same_names:
            out.append(f"{same.describe()}; merge them: `{same.command()}`")
        if c.error:
            out.append(f"conflict copies: {c.error}")
    peers = r.peers
    if peers is not None:
        for h in peers.hosts:
            if h.stale:
                out.append(f"{h.host_id} has not been heard from for {duration(h.age_s)}: "
                           "its machine is off, its guard stopped or sync is stuck; the locks "
                           "it holds free themselves once it is stale")
        out.extend(text for text in (peers.clash, peers.warning, peers.error) if text)
    rw = r.portability.rewrite if r.portability is not None else None
    if isinstance(rw, RewriteFigures) and rw.unportable_count:
        out.append(f"{count(rw.unportable_count, 'unportable path')}: `guardctl fix "
                   "--dry-run` lists them")
    if r.state is not HEALTHY and not any(line in r.reason for line in out):
        out.insert(0, r.reason + (f"; see {r.log_file}" if r.state is DEGRADED
                                  and r.log_file and r.log_file not in r.reason else ""))
    return tuple(out)


# ---- the text ------------------------------------------------------------------------------

_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` on one line whatever it holds: control characters (a newline in a model or file
    name synced in), line and paragraph separators and invisible format characters (a
    right-to-left override) as escapes, a non-UTF-8 name as \\xNN (printable)."""
    out = []
    for ch in printable(text):
        if ch in _NAMED_CONTROLS:
            out.append(_NAMED_CONTROLS[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def health_words(check: HealthCheck) -> str:
    """The /health check in words: 'answering', 'not answering: connection refused'."""
    if check.ok:
        return "answering"
    if check.detail == "not probed":
        return "not checked"
    detail = check.detail
    if detail.startswith("[Errno") and "] " in detail:
        detail = detail.split("] ", 1)[1]
    if detail[1:2].islower():  # "Connection refused", not "HTTP 500"
        detail = detail[:1].lower() + detail[1:]
    return f"not answering: {detail}" if detail else "not answering"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


REFUSALS_LISTED = 5  # refused requests listed by `guardctl status`; the page lists them all


def refusal_lines(refusals: tuple[Refusal, ...]) -> list[str]:
    """The REFUSED section: how many in the last day, and the latest few with their reason."""
    if not refusals:
        return []
    lines = [f"  REFUSED   {count(len(refusals), 'request')} refused by the guard in the last "
             "24 hours (MLflow's UI may show only \"Something went wrong\"):"]
    for f in refusals[:REFUSALS_LISTED]:
        lines.append(f"            {_when(f.at)} {f.method} {f.path} ({f.what}): {f.reason}")
    if len(refusals) > REFUSALS_LISTED:
        lines.append(f"            and {len(refusals) - REFUSALS_LISTED} more (the status page "
                     "lists them: /guard/ on the server)")
    return lines


def lock_lines(locks: tuple[HeldLock, ...]) -> list[str]:
    if not locks:
        return []
    lines = [f"  locks     {count(len(locks), 'lock')} held in the store (`guardctl locks`):"]
    lines.extend(f"            {lock.text}" for lock in locks[:5])
    if len(locks) > 5:
        lines.append(f"            and {len(locks) - 5} more")
    return lines


def render(r: Report) -> str:
    """The at-a-glance text form: one entry of `lines` per line, each escaped to one line
    (`one_line`), since names synced in from other machines may hold anything."""
    mark = {HEALTHY: "OK", DEGRADED: "DEGRADED", NOT_RUNNING: "NOT RUNNING"}[r.state]
    lines = [f"mlflow-guard: {mark} - {r.reason}"]
    d, s = r.daemon, r.server
    lines.append(f"  daemon    pid {d.pid}, up {duration(d.uptime_s)}" if d.alive
                 else "  daemon    not running")
    if d.alive:
        if s.pid is None:
            lines.append(f"  server    {_phase(r.phase)}; no server process")
        else:
            tree = ", ".join(f"{t.pid}{'' if t.alive else ' (gone)'}" for t in s.tree)
            lines.append(f"  server    {_phase(r.phase)}; pid {s.pid}"
                         + (f" (tree: {tree})" if tree else ""))
        lines.append(f"  url       {said(s.url, 'none yet')}  health: {health_words(s.health)}")
    lines.extend(orphan_lines(r.orphans))
    lines.append(f"  restarts  {r.restarts}" +
                 (f"; last reason: {r.last_reason}" if r.last_reason else ""))
    lines.append(f"  store     {r.store or '(not configured)'}")
    lines.append(f"  host_id   {said(r.host_id)}")
    lines.append(f"  mlflow    {said(r.mlflow_version)}")
    lines.append(f"  config    {r.config_file or '(defaults and flags only)'}")
    lines.append(f"  logs      {r.log_file}")
    lines.append(f"            {r.server_log_file}")
    lines.extend(_portability_lines(r.portability))
    lines.extend(_peer_lines(r.peers))
    lines.extend(_conflict_lines(r.conflicts))
    lines.extend(_vault_lines(r.vault, r.gc_processes))
    lines.extend(_part_lines(r.parts, time.time()))
    lines.extend(lock_lines(r.locks))
    lines.extend(refusal_lines(r.refusals))
    if r.strays:
        lines.append("  STRAYS    MLflow servers over this store not started by the guard:")
        for p in r.strays:
            lines.append(f"            {server_line(p.pid, p.user, p.port, p.store)}")
    else:
        lines.append("  strays    none")
    return "\n".join(one_line(line) for line in lines)


def _phase(phase: Phase | None) -> str:
    return phase.value if phase is not None else "unknown"


def _ago(t: float | None) -> str:
    return "never" if t is None else f"{duration(time.time() - t)} ago"


def _portability_lines(p: Portability | None) -> list[str]:
    if p is None:
        return []
    rw, watch = p.rewrite, p.watch
    if not isinstance(rw, RewriteFigures):
        return ["  paths     rewriting disabled (rewrite.enabled: false)"]
    mode = (f"watching by {watch.watch_mode}" if watch and watch.watch_mode
            else "not watching yet") + (" (paused: store lost)" if rw.paused else "")
    lines = [f"  paths     {mode}; {count(rw.rewrites_total, 'rewrite')}, "
             f"{rw.rewrites_last_hour} in the last hour"]
    last = rw.last_rewrite
    if last:
        lines.append(f"            last rewrite {_ago(last.time)}: {last.file} ({last.key})")
    full = rw.last_full_pass
    lines.append(f"            last full pass: {full.duration_s:.2f} s over "
                 f"{count(full.files, 'file')}" if full
                 else "            first full pass running")
    if watch and watch.watch_overflows:
        lines.append(f"            {count(watch.watch_overflows, 'event overflow')} (each "
                     "followed by a full check; raise fs.inotify.max_queued_events if frequent)")
    if rw.pending_foreign:
        lines.append(f"            {count(rw.pending_foreign, 'foreign path')} waiting for "
                     "their own machine's guard (rewrite.foreign_delay)")
    lines.extend(deferred_lines(rw.deferred_in_flight, rw.deferred_quiet))
    if rw.problem_count:
        other = rw.problem_count - rw.unportable_count
        lines.append(f"  UNPORTABLE {rw.unportable_count} unportable, "
                     f"{count(other, 'other problem')} (`guardctl fix --dry-run` lists them)")
    return lines


def deferred_lines(in_flight: int, quiet: int) -> list[str]:
    """Locations whose rewrite waits: those of a run or model in progress, and experiments
    that only wait out their quiet spell (nothing in progress; rewrite.experiment_quiet)."""
    busy, quiet = max(0, in_flight - quiet), min(quiet, in_flight)
    lines = []
    if busy:
        lines.append(f"            {count(busy, 'location')} left alone while "
                     f"{'its' if busy == 1 else 'their'} run or model is in progress")
    if quiet:
        lines.append(f"            {count(quiet, 'experiment')} waiting out "
                     f"{'its' if quiet == 1 else 'their'} quiet spell before "
                     f"{'its location is' if quiet == 1 else 'their locations are'} rewritten "
                     "(rewrite.experiment_quiet)")
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
                     f"{said(v.mlflow_version):<9} {said(v.guard_version):<7} {state}")
    return lines + warnings


RENUMBERED_SHOWN = 5  # renumbered model versions listed by name; the rest counted


def _conflict_lines(c: Off | ConflictFigures | None) -> list[str]:
    if c is None:
        return []
    if not isinstance(c, ConflictFigures):
        return ["  conflicts not resolved (conflicts.enabled: false)"]
    line = (f"  conflicts {count(c.resolved, 'copy')} resolved since start, "
            f"{c.needs_attention} {'needs' if c.needs_attention == 1 else 'need'} a look "
            "(`guardctl conflicts`)")
    lines = [line, f"            last scan {_ago(c.last_scan)}"
             + (f"; {count(c.waiting, 'copy')} waiting" if c.waiting else "")
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


def building(v: VaultFigures) -> str:
    """The vault's first build, with how far it has got (a large store takes minutes)."""
    return f"building ({count(v.pass_folders, 'store folder')} so far)"


def _vault_lines(v: Off | VaultFigures | None, gcs: tuple[GcProcess, ...]) -> list[str]:
    lines = []
    for p in gcs:
        lines.append(f"  MLFLOW GC running against this store: pid {p.pid} "
                     f"({said(p.user, 'user unknown')}): {p.command[:100]}; deletions it "
                     "makes are put back from the vault; use `guardctl gc` instead")
    if v is None:
        return lines
    if not isinstance(v, VaultFigures):
        return ["  vault     off (vault.enabled: false): deletions are not put back"] + lines
    state = ("PAUSED: the store looks unmounted, nothing is restored" if v.unmounted
             or v.paused else building(v) if not v.ready else "ok")
    lines.insert(0, f"  vault     {state}; {v.mode} mode, policy {v.policy}, {v.path}")
    lines.insert(1, f"            {v.restored} restored, {count(v.alerts, 'alert')}, "
                    f"{v.followed} sanctioned or moved since start; last pass "
                    f"{_ago(v.last_pass)}")
    for entry in v.recent:
        lines.append(f"            {entry.action} {entry.path} ({entry.kind}, "
                     f"{_ago(entry.at)}): {entry.reason}")
    if v.too_large:
        lines.append(f"  WARNING   vault: {count(v.too_large, 'artifact')} above "
                     f"vault.copy_max_bytes {'is' if v.too_large == 1 else 'are'} not kept "
                     "(copy mode)")
    for u in v.unprotected:
        lines.append(f"  WARNING   vault: {unprotected_text(u)}")
    if v.unprotected_more:
        lines.append(f"            {UNPROTECTED_MORE}")
    if v.not_regular:
        lines.append(f"            {v.not_regular} symlinks, FIFOs or devices in the store left "
                     "alone: not kept, never followed (see the log)")
    for entry in v.incomplete:
        lines.append(f"  WARNING   vault: restore incomplete: {entry.path} ({entry.kind}): "
                     f"{entry.reason}; the vault checks it again every few minutes")
    if v.error:
        lines.append(f"  WARNING   vault: {v.error}")
    return lines
