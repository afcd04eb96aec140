"""The status page's routes on MLflow's Flask app (thin: the report is guard.daemon.status's).

GET /guard/ is the page, GET /guard/<file> its CSS and JS (package data), GET
/guard/status.json the report `guardctl status --json` prints, computed from the state folder
the app knows through the daemon's settings. The server answering this request is the health
check: the app never calls its own /health. Under `server.auth: basic` these routes sit behind
MLflow's auth like every other (its before_request runs first and knows no exception for them).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from guard.core.records import to_json
from guard.core.state import StateDir
from guard.daemon.status import HealthCheck, Report, gather
from guard.daemon.statusdoc import StatusDoc
from guard.sync.locks import LockSettings

PREFIX = "/guard"
FILES = {"status.css": "text/css", "status.js": "text/javascript"}
CACHE_S = 1.0  # one report serves every page polling within a second
ANSWERING = HealthCheck(True, "answering (it served this page)")

NOT_GUARDED = {
    "state": "not guarded", "exit_code": None,
    "reason": "this MLflow server was not started by mlflow-sync-guard: the guard's settings "
              "are not in its environment, so nothing here is locked, kept or refused; start "
              "the server with `guardctl run`",
}


def page_file(name: str) -> bytes:
    """A file of the page, from the package (works from a wheel as from a checkout)."""
    return resources.files("guard.statuspage").joinpath("static").joinpath(name).read_bytes()


def fallback_of(settings: LockSettings) -> StatusDoc:
    """What the daemon's settings say where the status file says nothing."""
    state = StateDir(Path(settings.state_dir))
    return StatusDoc(store=settings.store, host_id=settings.host_id,
                     state_dir=str(state.root), log_file=str(state.guard_log),
                     server_log_file=str(state.server_log))


def page_report(settings: LockSettings, port: int) -> Report:
    """The report for the page, from inside the server."""
    return gather(StateDir(Path(settings.state_dir)), fallback_of(settings), port,
                  lambda url: ANSWERING)


class Cached:
    """The last report, reused for CACHE_S (several pages, several workers' threads)."""

    def __init__(self, make: Callable[[int], Any]) -> None:
        self.make = make
        self._lock = threading.Lock()
        self._at = 0.0
        self._value: Any = None

    def get(self, port: int) -> Any:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at >= CACHE_S:
                self._value, self._at = self.make(port), now
            return self._value


def install_page(flask_app: Any, settings: LockSettings | None,
                 add_prefix: Callable[[str], str] = lambda route: route) -> None:
    """Add the page's routes to MLflow's Flask app."""
    from flask import Response, request

    cached = Cached(lambda port: to_json(page_report(settings, port)) if settings else None)

    def page() -> Any:
        return Response(page_file("index.html"), mimetype="text/html",
                        headers=_headers())

    def asset(name: str) -> Any:
        if name not in FILES:
            return Response("not found", status=404, mimetype="text/plain")
        return Response(page_file(name), mimetype=FILES[name], headers=_headers())

    def status_json() -> Any:
        body = NOT_GUARDED if settings is None else cached.get(urlsplit(request.host_url).port
                                                               or 0)
        return Response(json.dumps(body), mimetype="application/json", headers=_headers())

    flask_app.add_url_rule(add_prefix(PREFIX + "/"), "guard_status_page", page)
    flask_app.add_url_rule(add_prefix(PREFIX + "/status.json"), "guard_status_json",
                           status_json)
    flask_app.add_url_rule(add_prefix(PREFIX + "/<name>"), "guard_status_asset", asset)


def _headers() -> dict[str, str]:
    """No caching (the page changes with the guard), and nothing from elsewhere: the page
    needs no network beyond this server (Content-Security-Policy)."""
    return {"Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "frame-ancestors 'self'",
            "X-Content-Type-Options": "nosniff"}
