"""The guard inside MLflow's server: an `mlflow.app` plugin (`mlflow server --app-name guard`).

In-process hooks on MLflow's Flask app cost nothing on the hot paths (log_batch is one path
check; artifact uploads and downloads are served by MLflow's own ASGI routes and never reach
these hooks), where a proxy in front would copy every byte once more. Artifact DELETE has no
ASGI route, so it does reach them. The daemon passes its settings in the environment
(locks.ENV, SANCTIONS_ENV); without them the hooks do nothing.

Every refusal (403 from the gate, 503 on a lock timeout) answers in MLflow's error format and
goes to the state folder's refusal journal, which `guardctl status` and the status page
(/guard/, guard.statuspage) show: MLflow's UI shows some of these answers only as "Something
went wrong".
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from guard.core import safepath
from guard.core.config import LockBackend
from guard.core.journal import Journal
from guard.core.layout import META, REGISTRY, registered_model_meta
from guard.core.metayaml import read_doc
from guard.core.state import StateDir
from guard.protection import tombstones
from guard.protection.gate import (
    EXPERIMENT,
    SANCTIONS_ENV,
    Sanctions,
    decide,
    joins_experiment,
    mlflow_request_doc,
    model_name,
    model_resource,
)
from guard.protection.trash import copy_into_trash, created_of, new_batch
from guard.statuspage import refusals
from guard.statuspage.routes import PREFIX, install_page
from guard.sync.locks import ENV, LINGER, HostLock, Lingering, LockSettings, LockTimeout

log = logging.getLogger("guard.app")


def _json_response(status: int, code: str, message: str) -> Any:
    from flask import Response

    said = message if "mlflow-sync-guard" in message else f"mlflow-sync-guard: {message}"
    body = {"error_code": code, "message": said}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def static_prefix(route: str) -> str:
    """`route` under MLflow's --static-prefix, where the status page is served too."""
    try:
        from mlflow.server.handlers import _add_static_prefix
    except ImportError:  # an MLflow without --static-prefix
        return route
    return str(_add_static_prefix(route))


def refuse(settings: LockSettings | None, status: int, code: str, message: str) -> Any:
    """Answer a refusal in MLflow's error format, saying where refused requests are listed,
    and journal it for `guardctl status` and the status page (MLflow's UI may show only
    "Something went wrong")."""
    from flask import request

    page = request.host_url.rstrip("/") + static_prefix(PREFIX) + "/"
    if settings is not None:
        refusals.record(StateDir(Path(settings.state_dir)).refusal_journal, request.method,
                        request.path, refusals.what_of(request.endpoint), message, status)
    return _json_response(status, code, f"{message} Refused requests are listed on the "
                                        f"guard's status page: {page}")


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


def experiment_named(name: str) -> tuple[str, str, int | None] | None:
    """(id, lifecycle_stage, creation_time) of the experiment MLflow's own store finds under
    `name`, None when there is none (or MLflow cannot say: its handler then answers)."""
    try:
        from mlflow.server.handlers import _get_tracking_store

        found = _get_tracking_store().get_experiment_by_name(name)
    except Exception:  # the handler meets the same error and answers it
        return None
    if found is None:
        return None
    return str(found.experiment_id), str(found.lifecycle_stage), found.creation_time


def join_experiment(name: str, there_before: bool, settle: float) -> Any:
    """Under the experiment name's lock: the winner's id when this create lost a race to
    another machine's (gate.joins_experiment), else None (MLflow's handler runs)."""
    exp_id = joins_experiment(experiment_named(name), there_before, int(time.time() * 1000),
                              settle)
    if exp_id is None:
        return None
    from flask import Response

    log.info("create experiment %r: another machine created it first; answered its id %s",
             name, exp_id)
    return Response(json.dumps({"experiment_id": exp_id}), status=200,
                    mimetype="application/json")


def note_registration(settings: LockSettings, body: Any) -> None:
    """A model version this host's server created (the response of create model version):
    a line in the state folder's registration journal, so that the daemon can tell which
    number the client was given if the version is renumbered later (guard.sync.reconcile)."""
    version = body.get("model_version") if isinstance(body, dict) else None
    if not isinstance(version, dict):
        return
    try:
        created = int(version.get("creation_timestamp"))  # type: ignore[arg-type]
        Journal(StateDir(Path(settings.state_dir)).registration_journal).append(
            model=version.get("name"), version=int(version.get("version")),  # type: ignore[arg-type]
            creation_timestamp=created, run_id=version.get("run_id") or None,
            host=settings.host_id)
    except (TypeError, ValueError, OSError) as exc:  # never fail the client's registration
        log.warning("could not journal the registration of %r: %s", version.get("name"), exc)


