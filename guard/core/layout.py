"""The MLflow file store's layout: the one model every module asks what a store path is.

A path below the store (a tuple of segments) is described by `describe` as an `Entry`: its
kind, the units it lies in (the run / logged model / registered model / version / trace /
experiment MLflow creates and deletes as a whole), whether it is under `.trash`, and its key
below a value folder. As MLflow's file stores (tracking and model registry) write it:

    path below the store                  kind              unit (innermost)
    ()                                    store             -
    .trash                                trash             -
    mlflow-guard.trash/...                coordination      -
    models                                registry          -
    models/<name>          [meta.yaml]    registered_model  models/<name>
      .../tags/<key...>                   tag               models/<name>
      .../aliases/<alias>                 alias             models/<name>
      .../version-<N>      [meta.yaml]    model_version     models/<name>/version-<N>
      .../version-<N>/tags/<key...>       tag               models/<name>/version-<N>
    <exp>                  [meta.yaml]    experiment        <exp>
      <exp>/tags/<key...>                 tag               <exp>
      <exp>/datasets/...                  dataset           <exp>
      <exp>/traces                        trace             <exp>
      <exp>/traces/<id>/...               trace             <exp>/traces/<id>
        .../<id>/tags/<key...>            tag               <exp>/traces/<id>
        .../<id>/artifacts/...            artifact          <exp>/traces/<id>
      <exp>/models                        logged_model      <exp>
      <exp>/models/<m-id>  [meta.yaml]    logged_model      <exp>/models/<m-id>
      <exp>/<run>          [meta.yaml]    run               <exp>/<run>
    <run> or <m-id> folder, then:
      metrics/<key...>                    metric            the run / logged model
      params/<key...>                     param             the run / logged model
      tags/<key...>                       tag               the run / logged model
      artifacts/...                       artifact          the run / logged model
      inputs/..., outputs/...             input, output     the run / logged model
    anything else                         other             the innermost unit above it
    .trash/<exp>/...                      as <exp>/..., trashed (MLflow's deleted experiments)

Rules:
- `<exp>` is a root folder MLflow reads as an experiment: its name matches MLflow's
  experiment-id pattern (`^[a-zA-Z0-9][\\w\\-]{0,63}$`), is not `models` and does not end in
  `.trash` (MLflow skips those). So `.stfolder`, `.stversions`, `@eaDir`, `desktop.ini` are
  other. The ids MLflow makes itself are decimal integers (`made_experiment_id`).
- `<run>` is any other entry of an experiment: all but meta.yaml and MLflow's reserved
  experiment folders tags, datasets, traces and models.
- MLflow deletes registry entries outright: `.trash/models/...` is other.
- A key containing '/' is spelled as nested folders, so everything below `metrics/`,
  `params/`, `tags/` is one key (`Entry.key`); the folder itself has the empty key. An alias
  name is one segment.
- A meta.yaml is the file MLflow reads its unit from, so it is described as that unit (kind
  run, experiment, ...) with `Entry.meta` set: "which run is this" and "is this the run's
  meta.yaml" have one answer. Any other meta.yaml (a dataset's, an input's, a metric named
  meta.yaml) is what its folder makes it.
- Locations a meta.yaml holds (`classify_meta`):
    <exp>/meta.yaml                        artifact_location -> <exp>
    <exp>/<run>/meta.yaml                  artifact_uri      -> <exp>/<run>/artifacts
    <exp>/models/<m-id>/meta.yaml          artifact_location -> <exp>/models/<m-id>/artifacts
    models/<name>/version-<N>/meta.yaml    storage_location, source -> the logged model's or
                                           run's artifacts they name (by model_id / run_id)
    .trash/<exp>/...                       as above; the location is the experiment's home

Pure, except `walk`, the one walk of the folders that can hold a meta.yaml.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from guard.core.strenum import StrEnum

Rel = tuple[str, ...]

META = "meta.yaml"
TRASH = ".trash"
REGISTRY = "models"
# The guard's own shared folder. MLflow skips any root folder whose name ends in ".trash" when
# it lists experiments (any other unknown folder is logged as a malformed experiment), and
# Synology's sync tools skip names starting with '.', '_' or '~': so neither may apply.
COORDINATION = "mlflow-guard.trash"
# Temp files the guard writes before renaming them into place; sync clients skip leading-dot
# names, and the guard's own walks and the test syncer skip this prefix.
TEMP_PREFIX = ".guard-tmp-"

# Folder names inside experiments, runs, logged models and registered models.
METRICS, PARAMS, TAGS, ARTIFACTS, INPUTS, OUTPUTS = (
    "metrics", "params", "tags", "artifacts", "inputs", "outputs")
ALIASES, TRACES, DATASETS, LOGGED_MODELS = "aliases", "traces", "datasets", "models"

_EXPERIMENT_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,63}")  # mlflow.utils.validation's rule
_MADE_ID = re.compile(r"[0-9]+")
_VERSION = re.compile(r"version-([0-9]+)")


class Kind(StrEnum):
    """What a store path is; equal to its plain string ("run", "metric", ...)."""
    STORE = "store"
    TRASH = "trash"
    COORDINATION = "coordination"
    REGISTRY = "registry"
    REGISTERED_MODEL = "registered_model"
    MODEL_VERSION = "model_version"
    EXPERIMENT = "experiment"
    RUN = "run"
    LOGGED_MODEL = "logged_model"
    TRACE = "trace"
    DATASET = "dataset"
    METRIC = "metric"
    PARAM = "param"
    TAG = "tag"
    ALIAS = "alias"
    ARTIFACT = "artifact"
    INPUT = "input"
    OUTPUT = "output"
    OTHER = "other"


# What a run's or logged model's folder holds, besides its meta.yaml.
_UNIT_FOLDERS = {METRICS: Kind.METRIC, PARAMS: Kind.PARAM, TAGS: Kind.TAG,
                 ARTIFACTS: Kind.ARTIFACT, INPUTS: Kind.INPUT, OUTPUTS: Kind.OUTPUT}
# What a trace's folder holds besides its own files (trace_info.yaml, request_metadata/, ...).
_TRACE_FOLDERS = {TAGS: Kind.TAG, ARTIFACTS: Kind.ARTIFACT}
# Units read from a meta.yaml (a trace is read from its trace_info.yaml).
META_UNITS = frozenset({Kind.EXPERIMENT, Kind.RUN, Kind.LOGGED_MODEL, Kind.REGISTERED_MODEL,
                        Kind.MODEL_VERSION})
# Folders that hold a meta.yaml or folders that do; of these, runs, logged models and versions
# hold no such folder, so a walk does not list them.
_HOLDERS = frozenset({Kind.STORE, Kind.TRASH, Kind.REGISTRY, *META_UNITS})
_LEAVES = frozenset({Kind.RUN, Kind.LOGGED_MODEL, Kind.MODEL_VERSION})


@dataclass(frozen=True)
class Entry:
    """What a store path is. `units`: (kind, store-relative path) of every unit it lies in
    (itself included), outermost first; `meta`: it is its unit's meta.yaml; `key`: the path
    below the value folder (metric/param/tag key, alias, artifact path, ...)."""
    rel: Rel
    kind: Kind
    units: tuple[tuple[Kind, Rel], ...] = ()
    trashed: bool = False
    meta: bool = False
    key: Rel = ()

    @property
    def unit(self) -> Rel | None:
        """The innermost unit's store-relative path (with `.trash` when trashed)."""
        return self.units[-1][1] if self.units else None

    @property
    def unit_kind(self) -> Kind | None:
        return self.units[-1][0] if self.units else None

    @property
    def is_unit(self) -> bool:
        """The unit's own folder (not its meta.yaml, not a collection folder like <exp>/models)."""
        return bool(self.units) and self.units[-1][1] == self.rel


