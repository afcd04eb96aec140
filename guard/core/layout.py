"""The MLflow file store's layout: which meta.yaml holds which location, and where it belongs.

    <exp>/meta.yaml                        artifact_location -> <exp>
    <exp>/<run>/meta.yaml                  artifact_uri      -> <exp>/<run>/artifacts
    <exp>/models/<m-id>/meta.yaml          artifact_location -> <exp>/models/<m-id>/artifacts
    models/<name>/version-<N>/meta.yaml    storage_location, source -> the logged model's or
                                           run's artifacts they name (by model_id / run_id)
    .trash/<exp>/...                       as above; the location is the experiment's home

Pure: works on path segments relative to the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


def is_experiment_folder(name: str) -> bool:
    """Whether MLflow reads a folder at the store root as an experiment (its own rule)."""
    return not name.endswith(TRASH) and name != REGISTRY
_VERSION = re.compile(r"^version-\d+$")
_NOT_RUNS = {"models", "traces", "datasets", "tags"}


@dataclass(frozen=True)
class MetaKind:
    name: str  # experiment | run | logged_model | model_version | registered_model | other
    # key -> the store-relative location it must name; None: derived from the file's content
    keys: dict

    @property
    def has_locations(self) -> bool:
        return bool(self.keys)


OTHER = MetaKind("other", {})


def classify_meta(rel: tuple[str, ...]) -> MetaKind:
    """What a meta.yaml at store-relative `rel` is, and the locations it should hold."""
    if not rel or rel[-1] != META:
        return OTHER
    parts = rel[:-1]
    if parts and parts[0] == TRASH:
        parts = parts[1:]
        if parts and parts[0] == REGISTRY:
            return OTHER
    elif parts and parts[0] != REGISTRY and not is_experiment_folder(parts[0]):
        return OTHER
    if len(parts) == 3 and parts[0] == REGISTRY and _VERSION.match(parts[2]):
        return MetaKind("model_version", {"storage_location": None, "source": None})
    if len(parts) == 2 and parts[0] == REGISTRY:
        return MetaKind("registered_model", {})
    if not parts or parts[0] == REGISTRY:
        return OTHER
    exp = parts[0]
    if len(parts) == 1:
        return MetaKind("experiment", {"artifact_location": (exp,)})
    if len(parts) == 2 and parts[1] not in _NOT_RUNS:
        return MetaKind("run", {"artifact_uri": (exp, parts[1], "artifacts")})
    if len(parts) == 3 and parts[1] == "models":
        return MetaKind("logged_model",
                        {"artifact_location": (exp, "models", parts[2], "artifacts")})
    return OTHER


def can_hold_meta(rel: tuple[str, ...]) -> bool:
    """Whether a folder at store-relative `rel` can contain a meta.yaml the guard looks at, or
    such folders: the store, experiments, runs, logged models and the registry. Folders below
    a run (params, metrics, tags, artifacts...) cannot, so they need no filesystem watch."""
    if rel and rel[0] != TRASH and rel[0] != REGISTRY and not is_experiment_folder(rel[0]):
        return False
    parts = rel[1:] if rel and rel[0] == TRASH else rel
    if not parts:
        return True
    if parts[0] == REGISTRY:
        return len(parts) <= 2 or (len(parts) == 3 and bool(_VERSION.match(parts[2])))
    if len(parts) == 1:
        return True
    if len(parts) == 2:
        return parts[1] not in _NOT_RUNS or parts[1] == "models"
    return len(parts) == 3 and parts[1] == "models"


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
        if not exp.isdigit():
            continue
        if (model_id and len(rest) >= 3 and norm(rest[0]) == "models"
                and norm(rest[1]) == norm(model_id) and norm(rest[2]) == "artifacts"):
            return (exp, "models", model_id, "artifacts") + rest[3:]
        if run_id and len(rest) >= 2 and norm(rest[0]) == norm(run_id) \
                and norm(rest[1]) == "artifacts":
            return (exp, run_id, "artifacts") + rest[2:]
    return None
