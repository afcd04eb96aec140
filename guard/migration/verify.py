"""Check a copy: the file store and the database, read through MLflow's own store APIs, compared.

The core is pure: a `Snapshot` is plain data (per entity kind, items keyed by their id), and
`differences(a, b)` lists every way two snapshots differ. `read_snapshot` is the one reader
over MLflow's store interfaces (tracking and model registry), so the file store
(`FileStore`) and the database (`SqlAlchemyStore`) are read by the same code; `verify_copy`
opens both and compares. What is compared, per kind:

    experiments      all (active and deleted), by name: lifecycle stage, tags
    runs             all view types: experiment (its name), name, status, start/end time,
                     lifecycle stage, params, tags, every metric's full history (step,
                     timestamp, value), how many dataset inputs
    logged models    experiment, name, status, source run, params, tags
    traces           how many per experiment
    registered models  tags, aliases
    model versions   source, run id, status, tags

Work is bounded by the store's size; the metric histories are the bulk (one read per metric).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.core.store import ALLOW_FILE_STORE_ENV, store_uri

FILE_STORE, DATABASE = "file store", "database"
PAGE = 1000

# (step, timestamp, value as text: NaN equals NaN, and +-inf survives the comparison)
Point = tuple[int, int, str]


@dataclass(frozen=True)
class Experiment:
    lifecycle_stage: str
    tags: Mapping[str, str]


@dataclass(frozen=True)
class Run:
    experiment: str
    name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    params: Mapping[str, str]
    tags: Mapping[str, str]
    metrics: Mapping[str, tuple[Point, ...]]
    dataset_inputs: int


@dataclass(frozen=True)
class LoggedModel:
    experiment: str
    name: str
    status: str
    source_run_id: str | None
    params: Mapping[str, str]
    tags: Mapping[str, str]


@dataclass(frozen=True)
class RegisteredModel:
    tags: Mapping[str, str]
    aliases: Mapping[str, str]


@dataclass(frozen=True)
class ModelVersion:
    source: str | None
    run_id: str | None
    status: str
    tags: Mapping[str, str]


@dataclass
class Snapshot:
    """One store's entities as plain data, each kind keyed by id; experiments by name (unique
    among active and deleted ones; a copy may renumber them), so runs, logged models and trace
    counts name their experiment; model versions by "name/version"."""
    experiments: dict[str, Experiment] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    logged_models: dict[str, LoggedModel] = field(default_factory=dict)
    traces: dict[str, int] = field(default_factory=dict)
    registered_models: dict[str, RegisteredModel] = field(default_factory=dict)
    model_versions: dict[str, ModelVersion] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """How many of each entity (the table's rows)."""
        runs = self.runs.values()
        return {
            "experiments": len(self.experiments),
            "runs": len(self.runs),
            "params": sum(len(r.params) for r in runs),
            "run tags": sum(len(r.tags) for r in runs),
            "metric points": sum(len(h) for r in runs for h in r.metrics.values()),
            "dataset inputs": sum(r.dataset_inputs for r in runs),
            "logged models": len(self.logged_models),
            "traces": sum(self.traces.values()),
            "registered models": len(self.registered_models),
            "model versions": len(self.model_versions),
            "aliases": sum(len(m.aliases) for m in self.registered_models.values()),
        }


# The table row a difference in a kind's field counts under.
_ROW = {("runs", "params"): "params", ("runs", "tags"): "run tags",
        ("runs", "metrics"): "metric points", ("runs", "dataset_inputs"): "dataset inputs",
        ("registered_models", "aliases"): "aliases"}
_KIND_ROW = {"experiments": "experiments", "runs": "runs", "logged_models": "logged models",
             "traces": "traces", "registered_models": "registered models",
             "model_versions": "model versions"}
_SINGULAR = {"experiments": "experiment", "runs": "run", "logged_models": "logged model",
             "traces": "traces of experiment", "registered_models": "registered model",
             "model_versions": "model version"}


@dataclass(frozen=True)
class Difference:
    """One way the database differs from the file store: `entity` names the item (e.g.
    "run 3f2a..."), `what` the field and both values."""
    row: str
    entity: str
    what: str

    def __str__(self) -> str:
        return f"{self.entity}: {self.what}"


def differences(a: Snapshot, b: Snapshot) -> list[Difference]:
    """Every way `b` (the database) differs from `a` (the file store). Pure."""
    out: list[Difference] = []
    for kind in _KIND_ROW:
        items_a, items_b = getattr(a, kind), getattr(b, kind)
        for key in sorted(set(items_a) | set(items_b)):
            entity = f"{_SINGULAR[kind]} {key}"
            if key not in items_b:
                out.append(Difference(_KIND_ROW[kind], entity, f"missing from the {DATABASE}"))
            elif key not in items_a:
                out.append(Difference(_KIND_ROW[kind], entity, f"only in the {DATABASE}"))
            else:
                out.extend(_item_differences(kind, entity, items_a[key], items_b[key]))
    return out


def _item_differences(kind: str, entity: str, a: Any, b: Any) -> Iterator[Difference]:
    if not dataclasses.is_dataclass(a):
        if a != b:
            yield Difference(_KIND_ROW[kind], entity, _values(a, b))
        return
    for f in dataclasses.fields(a):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        row = _ROW.get((kind, f.name), _KIND_ROW[kind])
        if isinstance(va, Mapping):
            for key in sorted(set(va) | set(vb)):
                name = f"{f.name} {key!r}"
                if key not in vb:
                    yield Difference(row, entity, f"{name} missing from the {DATABASE}")
                elif key not in va:
                    yield Difference(row, entity, f"{name} only in the {DATABASE}")
                elif va[key] != vb[key]:
                    yield Difference(row, entity, f"{name}: {_values(va[key], vb[key])}")
        elif va != vb:
            yield Difference(row, entity, f"{f.name}: {_values(va, vb)}")


def _values(a: Any, b: Any) -> str:
    return f"{_short(a)} ({FILE_STORE}) != {_short(b)} ({DATABASE})"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Verification:
    file_store: dict[str, int]
    database: dict[str, int]
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences

    def table(self) -> str:
        return render_table(self.file_store, self.database, self.differences)


def compare(a: Snapshot, b: Snapshot) -> Verification:
    return Verification(a.counts(), b.counts(), differences(a, b))


def render_table(file_store: Mapping[str, int], database: Mapping[str, int],
                 diffs: list[Difference]) -> str:
    """Counts per entity (file store, database, differences), one row each. Pure."""
    per_row: dict[str, int] = {}
    for d in diffs:
        per_row[d.row] = per_row.get(d.row, 0) + 1
    rows = list(dict.fromkeys([*file_store, *database, *per_row]))
    head = ("entity", FILE_STORE, DATABASE, "differences")
    body = [(r, str(file_store.get(r, 0)), str(database.get(r, 0)), str(per_row.get(r, 0)))
            for r in rows]
    width = [max(len(line[i]) for line in [head, *body]) for i in range(4)]
    lines = ["  ".join(c.ljust(width[0]) if i == 0 else c.rjust(width[i])
                       for i, c in enumerate(line)) for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in width))
    return "\n".join(lines)


