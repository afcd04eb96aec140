"""Whether a restored unit is one MLflow can open, asked of MLflow's own file stores.

The vault puts back files and folders; only MLflow can say whether what came back is a run,
experiment, logged model, registered model or model version it reads (a run folder without
`params/` is "not found", a version whose model folder is gone loads nothing). So after each
restore the unit is opened through `mlflow.store.tracking.file_store.FileStore` and
`mlflow.store.model_registry.file_store.FileStore`, and "restored" is said only when that works.

`probe_for` (pure) turns a unit and the vault's record of it into a `Probe`: what to ask and
what must be there. The asking runs in a child process (`python -m guard.protection.verify`,
the probes as JSON on stdin): importing MLflow would cost the daemon about 120 MB and 1.5 s
for good, MLflow's registry store reads the process-wide tracking URI (a client on the default
one would create `mlflow.db` in the working folder), and a read that hangs on a tampered store
is ended by a timeout instead of blocking the vault part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from guard.core import mlflowpatch
from guard.core.layout import (
    ARTIFACTS,
    META_UNITS,
    METRICS,
    Kind,
    Rel,
    describe,
    version_number,
)
from guard.core.paths import PORTABLE_SCHEME, parse_local, safe_segments, uri_to_local_path
from guard.core.records import from_json, to_json
from guard.core.runtime import interpreter
from guard.core.store import ALLOW_FILE_STORE_ENV, store_uri
from guard.protection.deletions import Unit

TIMEOUT = 120.0  # seconds for one batch: MLflow's import alone takes seconds on a busy host
PER_PROBE = 0.1  # and this much more for each unit (an experiment of 3,000 runs: 300 s more)
_DETAIL = 200    # characters of an MLflow error kept in a failure


@dataclass(frozen=True)
class Probe:
    """What to ask MLflow about one restored unit, and what the vault says must be there."""

    kind: str                      # experiment | run | logged_model | registered_model | ...
    rel: Rel                       # the unit's folder, store-relative
    ident: str = ""                # experiment id, run id, model id or registered model name
    version: int = 0               # model_version: N of version-<N>
    metrics: tuple[str, ...] = ()  # run: metric keys whose history must list values
    artifacts: tuple[str, ...] = ()  # run / logged model: top-level artifact names to list


@dataclass(frozen=True)
class Batch:
    """The child's input: the store and the probes, in order."""

    store: str = ""
    probes: tuple[Probe, ...] = ()


def probe_for(unit: Unit, kept: Iterable[tuple[Rel, bool]]) -> Probe:
    """The probe for `unit` (pure). `kept`: (store path, is a file) of what the vault holds at
    or below the unit's folder; metric keys are read from its files, the top-level artifact
    names from its files and folders."""
    rel, kind = unit.rel, unit.kind
    entry = describe(rel)
    home = rel[1:] if entry.trashed else rel  # .trash/<exp>/... reads as <exp>/...
    if kind == Kind.MODEL_VERSION:
        return Probe(kind, rel, home[1], version_number(home[2]) or 0)
    if kind == Kind.REGISTERED_MODEL:
        return Probe(kind, rel, home[1])
    if kind == Kind.EXPERIMENT:
        return Probe(kind, rel, home[0])
    depth = len(rel)
    metrics, artifacts = set(), set()
    for path, is_file in kept:
        inner = path[depth:]
        if path[:depth] != rel or len(inner) < 2:
            continue
        if inner[0] == METRICS and kind == Kind.RUN and is_file:
            metrics.add("/".join(inner[1:]))  # a key with '/' is nested folders
        elif inner[0] == ARTIFACTS:
            artifacts.add(inner[1])
    return Probe(kind, rel, rel[-1], 0, tuple(sorted(metrics)), tuple(sorted(artifacts)))


def probes_for(unit: Unit, kept: Iterable[tuple[Rel, bool]]) -> list[Probe]:
    """Probes for `unit` and every unit the vault holds inside it (the runs and logged models
    of an experiment, the versions of a registered model), the unit's own first (pure). Only
    units the vault holds a meta.yaml of: a folder without one was never MLflow's to open."""
    units: dict[Rel, Unit] = {unit.rel: unit}
    owned: dict[Rel, list[tuple[Rel, bool]]] = {unit.rel: []}
    depth = len(unit.rel)
    for path, is_file in kept:
        owner = unit.rel
        for kind, rel in describe(path).units:
            if kind in META_UNITS and len(rel) > depth and rel[:depth] == unit.rel:
                owner = rel
                units.setdefault(rel, Unit(kind.value, rel))
        owned.setdefault(owner, []).append((path, is_file))
    order = [unit.rel] + sorted(r for r in units if r != unit.rel)
    return [probe_for(units[r], owned.get(r, ())) for r in order
            if (units[r].meta, True) in owned.get(r, ())]


