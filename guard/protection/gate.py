"""Which requests to the MLflow server need the guard first (pure: method, path and body in).

Registering a model picks the next version number from what this machine sees of
`models/<name>/`; two machines doing it within the sync delay pick the same number. So
creating a registered model, a model version, or renaming a model onto a name first takes
the cross-machine lock for that model name.

On a synced store a deletion on one machine is a deletion on all of them. So requests that
destroy data beyond undo (deleting artifacts, traces) are refused; deleting or renaming a
registered model is either refused or sanctioned (kept in the vault, with a tombstone so no
machine's vault puts it back), by gc.model_deletions. Soft deletes (runs, experiments, model
versions: MLflow only marks them) pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from guard.core.config import ModelDeletions
from guard.sync.leases import resource_name

# MLflow serves each REST endpoint as /api/2.0/mlflow/... and /ajax-api/2.0/mlflow/..., both
# optionally under a --static-prefix.
_ENDPOINT = re.compile(r"^(?:/[^?#]*)?/(?:api|ajax-api)/2\.0/mlflow/(?P<op>[a-z-]+/[a-z-]+)/?$")
_TRACES_DELETE = re.compile(
    r"^(?:/[^?#]*)?/(?:api|ajax-api)/[23]\.0/mlflow/traces/delete-traces/?$")
_ARTIFACT = re.compile(r"^(?:/[^?#]*)?/(?:api|ajax-api)/2\.0/mlflow-artifacts/artifacts(?:/|$)")
SANCTIONS_ENV = "MLFLOW_GUARD_SANCTIONS"  # Sanctions as JSON, for the servers the guard starts
GC_HINT = ("runs and experiments deleted in MLflow (the deleted stage) are removed for good by "
           "`guardctl gc`, which keeps every machine's copy consistent")
# operation -> the request field naming the model whose versions it may number
_MODEL_FIELD = {
    "registered-models/create": "name",
    "model-versions/create": "name",
    "registered-models/rename": "new_name",
}


def model_field(method: str, path: str) -> str | None:
    """The request field naming the model to lock, for the requests that need it; None for
    every other request, whose body then is never read (uploads stream through untouched)."""
    if method.upper() != "POST":
        return None
    match = _ENDPOINT.match(path)
    return _MODEL_FIELD.get(match.group("op")) if match else None


def model_lock(method: str, path: str, body: bytes) -> str | None:
    """The lock resource a request must hold while MLflow handles it, or None."""
    field = model_field(method, path)
    return None if field is None else model_resource(field, body)


def model_resource(field: str, body: bytes) -> str | None:
    """The lock resource for the model named by `field` in the JSON `body`; None for a body
    that is not JSON or names no model (MLflow itself rejects those)."""
    name = model_name(field, body)
    return None if name is None else resource_name("model", name)


# operation -> the request field naming the registered model it removes from the store
_REMOVES_MODEL = {"registered-models/delete": "name", "registered-models/rename": "name"}
_MODEL_DELETES = {"registered-models/delete", "model-versions/delete"}


def _operation(path: str) -> str | None:
    match = _ENDPOINT.match(path)
    return match.group("op") if match else None


def refusal(method: str, path: str, model_deletions: str) -> str | None:
    """Why the guard refuses this request (403), or None when it may pass."""
    method = method.upper()
    if method == "DELETE" and _ARTIFACT.match(path):
        return ("deleting artifacts through the server is disabled: on a "
                "synced store it deletes them on every machine; " + GC_HINT)
    if method == "POST" and _TRACES_DELETE.match(path):
        return ("deleting traces is disabled: it is permanent on a file "
                "store and replays on every machine")
    op = _operation(path)
    if op in _MODEL_DELETES and method == "DELETE" and model_deletions == ModelDeletions.REFUSE:
        return ("deleting registered models and model versions is disabled on this store "
                "(gc.model_deletions: refuse); ask the lab's admin, or set it to allow")
    return None


def removed_model_field(method: str, path: str) -> str | None:
    """The field naming a registered model whose folder this request removes (delete, or
    rename away from it): the guard keeps it in the vault and writes a tombstone first."""
    op = _operation(path)
    if op is None or _REMOVES_MODEL.get(op) is None:
        return None
    wanted = "DELETE" if op == "registered-models/delete" else "POST"
    return _REMOVES_MODEL[op] if method.upper() == wanted else None


def model_name(field: str, body: bytes) -> str | None:
    """The model name in `field` of a JSON body; None when there is none."""
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    name = doc.get(field) if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class Sanctions:
    """What the server needs to refuse or sanction deletions."""
    store: str
    vault: str
    host_id: str
    model_deletions: str  # allow | refuse

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, raw: str) -> Sanctions:
        return cls(**json.loads(raw))
