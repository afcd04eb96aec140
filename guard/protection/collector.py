"""`guardctl gc`, the sanctioned collector: what `mlflow gc` should be on a synced store.

It removes only runs and experiments that have been in MLflow's `deleted` stage for longer
than --older-than, never one a model version points to (by run id, by logged model, or by an
artifact path naming either). It holds the cross-machine "gc" lock, writes a tombstone per
removal first (so no machine's vault puts it back) and moves the data into the vault's trash,
kept gc.retention_days, rather than deleting it. `plan` is pure; `survey` reads the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from guard.core.layout import META, Entry, Kind, walk
from guard.core.metayaml import read_doc
from guard.core.timefmt import duration, ms
from guard.protection import tombstones
from guard.protection.deletions import Rel
from guard.protection.trash import move_into_trash, new_batch

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")


@dataclass(frozen=True)
class Item:
    kind: str  # run | experiment
    rel: Rel
    id: str
    name: str
    deleted_at_ms: int | None  # None: MLflow did not record when (older file stores)
    run_ids: frozenset[str] = frozenset()    # an experiment's runs
    model_ids: frozenset[str] = frozenset()  # an experiment's logged models


@dataclass(frozen=True)
class Protected:
    run_ids: frozenset[str]
    model_ids: frozenset[str]


def referenced_ids(doc: dict) -> tuple[set[str], set[str]]:
    """Run ids and logged-model ids a model version's meta.yaml names, directly or inside its
    source / storage_location (runs:/<id>/..., models:/m-<id>, .../<run_id>/artifacts/...)."""
    runs: set[str] = set()
    models: set[str] = set()
    for key in ("run_id", "model_id"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            (runs if key == "run_id" else models).add(value)
    for key in ("source", "storage_location"):
        value = doc.get(key)
        if not isinstance(value, str):
            continue
        for part in re.split(r"[/\\:]+", value):
            if _RUN_ID.match(part):
                runs.add(part)
            elif _MODEL_ID.match(part):
                models.add(part)
    return runs, models


def plan(items: list[Item], protected: Protected, now_ms: int,
         older_than_ms: int) -> tuple[list[Item], list[tuple[Item, str]]]:
    """(what to remove, what to keep with why) among items in the deleted stage (pure).

    An experiment taken whole takes its runs; a run is listed on its own only when its
    experiment stays."""
    take: list[Item] = []
    keep: list[tuple[Item, str]] = []
    taken_exps: set[Rel] = set()

    def too_new(item: Item) -> str | None:
        if item.deleted_at_ms is None:
            return None
        age = now_ms - item.deleted_at_ms
        if age < older_than_ms:
            return f"deleted {duration(age / 1000)} ago (younger than --older-than)"
        return None

    for item in sorted(items, key=lambda i: (i.kind != "experiment", i.rel)):
        if item.kind == "run" and any(item.rel[:len(e)] == e for e in taken_exps):
            continue
        why = too_new(item)
        if item.kind == "run" and item.id in protected.run_ids:
            why = "a registered model version points to it"
        if item.kind == "experiment":
            if item.run_ids & protected.run_ids or item.model_ids & protected.model_ids:
                why = "holds a run or logged model a registered model version points to"
        if why:
            keep.append((item, why))
        else:
            take.append(item)
            if item.kind == "experiment":
                taken_exps.add(item.rel)
    return take, keep


Tell = Callable[[int], None]  # told how many folders (survey) or items (collect) so far


def survey(store: Path, progress: Tell | None = None) -> tuple[list[Item], Protected]:
    """The store's deleted runs and experiments, and what model versions protect;
    `progress` hears the count of folders looked at (a big store takes a while)."""
    found: dict[Kind, list[tuple[Path, Entry]]] = {}
    for n, (path, entry) in enumerate(walk(store), 1):
        if progress is not None:
            progress(n)
        if entry.is_unit:
            found.setdefault(entry.kind, []).append((path, entry))
    runs_protected: set[str] = set()
    models_protected: set[str] = set()
    for path, _ in found.get(Kind.MODEL_VERSION, []):
        runs, models = referenced_ids(read_doc(path / META))
        runs_protected |= runs
        models_protected |= models
    run_ids: dict[Rel, set[str]] = {}
    model_ids: dict[Rel, set[str]] = {}
    for path, entry in found.get(Kind.LOGGED_MODEL, []):
        model_ids.setdefault(entry.units[0][1], set()).add(path.name)
        if path.name in models_protected:
            source = read_doc(path / META).get("source_run_id")
            if isinstance(source, str):
                runs_protected.add(source)
    items: list[Item] = []
    for path, entry in found.get(Kind.RUN, []):
        doc = read_doc(path / META)
        if not doc:
            continue
        run_ids.setdefault(entry.units[0][1], set()).add(path.name)
        if doc.get("lifecycle_stage") == "deleted":
            items.append(Item("run", entry.rel, path.name, str(doc.get("run_name") or ""),
                              ms(doc.get("deleted_time"))))
    for path, entry in found.get(Kind.EXPERIMENT, []):
        doc = read_doc(path / META)
        if doc.get("lifecycle_stage") == "deleted":
            items.append(Item("experiment", entry.rel, path.name, str(doc.get("name") or ""),
                              ms(doc.get("last_update_time")),
                              frozenset(run_ids.get(entry.rel, ())),
                              frozenset(model_ids.get(entry.rel, ()))))
    return items, Protected(frozenset(runs_protected), frozenset(models_protected))


def collect(store: Path, vault_root: Path, host_id: str, take: list[Item],
            progress: Tell | None = None) -> Path:
    """Remove `take` from the store into one trash batch, each after its tombstone;
    `progress` hears how many are done (a copy across volumes takes a while)."""
    batch = new_batch(vault_root, "guardctl gc", host_id=host_id,
                      removed=["/".join(i.rel) for i in take])
    for n, item in enumerate(take):
        if progress is not None:
            progress(n)
        tombstones.write(store, host_id, item.rel, f"guardctl gc: {item.kind} {item.id}")
        move_into_trash(store.joinpath(*item.rel), item.rel, batch)
    return batch
