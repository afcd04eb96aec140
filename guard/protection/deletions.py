"""What a disappearance from the store means, and what the guard does about it (pure).

On a synced store a deletion anywhere is a deletion everywhere, so the vault puts back what
nothing sanctioned. Not every disappearance is a deletion, though:
- MLflow moves a deleted experiment to `.trash/<exp>` (and back on restore): a move.
- MLflow itself removes tag and alias files: following those is right.
- `guardctl gc` and the guard's server write a tombstone before they remove something:
  sanctioned, on every machine that sees the tombstone.
Everything here works on store-relative path segments and facts the caller gathered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from guard.core.layout import META, REGISTRY, TRASH, is_experiment_folder

RESTORE, FOLLOW, ALERT = "restore", "follow", "alert"
_VERSION = re.compile(r"^version-\d+$")
# Run sub-folders that are not runs (see layout._NOT_RUNS).
_NOT_RUNS = {"models", "traces", "datasets", "tags"}

Rel = tuple[str, ...]
# What a run's or logged model's folder holds: a file gone from these is data lost.
_DATA = {META, "params", "metrics", "artifacts", "inputs", "outputs"}


@dataclass(frozen=True)
class Unit:
    """A thing MLflow creates and deletes as a whole: one folder with a meta.yaml."""
    kind: str  # experiment | run | logged_model | registered_model | model_version
    rel: Rel

    @property
    def meta(self) -> Rel:
        return self.rel + (META,)


@dataclass(frozen=True)
class Verdict:
    action: str  # restore | follow | alert
    unit: Unit | None  # the unit that went (None: a file inside a unit that is still there)
    reason: str


@dataclass(frozen=True)
class Tombstone:
    """A sanctioned removal: `rel` and everything below it. `created` (registered models, whose
    names come back) limits it to the one incarnation that had this creation time."""
    rel: Rel
    created: int | None = None


def units_of(rel: Rel) -> list[Unit]:
    """The units containing `rel` (itself included), outermost first."""
    if not rel:
        return []
    base: Rel = ()
    parts = rel
    if parts[0] == TRASH:
        base, parts = (TRASH,), parts[1:]
    if not parts:
        return []
    if parts[0] == REGISTRY:
        if base or len(parts) < 2:
            return []
        found = [Unit("registered_model", (REGISTRY, parts[1]))]
        if len(parts) >= 3 and _VERSION.match(parts[2]):
            found.append(Unit("model_version", (REGISTRY, parts[1], parts[2])))
        return found
    if not is_experiment_folder(parts[0]):
        return []
    exp = base + (parts[0],)
    found = [Unit("experiment", exp)]
    if len(parts) >= 2 and parts[1] not in _NOT_RUNS and parts[1] != META:
        found.append(Unit("run", exp + (parts[1],)))
    elif len(parts) >= 3 and parts[1] == "models":
        found.append(Unit("logged_model", exp + ("models", parts[2])))
    return found


def mlflow_removes(rel: Rel, unit: Unit) -> bool:
    """Files MLflow deletes itself inside a live unit: tags (runs, experiments, logged models,
    registered models, versions; a key with '/' is a nested file), registered-model aliases,
    and an experiment's traces (trace tags, assessments; whole traces are refused at the
    server, see gate.py)."""
    inner = rel[len(unit.rel):]
    if len(inner) >= 2 and inner[0] == "tags":
        return True
    if unit.kind == "experiment" and inner[:1] == ("traces",):
        return True
    return unit.kind == "registered_model" and len(inner) == 2 and inner[0] == "aliases"


def moved_twin(unit: Unit) -> Unit | None:
    """Where an experiment goes when MLflow soft-deletes (or restores) it."""
    if unit.kind != "experiment":
        return None
    twin = unit.rel[1:] if unit.rel[0] == TRASH else (TRASH,) + unit.rel
    return Unit("experiment", twin)


def covered(unit: Unit, tombstones: Iterable[Tombstone], created: int | None) -> bool:
    """Whether a tombstone sanctions removing `unit` (created: its meta.yaml's creation time)."""
    for stone in tombstones:
        if unit.rel[:len(stone.rel)] != stone.rel:
            continue
        if stone.created is None or created is None or stone.created == created:
            return True
    return False


def judge(rel: Rel, exists: Callable[[Rel], bool], tombstones: Iterable[Tombstone],
          created: Callable[[Unit], int | None], policy: str = RESTORE) -> Verdict:
    """What to do about `rel` (a file or folder the vault knows) having left the store.

    `exists(rel)` says whether a store path is there now; `created(unit)` reads the vault's copy
    of a unit's creation time. The outermost unit whose meta.yaml is gone is what was deleted.
    """
    act = RESTORE if policy == RESTORE else ALERT
    units = units_of(rel)
    gone = next((u for u in units if not exists(u.meta)), None)
    if gone is None:
        if units and mlflow_removes(rel, units[-1]):
            return Verdict(FOLLOW, None, "MLflow removed a tag or alias")
        if not units:
            return Verdict(FOLLOW, None, "not part of a run, experiment, model or version")
        inner = rel[len(units[-1].rel):]
        if units[-1].kind in ("run", "logged_model") and inner and inner[0] not in _DATA:
            return Verdict(FOLLOW, None, "not MLflow data (a stray file in a run's folder)")
        return Verdict(act, None, f"part of {units[-1].kind} {'/'.join(units[-1].rel)} "
                                  "removed while it still exists")
    twin = moved_twin(gone)
    if twin is not None and exists(twin.meta):
        return Verdict(FOLLOW, gone, f"experiment moved to {'/'.join(twin.rel)}")
    stones = list(tombstones)
    # A tombstone on the twin counts too: a host that missed the move to .trash sees the
    # experiment vanish from its old place when `guardctl gc` removes it from .trash.
    if covered(gone, stones, created(gone)) or (twin is not None and covered(twin, stones, None)):
        return Verdict(FOLLOW, gone, "sanctioned (tombstone)")
    return Verdict(act, gone, f"{gone.kind} deleted without a tombstone")