def model_in_store(store: str, name: str | None) -> bool:
    """Whether the registered model `name` is in the store (its meta.yaml, reached without
    following a symlink): MLflow then refuses to create it. False when unsure (the lock is
    taken). A deletion racing this check lets one create through unlocked: the window is
    between this look and MLflow's own."""
    if name is None:
        return False
    try:
        return safepath.exists(safepath.Target(Path(store), registered_model_meta(name)))
    except OSError:
        return False


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


CREATES_MODEL = "_create_registered_model"  # the route register_model sends first

LINGERING = Lingering()  # this server process's model-name locks kept after a create
atexit.register(LINGERING.release_all)


def linger_after(endpoint: str | None, status: int, backend: str) -> float:
    """How long to keep the lock of a request that succeeded with `status`: LINGER after
    registered-models/create on the lease backend, where the model-versions/create that
    register_model sends next would otherwise claim and settle again; else 0 (release now).
    The OS backend has no settle to save."""
    if endpoint == CREATES_MODEL and status == 200 and backend == LockBackend.LEASE:
        return LINGER
    return 0.0


def install(flask_app: Any, settings: LockSettings | None, sanctions: Sanctions | None) -> None:
    """Refuse what destroys data beyond undo, sanction registry deletions, and take the
    model-name lock around every request that numbers model versions: by the route MLflow
    dispatched the request to (gate.ROUTES), with the fields as MLflow reads them. After a
    model is created its lock lingers (linger_after), and the next request on that name
    takes it over instead of claiming and settling again."""
    from flask import g, request

    def before() -> Any:
        model_deletions = sanctions.model_deletions if sanctions is not None else "allow"
        verdict = decide(request.endpoint if request.url_rule is not None else None,
                         request.method, model_deletions)
        if sanctions is not None and verdict.refuse is not None:
            log.warning("refused %s %s", request.method, request.path)
            return refuse(settings, 403, "PERMISSION_DENIED", verdict.refuse)
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
        resource = model_resource(verdict.lock, doc, verdict.resource)
        if resource is None:
            return None
        if verdict.needs_absent and model_in_store(settings.store, model_name(verdict.lock, doc)):
            return None  # MLflow answers RESOURCE_ALREADY_EXISTS and writes nothing: no lock
        experiment = model_name(verdict.lock, doc) if verdict.resource == EXPERIMENT else None
        there_before = experiment is not None and experiment_named(experiment) is not None
        lingering = LINGERING.take(resource)
        if lingering is not None:  # held since this process created the model a moment ago
            g.guard_lock = lingering
            return None
        lock = HostLock(settings, resource)
        try:
            lock.acquire()
        except LockTimeout as exc:
            log.warning("refused %s %s: %s", request.method, request.path, exc)
            what = "creating this experiment" if experiment else "registering this model"
            return refuse(settings, 503, "TEMPORARILY_UNAVAILABLE",
                          f"{exc}. Another machine is {what}. Nothing was "
                          "changed: send the request again (MLflow's client retries 503 by "
                          "itself). If it keeps failing, `guardctl locks` names the holder; a "
                          "holder whose machine is off frees the lock once its heartbeat is "
                          "stale (peers.stale_after).")
        g.guard_lock = lock
        if experiment is not None:
            return join_experiment(experiment, there_before, settings.settle)
        return None

    def sanction(response: Any) -> Any:
        """MLflow removed the model's folder: a tombstone, so no machine's vault restores it."""
        done = g.pop("guard_sanction", None)
        if done is not None and sanctions is not None and response.status_code == 200:
            name, created, why = done
            tombstones.write(Path(sanctions.store), sanctions.host_id, (REGISTRY, name), why,
                             created)
        if settings is not None and response.status_code == 200 \
                and request.endpoint == "_create_model_version":
            note_registration(settings, response.get_json(silent=True))
        if settings is not None and "guard_lock" in g:
            g.guard_linger = linger_after(request.endpoint, response.status_code,
                                          settings.backend)
        return response

    def after(exc: BaseException | None) -> None:
        lock = g.pop("guard_lock", None)
        linger = g.pop("guard_linger", 0.0)
        if lock is not None:
            LINGERING.keep(lock, linger if exc is None else 0.0)

    flask_app.before_request(before)
    flask_app.after_request(sanction)
    flask_app.teardown_request(after)
    install_page(flask_app, settings, static_prefix)


def create_app() -> Any:
    """The factory MLflow's server calls (uvicorn --factory): MLflow's app, guarded."""
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app

    from guard.core import mlflowpatch

    mlflowpatch.install()  # MLflow's file stores skip .stfolder, @eaDir... in the store root
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
