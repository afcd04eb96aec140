"""The guard inside MLflow's server: an `mlflow.app` plugin (`mlflow server --app-name guard`).

In-process hooks on MLflow's Flask app cost nothing on the hot paths (log_batch is one path
check; artifact uploads and downloads are served by MLflow's own ASGI routes and never reach
these hooks), where a proxy in front would copy every byte once more. Artifact DELETE has no
ASGI route, so it does reach them. The daemon passes its settings in the environment
(locks.ENV, SANCTIONS_ENV); without them the hooks do nothing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from guard.core.layout import META, REGISTRY
from guard.core.metayaml import read_doc
from guard.protection import tombstones
from guard.protection.gate import (
    SANCTIONS_ENV,
    Sanctions,
    model_field,
    model_name,
    model_resource,
    refusal,
    removed_model_field,
)
from guard.protection.trash import copy_into_trash, created_of, new_batch
from guard.sync.locks import ENV, HostLock, LockSettings, LockTimeout

log = logging.getLogger("guard.app")


def _json_response(status: int, code: str, message: str) -> Any:
    from flask import Response

    body = {"error_code": code, "message": f"mlflow-sync-guard: {message}"}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def keep_registered_model(sanctions: Sanctions, name: str, why: str) -> tuple[int | None] | None:
    """Before MLflow removes models/<name>: a second name for its files in the vault's trash.
    Returns (its creation time,) for the tombstone, written once MLflow succeeded; None when
    there is nothing to keep."""
    store = Path(sanctions.store)
    folder = store / REGISTRY / name
    if not folder.is_dir() or Path(os.path.realpath(folder)).parent != \
            Path(os.path.realpath(store / REGISTRY)):
        return None  # nothing there (MLflow answers 404), or a name that leaves the registry
    created = created_of(read_doc(folder / META))
    batch = new_batch(Path(sanctions.vault), why, path=f"{REGISTRY}/{name}")
    copy_into_trash(folder, (REGISTRY, name), batch)
    log.info("%s: kept models/%s in %s", why, name, batch)
    return (created,)


def install(flask_app: Any, settings: LockSettings | None, sanctions: Sanctions | None) -> None:
    """Refuse what destroys data beyond undo, sanction registry deletions, and take the
    model-name lock around every request that numbers model versions."""
    from flask import g, request

    def before() -> Any:
        if sanctions is not None:
            why = refusal(request.method, request.path, sanctions.model_deletions)
            if why is not None:
                log.warning("refused %s %s", request.method, request.path)
                return _json_response(403, "PERMISSION_DENIED", why)
            field = removed_model_field(request.method, request.path)
            name = model_name(field, request.get_data(cache=True)) if field else None
            if name is not None:
                why = f"registered-models/{request.path.rsplit('/', 1)[-1]} through the server"
                kept = keep_registered_model(sanctions, name, why)
                if kept is not None:
                    g.guard_sanction = (name, kept[0], why)
        if settings is None:
            return None
        field = model_field(request.method, request.path)
        if field is None:
            return None
        resource = model_resource(field, request.get_data(cache=True))
        if resource is None:
            return None
        lock = HostLock(settings, resource)
        try:
            lock.acquire()
        except LockTimeout as exc:
            log.warning("refused %s %s: %s", request.method, request.path, exc)
            return _json_response(503, "TEMPORARILY_UNAVAILABLE",
                                  f"{exc}. Another machine is registering this model; retry "
                                  "in a minute, or see `guardctl locks`.")
        g.guard_lock = lock
        return None

    def sanction(response: Any) -> Any:
        """MLflow removed the model's folder: a tombstone, so no machine's vault restores it."""
        done = g.pop("guard_sanction", None)
        if done is not None and sanctions is not None and response.status_code == 200:
            name, created, why = done
            tombstones.write(Path(sanctions.store), sanctions.host_id, (REGISTRY, name), why,
                             created)
        return response

    def after(_exc: BaseException | None) -> None:
        lock = g.pop("guard_lock", None)
        if lock is not None:
            lock.release()

    flask_app.before_request(before)
    flask_app.after_request(sanction)
    flask_app.teardown_request(after)


def create_app() -> Any:
    """The factory MLflow's server calls (uvicorn --factory): MLflow's app, guarded."""
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    raw, raw_sanctions = os.environ.get(ENV), os.environ.get(SANCTIONS_ENV)
    if not raw:
        log.warning("%s is not set: model registration is not locked across machines "
                    "(start the server through `guardctl run`)", ENV)
    install(flask_app, LockSettings.from_env(raw) if raw else None,
            Sanctions.from_env(raw_sanctions) if raw_sanctions else None)
    return create_fastapi_app(flask_app)
