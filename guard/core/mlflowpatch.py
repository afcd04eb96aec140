"""MLflow's file stores, inside the guard's processes, skip the sync clients' own folders.

MLflow (checked: 3.17.2) reads every folder at the root of a file store as an experiment,
except `models` and names ending in `.trash`, and every folder of `models/` as a registered
model. So a sync client's folder there (Syncthing's `.stfolder` marker and `.stversions`,
Synology's `@eaDir` and `#recycle`: all there when the mlruns folder itself is the shared
folder) breaks every listing: search_experiments, get_experiment_by_name and create_experiment
(it looks the name up first) raise 400 "Invalid experiment ID: '.stfolder'"
(mlflow.utils.validation._validate_experiment_id, from FileStore._get_experiment), and
search_registered_models fails on the missing `models/@eaDir/meta.yaml`.

The narrowest place is the three methods that list those folders (`LISTINGS`); every listing
of experiments (search, by name, create, and runs, traces and logged models found by id) and
of registered models goes through them, while a lookup by id or name (`find`, a path join)
never meets a marker. `install` wraps them to drop the names in store.SYNC_MARKERS; it is
idempotent and is called where MLflow's file stores run in a guard process: `create_app` (the
server) and verify.py's child. A client that opens the folder directly (a file:// tracking
URI, a bare `mlflow server`) is not helped: `guardctl doctor` warns about that.

If MLflow renames one of the methods or changes its parameters, `install` patches nothing,
says why (`problems`) and MLflow behaves as without the guard; tests/core/test_mlflowpatch.py
fails on that, so an MLflow upgrade cannot silently end it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

from guard.core.store import SYNC_MARKERS

log = logging.getLogger("guard.app")

TRACKING = "mlflow.store.tracking.file_store"
REGISTRY = "mlflow.store.model_registry.file_store"
# (module, FileStore method, its parameters as MLflow 3.17 declares them)
LISTINGS: tuple[tuple[str, str, str], ...] = (
    (TRACKING, "_get_active_experiments", "(self, full_path=False)"),
    (TRACKING, "_get_deleted_experiments", "(self, full_path=False)"),
    (REGISTRY, "_get_all_registered_model_paths", "(self)"),
)
MARK = "__guard_skips_sync_markers__"


def skip_markers(names: list[str]) -> list[str]:
    """`names` (folder names or full paths) without the sync clients' folders (pure)."""
    return [n for n in names if os.path.basename(os.path.normpath(n)) not in SYNC_MARKERS]


def _wrapped(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def listing(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        return skip_markers(found) if isinstance(found, list) else found

    setattr(listing, MARK, True)
    return listing


def _file_store(module: str) -> type | None:
    import importlib

    return getattr(importlib.import_module(module), "FileStore", None)


def problems() -> list[str]:
    """What keeps `install` from patching this MLflow (empty: nothing)."""
    out = []
    for module, name, params in LISTINGS:
        try:
            cls = _file_store(module)
        except ImportError as exc:
            out.append(f"{module}: {exc}")
            continue
        method = getattr(cls, name, None) if cls is not None else None
        if not callable(method):
            out.append(f"{module}.FileStore.{name} is gone")
            continue
        method = inspect.unwrap(method)
        if str(inspect.signature(method)) != params:
            out.append(f"{module}.FileStore.{name}{inspect.signature(method)} is not {params}")
    return out


def installed() -> bool:
    """Whether every listing skips the sync clients' folders in this process."""
    try:
        return all(getattr(getattr(_file_store(m), n, None), MARK, False)
                   for m, n, _ in LISTINGS)
    except ImportError:
        return False


def install() -> bool:
    """Make MLflow's file stores in this process skip the sync clients' folders (all three
    listings, or none when this MLflow differs). True when they do."""
    if installed():
        return True
    found = problems()
    if found:
        log.warning("cannot make MLflow skip the sync clients' folders in the store (%s): a "
                    "Syncthing or Synology folder in the store root breaks experiment search",
                    "; ".join(found))
        return False
    for module, name, _ in LISTINGS:
        cls = _file_store(module)
        method = getattr(cls, name)
        if not getattr(method, MARK, False):
            setattr(cls, name, _wrapped(method))
    return True
