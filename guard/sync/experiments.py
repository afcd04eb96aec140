"""Two active experiments with one name, and the plan that merges them (pure).

MLflow keeps one active experiment per name; on a synced store two machines can still each
create "shared" (one without the guard, or a sync that was down longer than the lock's
settle time). MLflow then reads whichever it lists first for `get_experiment_by_name`, so each
machine's scripts may log to a different one. `same_names` finds them from the experiments'
meta.yaml data; `plan_merge` says what merging the newer ones into the oldest would do: move
every run and logged model, rewrite each moved meta.yaml's experiment_id and its portable
artifact location, repoint the model versions whose location names a moved unit, and what
stops it being done automatically (traces, datasets, an id present on both sides, a run still
running or a logged model still pending: a client would go on writing to the old place).

Pure: works on ids, store-relative path segments and parsed meta.yaml mappings.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from guard.core.layout import LOGGED_MODELS, META, TAGS, Rel, classify_meta, version_target
from guard.core.paths import PORTABLE_SCHEME, parse_local, portable_uri
from guard.core.timefmt import ms

ACTIVE = "active"


@dataclass(frozen=True)
class SameName:
    """Active experiments sharing `name`: `ids` oldest first (creation_time, then id); the
    first is the one the others merge into."""

    name: str
    ids: tuple[str, ...]

    @property
    def keep(self) -> str:
        return self.ids[0]

    @property
    def merged(self) -> tuple[str, ...]:
        return self.ids[1:]

    def command(self) -> str:
        return merge_command(self.name)

    def describe(self) -> str:
        return (f"experiment name {self.name!r} is held by {len(self.ids)} experiments "
                f"(ids {', '.join(self.ids)}; {self.keep} is the oldest)")


def merge_command(name: str) -> str:
    return f"guardctl conflicts --merge-experiments {shlex.quote(name)}"


def same_names(experiments: Iterable[tuple[str, Mapping]]) -> list[SameName]:
    """The names held by more than one active experiment, from (experiment folder, meta.yaml
    mapping) pairs; sorted by name. A deleted experiment (lifecycle_stage deleted) does not
    count: MLflow looks names up among the active ones only."""
    groups: dict[str, list[tuple[int | None, str]]] = {}
    for folder, doc in experiments:
        name = doc.get("name")
        if not isinstance(name, str) or doc.get("lifecycle_stage", ACTIVE) != ACTIVE:
            continue
        groups.setdefault(name, []).append((ms(doc.get("creation_time")), folder))
    found = []
    for name, members in sorted(groups.items()):
        if len(members) > 1:
            members.sort(key=lambda m: (m[0] is None, m[0] or 0, m[1]))
            found.append(SameName(name, tuple(folder for _, folder in members)))
    return found


@dataclass(frozen=True)
class Contents:
    """One experiment folder to merge away, as read: its runs and logged models (folder name,
    meta.yaml mapping) and every other entry's name (meta.yaml aside)."""

    exp: str
    runs: tuple[tuple[str, Mapping], ...] = ()
    models: tuple[tuple[str, Mapping], ...] = ()
    other: tuple[str, ...] = ()


@dataclass(frozen=True)
class Move:
    """A run or logged model folder moved from `src` to `dst`, with its meta.yaml's keys
    rewritten (key, old value, new value)."""

    what: str  # run | logged model
    src: Rel
    dst: Rel
    rewrites: tuple[tuple[str, object, str], ...]


@dataclass(frozen=True)
class Repoint:
    """A model version whose location names a moved unit: `key` of `version`'s meta.yaml."""

    version: Rel
    key: str
    old: str
    new: str


@dataclass(frozen=True)
class MergePlan:
    name: str
    keep: str
    merged: tuple[str, ...]
    moves: tuple[Move, ...] = ()
    repoints: tuple[Repoint, ...] = ()
    blockers: tuple[str, ...] = ()  # why it cannot be done automatically (then nothing is)

    def lines(self) -> list[str]:
        """The plan, one step a line, as `guardctl conflicts --merge-experiments` prints it."""
        runs = sum(m.what == "run" for m in self.moves)
        out = [f"merge experiments named {self.name!r}: {', '.join(self.merged)} into "
               f"{self.keep} (the oldest); {runs} runs and {len(self.moves) - runs} logged "
               f"models move"]
        for move in self.moves:
            out.append(f"  move {move.what} {'/'.join(move.src)} -> {'/'.join(move.dst)}")
            for key, old, new in move.rewrites:
                out.append(f"       meta.yaml {key}: {old} -> {new}")
        for rp in self.repoints:
            out.append(f"  model version {'/'.join(rp.version[:-1])}: {rp.key} {rp.old} -> "
                       f"{rp.new}")
        for exp in self.merged:
            out.append(f"  then: a tombstone for each moved folder of {exp} (so no machine's "
                       f"vault restores it), experiment {exp}, emptied, into the vault's trash "
                       f"(kept, journalled), and every moved run read back through MLflow")
        for why in self.blockers:
            out.append(f"  cannot merge automatically: {why}")
        return out


