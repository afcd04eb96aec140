"""What the guard does with each request to the MLflow server, before MLflow handles it (pure).

Rules:
- A request is classified by the route MLflow itself dispatched it to (the Flask endpoint,
  which MLflow names after its handler function), never by the raw path: prefixes, API
  versions, trailing slashes, percent-encoding, case and doubled slashes then cannot make the
  gate see another operation than MLflow runs. A request no route matched reaches no handler.
- Every route that can remove or replace store data (`changes_store`: DELETE, PUT or PATCH, or
  a POST whose path says delete, rename, set, update, ...) has exactly one entry in ROUTES:
  - refused: destroys data beyond undo (hard deletes, which a synced store replays on every
    machine); 403 always.
  - model deletion: removes a registered model (or marks a version deleted); 403 under
    `gc.model_deletions: refuse`, otherwise sanctioned: the model's files get a second name in
    the vault's trash and, once MLflow succeeded, a tombstone, so no machine's vault restores it.
  - locked: numbers model versions, so it holds the cross-machine lock of the model's name;
    creating an experiment holds the lock of the experiment's name (one experiment per name).
  - allowed, with the reason recorded (soft deletes MLflow only marks, edits of a tag or field
    the user named, operations the file store does not implement).
- The fields (model names) are read as MLflow reads them (`mlflow_request_doc`): a JSON string
  holding an object is decoded a second time, a GET's query string is its fields.
- MLflow's FastAPI routes answer before the Flask app, so these hooks never see them: their
  entries may only allow (tests/protection/test_routes.py checks both rules against the
  installed MLflow).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from guard.core.config import ModelDeletions
from guard.sync.leases import resource_name

SANCTIONS_ENV = "MLFLOW_GUARD_SANCTIONS"  # Sanctions as JSON, for the servers the guard starts
GC_HINT = ("runs and experiments deleted in MLflow (the deleted stage) are removed for good by "
           "`guardctl gc`, which keeps every machine's copy consistent")

REFUSED, MODEL_DELETION, LOCKED, ALLOWED = "refused", "model deletion", "locked", "allowed"
MODEL, EXPERIMENT = "model", "experiment"  # kinds of locked resource (leases.resource_name)
ASGI = "asgi:"  # key prefix of MLflow's FastAPI routes (by route name)


@dataclass(frozen=True)
class Rule:
    """The decision for one MLflow route."""
    kind: str            # REFUSED | MODEL_DELETION | LOCKED | ALLOWED
    why: str             # the 403 message, or the recorded reason
    lock: str | None = None   # request field naming the model whose lock it holds
    keeps: str | None = None  # request field naming the registered model it removes
    resource: str = MODEL     # what `lock` names: MODEL or EXPERIMENT
    # MLflow refuses it when the model named by `lock` is in the store: no lock needed then
    needs_absent: bool = False


@dataclass(frozen=True)
class Verdict:
    """What the server does with one request: refuse it, or let it pass holding `lock` on the
    model named by that field and keeping the model named by `keeps` (vault + tombstone)."""
    refuse: str | None = None
    lock: str | None = None
    keeps: str | None = None
    resource: str = MODEL
    needs_absent: bool = False  # no lock when the model is in the store (MLflow refuses)


# The refusals, in words a person in MLflow's UI can act on: what was refused, why, what to do
# instead (the server adds where refused requests are listed).
_ARTIFACTS = ("Deleting artifacts through the server is blocked by mlflow-sync-guard on this "
              "shared store: the store is synced, so the files would be deleted on every "
              "machine, for good. To remove a run's artifacts, delete the run in MLflow (it is "
              "only marked deleted); " + GC_HINT + ".")
_TRACES = ("Deleting traces is blocked by mlflow-sync-guard on this shared store: on a file "
           "store it is permanent and the sync client repeats it on every machine. Nothing was "
           "deleted. To hide traces, tag them or delete their experiment or run (only marked "
           "deleted, undone with restore).")
_DEMO = ("Deleting the demo data is blocked by mlflow-sync-guard on this shared store: it would "
         "delete the demo traces for good and every prompt (a registered model) named like the "
         "demo's, on every machine, with no copy kept. Nothing was deleted. Delete the demo "
         "experiment instead (only marked deleted).")
_REFUSE_MODE = ("Deleting or renaming registered models and deleting model versions is blocked "
                "by mlflow-sync-guard on this store (gc.model_deletions: refuse). Nothing was "
                "changed. Ask the lab's admin, who can set gc.model_deletions: allow (each "
                "deletion then keeps a copy in the vault).")
_SOFT = "a soft delete: MLflow only marks it deleted, its files stay until `guardctl gc`"
_RESTORE = "brings back an item MLflow had only marked deleted"
_EDIT = "edits a tag, alias or field the user named: an intended change, no logged data is lost"
_NOT_FILE = "the file store does not implement it (MLflow answers an error): nothing changes"
_NOT_STORE = "acts on MLflow's job or assistant state, which is not kept in the store"
_LOG = "how clients log: appends metrics, writes params and tags once"
_LINK = "adds links between traces, runs and prompts; removes nothing"
_ONE_ASSESSMENT = "deletes the one assessment (a label on a trace) the user named, like a tag"
_UPLOAD = ("how clients log artifacts (log_artifact); an upload over an existing path replaces "
           "a file of that run, which the client that logged it asked for")
_READS = "a search that reads only"

# MLflow handler (Flask endpoint) or ASGI + FastAPI route name -> decision
ROUTES: dict[str, Rule] = {
    # refused
    "_delete_artifact_mlflow_artifacts": Rule(REFUSED, _ARTIFACTS),
    "_delete_traces": Rule(REFUSED, _TRACES),
    "_delete_demo": Rule(REFUSED, _DEMO),
    # the registry: locked and sanctioned
    "_create_registered_model": Rule(LOCKED, "creates models/<name>", lock="name",
                                     needs_absent=True),
    "_create_model_version": Rule(LOCKED, "numbers version-<N> of the model", lock="name"),
    "_rename_registered_model": Rule(MODEL_DELETION, "moves models/<name> to the new name",
                                     lock="new_name", keeps="name"),
    "_delete_registered_model": Rule(MODEL_DELETION, "removes models/<name>", keeps="name"),
    "_delete_model_version": Rule(MODEL_DELETION, "marks the version deleted (its folder stays)"),
    # one experiment per name: MLflow refuses a second one only when it can see the first
    "_create_experiment": Rule(LOCKED, "creates an experiment of that name", lock="name",
                               resource=EXPERIMENT),
    # allowed: soft deletes and restores
    "_delete_run": Rule(ALLOWED, _SOFT),
    "_delete_experiment": Rule(ALLOWED, _SOFT),
    "_delete_logged_model": Rule(ALLOWED, _SOFT),
    "_restore_run": Rule(ALLOWED, _RESTORE),
    "_restore_experiment": Rule(ALLOWED, _RESTORE),
    # allowed: edits the user named
    "_set_tag": Rule(ALLOWED, _EDIT),
    "_delete_tag": Rule(ALLOWED, _EDIT),
    "_update_run": Rule(ALLOWED, _EDIT),
    "_set_experiment_tag": Rule(ALLOWED, _EDIT),
    "_delete_experiment_tag": Rule(ALLOWED, _EDIT),
    "_update_experiment": Rule(ALLOWED, _EDIT),
    "_set_registered_model_tag": Rule(ALLOWED, _EDIT),
    "_delete_registered_model_tag": Rule(ALLOWED, _EDIT),
    "_update_registered_model": Rule(ALLOWED, _EDIT),
    "_set_registered_model_alias": Rule(ALLOWED, _EDIT),
    "_delete_registered_model_alias": Rule(ALLOWED, _EDIT),
    "_set_model_version_tag": Rule(ALLOWED, _EDIT),
    "_delete_model_version_tag": Rule(ALLOWED, _EDIT),
    "_update_model_version": Rule(ALLOWED, _EDIT),
    "_transition_stage": Rule(ALLOWED, _EDIT),
    "_finalize_logged_model": Rule(ALLOWED, _EDIT),
    "_set_logged_model_tags": Rule(ALLOWED, _EDIT),
    "_delete_logged_model_tag": Rule(ALLOWED, _EDIT),
    "_set_trace_tag": Rule(ALLOWED, _EDIT),
    "_delete_trace_tag": Rule(ALLOWED, _EDIT),
    "_set_trace_tag_v3": Rule(ALLOWED, _EDIT),
    "_delete_trace_tag_v3": Rule(ALLOWED, _EDIT),
    "_update_assessment": Rule(ALLOWED, _EDIT),
    "_deprecated_end_trace_v2": Rule(ALLOWED, "writes the end of a trace the client started"),
    "_delete_assessment": Rule(ALLOWED, _ONE_ASSESSMENT),
    "_log_batch": Rule(ALLOWED, _LOG),
    "_link_prompts_to_trace": Rule(ALLOWED, _LINK),
    "_link_traces_to_run": Rule(ALLOWED, _LINK),
    "_upload_artifact": Rule(ALLOWED, _UPLOAD),
    "_generate_demo": Rule(ALLOWED, "creates the demo experiment, traces and prompts; deletes "
                           "nothing"),
    "serve_search_datasets": Rule(ALLOWED, _READS),
    "_not_implemented": Rule(ALLOWED, _NOT_FILE),
    "_graphql": Rule(ALLOWED, "its only mutations are searches and an echo"),
    # allowed: not kept in the file store, or not in the store at all
    **{name: Rule(ALLOWED, _NOT_FILE) for name in (
        "_delete_dataset_handler", "_add_dataset_to_experiments_handler",
        "_upsert_dataset_records_handler", "_delete_dataset_records_handler",
        "_remove_dataset_from_experiments_handler", "_set_dataset_tags_handler",
        "_delete_dataset_tag_handler", "_delete_budget_policy", "_update_budget_policy",
        "_delete_gateway_endpoint_binding", "_delete_gateway_endpoint",
        "_delete_gateway_endpoint_tag", "_detach_model_from_gateway_endpoint",
        "_set_gateway_endpoint_tag", "_update_gateway_endpoint", "_delete_gateway_guardrail",
        "_remove_guardrail_from_endpoint", "_update_endpoint_guardrail_config",
        "_delete_gateway_model_definition", "_update_gateway_model_definition",
        "_delete_gateway_secret", "_update_gateway_secret", "_update_issue",
        "_delete_label_schema", "_update_label_schema", "_delete_review_queue",
        "_remove_items_from_review_queue", "_set_review_queue_item_status",
        "_update_review_queue", "_delete_scorer", "_upsert_online_scoring_config",
        "_update_webhook", "_delete_webhook", "_update_workspace_handler",
        "_delete_workspace_handler",
        ASGI + "set_mcp_server_version_tag", ASGI + "delete_mcp_server_version_tag",
        ASGI + "update_mcp_server_version", ASGI + "delete_mcp_server_version",
        ASGI + "update_mcp_access_endpoint", ASGI + "delete_mcp_access_endpoint",
        ASGI + "set_mcp_server_tag", ASGI + "delete_mcp_server_tag",
        ASGI + "set_mcp_server_alias", ASGI + "delete_mcp_server_alias",
        ASGI + "update_mcp_server", ASGI + "delete_mcp_server",
    )},
    **{name: Rule(ALLOWED, _NOT_STORE) for name in (
        "_cancel_job", "_delete_prompt_optimization_job", "_cancel_prompt_optimization_job",
        ASGI + "cancel_job", ASGI + "patch_session", ASGI + "update_config",
    )},
    ASGI + "upload_artifact": Rule(ALLOWED, _UPLOAD),
}

# Words in a route's path that say it can remove or replace data.
_CHANGING_WORDS = frozenset({
    "delete", "remove", "rename", "set", "overwrite", "update", "purge", "gc", "demo", "restore",
    "replace", "clear", "upsert", "unlink", "detach", "link", "cancel", "finalize", "end",
    "import", "move", "reset", "trash", "drop", "revoke", "graphql",
})
_CHANGING_METHODS = frozenset({"DELETE", "PUT", "PATCH"})


def changes_store(methods: set[str] | frozenset[str], path: str) -> bool:
    """Whether a route (its methods, its path template) can remove or replace store data and
    so needs an entry in ROUTES: any DELETE, PUT or PATCH, and a POST whose path has a word
    of _CHANGING_WORDS (placeholders ignored, camelCase split)."""
    methods = {m.upper() for m in methods}
    if methods & _CHANGING_METHODS:
        return True
    if "POST" not in methods:
        return False
    bare = re.sub(r"<[^>]*>|\{[^}]*\}", "/", path)
    words = re.split(r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", bare).lower())
    return bool(_CHANGING_WORDS.intersection(words))


def decide(endpoint: str | None, method: str, model_deletions: str) -> Verdict:
    """What to do with a request MLflow routed to `endpoint` (None: no route matched, so no
    handler runs; OPTIONS is answered by Flask itself)."""
    rule = ROUTES.get(endpoint) if endpoint is not None else None
    if rule is None or method.upper() == "OPTIONS":
        return Verdict()
    if rule.kind == REFUSED:
        return Verdict(refuse=rule.why)
    if rule.kind == MODEL_DELETION and model_deletions == ModelDeletions.REFUSE:
        return Verdict(refuse=_REFUSE_MODE)
    return Verdict(lock=rule.lock, keeps=rule.keeps, resource=rule.resource,
                   needs_absent=rule.needs_absent)


def mlflow_request_doc(method: str, args: Mapping[str, str], body: bytes,
                       content_type: str | None) -> dict[str, Any] | None:
    """The request's fields as MLflow's `_get_request_message` reads them, for when its own
    function cannot be imported: a GET with a query string: the query; POST and PUT: a JSON
    body, only under Content-Type application/json; other methods: the body as JSON whatever
    its type; a JSON string is decoded a second time; no JSON body: no fields. None where
    MLflow answers an error (it then changes nothing)."""
    method = method.upper()
    if method == "GET" and args:
        return dict(args)
    if method in ("POST", "PUT") and (
            content_type is None or content_type.split(";")[0] != "application/json"):
        return None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            return None
    if doc is None:
        return {}
    return doc if isinstance(doc, dict) else None


def model_name(field: str, doc: Mapping[str, Any] | None) -> str | None:
    """The model name in `field` of the request's fields; None when there is none (MLflow then
    rejects the request)."""
    name = doc.get(field) if doc is not None else None
    return name if isinstance(name, str) and name else None


def model_resource(field: str, doc: Mapping[str, Any] | None, kind: str = MODEL) -> str | None:
    """The lock resource for the model (or experiment, `kind`) named by `field`, or None."""
    name = model_name(field, doc)
    return None if name is None else resource_name(kind, name)


def joins_experiment(found: tuple[str, str, int | None] | None, there_before: bool,
                     now_ms: int, window_s: float) -> str | None:
    """Creating an experiment under its name's lock, `found` = (id, lifecycle_stage,
    creation_time ms) of the experiment of that name MLflow sees now (None: none): the id to
    answer the create with instead of letting MLflow refuse it, or None to let MLflow handle
    it. A create that lost a race answers the winner's id: the active experiment arrived while
    the request waited for the lock (`there_before` False: another machine, or process,
    created it first), or was created less than `window_s` (the sync delay) ago. MLflow
    3.17.2's `set_experiment` returns the winner on RESOURCE_ALREADY_EXISTS but does not make
    it the active experiment, so its runs would go to the default one. An older or deleted
    experiment of that name: MLflow's own answer (RESOURCE_ALREADY_EXISTS) stands."""
    if found is None:
        return None
    exp_id, stage, created = found
    if stage != "active":
        return None
    if not there_before:
        return exp_id
    if created is not None and now_ms - created < window_s * 1000:
        return exp_id
    return None


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
