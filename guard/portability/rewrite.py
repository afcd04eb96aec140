"""Which location values to rewrite, and to what (pure decisions over plain data).

A machine-specific location becomes `mlflow-artifacts:/<path relative to the store>`. That
value is the same on every machine, so rewriting converges: a canonical value is never touched
again, wherever the store is mounted. Values that are not local paths are left alone; local
paths that do not end where the file says they should (a custom location outside the store)
and paths with '..' are reported, never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from guard.core.layout import MetaKind, version_target
from guard.core.paths import PORTABLE_SCHEME, LocalPath, parse_local, portable_uri, safe_segments
from guard.core.timefmt import ms

KEEP, REWRITE, UNPORTABLE, UNSAFE = "keep", "rewrite", "unportable", "unsafe"


@dataclass(frozen=True)
class Decision:
    action: str
    new: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Change:
    key: str
    old: str
    new: str
    own: bool  # the old path is under this machine's own store root


@dataclass(frozen=True)
class Finding:
    key: str
    value: object
    problem: str  # unportable | unsafe
    why: str


@dataclass(frozen=True)
class Plan:
    kind: str
    changes: tuple[Change, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def foreign(self) -> bool:
        """Some change rewrites a path written by another machine."""
        return any(not c.own for c in self.changes)


def decide(value: str, target: tuple[str, ...]) -> Decision:
    """The decision for one location value that should name `target` in the store."""
    if value.startswith(PORTABLE_SCHEME):
        return Decision(KEEP, why="already portable")
    loc = parse_local(value)
    if loc is None:
        return Decision(KEEP, why="not a local path")
    if loc.climbs:
        return Decision(UNSAFE, why="contains '..'")
    if not safe_segments(target):
        return Decision(UNSAFE, why="target is not a plain path inside the store")
    if not loc.has_tail(target):
        return Decision(UNPORTABLE, why=f"does not end in {'/'.join(target)}")
    return Decision(REWRITE, new=portable_uri(target))


def _version_target(value: str, doc: dict) -> tuple[str, ...] | None:
    loc = parse_local(value)
    if loc is None or value.startswith(PORTABLE_SCHEME):
        return None
    model_id, run_id = doc.get("model_id"), doc.get("run_id")
    return version_target(loc.segments, model_id if isinstance(model_id, str) else None,
                          run_id if isinstance(run_id, str) else None, fold=loc.windows)


def plan_file(kind: MetaKind, doc: dict, own_root: LocalPath | None) -> Plan:
    """Every change and finding for one parsed meta.yaml."""
    changes, findings = [], []
    for key, target in kind.keys.items():
        if key not in doc or doc[key] is None:
            continue
        value = doc[key]
        if not isinstance(value, str):
            findings.append(Finding(key, value, UNSAFE, "not a string"))
            continue
        if target is None:  # model version: the place is named by the ids in the file
            target = _version_target(value, doc)
            if target is None:
                loc = parse_local(value)
                if loc is not None and not value.startswith(PORTABLE_SCHEME):
                    if loc.climbs:
                        findings.append(Finding(key, value, UNSAFE, "contains '..'"))
                    elif key == "storage_location":
                        findings.append(Finding(key, value, UNPORTABLE,
                                                "names no run or logged model in the store"))
                continue
        decision = decide(value, target)
        if decision.action == REWRITE and decision.new is not None:
            loc = parse_local(value)
            own = own_root is not None and loc is not None and loc.startswith(own_root)
            changes.append(Change(key, value, decision.new, own))
        elif decision.action in (UNPORTABLE, UNSAFE):
            findings.append(Finding(key, value, decision.action, decision.why))
    return Plan(kind.name, tuple(changes), tuple(findings))


def apply(doc: dict, changes: tuple[Change, ...]) -> dict:
    """A copy of `doc` with the changes made; every other key untouched."""
    out = dict(doc)
    for change in changes:
        out[change.key] = change.new
    return out


# ---- what must wait: a direct-file client may be writing there right now -----------------
# MLflow resolves a run's (or logged model's) artifact location once, at its first artifact;
# if the guard rewrote it before that, a training script that opened the store directly
# would fail at log_artifact/log_model, possibly hours into training. So locations of work in
# flight are left alone until it finishes (or is older than the grace: abandoned).

RUN_ACTIVE = (1, 2)  # RunStatus RUNNING, SCHEDULED
MODEL_PENDING = 1  # LoggedModelStatus PENDING
VERSION_PENDING = "PENDING_REGISTRATION"


def in_flight(kind: str, doc: dict, now_ms: int, grace_ms: int) -> bool:
    """Is this run / logged model / model version still being written by its client?"""
    if kind == "run":
        active, since = doc.get("status") in RUN_ACTIVE, ms(doc.get("start_time"))
    elif kind == "logged_model":
        active, since = doc.get("status") == MODEL_PENDING, ms(doc.get("creation_timestamp"))
    elif kind == "model_version":
        active, since = doc.get("status") == VERSION_PENDING, ms(doc.get("creation_timestamp"))
    else:
        return False
    return active and (since is None or now_ms - since < grace_ms)


def experiment_wait(doc: dict, runs: list[dict], now_ms: int, quiet_ms: int,
                    grace_ms: int) -> tuple[str, int | None] | None:
    """Why an experiment's location must not be rewritten yet and when it may be (epoch ms;
    None: when its runs finish), or None if it may be now.

    A script that opens the store directly derives each new run's location from its
    experiment's, so the experiment waits until no run is in flight and nothing started or
    ended in it for `quiet_ms` (a sweep's next run may be about to start).
    """
    if any(in_flight("run", run, now_ms, grace_ms) for run in runs):
        return "a run in it is in progress", None
    times = [ms(doc.get("creation_time"))]
    times += [ms(run.get(k)) for run in runs for k in ("start_time", "end_time")]
    last = max((t for t in times if t is not None), default=None)
    if quiet_ms > 0 and last is not None and now_ms - last < quiet_ms:
        return (f"used {max(0, now_ms - last) // 1000} s ago; rewritten after a quiet spell",
                last + quiet_ms)
    return None
