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
    decide,
    mlflow_request_doc,
    model_name,
    model_resource,
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


def request_doc(request: Any) -> dict[str, Any] | None:
    """The request's fields exactly as MLflow's handlers will read them: MLflow's own
    normalisation (a JSON string decoded twice, content type checked) in this request's
    context, the same rules re-stated in the gate where it cannot be imported. None where
    MLflow answers an error."""
    if request.method == "GET" and request.args:
        return {key: request.args.get(key) for key in request.args}
    try:
        from mlflow.server.handlers import _get_normalized_request_json
    except ImportError:
        return mlflow_request_doc(request.method, request.args, request.get_data(cache=True),
                                  request.content_type)
    try:
        doc = _get_normalized_request_json(request)
    except Exception:  # MLflow raises the same when its handler reads it, and changes nothing
        return None
    return doc if isinstance(doc, dict) else None


def install(flask_app: Any, settings: LockSettings | None, sanctions: Sanctions | None) -> None:
    """Refuse what destroys data beyond undo, sanction registry deletions, and take the
    model-name lock around every request that numbers model versions: by the route MLflow
    dispatched the request to (gate.ROUTES), with the fields as MLflow reads them."""
    from flask import g, request

    def before() -> Any:
        model_deletions = sanctions.model_deletions if sanctions is not None else "allow"
        verdict = decide(request.endpoint if request.url_rule is not None else None,
                         request.method, model_deletions)
        if sanctions is not None and verdict.refuse is not None:
            log.warning("refused %s %s", request.method, request.path)
            return _json_response(403, "PERMISSION_DENIED", verdict.refuse)
        if verdict.lock is None and verdict.keeps is None:
            return None  # the body is never read: uploads stream through untouched
        doc = request_doc(request)
        name = model_name(verdict.keeps, doc) if verdict.keeps else None
        if sanctions is not None and name is not None:
            rule = request.url_rule.rule if request.url_rule is not None else request.path
            op = "/".join(rule.rstrip("/").split("/")[-2:])
            why = f"{op} through the server"  # e.g. registered-models/delete
            kept = keep_registered_model(sanctions, name, why)
            if kept is not None:
                g.guard_sanction = (name, kept[0], why)
        if settings is None or verdict.lock is None:
            return None
        resource = model_resource(verdict.lock, doc)
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
    from guard.core.config import SERVER_AUTH_ENV, ServerAuth

    if os.environ.get(SERVER_AUTH_ENV) == ServerAuth.BASIC:
        # MLflow's basic-auth app first: its before_request answers 401 (or 403) before the
        # guard's hooks run, so they take locks and keep trash copies only for users it let in.
        from mlflow.server.auth import add_fastapi_permission_middleware
        from mlflow.server.auth import create_app as create_auth_app

        asgi = create_auth_app(flask_app)
        install(flask_app, LockSettings.from_env(raw) if raw else None,
                Sanctions.from_env(raw_sanctions) if raw_sanctions else None)
        if asgi is flask_app:  # not under uvicorn: its FastAPI routes need the check too
            asgi = create_fastapi_app(flask_app)
            add_fastapi_permission_middleware(asgi)
        return asgi
    install(flask_app, LockSettings.from_env(raw) if raw else None,
            Sanctions.from_env(raw_sanctions) if raw_sanctions else None)
    return create_fastapi_app(flask_app)