# ---- readers: MLflow's store APIs -> Snapshot ---------------------------------------------

def _value(v: float) -> str:
    return "nan" if math.isnan(v) else repr(float(v))


def _pages(fetch: Callable[[str | None], tuple[list[Any], str | None]]) -> Iterator[Any]:
    token: str | None = None
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return


def _paged_list(result: Any) -> tuple[list[Any], str | None]:
    return list(result), getattr(result, "token", None)


def read_snapshot(tracking: Any, registry: Any) -> Snapshot:
    """Everything `differences` compares, read through MLflow's tracking and model registry
    store interfaces (the same calls for a FileStore and a SqlAlchemyStore)."""
    from mlflow.entities import ViewType

    snap = Snapshot()
    experiments = list(_pages(lambda t: _paged_list(tracking.search_experiments(
        view_type=ViewType.ALL, max_results=PAGE, page_token=t))))
    for exp in experiments:
        snap.experiments[exp.name] = Experiment(exp.lifecycle_stage, dict(exp.tags))
    for exp in experiments:
        _read_experiment(tracking, snap, exp.experiment_id, exp.name)
    for rm in _pages(lambda t: _paged_list(registry.search_registered_models(
            max_results=PAGE, page_token=t))):
        snap.registered_models[rm.name] = RegisteredModel(
            dict(rm.tags), {a: str(v) for a, v in (rm.aliases or {}).items()})
    for mv in _pages(lambda t: _paged_list(registry.search_model_versions(
            max_results=PAGE, page_token=t))):
        snap.model_versions[f"{mv.name}/{mv.version}"] = ModelVersion(
            mv.source, mv.run_id, str(mv.status), dict(mv.tags))
    return snap


