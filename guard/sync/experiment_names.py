"""Experiments sharing a name in a store: found, the merge planned and carried out (the shell
over guard.sync.experiments). Every read and write goes through the safe path layer, nothing
followed, each meta.yaml bounded; nothing is deleted (tombstones, then the vault's trash)."""

from __future__ import annotations

import stat
from pathlib import Path

from guard.core import metayaml, safeio, safepath
from guard.core.journal import Journal
from guard.core.layout import (
    DATASETS,
    LOGGED_MODELS,
    META,
    REGISTRY,
    TRACES,
    Kind,
    describe,
    is_experiment_folder,
    version_number,
)
from guard.core.safepath import Target
from guard.protection import tombstones, verify
from guard.protection.deletions import Unit
from guard.protection.trash import created_of, move_into_trash, new_batch
from guard.protection.verify import Probe, probe_for, probes_for
from guard.sync.experiments import Contents, MergePlan, SameName, plan_merge, same_names

MAX_META = 1024 * 1024


def _doc(target: Target) -> dict:
    """A meta.yaml's mapping; {} when it is missing, unusable or not a regular file."""
    try:
        with safepath.open_file(target) as (fh, _st):
            return metayaml.parse(safeio.read_bounded(fh, MAX_META))
    except (OSError, safeio.UnsafeFile, safepath.Escape, metayaml.MetaError):
        return {}


def _dirs(target: Target) -> list[str]:
    try:
        return [name for name, st in safepath.entries(target) if stat.S_ISDIR(st.st_mode)]
    except (OSError, safepath.Escape):
        return []


def _names(target: Target) -> list[str]:
    try:
        return [name for name, _st in safepath.entries(target)]
    except (OSError, safepath.Escape):
        return []


def experiments(store: Path) -> list[tuple[str, dict]]:
    """(folder, meta.yaml mapping) of every experiment at the store's root (not .trash)."""
    root = Target(Path(store), ())
    return [(name, _doc(root.child(name, META))) for name in _dirs(root)
            if is_experiment_folder(name)]


def find_same_names(store: Path) -> list[SameName]:
    return same_names(experiments(store))


def contents(store: Path, exp: str) -> Contents:
    """An experiment folder's runs, logged models and other entries."""
    at = Target(Path(store), (exp,))
    runs, other = [], []
    for name in _names(at):
        if name == META:
            continue
        if describe((exp, name)).kind is Kind.RUN:
            runs.append((name, _doc(at.child(name, META))))
        elif name in (TRACES, DATASETS) and not _names(at.child(name)):
            continue  # an empty folder MLflow made: nothing to move
        elif name != LOGGED_MODELS:
            other.append(name)
    models = [(name, _doc(at.child(LOGGED_MODELS, name, META)))
              for name in _dirs(at.child(LOGGED_MODELS))]
    return Contents(exp, tuple(runs), tuple(models), tuple(other))


def registry_versions(store: Path) -> list[tuple[tuple[str, ...], dict]]:
    """(meta.yaml path, mapping) of every model version in the registry."""
    registry = Target(Path(store), (REGISTRY,))
    found: list[tuple[tuple[str, ...], dict]] = []
    for model in _dirs(registry):
        for version in _dirs(registry.child(model)):
            if version_number(version) is not None:
                rel = (REGISTRY, model, version, META)
                found.append((rel, _doc(Target(Path(store), rel))))
    return found


def plan_for(store: Path, name: str) -> MergePlan | None:
    """The merge plan for the experiments named `name`; None when fewer than two active
    experiments hold that name."""
    group = next((g for g in find_same_names(store) if g.name == name), None)
    if group is None:
        return None
    keep = Target(Path(store), (group.keep,))
    return plan_merge(group, [contents(store, exp) for exp in group.merged],
                      _names(keep), _dirs(keep.child(LOGGED_MODELS)), registry_versions(store))


def _probes(store: Path, plan: MergePlan) -> list[Probe]:
    """What MLflow must open after the merge: each moved run and logged model at its new
    place, with its metric histories and top-level artifacts, and each repointed version."""
    probes: list[Probe] = []
    for move in plan.moves:
        kind = Kind.RUN.value if move.what == "run" else Kind.LOGGED_MODEL.value
        kept = [(move.dst + sub, what is None)
                for sub, what in safepath.walk_files(Target(Path(store), move.dst))]
        probes.extend(probes_for(Unit(kind, move.dst), kept)[:1])
    for rp in plan.repoints:
        probes.append(probe_for(Unit(Kind.MODEL_VERSION.value, rp.version[:-1]), ()))
    return probes


def merge(store: Path, vault_root: Path, host_id: str, plan: MergePlan,
          journal: Journal) -> tuple[Path, list[str]]:
    """Carry out `plan` (made under the experiment name's cross-machine lock, which the
    caller holds): each run and logged model gets a tombstone at its old place (so no
    machine's vault restores it there), is renamed into the kept experiment and its meta.yaml
    rewritten; model versions are repointed; each emptied experiment gets a tombstone and is
    moved into the vault's trash (never deleted). Every step is a journal line. Returns the
    trash batch and what MLflow's own FileStore could not open afterwards (empty: all)."""
    if plan.blockers:
        raise ValueError("; ".join(plan.blockers))
    store = Path(store)
    why = f"guardctl conflicts --merge-experiments: {plan.name!r} into experiment {plan.keep}"
    batch = new_batch(vault_root, why, host_id=host_id, keep=plan.keep,
                      merged=list(plan.merged))
    for move in plan.moves:
        src, dst = Target(store, move.src), Target(store, move.dst)
        old = safepath.read_bytes(src.child(META), MAX_META)
        doc = metayaml.parse(old)
        for key, _was, new in move.rewrites:
            doc[key] = new
        journal.append(action="merge_move", original="/".join(move.src),
                       moved_to="/".join(move.dst), kind=move.what, report=why,
                       needs_attention=False, quarantined=[])
        tombstones.write(store, host_id, move.src, f"{why}: moved to {'/'.join(move.dst)}",
                         created_of(doc))
        safepath.rename_new(src, dst)  # makes <keep>/models when it has none yet
        if not metayaml.replace_if_unchanged(dst.child(META), metayaml.dump(doc), old):
            raise OSError(f"{'/'.join(move.dst)}/meta.yaml changed while merging")
    for rp in plan.repoints:
        at = Target(store, rp.version)
        old = safepath.read_bytes(at, MAX_META)
        doc = metayaml.parse(old)
        if doc.get(rp.key) != rp.old:
            continue  # changed since the plan (rewritten to its portable form): look again
        doc[rp.key] = rp.new
        journal.append(action="merge_repoint", original="/".join(rp.version), key=rp.key,
                       old=rp.old, new=rp.new, report=why, needs_attention=False,
                       quarantined=[])
        if not metayaml.replace_if_unchanged(at, metayaml.dump(doc), old):
            raise OSError(f"{'/'.join(rp.version)} changed while merging")
    for exp in plan.merged:
        created = created_of(_doc(Target(store, (exp, META))))
        tombstones.write(store, host_id, (exp,), f"{why}: emptied, kept in {batch}", created)
        move_into_trash(store / exp, (exp,), batch)
        journal.append(action="merge_trash", original=exp, moved_to=str(batch), report=why,
                       needs_attention=False, quarantined=[str(batch / "trash")])
    probes = _probes(store, plan)
    failures = verify.failures_of(Unit(Kind.EXPERIMENT.value, (plan.keep,)), probes,
                                  verify.check(store, probes))
    return batch, failures