def failures_of(unit: Unit, probes: Sequence[Probe], answers: Sequence[Sequence[str]]
                ) -> list[str]:
    """What MLflow could not open of a restored unit, from the answers to `probes_for` it;
    a unit inside it is named."""
    out: list[str] = []
    for probe, failures in zip(probes, answers):
        prefix = "" if probe.rel == unit.rel else f"{'/'.join(probe.rel)}: "
        out.extend(prefix + f for f in failures)
    return out


def artifact_folder(store: Path, uri: str) -> Path | None:
    """The local folder an artifact location names on this machine: `mlflow-artifacts:/<rel>`
    is below the store (the guard's server keeps artifacts there), a local path or file: URI is
    itself; None for anything else (s3:, a foreign drive), which cannot be checked here."""
    if uri.startswith(PORTABLE_SCHEME):
        segments = tuple(s for s in urlparse(uri).path.split("/") if s)
        return store.joinpath(*segments) if safe_segments(segments) else None
    loc = parse_local(uri)
    if loc is None or loc.climbs or not loc.anchor:
        return None
    path = uri_to_local_path(uri)
    return Path(path) if path else None


def summary(failures: Sequence[str]) -> str:
    """One line for the journal and the status: what MLflow could not open."""
    return "; ".join(failures)


# ---- the shell: the daemon's side ------------------------------------------------------------