def _read_experiment(tracking: Any, snap: Snapshot, exp_id: str, exp_name: str) -> None:
    """An experiment's runs (with their metric histories), logged models and trace count."""
    from mlflow.entities import ViewType

    runs = _pages(lambda t: _paged_list(tracking.search_runs(
        [exp_id], "", ViewType.ALL, max_results=PAGE, page_token=t)))
    for run in runs:
        info, data = run.info, run.data
        metrics = {key: tuple(sorted(
            (m.step, m.timestamp, _value(m.value))
            for m in tracking.get_metric_history(info.run_id, key)))
            for key in data.metrics}
        inputs = run.inputs.dataset_inputs if run.inputs is not None else []
        snap.runs[info.run_id] = Run(
            exp_name, info.run_name, info.status, info.start_time, info.end_time,
            info.lifecycle_stage, dict(data.params), dict(data.tags), metrics, len(inputs))
    models = _pages(lambda t: _paged_list(tracking.search_logged_models(
        experiment_ids=[exp_id], max_results=PAGE, page_token=t)))
    for model in models:
        snap.logged_models[model.model_id] = LoggedModel(
            exp_name, model.name, str(model.status), model.source_run_id,
            dict(model.params), dict(model.tags))
    traces = list(_pages(lambda t: tracking.search_traces(
        experiment_ids=[exp_id], max_results=PAGE, page_token=t)))
    if traces:
        snap.traces[exp_name] = len(traces)


@contextmanager
def file_store_allowed() -> Iterator[None]:
    """MLflow's FileStore refuses to work unless MLFLOW_ALLOW_FILE_STORE=true: set it for
    this scope (restored after)."""
    before = os.environ.get(ALLOW_FILE_STORE_ENV)
    os.environ[ALLOW_FILE_STORE_ENV] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ALLOW_FILE_STORE_ENV, None)
        else:
            os.environ[ALLOW_FILE_STORE_ENV] = before


def read_file_store(store: Path) -> Snapshot:
    import warnings

    from mlflow.store.model_registry.file_store import FileStore as RegistryFileStore
    from mlflow.store.tracking.file_store import FileStore

    from guard.core import mlflowpatch

    mlflowpatch.install()  # the sync clients' folders are no experiments
    with file_store_allowed(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        uri = store_uri(store)
        return read_snapshot(FileStore(uri, artifact_root_uri="mlflow-artifacts:/"),
                             RegistryFileStore(uri))


def read_database(url: str) -> Snapshot:
    """The database's entities. SqlAlchemyStore creates the schema and the Default experiment
    when they are missing: read a database after a copy, not instead of one."""
    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistrySqlAlchemyStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tracking = SqlAlchemyStore(url, "mlflow-artifacts:/")
    registry = RegistrySqlAlchemyStore(url)
    try:
        return read_snapshot(tracking, registry)
    finally:
        tracking.engine.dispose()
        registry.engine.dispose()


def verify_copy(store: Path, url: str) -> Verification:
    """Compare the file store at `store` with the database at `url`."""
    return compare(read_file_store(store), read_database(url))
