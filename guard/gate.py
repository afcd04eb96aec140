"""Which requests to the MLflow server need the guard first (pure: method, path and body in).

Registering a model picks the next version number from what this machine sees of
`models/<name>/`; two machines doing it within the sync delay pick the same number. So
creating a registered model, a model version, or renaming a model onto a name first takes
the cross-machine lock for that model name.
"""

from __future__ import annotations

import json
import re

from .locks import resource_name

# MLflow serves each REST endpoint as /api/2.0/mlflow/... and /ajax-api/2.0/mlflow/..., both
# optionally under a --static-prefix.
_ENDPOINT = re.compile(r"^(?:/[^?#]*)?/(?:api|ajax-api)/2\.0/mlflow/(?P<op>[a-z-]+/[a-z-]+)/?$")
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
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    name = doc.get(field) if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        return None
    return resource_name("model", name)