def is_experiment_folder(name: str) -> bool:
    """Whether MLflow reads a folder at the store root (or in .trash) as an experiment."""
    return (name != REGISTRY and not name.endswith(TRASH)
            and _EXPERIMENT_ID.fullmatch(name) is not None)


def made_experiment_id(name: str) -> bool:
    """Whether `name` is an experiment id as MLflow's file store makes them (decimal): proof
    that a folder is a store, and how an experiment is spotted inside an absolute path."""
    return _MADE_ID.fullmatch(name) is not None


def version_number(name: str) -> int | None:
    """N for a registered model's `version-<N>` folder, else None."""
    match = _VERSION.fullmatch(name)
    return int(match.group(1)) if match else None


def version_folder(number: int) -> str:
    return f"version-{number}"


def registered_model_meta(name: str) -> Rel:
    """Where the registered model `name` keeps its meta.yaml: MLflow's file store refuses to
    create a model whose folder exists (RESOURCE_ALREADY_EXISTS)."""
    return (REGISTRY, name, META)


def trash_twin(rel: Rel) -> Rel:
    """Where MLflow moves an experiment's path when it deletes it (into .trash), or back when
    it restores it."""
    return rel[1:] if rel[:1] == (TRASH,) else (TRASH,) + rel


def describe(rel: Rel) -> Entry:
    """What the store path `rel` is (see the table at the top). Pure."""
    rel = tuple(rel)
    if not rel:
        return Entry(rel, Kind.STORE)
    trashed = rel[0] == TRASH
    parts = rel[1:] if trashed else rel
    if not parts:
        return Entry(rel, Kind.TRASH)
    if not trashed and parts[0] == COORDINATION:
        return Entry(rel, Kind.COORDINATION)
    if not trashed and parts[0] == REGISTRY:
        return _registry(rel, parts[1:])
    if not is_experiment_folder(parts[0]):
        return Entry(rel, Kind.OTHER, trashed=trashed)
    return _experiment(rel, rel[:len(rel) - len(parts) + 1], parts[1:], trashed)


