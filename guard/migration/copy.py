"""Copy every entity of an MLflow file store into an empty database, in one transaction.

The per-entity work is MLflow's own file-store-to-database migration (`mlflow.store.fs2db`,
what `mlflow migrate-filestore` runs). Its `migrate()` is not used: it sets SQLite pragmas on
every connection (so fails on PostgreSQL) and prints. `copy_store` is the same orchestration,
in the same order, over the same per-entity functions: `_initialize_tables`,
`_assert_empty_db`, `for_each_experiment`, `_migrate_one_experiment`, `_migrate_runs_in_dir`,
`_migrate_datasets_for_experiment`, `_migrate_outputs_for_experiment`,
`_migrate_traces_for_experiment`, `_migrate_assessments_for_experiment`,
`_migrate_logged_models_for_experiment`, `list_registered_models`,
`_migrate_one_registered_model` and `MigrationStats`.

Those are MLflow-private functions (leading underscores, a private package): their names and
parameters are pinned by the supported MLflow range in pyproject.toml (checked: 3.17.2), and
tests/migration/test_copy.py runs them end to end against SQLite (and PostgreSQL where the
test harness has one), so an MLflow upgrade that changes them fails there, not in a user's
migration.

What this adds to fs2db's orchestration:
- all data in ONE transaction: the commit is the last step; any error rolls back and leaves
  the data tables empty (the schema, created first, stays);
- SQLite's speed pragmas (WAL, synchronous=OFF) only for sqlite URLs;
- the guard's folders stay out: `for_each_experiment` only yields folders whose name `int()`
  parses (so the coordination folder `mlflow-guard.trash` and the sync clients' folders are
  skipped already); names `int()` accepts but MLflow never makes (`1_0`, `+1`, ` 1`) are
  skipped too (fs2db would store `1_0` as experiment 10). Registered models: fs2db takes every
  folder of `models/`; the sync clients' folders there are skipped;
- experiment ids a 32-bit column cannot hold (PostgreSQL, MySQL: MLflow 3's file store makes
  18-digit ids) are renumbered (`database_ids`); fs2db would fail with "integer out of range";
- PostgreSQL: the experiments' id sequence is moved past the copied ids (fs2db inserts ids
  explicitly, which a PostgreSQL sequence does not see: the next create_experiment would
  collide with experiment 1);
- a database that is not empty is refused with `MigrationError` saying what to do.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guard.core.layout import TEMP_PREFIX, made_experiment_id
from guard.core.store import SYNC_MARKERS

Progress = Callable[[str], None]


class MigrationError(Exception):
    """A migration that cannot start or did not complete; the message says what to do."""


def is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"


def is_postgresql(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() in ("postgresql", "postgres")


# The largest experiment id a database holds: SQLite's INTEGER is 64-bit; PostgreSQL's and
# MySQL's `experiments.experiment_id` is a 32-bit INTEGER (MLflow's schema).
SQLITE_MAX_ID = 2**63 - 1
INT32_MAX_ID = 2**31 - 1


def _kind(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


def database_ids(ids: list[str], url: str) -> dict[str, int]:
    """The database id of each file-store experiment id (decimal strings; pure). Kept when all
    fit the database's column; else (MLflow 3's file store makes 18-digit random ids, which a
    32-bit column cannot hold) renumbered 1, 2, ... in the given order, the Default
    experiment's 0 kept. Runs, traces, logged models, datasets and artifact locations follow
    (they are copied under the experiment's new id; artifact paths are strings, unchanged)."""
    limit = SQLITE_MAX_ID if is_sqlite(url) else INT32_MAX_ID
    if all(int(i) <= limit for i in ids):
        return {i: int(i) for i in ids}
    out: dict[str, int] = {}
    next_id = 1
    for i in ids:
        if int(i) == 0:
            out[i] = 0
        else:
            out[i] = next_id
            next_id += 1
    return out


def skipped_model_folder(name: str) -> bool:
    """A folder of `models/` that is not a registered model: a sync client's, a temp file's."""
    return name in SYNC_MARKERS or name.startswith(TEMP_PREFIX)


def copy_store(store: Path, url: str, progress: Progress | None = None) -> dict[str, int]:
    """Copy the file store at `store` into the empty database at `url` (SQLAlchemy URL);
    return how many of each entity were written (fs2db's MigrationStats as a dict)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.db.utils import _initialize_tables
    from mlflow.store.fs2db import _assert_empty_db
    from mlflow.store.fs2db._registry import _migrate_one_registered_model, list_registered_models
    from mlflow.store.fs2db._tracking import (
        _migrate_assessments_for_experiment,
        _migrate_datasets_for_experiment,
        _migrate_logged_models_for_experiment,
        _migrate_one_experiment,
        _migrate_outputs_for_experiment,
        _migrate_runs_in_dir,
        _migrate_traces_for_experiment,
    )
    from mlflow.store.fs2db._utils import MigrationStats, for_each_experiment
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    say = progress or (lambda _msg: None)
    store = Path(store)
    if not store.is_dir():
        raise MigrationError(f"{store} is not a folder: point at the MLflow file store")

    engine = create_engine(url)
    if is_sqlite(url):
        # fs2db's bulk-import settings: WAL, no fsync (a failed copy is simply re-run).
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.close()

    stats = MigrationStats()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*filesystem.*deprecated.*",
                                    category=FutureWarning)
            say("initializing the database schema")
            _initialize_tables(engine)
            try:
                _assert_empty_db(engine)
            except MlflowException as exc:
                raise MigrationError(
                    f"the database at {_safe_url(url)} already holds MLflow data "
                    f"({exc.message}); migrate into a new, empty database (create one, "
                    "or drop this one's tables if its data is not needed)") from exc

            found = []
            for exp_dir, exp_id in for_each_experiment(store):
                if made_experiment_id(exp_id):
                    found.append((exp_dir, exp_id))
                else:
                    say(f"skipping {exp_dir}: not an experiment id MLflow makes")
            new_ids = database_ids([exp_id for _, exp_id in found], url)
            for old, new in new_ids.items():
                if str(new) != old:
                    say(f"experiment {old} becomes experiment {new} (too large for {_kind(url)})")
            experiments = [(exp_dir, str(new_ids[exp_id])) for exp_dir, exp_id in found]
            models = [m for m in list_registered_models(store)
                      if not skipped_model_folder(m.name)]

            with Session(engine) as session:
                try:
                    for i, (exp_dir, exp_id) in enumerate(experiments, 1):
                        say(f"[{i}/{len(experiments)}] experiment {exp_id}")
                        _migrate_one_experiment(session, exp_dir, exp_id, stats)
                        _migrate_runs_in_dir(session, exp_dir, int(exp_id), stats)
                        session.flush()
                        _migrate_datasets_for_experiment(session, exp_dir, int(exp_id), stats)
                        _migrate_outputs_for_experiment(session, exp_dir, stats)
                        _migrate_traces_for_experiment(session, exp_dir, int(exp_id), stats)
                        session.flush()
                        _migrate_assessments_for_experiment(session, exp_dir, int(exp_id), stats)
                        _migrate_logged_models_for_experiment(session, exp_dir, int(exp_id),
                                                              stats)
                        session.flush()
                        session.expunge_all()
                    for j, model_dir in enumerate(models, 1):
                        say(f"[{j}/{len(models)}] registered model {model_dir.name}")
                        _migrate_one_registered_model(session, model_dir, stats)
                        session.flush()
                        session.expunge_all()
                    if is_postgresql(url):
                        _advance_experiment_ids(session)
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
    finally:
        engine.dispose()
    say("copied: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    return dataclasses.asdict(stats)


def _advance_experiment_ids(session: Any) -> None:
    """Move PostgreSQL's experiment id sequence past the copied ids."""
    from sqlalchemy import text

    session.execute(text(
        "SELECT setval(pg_get_serial_sequence('experiments', 'experiment_id'), "
        "COALESCE((SELECT MAX(experiment_id) FROM experiments), 0) + 1, false)"))


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the given URL"
