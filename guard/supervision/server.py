"""One `mlflow server` process tree: how it is started, probed and ended.

The server writes only portable `mlflow-artifacts:/` URIs and keeps artifacts inside the store,
which is what lets every machine read every run (see FIELD-NOTES).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import psutil

from guard.core.config import (
    AUTH_CONFIG_ENV,
    SERVER_AUTH_ENV,
    Config,
    ConfigError,
    ServerAuth,
    exposure_problem,
)
from guard.core.runtime import interpreter
from guard.core.store import ALLOW_FILE_STORE_ENV, store_uri
from guard.protection.gate import SANCTIONS_ENV, Sanctions
from guard.supervision.processes import OWNER_ENV, ProcRef, end_tree, ref_of, resolve, tree_of
from guard.sync.locks import ENV as LOCKS_ENV
from guard.sync.locks import LockSettings

log = logging.getLogger("guard.server")
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"


def server_command(cfg: Config) -> list[str]:
    """The exact `mlflow server` command line, run by this installation's interpreter (the
    real python.exe under a Windows service host, not pythonservice.exe).
    Refuses a bind that load_config would refuse, whichever way the Config was made."""
    problem = exposure_problem(cfg.server.host, cfg.server.expose, cfg.server.auth)
    if problem is not None:
        raise ConfigError(problem)
    uri = store_uri(cfg.require_store())
    return [
        interpreter(), "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--artifacts-destination", uri,
        "--default-artifact-root", "mlflow-artifacts:/",
        "--host", cfg.server.host,
        "--port", str(cfg.server.port),
        "--workers", str(cfg.server.workers),
        "--app-name", "guard",
    ]


def server_env(cfg: Config) -> dict[str, str]:
    env = dict(os.environ)
    env[ALLOW_FILE_STORE_ENV] = "true"
    env[OWNER_ENV] = str(cfg.state_dir)
    env[LOCKS_ENV] = LockSettings.from_config(cfg).to_env()
    env[SANCTIONS_ENV] = Sanctions(str(cfg.store), str(cfg.vault_root), cfg.host_id,
                                   cfg.gc.model_deletions).to_env()
    env[SERVER_AUTH_ENV] = cfg.server.auth.value
    if cfg.server.auth is ServerAuth.BASIC:
        if cfg.server.auth_config is not None:
            env[AUTH_CONFIG_ENV] = str(cfg.server.auth_config)
        # MLflow's auth app needs a key shared by the server's workers (CSRF of its signup
        # form); one per server start is enough when none is configured.
        if not env.get(SECRET_KEY_ENV):
            env[SECRET_KEY_ENV] = secrets.token_urlsafe(32)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)  # the daemon alone speaks for the service (gunicorn would too)
    return env


def port_bindable(host: str, port: int) -> bool:
    """Whether we could listen on host:port now (catches listeners we cannot see)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def server_url(host: str, port: int) -> str:
    """Where a local client reaches the server (a wildcard bind is reached via loopback)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def probe_health(url: str, timeout: float) -> tuple[bool, str]:
    """GET /health; healthy only on HTTP 200 with body OK."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as resp:
            body = resp.read(64).decode("utf-8", "replace").strip()
            if resp.status == 200 and body == "OK":
                return True, "OK"
            return False, f"HTTP {resp.status}: {body[:40]}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(reason)


class ServerProcess:
    """A started `mlflow server`: its Popen, its output pump and its process tree."""

    def __init__(self, cfg: Config, output: logging.Logger) -> None:
        self.cfg = cfg
        self.output = output
        self.popen: subprocess.Popen | None = None
        self.ref: ProcRef | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> ProcRef:
        kwargs: dict = {}
        if sys.platform == "win32":
            # its own group (a console Ctrl-C reaches only the daemon); no console window when
            # the daemon runs windowless (a logon task under pythonw.exe)
            kwargs["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP
                                       | subprocess.CREATE_NO_WINDOW)
        else:
            kwargs["start_new_session"] = True  # a Ctrl-C in the terminal reaches only the daemon
        cmd = server_command(self.cfg)
        log.info("starting: %s", " ".join(cmd))
        self.popen = subprocess.Popen(
            cmd, env=server_env(self.cfg), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, cwd=str(self.cfg.state_dir), **kwargs,
        )
        self.ref = ref_of(psutil.Process(self.popen.pid)) or ProcRef(self.popen.pid, 0.0)
        self._pump = threading.Thread(target=self._copy_output, args=(self.popen.stdout,),
                                      name="server-output", daemon=True)
        self._pump.start()
        return self.ref

    def _copy_output(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.output.info(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def poll(self) -> int | None:
        """The exit code once the server parent has exited, else None."""
        return None if self.popen is None else self.popen.poll()

    def tree(self) -> list[ProcRef]:
        """The parent and every descendant now alive."""
        if self.ref is None:
            return []
        refs = [ref_of(p) for p in tree_of([self.ref])]
        return [r for r in refs if r is not None]

    def parent_alive(self) -> bool:
        return self.ref is not None and self.poll() is None and resolve(self.ref) is not None

    def stop(self, extra: list[ProcRef] | None = None) -> list[int]:
        """End the whole tree (plus `extra` refs, e.g. recorded orphans); returns survivors."""
        refs = self.tree() + list(extra or [])
        survivors = end_tree(refs, self.cfg.server.stop_grace)
        if self.popen is not None:
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                survivors.append(self.popen.pid)
        if self._pump is not None:
            self._pump.join(timeout=2)
        return survivors
