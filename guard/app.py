"""The guard inside MLflow's server: an `mlflow.app` plugin (`mlflow server --app-name guard`).

In-process hooks on MLflow's Flask app cost nothing on the hot paths (log_batch is one path
check; artifact transfers are served by MLflow's own ASGI routes and never reach these hooks),
where a proxy in front would copy every byte once more. The daemon passes the lock settings
in the environment (locks.ENV); without them the hooks do nothing.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from .gate import model_field, model_resource
from .locks import ENV, HostLock, LockSettings, LockTimeout

log = logging.getLogger("guard.app")


def install(flask_app: Any, settings: LockSettings) -> None:
    """Take the model-name lock around every request that numbers model versions."""
    from flask import Response, g, request

    def before() -> Any:
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
            body = {"error_code": "TEMPORARILY_UNAVAILABLE",
                    "message": f"mlflow-sync-guard: {exc}. Another machine is registering this "
                               "model; retry in a minute, or see `guardctl locks`."}
            return Response(json.dumps(body), status=503, mimetype="application/json")
        g.guard_lock = lock
        return None

    def after(_exc: BaseException | None) -> None:
        lock = g.pop("guard_lock", None)
        if lock is not None:
            lock.release()

    flask_app.before_request(before)
    flask_app.teardown_request(after)


def create_app() -> Any:
    """The factory MLflow's server calls (uvicorn --factory): MLflow's app, guarded."""
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    raw = os.environ.get(ENV)
    if raw:
        install(flask_app, LockSettings.from_env(raw))
    else:
        log.warning("%s is not set: model registration is not locked across machines "
                    "(start the server through `guardctl run`)", ENV)
    return create_fastapi_app(flask_app)