def _registry(rel: Rel, rest: Rel) -> Entry:
    if not rest:
        return Entry(rel, Kind.REGISTRY)
    units: tuple[tuple[Kind, Rel], ...] = ((Kind.REGISTERED_MODEL, (REGISTRY, rest[0])),)
    inner = rest[1:]
    if not inner or inner == (META,):
        return Entry(rel, Kind.REGISTERED_MODEL, units, meta=bool(inner))
    if inner[0] == TAGS:
        return Entry(rel, Kind.TAG, units, key=inner[1:])
    if inner[0] == ALIASES and len(inner) <= 2:
        return Entry(rel, Kind.ALIAS, units, key=inner[1:])
    if version_number(inner[0]) is None:
        return Entry(rel, Kind.OTHER, units)
    units += ((Kind.MODEL_VERSION, (REGISTRY, rest[0], inner[0])),)
    inner = inner[1:]
    if not inner or inner == (META,):
        return Entry(rel, Kind.MODEL_VERSION, units, meta=bool(inner))
    if inner[0] == TAGS:
        return Entry(rel, Kind.TAG, units, key=inner[1:])
    return Entry(rel, Kind.OTHER, units)


def _experiment(rel: Rel, exp: Rel, rest: Rel, trashed: bool) -> Entry:
    units: tuple[tuple[Kind, Rel], ...] = ((Kind.EXPERIMENT, exp),)
    if not rest or rest == (META,):
        return Entry(rel, Kind.EXPERIMENT, units, trashed, meta=bool(rest))
    first = rest[0]
    if first in (TAGS, DATASETS):
        kind = Kind.TAG if first == TAGS else Kind.DATASET
        return Entry(rel, kind, units, trashed, key=rest[1:])
    if first == TRACES:
        if len(rest) == 1:
            return Entry(rel, Kind.TRACE, units, trashed)
        units += ((Kind.TRACE, exp + rest[:2]),)
        inner = rest[2:]
        part = _TRACE_FOLDERS.get(inner[0]) if inner else None
        if part is None:
            return Entry(rel, Kind.TRACE, units, trashed, key=inner)
        return Entry(rel, part, units, trashed, key=inner[1:])
    if first == LOGGED_MODELS:
        if len(rest) == 1:
            return Entry(rel, Kind.LOGGED_MODEL, units, trashed)
        return _unit(rel, units + ((Kind.LOGGED_MODEL, exp + rest[:2]),), rest[2:], trashed)
    return _unit(rel, units + ((Kind.RUN, exp + rest[:1]),), rest[1:], trashed)


def _unit(rel: Rel, units: tuple[tuple[Kind, Rel], ...], inner: Rel, trashed: bool) -> Entry:
    """Inside a run or logged model folder."""
    if not inner or inner == (META,):
        return Entry(rel, units[-1][0], units, trashed, meta=bool(inner))
    kind = _UNIT_FOLDERS.get(inner[0])
    if kind is None:
        return Entry(rel, Kind.OTHER, units, trashed)
    return Entry(rel, kind, units, trashed, key=inner[1:])


