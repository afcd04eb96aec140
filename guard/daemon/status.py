"""`guardctl status`: what the daemon says about itself, checked against what is live now.

The daemon's status file can be stale (a daemon killed with -9 cannot clean up), so the report
re-checks the pids it names and probes /health itself. `assess` is the pure verdict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from guard.core.config import Config
from guard.supervision.processes import ProcRef, alive, classify, snapshot
from guard.supervision.server import probe_health
from guard.core.state import StateDir, read_json
from guard.core.strenum import StrEnum
from guard.core.timefmt import duration


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


def assess(doc: dict | None, daemon_alive: bool, server_alive: bool, health_ok: bool) -> Verdict:
    """Healthy only when the daemon lives, its server lives, is running and answers /health."""
    if not doc:
        return Verdict(NOT_RUNNING, "no status file: the daemon has not run with this state folder")
    if not daemon_alive:
        return Verdict(NOT_RUNNING, f"the daemon (pid {doc.get('daemon', {}).get('pid')}) is not "
                                    "running; start it with `guardctl run`")
    phase = doc.get("phase")
    if phase != "running":
        why = doc.get("message") or doc.get("last_reason") or ""
        return Verdict(DEGRADED, f"server {phase}" + (f": {why}" if why else ""))
    if not server_alive:
        return Verdict(DEGRADED, "the server process is gone; the daemon is restarting it")
    if not health_ok:
        return Verdict(DEGRADED, "the server does not answer /health")
    return Verdict(HEALTHY, "serving")


def protection(doc: dict) -> Verdict | None:
    """A serving guard whose deletion protection is failing or under attack is degraded."""
    gcs = doc.get("gc_processes") or []
    if gcs:
        return Verdict(DEGRADED, f"`mlflow gc` is running against the store (pid "
                                 f"{gcs[0]['pid']}); use `guardctl gc`")
    vault = doc.get("vault") or {}
    if vault.get("error"):
        return Verdict(DEGRADED, vault["error"])
    return None


def report(cfg: Config, probe_timeout: float = 3.0) -> dict:
    """Everything `guardctl status` shows, as plain data (the --json output)."""
    state = StateDir(cfg.state_dir)
    doc = read_json(state.status)
    daemon_ok = server_ok = health_ok = False
    health_detail = "not probed"
    tree: list[dict] = []
    if doc:
        try:
            daemon_ok = alive(ProcRef.from_json(doc["daemon"]))
        except (KeyError, TypeError, ValueError):
            daemon_ok = False
        server = doc.get("server") or {}
        for rec in server.get("tree") or []:
            ref = ProcRef.from_json(rec)
            tree.append({"pid": ref.pid, "alive": daemon_ok and alive(ref)})
        server_ok = any(t["alive"] and t["pid"] == server.get("pid") for t in tree)
        if daemon_ok and server.get("url"):
            health_ok, health_detail = probe_health(server["url"], probe_timeout)
    verdict = assess(doc, daemon_ok, server_ok, health_ok)
    if verdict.label == HEALTHY:
        verdict = protection(doc or {}) or verdict
    store = (doc or {}).get("store") or (str(cfg.store) if cfg.store else None)
    strays = []
    if store:
        own = [ProcRef.from_json(r) for r in ((doc or {}).get("server") or {}).get("tree") or []]
        census = classify(snapshot(), store, cfg.server.port, str(cfg.state_dir), own)
        strays = [{"pid": p.pid, "user": p.username, "command": p.command}
                  for p in census.same_store]
    now = time.time()
    daemon = (doc or {}).get("daemon") or {}
    return {
        "state": verdict.label,
        "exit_code": verdict.exit_code,
        "reason": verdict.reason,
        "daemon": {"pid": daemon.get("pid"), "alive": daemon_ok,
                   "uptime_s": round(now - daemon["started_at"], 1)
                   if daemon_ok and daemon.get("started_at") else None},
        "phase": (doc or {}).get("phase") if daemon_ok else None,
        "server": {"pid": ((doc or {}).get("server") or {}).get("pid") if daemon_ok else None,
                   "tree": tree if daemon_ok else [],
                   "url": ((doc or {}).get("server") or {}).get("url"),
                   "health": {"ok": health_ok, "detail": health_detail}},
        "restarts": (doc or {}).get("restarts", 0),
        "last_reason": (doc or {}).get("last_reason"),
        "store": store,
        "host_id": (doc or {}).get("host_id", cfg.host_id),
        "mlflow_version": (doc or {}).get("mlflow_version"),
        "guard_version": (doc or {}).get("guard_version"),
        "config_file": (doc or {}).get("config_file", str(cfg.file) if cfg.file else None),
        "state_dir": str(state.root),
        "log_file": (doc or {}).get("log_file", str(state.guard_log)),
        "server_log_file": (doc or {}).get("server_log_file", str(state.server_log)),
        "strays": strays,
        "portability": (doc or {}).get("portability") if daemon_ok else None,
        "peers": (doc or {}).get("peers") if daemon_ok else None,
        "conflicts": (doc or {}).get("conflicts") if daemon_ok else None,
        "vault": (doc or {}).get("vault") if daemon_ok else None,
        "gc_processes": (doc or {}).get("gc_processes") or [] if daemon_ok else [],
        "parts": (doc or {}).get("parts") or {} if daemon_ok else {},
        "status_age_s": round(now - doc["updated_at"], 1) if doc and doc.get("updated_at") else None,
    }


def render(r: dict) -> str:
    """The at-a-glance text form."""
    mark = {HEALTHY: "OK", DEGRADED: "DEGRADED", NOT_RUNNING: "NOT RUNNING"}[r["state"]]
    lines = [f"mlflow-guard: {mark} - {r['reason']}"]
    d, s = r["daemon"], r["server"]
    lines.append(f"  daemon    pid {d['pid']}, up {duration(d['uptime_s'])}" if d["alive"]
                 else "  daemon    not running")
    if d["alive"]:
        tree = ", ".join(f"{t['pid']}{'' if t['alive'] else ' (gone)'}" for t in s["tree"]) or "-"
        lines.append(f"  server    {r['phase']}; pid {s['pid']} (tree: {tree})")
        lines.append(f"  url       {s['url']}  health: {s['health']['detail']}")
    lines.append(f"  restarts  {r['restarts']}" +
                 (f"; last reason: {r['last_reason']}" if r["last_reason"] else ""))
    lines.append(f"  store     {r['store'] or '(not configured)'}")
    lines.append(f"  host_id   {r['host_id']}")
    lines.append(f"  mlflow    {r['mlflow_version'] or '-'}")
    lines.append(f"  config    {r['config_file'] or '(defaults and flags only)'}")
    lines.append(f"  logs      {r['log_file']}")
    lines.append(f"            {r['server_log_file']}")
    lines.extend(_portability_lines(r.get("portability")))
    lines.extend(_peer_lines(r.get("peers")))
    lines.extend(_conflict_lines(r.get("conflicts")))
    lines.extend(_vault_lines(r.get("vault"), r.get("gc_processes") or []))
    lines.extend(_part_lines(r.get("parts")))
    if r["strays"]:
        lines.append("  STRAYS    MLflow servers over this store not started by the guard:")
        for p in r["strays"]:
            lines.append(f"            pid {p['pid']} ({p['user']}): {p['command'][:120]}")
    else:
        lines.append("  strays    none")
    return "\n".join(lines)


def _ago(t: float | None) -> str:
    return "-" if t is None else f"{duration(time.time() - t)} ago"


def _portability_lines(p: dict | None) -> list[str]:
    if not p:
        return []
    if p.get("enabled") is False:
        return ["  paths     rewriting disabled (rewrite.enabled: false)"]
    mode = p.get("watch_mode", "-") + (" (paused: store lost)" if p.get("paused") else "")
    lines = [f"  paths     watching by {mode}; {p['rewrites_total']} rewrites, "
             f"{p['rewrites_last_hour']} in the last hour"]
    last = p.get("last_rewrite")
    if last:
        lines.append(f"            last rewrite {_ago(last['time'])}: {last['file']} ({last['key']})")
    full = p.get("last_full_pass")
    lines.append(f"            last full pass: {full['duration_s']:.2f} s over {full['files']} files"
                 if full else "            first full pass running")
    if p.get("watch_overflows"):
        lines.append(f"            {p['watch_overflows']} event overflows (each followed by a "
                     "full check; raise fs.inotify.max_queued_events if frequent)")
    if p.get("pending_foreign"):
        lines.append(f"            {p['pending_foreign']} foreign paths waiting for their "
                     "own machine's guard (rewrite.foreign_delay)")
    if p.get("deferred_in_flight"):
        lines.append(f"            {p['deferred_in_flight']} locations left alone while their "
                     "run or model is in progress")
    if p.get("problem_count"):
        lines.append(f"  UNPORTABLE {p['unportable_count']} unportable, "
                     f"{p['problem_count'] - p['unportable_count']} other problems "
                     "(`guardctl fix --dry-run` lists them)")
    return lines


def _peer_lines(p: dict | None) -> list[str]:
    if p is None:
        return []
    warnings = [f"  WARNING   {p[key]}" for key in ("clash", "warning") if p.get(key)]
    if not p.get("list"):
        return ["  peers     none seen (no other guard's heartbeat has synced in)"] + warnings
    lines = ["  peers     host          age      mlflow    guard   state"]
    for v in p["list"]:
        state = ("STALE" if v["state"] == "running" else v["state"]) if v["stale"] else "ok"
        lines.append(f"            {v['host_id']:<13} {duration(v['age_s']):<8} "
                     f"{v['mlflow_version']:<9} {v['guard_version']:<7} {state}")
    return lines + warnings


def _conflict_lines(c: dict | None) -> list[str]:
    if not c:
        return []
    if c.get("enabled") is False:
        return ["  conflicts not resolved (conflicts.enabled: false)"]
    line = (f"  conflicts {c['resolved']} copies resolved since start, "
            f"{c['needs_attention']} need a look (`guardctl conflicts`)")
    lines = [line, f"            last scan {_ago(c.get('last_scan'))}"
             + (f"; {c['waiting']} copies waiting" if c.get("waiting") else "")
             + ("; paused: store lost" if c.get("paused") else "")]
    if c.get("error"):
        lines.append(f"  WARNING   conflicts: {c['error']}")
    return lines


def _part_lines(parts: dict | None) -> list[str]:
    """Failed parts that no section above reports (conflicts and the vault report theirs)."""
    return [f"  WARNING   {name}: {p['error']}" for name, p in (parts or {}).items()
            if p.get("error") and name not in ("conflicts", "vault")]


def _vault_lines(v: dict | None, gcs: list[dict]) -> list[str]:
    lines = []
    for p in gcs:
        lines.append(f"  MLFLOW GC running against this store: pid {p['pid']} ({p['user']}): "
                     f"{p['command'][:100]}; deletions it makes are put back from the vault; "
                     "use `guardctl gc` instead")
    if not v:
        return lines
    if v.get("enabled") is False:
        return ["  vault     off (vault.enabled: false): deletions are not put back"] + lines
    state = ("PAUSED: the store looks unmounted, nothing is restored" if v.get("unmounted")
             or v.get("paused") else "building" if not v.get("ready") else "ok")
    lines.insert(0, f"  vault     {state}; {v['mode']} mode, policy {v['policy']}, {v['path']}")
    lines.insert(1, f"            {v['restored']} restored, {v['alerts']} alerts, "
                    f"{v['followed']} sanctioned or moved since start; last pass "
                    f"{_ago(v.get('last_pass'))}")
    for entry in v.get("recent") or []:
        lines.append(f"            {entry['action']} {entry['path']} ({entry['kind']}, "
                     f"{_ago(entry['at'])}): {entry['reason']}")
    if v.get("too_large"):
        lines.append(f"  WARNING   vault: {v['too_large']} artifacts above vault.copy_max_bytes "
                     "are not kept (copy mode)")
    if v.get("error"):
        lines.append(f"  WARNING   vault: {v['error']}")
    return lines
