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

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from guard.core.config import VaultPolicy
from guard.core.layout import META, META_UNITS, Kind, Rel, describe, trash_twin
from guard.core.strenum import StrEnum


class Action(StrEnum):
    """What the vault does about a disappearance."""
    RESTORE = "restore"  # put it back
    FOLLOW = "follow"    # let it go: a move, MLflow's own removal, or sanctioned
    ALERT = "alert"      # report it only (vault.policy: alert)


RESTORE, FOLLOW, ALERT = Action.RESTORE, Action.FOLLOW, Action.ALERT  # short names for callers

# What a run's or logged model's folder holds besides its meta.yaml: a file gone from these
# is data lost.
_DATA = frozenset({Kind.PARAM, Kind.METRIC, Kind.ARTIFACT, Kind.INPUT, Kind.OUTPUT})


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
    action: Action
    unit: Unit | None  # the unit that went (None: a file inside a unit that is still there)
    reason: str


@dataclass(frozen=True)
class Tombstone:
    """A sanctioned removal: `rel` and everything below it. `created` (registered models, whose
    names come back) limits it to the one incarnation that had this creation time."""
    rel: Rel
    created: int | None = None


def units_of(rel: Rel) -> list[Unit]:
    """The units containing `rel` (itself included), outermost first, as layout.describe
    finds them; a trace has no meta.yaml and counts as part of its experiment here."""
    return [Unit(kind.value, path) for kind, path in describe(rel).units if kind in META_UNITS]


def mlflow_removes(rel: Rel) -> bool:
    """Files MLflow deletes itself inside a live unit: tags (runs, experiments, logged models,
    registered models, versions; a key with '/' is a nested file), registered-model aliases,
    and an experiment's traces (trace tags, assessments; whole traces are refused at the
    server, see gate.py)."""
    entry = describe(rel)
    if entry.kind in (Kind.TAG, Kind.ALIAS) and entry.key:
        return True
    return entry.kind is Kind.TRACE or entry.unit_kind is Kind.TRACE


def moved_twin(unit: Unit) -> Unit | None:
    """Where an experiment goes when MLflow soft-deletes (or restores) it."""
    if unit.kind != "experiment":
        return None
    return Unit("experiment", trash_twin(unit.rel))


def covered(unit: Unit, tombstones: Iterable[Tombstone], created: int | None) -> bool:
    """Whether a tombstone sanctions removing `unit` (created: its meta.yaml's creation time)."""
    for stone in tombstones:
        if unit.rel[:len(stone.rel)] != stone.rel:
            continue
        if stone.created is None or created is None or stone.created == created:
            return True
    return False


def judge(rel: Rel, exists: Callable[[Rel], bool], tombstones: Iterable[Tombstone],
          created: Callable[[Unit], int | None], policy: str = VaultPolicy.RESTORE) -> Verdict:
    """What to do about `rel` (a file or folder the vault knows) having left the store.

    `exists(rel)` says whether a store path is there now; `created(unit)` reads the vault's copy
    of a unit's creation time. The outermost unit whose meta.yaml is gone is what was deleted.
    """
    act = RESTORE if policy == VaultPolicy.RESTORE else ALERT
    units = units_of(rel)
    gone = next((u for u in units if not exists(u.meta)), None)
    if gone is None:
        if units and mlflow_removes(rel):
            return Verdict(FOLLOW, None, "MLflow removed a tag or alias")
        if not units:
            return Verdict(FOLLOW, None, "not part of a run, experiment, model or version")
        entry = describe(rel)
        if units[-1].kind in (Kind.RUN, Kind.LOGGED_MODEL) and not (
                entry.is_unit or entry.meta or entry.kind in _DATA):
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


def restore_wait(host_id: str, live_hosts: Iterable[str], grace: float) -> float:
    """How long this host waits before it puts back a disappearance: the grace (the worst sync
    delay) times one more than its rank among the hosts running a guard now (sorted host ids).

    Every host's vault sees the same deletion, about one sync delay apart. If all restored
    after the same grace, each sync client would be pulling the other host's restore while its
    own vault writes the same files: Syncthing then fails those pulls ("file modified but not
    rescanned") and leaves `.syncthing.<name>.tmp` files in the run folder, which MLflow reads
    as params, tags and metrics. Staggered, the first host's restore has arrived everywhere
    before the next host's turn, and the next host finds the unit there. A host that is down
    does not count, so the next one in line takes its turn."""
    ranked = sorted({*live_hosts, host_id})
    return grace * (1 + ranked.index(host_id))