# ---- what the callers ask --------------------------------------------------------------------

@dataclass(frozen=True)
class MetaKind:
    name: str  # experiment | run | logged_model | model_version | registered_model | other
    # key -> the store-relative location it must name; None: derived from the file's content
    keys: dict

    @property
    def has_locations(self) -> bool:
        return bool(self.keys)


OTHER = MetaKind("other", {})


def classify_meta(rel: Rel) -> MetaKind:
    """What a meta.yaml at store-relative `rel` is, and the locations it should hold."""
    entry = describe(rel)
    if not entry.meta:
        return OTHER
    home = entry.rel[1:-1] if entry.trashed else entry.rel[:-1]  # the unit, out of .trash
    if entry.kind is Kind.MODEL_VERSION:
        return MetaKind("model_version", {"storage_location": None, "source": None})
    if entry.kind is Kind.REGISTERED_MODEL:
        return MetaKind("registered_model", {})
    if entry.kind is Kind.EXPERIMENT:
        return MetaKind("experiment", {"artifact_location": home})
    key = "artifact_uri" if entry.kind is Kind.RUN else "artifact_location"
    return MetaKind(entry.kind.value, {key: home + (ARTIFACTS,)})


def can_hold_meta(rel: Rel) -> bool:
    """Whether a folder at store-relative `rel` can contain a meta.yaml the guard looks at, or
    such folders: the store, experiments, runs, logged models and the registry. Folders below
    a run (params, metrics, tags, artifacts...) cannot, so they need no filesystem watch."""
    entry = describe(rel)
    return entry.kind in _HOLDERS and not entry.meta and not entry.key


def _lists(entry: Entry) -> bool:
    """Whether a walk looks inside this folder: only where a child can hold a meta.yaml."""
    return not (entry.is_unit and entry.kind in _LEAVES)


def walk(path: Path, rel: Rel = (), problems: dict | None = None
         ) -> Iterator[tuple[Path, Entry]]:
    """`path` (the store folder at `rel`) and every folder below it that can hold a meta.yaml,
    symlinks not followed (each one in a listed folder is noted in `problems` under its
    store-relative path). Each folder is yielded before it is listed, so a watch set on it at
    once sees anything created while its children are walked. Unreadable folders are
    skipped: the next pass, or the watcher's event, looks again."""
    entry = describe(rel)
    if not can_hold_meta(rel):
        return
    yield path, entry
    if not _lists(entry):
        return
    try:
        with os.scandir(path) as it:
            children = []
            for child in it:
                if child.is_symlink():
                    if problems is not None:
                        problems["/".join(rel + (child.name,))] = [
                            {"problem": "symlink", "why": "symlink skipped"}]
                elif child.is_dir(follow_symlinks=False):
                    children.append(child.name)
    except OSError:
        return
    for name in children:
        yield from walk(path / name, rel + (name,), problems)


def version_target(segments: tuple[str, ...], model_id: str | None, run_id: str | None,
                   fold: bool = False) -> tuple[str, ...] | None:
    """The store-relative place a model version's location names, found by its ids.

    `<exp>/models/<model_id>/artifacts/...` or `<exp>/<run_id>/artifacts/...`, spelled as the
    store spells it; None if the path names neither (a location outside the store). `fold`:
    compare case-insensitively (a Windows path).
    """
    norm = (lambda x: x.casefold()) if fold else (lambda x: x)
    for i in range(1, len(segments) - 1):
        exp, rest = segments[i - 1], segments[i:]
        if not made_experiment_id(exp):
            continue
        if (model_id and len(rest) >= 3 and norm(rest[0]) == LOGGED_MODELS
                and norm(rest[1]) == norm(model_id) and norm(rest[2]) == ARTIFACTS):
            return (exp, LOGGED_MODELS, model_id, ARTIFACTS) + rest[3:]
        if run_id and len(rest) >= 2 and norm(rest[0]) == norm(run_id) \
                and norm(rest[1]) == ARTIFACTS:
            return (exp, run_id, ARTIFACTS) + rest[2:]
    return None