def check(store: Path, probes: Sequence[Probe], timeout: float | None = None,
          cwd: Path | None = None, progress: Callable[[], None] = lambda: None,
          stopping: Callable[[], bool] = lambda: False) -> list[list[str]]:
    """For each probe, what MLflow could not open (empty: it opens), asked in a child process.
    A child that fails, hangs or answers nonsense fails every probe with that reason. While it
    runs, `progress()` is called each second (the vault part is not stuck) and `stopping()`
    asked (a daemon that stops ends the child)."""
    if not probes:
        return []
    if timeout is None:
        timeout = TIMEOUT + PER_PROBE * len(probes)
    env = dict(os.environ)
    env[ALLOW_FILE_STORE_ENV] = "true"
    env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = store_uri(Path(store))
    batch: str | None = json.dumps(to_json(Batch(os.path.abspath(store), tuple(probes))))
    try:
        child = subprocess.Popen([interpreter(), "-m", "guard.protection.verify"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env,
                                 cwd=str(cwd) if cwd else None)
    except OSError as exc:
        return [[f"the check through MLflow could not start: {exc}"]] * len(probes)
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, err = child.communicate(batch, timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            batch = None  # sent with the first call
            progress()
            if stopping() or time.monotonic() > deadline:
                child.kill()
                child.communicate()
                why = "the guard stopped" if stopping() else f"more than {timeout:g} s"
                return [[f"the check through MLflow did not finish ({why})"]] * len(probes)
    try:
        answer = json.loads(out)
        if child.returncode == 0 and isinstance(answer, list) and len(answer) == len(probes):
            return [[str(f) for f in item] if isinstance(item, list) else [str(item)]
                    for item in answer]
    except ValueError:
        pass
    tail = (err.strip().splitlines() or ["no output"])[-1][:_DETAIL]
    return [[f"the check through MLflow failed (exit {child.returncode}): {tail}"]] * len(probes)


# ---- the child: MLflow's own store API -------------------------------------------------------

def _err(what: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{what}: {text[:_DETAIL]}"


class _Stores:
    """MLflow's file stores over the store, opened only when a probe needs them (the registry
    store creates `models/` when it is missing)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._tracking: Any = None
        self._registry: Any = None

    @property
    def tracking(self) -> Any:
        if self._tracking is None:
            from mlflow.store.tracking.file_store import FileStore

            self._tracking = FileStore(self.root, PORTABLE_SCHEME + "/")
        return self._tracking

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from mlflow.store.model_registry.file_store import FileStore

            self._registry = FileStore(self.root)
        return self._registry


def _artifacts(stores: _Stores, unit: Rel, uri: str, names: tuple[str, ...]) -> list[str]:
    """The unit's artifacts list through MLflow; the names the vault kept are in the list
    when the location is the unit's own artifacts folder."""
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    store = Path(stores.root)
    folder = artifact_folder(store, uri)
    if folder is None:
        return []
    try:
        listed = {Path(f.path).name for f in LocalArtifactRepository(str(folder)).list_artifacts()}
    except Exception as exc:  # noqa: BLE001 - whatever MLflow raises is the finding
        return [_err("list_artifacts", exc)]
    if os.path.normpath(folder) != os.path.normpath(store.joinpath(*unit, ARTIFACTS)):
        return []
    missing = sorted(set(names) - listed)
    return [f"list_artifacts does not list {', '.join(missing)}"] if missing else []


def _model_folder(stores: _Stores, uris: Sequence[str | None]) -> Path | None:
    """Where a model version's model is: the first of its locations (download URI, source)
    that names a local folder, a logged model or a run's artifacts."""
    store = Path(stores.root)
    for uri in uris:
        if not uri:
            continue
        folder = artifact_folder(store, uri)
        if folder is not None:
            return folder
        if uri.startswith("models:/"):
            model_id = uri[len("models:/"):].strip("/")
            logged = stores.tracking.get_logged_model(model_id, allow_deleted=True)
            return artifact_folder(store, logged.artifact_location)
        if uri.startswith("runs:/"):
            run_id, _, sub = uri[len("runs:/"):].partition("/")
            base = artifact_folder(store, stores.tracking.get_run(run_id).info.artifact_uri)
            return None if base is None else base.joinpath(*[s for s in sub.split("/") if s])
    return None


def _version(stores: _Stores, probe: Probe) -> list[str]:
    from mlflow.models import Model

    folder = Path(stores.root).joinpath(*probe.rel)
    meta = stores.registry._read_yaml(str(folder), "meta.yaml") or {}
    if meta.get("current_stage") == "Deleted_Internal":
        return []  # deleted through MLflow already: the folder reads, there is no model to load
    try:
        mv = stores.registry.get_model_version(probe.ident, probe.version)
    except Exception as exc:  # noqa: BLE001
        return [_err("get_model_version", exc)]
    try:
        uri = stores.registry.get_model_version_download_uri(probe.ident, probe.version)
        model = _model_folder(stores, (uri, mv.source))
    except Exception as exc:  # noqa: BLE001
        return [_err("the model's location", exc)]
    if model is None:
        return []  # a location outside this machine's reach (s3:, another drive)
    if not (model / "MLmodel").is_file():
        return [f"no MLmodel file in {model}"]
    try:
        Model.load(str(model / "MLmodel"))
    except Exception as exc:  # noqa: BLE001
        return [_err("MLmodel", exc)]
    return []


def ask(stores: _Stores, probe: Probe) -> list[str]:
    """What MLflow cannot open of one restored unit (runs in the child)."""
    try:
        if probe.kind == Kind.EXPERIMENT:
            stores.tracking.get_experiment(probe.ident)
            return []
        if probe.kind == Kind.RUN:
            try:
                run = stores.tracking.get_run(probe.ident)
            except Exception as exc:  # noqa: BLE001
                return [_err("get_run", exc)]
            failures = []
            for key in probe.metrics:
                try:
                    if not list(stores.tracking.get_metric_history(probe.ident, key)):
                        failures.append(f"metric {key} lists no values")
                except Exception as exc:  # noqa: BLE001
                    failures.append(_err(f"metric {key}", exc))
            return failures + _artifacts(stores, probe.rel, run.info.artifact_uri,
                                         probe.artifacts)
        if probe.kind == Kind.LOGGED_MODEL:
            try:
                logged = stores.tracking.get_logged_model(probe.ident, allow_deleted=True)
            except Exception as exc:  # noqa: BLE001
                return [_err("get_logged_model", exc)]
            return _artifacts(stores, probe.rel, logged.artifact_location, probe.artifacts)
        if probe.kind == Kind.REGISTERED_MODEL:
            stores.registry.get_registered_model(probe.ident)
            return []
        if probe.kind == Kind.MODEL_VERSION:
            return _version(stores, probe)
    except Exception as exc:  # noqa: BLE001
        return [_err(f"get_{probe.kind}", exc)]
    return [f"no check for a {probe.kind}"]


def main() -> int:
    """The child: a Batch on stdin, a JSON list of failure lists on stdout."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    batch = from_json(Batch, json.load(sys.stdin))
    mlflowpatch.install()  # as in the server: .stfolder, .stversions... are no experiments
    stores = _Stores(batch.store)
    json.dump([ask(stores, probe) for probe in batch.probes], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
