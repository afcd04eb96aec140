"""Every route of the installed MLflow server that can remove or replace store data has a
decision in gate.ROUTES (pure: the apps are built in-process, no server is started).

The rule for "can remove or replace" is gate.changes_store: any DELETE, PUT or PATCH route,
and a POST whose path says delete, remove, rename, set, update, purge, gc, demo, ... .
"""

from __future__ import annotations

import os
import warnings

import pytest

from guard.protection.gate import (
    ALLOWED,
    ASGI,
    LOCKED,
    MODEL_DELETION,
    REFUSED,
    ROUTES,
    changes_store,
    decide,
)

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def flask_routes() -> list[tuple[str, frozenset[str], str]]:
    """(endpoint, methods, rule) for every rule of MLflow's Flask app."""
    from mlflow.server import app

    return [(r.endpoint, frozenset(r.methods or ()) - {"HEAD", "OPTIONS"}, r.rule)
            for r in app.url_map.iter_rules()]


def _walk(routes, prefix: str = ""):
    for route in routes:
        kind = type(route).__name__
        if hasattr(route, "original_router"):       # fastapi >= 0.120: an included router
            yield from _walk(route.original_router.routes, prefix + route.include_context.prefix)
        elif kind in ("Mount", "Host") and getattr(route, "routes", None):
            yield from _walk(route.routes, prefix + getattr(route, "path", ""))
        elif hasattr(route, "methods") and route.methods is not None:
            yield route.name, frozenset(route.methods) - {"HEAD", "OPTIONS"}, prefix + route.path


def fastapi_routes() -> list[tuple[str, frozenset[str], str]]:
    """(ASGI + name, methods, path) for every route of MLflow's FastAPI app, included routers
    and mounts walked (the Flask app is the catch-all mount)."""
    from mlflow.server import app
    from mlflow.server.fastapi_app import create_fastapi_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        asgi = create_fastapi_app(app)
    return [(ASGI + name, methods, path) for name, methods, path in _walk(asgi.routes)]


@pytest.fixture(scope="module")
def routes():
    return flask_routes() + fastapi_routes()


def test_the_enumeration_sees_every_family_of_routes(routes):
    """The walk reaches the api and ajax-api routes of both versions, graphql, the gateway,
    the OTel ingest and the FastAPI artifact routes: a walk that missed a router would make
    the next test pass for nothing."""
    paths = [path for _, _, path in routes]
    for needle in ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/3.0/mlflow/",
                   "/ajax-api/3.0/mlflow/", "/graphql", "/gateway/", "/v1/traces",
                   "/ajax-api/3.0/mlflow/demo/delete"):
        assert any(needle in p for p in paths), needle
    assert any(name.startswith(ASGI) and "PUT" in m and "artifacts" in p for name, m, p in routes)
    assert len(routes) > 300


def test_every_route_that_can_change_the_store_has_a_decision(routes):
    missing = sorted({f"{name} {sorted(methods)} {path}" for name, methods, path in routes
                      if changes_store(methods, path) and name not in ROUTES})
    assert not missing, "routes without a decision in gate.ROUTES:\n" + "\n".join(missing)


def test_every_decision_names_a_route_of_the_installed_mlflow(routes):
    """A stale entry (a handler MLflow renamed) would hide that its new name is undecided."""
    names = {name for name, _, _ in routes}
    assert not sorted(set(ROUTES) - names)


def test_fastapi_routes_are_only_allowed():
    """The Flask hooks never see MLflow's FastAPI routes: a refusal there would be enforced
    by nothing."""
    assert {rule.kind for key, rule in ROUTES.items() if key.startswith(ASGI)} == {ALLOWED}


def test_every_decision_is_one_of_four_with_a_reason():
    for key, rule in ROUTES.items():
        assert rule.kind in (REFUSED, MODEL_DELETION, LOCKED, ALLOWED), key
        assert len(rule.why) > 10, key
        assert (rule.lock is not None) <= (rule.kind in (LOCKED, MODEL_DELETION)), key


def test_demo_delete_is_refused_whatever_gc_model_deletions_says(routes):
    endpoint = next(name for name, _, path in routes if path.endswith("/mlflow/demo/delete"))
    for mode in ("allow", "refuse"):
        assert decide(endpoint, "POST", mode).refuse is not None


@pytest.mark.parametrize("methods, path, changes", [
    ({"DELETE"}, "/api/2.0/mlflow/runs/get", True),
    ({"PATCH"}, "/x", True),
    ({"PUT"}, "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>", True),
    ({"POST"}, "/ajax-api/3.0/mlflow/demo/delete", True),
    ({"POST"}, "/api/2.0/mlflow/registered-models/rename", True),
    ({"POST"}, "/api/2.0/mlflow/runs/set-tag", True),
    ({"POST"}, "/api/2.0/mlflow/traces/delete-traces", True),
    ({"POST"}, "/graphql", True),
    ({"POST"}, "/api/2.0/mlflow/experiments/purgeAll", True),
    ({"POST"}, "/api/2.0/mlflow/runs/search", False),
    ({"POST"}, "/api/2.0/mlflow/datasets/search", False),          # "set" inside a word
    ({"POST"}, "/ajax-api/3.0/mlflow/mcp-servers/{name:path}/endpoints", False),
    ({"GET"}, "/api/2.0/mlflow/registered-models/delete", False),
])
def test_changes_store(methods, path, changes):
    assert changes_store(frozenset(methods), path) is changes