_MOVABLE = frozenset({META, TAGS, LOGGED_MODELS})  # other entries need a person
_RUNNING = (1, 2)  # RunStatus RUNNING, SCHEDULED: a client may still write to the old place
_PENDING = 1       # LoggedModelStatus PENDING


def _new_location(dst: Rel, key: str) -> str:
    """The portable location a meta.yaml at `dst` must hold under `key` (layout's rule)."""
    return portable_uri(classify_meta(dst + (META,)).keys[key])


def _moved(what: str, src: Rel, dst: Rel, doc: Mapping, keep: str) -> Move:
    key = "artifact_uri" if what == "run" else "artifact_location"
    return Move(what, src, dst, (("experiment_id", doc.get("experiment_id"), keep),
                                 (key, doc.get(key), _new_location(dst, key))))


def _place(value: object, doc: Mapping) -> Rel | None:
    """The store-relative place a model version's location names (portable or local)."""
    if not isinstance(value, str):
        return None
    if value.startswith(PORTABLE_SCHEME):
        segments = tuple(s for s in value[len(PORTABLE_SCHEME):].split("/") if s)
    else:
        loc = parse_local(value)
        if loc is None:
            return None
        segments = loc.segments
    model_id, run_id = doc.get("model_id"), doc.get("run_id")
    return version_target(segments, model_id if isinstance(model_id, str) else None,
                          run_id if isinstance(run_id, str) else None)


def plan_merge(group: SameName, contents: Sequence[Contents], keep_has: Iterable[str],
               keep_models: Iterable[str], versions: Iterable[tuple[Rel, Mapping]]
               ) -> MergePlan:
    """What merging `group.merged` into `group.keep` does. `contents`: each merged
    experiment's folder; `keep_has`/`keep_models`: the entries of the kept experiment and of
    its models/ folder (an id on both sides blocks); `versions`: (meta.yaml path, mapping) of
    every model version in the registry."""
    keep, taken, taken_models = group.keep, set(keep_has), set(keep_models)
    moves: list[Move] = []
    blockers: list[str] = []
    for c in contents:
        for run, doc in c.runs:
            if run in taken:
                blockers.append(f"run {run} is in both {c.exp} and {keep}")
                continue
            if doc.get("status") in _RUNNING:
                blockers.append(f"run {c.exp}/{run} is still running (a script may be "
                                "logging to it): merge once it has ended")
            taken.add(run)
            moves.append(_moved("run", (c.exp, run), (keep, run), doc, keep))
        for model, doc in c.models:
            if model in taken_models:
                blockers.append(f"logged model {model} is in both {c.exp} and {keep}")
                continue
            if doc.get("status") == _PENDING:
                blockers.append(f"logged model {c.exp}/{model} is still pending: merge once "
                                "it is finalized")
            taken_models.add(model)
            moves.append(_moved("logged model", (c.exp, LOGGED_MODELS, model),
                                (keep, LOGGED_MODELS, model), doc, keep))
        for name in c.other:
            if name not in _MOVABLE:
                blockers.append(f"experiment {c.exp} holds {name!r} (traces, datasets or "
                                "files MLflow does not move with a run): merge it by hand")
    sources = {m.src: m.dst for m in moves}
    repoints = []
    for rel, doc in versions:
        for key in ("storage_location", "source"):
            value = doc.get(key)
            place = _place(value, doc)
            if place is None:
                continue
            unit = place[:3] if place[1:2] == (LOGGED_MODELS,) else place[:2]
            if unit in sources:
                repoints.append(Repoint(rel, key, str(value),
                                        portable_uri(sources[unit] + place[len(unit):])))
    return MergePlan(group.name, keep, group.merged, tuple(moves), tuple(repoints),
                     tuple(blockers))
