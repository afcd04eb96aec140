"""The synced MLflow file store: recognise one, and create one only when asked to.

A sync drive that is not mounted yet looks like a missing or empty folder; an MLflow server
started there creates a fresh store that then syncs over the real one. So nothing here ever
creates a store implicitly: `inspect_store` only looks, `init_store` is the one deliberate act.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

from guard.core import safepath
from guard.core.layout import META, REGISTRY, TRASH, Kind, describe, made_experiment_id

ALLOW_FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
# Files and folders a sync client or an OS puts into a folder; their presence alone is not
# content, and MLflow inside the guard skips them at the store root (core/mlflowpatch.py):
# Syncthing's marker, ignore file and versions (.stfolder, .stignore, .stversions), Synology's
# index, recycle bin, snapshots and Drive client folder (@eaDir, #recycle, #snapshot,
# .SynologyWorkingDirectory), Dropbox's, Resilio's (.sync), macOS's and Windows' files.
SYNC_MARKERS = frozenset(
    {".stfolder", ".stignore", ".stversions", "@eaDir", "#recycle", "#snapshot",
     ".SynologyWorkingDirectory", ".DS_Store", "desktop.ini", "Thumbs.db", ".dropbox",
     ".dropbox.cache", ".sync"}
)


class StoreState(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    NOT_A_FOLDER = "not a folder"
    EMPTY = "empty"
    NOT_A_STORE = "not an MLflow file store"
    UNREADABLE = "unreadable"


# What a sync drive that is not there yet looks like: worth waiting for (--wait-for-store).
WAITABLE = (StoreState.MISSING, StoreState.EMPTY)
CHILDREN_LOOKED_AT = 50  # a folder that is not a store: how many of its folders are looked into


@dataclass(frozen=True)
class StoreCheck:
    path: Path
    state: StoreState
    detail: str
    child_store: Path | None = None  # not a store, but this folder in it is one

    @property
    def ok(self) -> bool:
        return self.state is StoreState.OK

    @property
    def waitable(self) -> bool:
        """Whether waiting can help: a missing or empty folder may be a drive not mounted or
        synced yet; a folder with other content never turns into a store by waiting."""
        return self.state in WAITABLE

    def startup_advice(self) -> str:
        """What to do when `run` cannot start over this folder (after the detail)."""
        if self.waitable:
            return "Start with --wait-for-store to wait for the drive to appear."
        if self.child_store is not None:
            return f"Start with --store {self.child_store}."
        return "Point --store (or `store:` in the config file) at the synced mlruns folder."


def classify_entries(names: list[str], has_meta: set[str]) -> StoreState:
    """Decide from a folder listing whether it is an MLflow file store (pure).

    `has_meta` holds the entries that are folders with a meta.yaml inside.
    """
    content = [n for n in names if n not in SYNC_MARKERS]
    if not content:
        return StoreState.EMPTY
    if any(describe((n,)).kind in (Kind.TRASH, Kind.REGISTRY) for n in content):
        return StoreState.OK
    if any(made_experiment_id(n) and n in has_meta for n in content):
        return StoreState.OK
    return StoreState.NOT_A_STORE


def inspect_store(path: Path) -> StoreCheck:
    """Look at `path` without writing anything and say whether it is a usable store."""
    if not path.exists():
        return StoreCheck(path, StoreState.MISSING,
                          f"store folder {path} does not exist (is the sync drive mounted?)")
    if not path.is_dir():
        return StoreCheck(path, StoreState.NOT_A_FOLDER, f"store {path} is a file, not a folder")
    try:
        names = os.listdir(path)
    except OSError as exc:
        return StoreCheck(path, StoreState.UNREADABLE, f"cannot list store {path}: {exc}")
    has_meta = {n for n in names if made_experiment_id(n) and (path / n / META).is_file()}
    state = classify_entries(names, has_meta)
    if state is StoreState.EMPTY:
        detail = (f"store folder {path} is empty: an unmounted or not yet synced drive looks "
                  "like this; wait for the sync, or create a new store on purpose with "
                  f"`guardctl init --store {path}`")
    elif state is StoreState.NOT_A_STORE:
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        detail = (f"{path} is not an MLflow file store: expected '{TRASH}', '{REGISTRY}' or "
                  f"experiment folders with meta.yaml, found {shown}")
        child = child_store(path, names)
        if child is not None:
            detail += f"; {child.name} in it is an MLflow file store: use --store {child}"
        return StoreCheck(path, state, detail, child)
    else:
        detail = f"store {path} is an MLflow file store"
    return StoreCheck(path, state, detail)


def store_first(names: list[str]) -> list[str]:
    """The order to look for a store among a folder's entries: `mlruns` (MLflow's own name)
    first, then by name, without the sync clients' folders (pure)."""
    return sorted((n for n in names if n not in SYNC_MARKERS), key=lambda n: (n != "mlruns", n))


def child_store(path: Path, names: list[str]) -> Path | None:
    """A folder directly inside `path` that is an MLflow file store (the usual mistake: the
    synced folder above `mlruns` given as the store), or None."""
    for name in store_first(names)[:CHILDREN_LOOKED_AT]:
        child = path / name
        try:
            if not child.is_dir() or child.is_symlink():
                continue
            inner = os.listdir(child)
        except OSError:
            continue
        has_meta = {n for n in inner if made_experiment_id(n) and (child / n / META).is_file()}
        if classify_entries(inner, has_meta) is StoreState.OK:
            return child
    return None


def store_uri(path: Path) -> str:
    """The file:// URI MLflow wants for a local folder."""
    return Path(os.path.abspath(path)).as_uri()


def init_store(path: Path) -> str:
    """Create a new empty file store at `path` (missing or empty folder) on purpose."""
    check = inspect_store(path)
    if check.ok:
        return f"{path} is already an MLflow file store; nothing to do"
    if check.state not in (StoreState.MISSING, StoreState.EMPTY):
        raise ValueError(f"refusing to create a store: {check.detail}")
    os.environ.setdefault(ALLOW_FILE_STORE_ENV, "true")
    from mlflow.store.tracking.file_store import FileStore

    path.mkdir(parents=True, exist_ok=True)
    store = FileStore(store_uri(path), artifact_root_uri="mlflow-artifacts:/")
    # The constructor only writes the Default experiment into a folder it creates itself;
    # an existing empty folder (a mount point) needs it explicitly.
    if not (path / FileStore.DEFAULT_EXPERIMENT_ID / "meta.yaml").exists():
        store._create_default_experiment()
    (path / REGISTRY).mkdir(exist_ok=True)
    return f"created a new MLflow file store at {path}"


def mkdirs_in_store(store: Path, folder: Path) -> None:
    """Create `folder` below the store, but never the store itself: a sync drive that is not
    mounted must stay an absent (or empty) folder, not get a fresh store from the guard. No
    folder below the store may be a symlink (safepath.Escape): nothing is made outside."""
    if not Path(store).is_dir():
        raise FileNotFoundError(f"store {store} is not there (is the sync drive mounted?)")
    safepath.mkdirs(safepath.target_of(store, folder))
