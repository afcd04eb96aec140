"""Options shared by subcommands, and loading the configuration from them.

After the quickstart (`guardctl run --store X`, no config file) only the running daemon knows
the store: when nothing names one, `config_from` takes the store (and port, and config file)
from the daemon that runs with this state folder, so every command works without flags.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from guard.core.config import Config, ConfigError, load_config
from guard.core.state import StateDir
from guard.core.store import inspect_store
from guard.daemon.statusdoc import read_status
from guard.supervision.processes import alive

SAVE_COMMAND = "guardctl config --save"
_DAEMON_ORIGIN = "the running daemon (pid {pid})"
_DAEMON_ORIGIN_RE = re.compile(r"^the running daemon \(pid (\d+)\)$")
DAEMON_FILE = "the running daemon's config file"


def add_config_options(parser: argparse.ArgumentParser, *, store: bool = True,
                       port: bool = False, state_dir: bool = True) -> None:
    """The configuration flags, only those that mean something to the command: --port only
    where the server's port is used (run, status, doctor, config)."""
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $MLFLOW_GUARD_CONFIG, then the user and "
                             "system config files)")
    if state_dir:
        parser.add_argument("--state-dir", metavar="PATH",
                            help="local state folder (overrides state_dir)")
    if store:
        parser.add_argument("--store", metavar="PATH",
                            help="the synced mlruns folder (overrides store; default: the "
                                 "config's, else the running daemon's)")
    if port:
        parser.add_argument("--port", type=int, metavar="N",
                            help="server port (overrides server.port)")


@dataclass(frozen=True)
class RunningDaemon:
    """What a live daemon's status file says about its setup."""

    pid: int
    store: str
    port: int | None
    config_file: str | None


def daemon_overrides(cfg: Config, flags: Mapping[str, Any],
                     daemon: RunningDaemon | None) -> dict[str, Any] | None:
    """The overrides that make `cfg` the running daemon's setup, or None when `cfg` stands:
    a store named by a flag or a config file always wins; the daemon only fills in a store
    nothing names, with its port unless --port says otherwise (pure)."""
    if daemon is None or cfg.store is not None or flags.get("store") is not None:
        return None
    out = {**flags, "store": daemon.store, "state_dir": str(cfg.state_dir)}
    if flags.get("server.port") is None and daemon.port is not None:
        out["server.port"] = daemon.port
    return out


def running_daemon(state_dir: Path) -> RunningDaemon | None:
    """The live daemon of this state folder, from its status file (None: none runs)."""
    doc = read_status(StateDir(state_dir).status)
    ref = doc.daemon.ref if doc else None
    if doc is None or ref is None or not doc.store or not alive(ref):
        return None
    return RunningDaemon(ref.pid, doc.store, doc.port, doc.config_file)


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    return {"store": getattr(args, "store", None),
            "server.port": getattr(args, "port", None),
            "state_dir": getattr(args, "state_dir", None)}


def config_from(args: argparse.Namespace) -> Config:
    """The configuration from the flags and the config file; when neither names a store, the
    running daemon's setup (see the module docstring)."""
    flags = _flag_values(args)
    explicit = getattr(args, "config", None)
    cfg = load_config(explicit, flags)
    daemon = running_daemon(cfg.state_dir) if cfg.store is None else None
    overrides = daemon_overrides(cfg, flags, daemon)
    if daemon is None or overrides is None:
        return cfg
    origin = _DAEMON_ORIGIN.format(pid=daemon.pid)
    if cfg.file is None and daemon.config_file and Path(daemon.config_file).is_file():
        try:  # the daemon's own file: every setting as the daemon has it
            return _from_daemon_file(cfg, flags, daemon, origin)
        except ConfigError:
            pass  # changed since the daemon read it: its store and port are enough
    new = load_config(explicit, overrides)
    origins = {**new.origins, "state_dir": cfg.origins["state_dir"], "store": origin}
    if flags["server.port"] is None and daemon.port is not None:
        origins["server.port"] = origin
    return replace(new, origins=origins)


def _from_daemon_file(cfg: Config, flags: Mapping[str, Any], daemon: RunningDaemon,
                      origin: str) -> Config:
    """The daemon's config file, with the store and port the daemon really uses."""
    assert daemon.config_file is not None
    base = {**flags, "state_dir": str(cfg.state_dir)}
    first = load_config(daemon.config_file, base)
    extra: dict[str, Any] = {}
    if first.store is None or str(first.store) != daemon.store:
        extra["store"] = daemon.store
    if flags.get("server.port") is None and daemon.port is not None \
            and first.server.port != daemon.port:
        extra["server.port"] = daemon.port
    final = load_config(daemon.config_file, {**base, **extra}) if extra else first
    origins = {k: v.replace("(--config)", f"({DAEMON_FILE})") for k, v in final.origins.items()}
    origins["state_dir"] = cfg.origins["state_dir"]
    origins.update({k: origin for k in extra})
    return replace(final, origins=origins)


def daemon_pid_of(cfg: Config) -> int | None:
    """The pid of the running daemon the store was taken from, or None (a flag or file)."""
    match = _DAEMON_ORIGIN_RE.match(cfg.origins.get("store", ""))
    return int(match.group(1)) if match else None


def say_daemon_store(cfg: Config) -> None:
    """One line on stderr when the store came from the running daemon, for the commands that
    act on the store: the user sees which store, and how to stop depending on the daemon."""
    pid = daemon_pid_of(cfg)
    if pid is not None:
        print(f"guardctl: store {cfg.store} (from the running daemon, pid {pid}; make it "
              f"permanent: `{SAVE_COMMAND}`)", file=sys.stderr)


def usable_store(cfg: Config, consequence: str = "") -> Path | None:
    """The configured store when it is a usable MLflow file store; otherwise None, after
    saying on stderr what is wrong with it (and `consequence`, what was therefore not done)."""
    store = cfg.require_store()
    check = inspect_store(store)
    if check.ok:
        return store
    print(f"guardctl: {check.detail}" + (f"; {consequence}" if consequence else ""),
          file=sys.stderr)
    return None


def state_access_problem(state_dir: Path) -> str | None:
    """Why this user cannot use the daemon's state folder (private to the daemon's user, see
    guard.core.state), or None: without it, `status`/`stop`/`restart` would only see "not
    running"."""
    if not state_dir.exists() or os.access(state_dir, os.R_OK | os.W_OK | os.X_OK):
        return None
    return (f"the state folder {state_dir} is private to the daemon's user; run guardctl as "
            "that user (or as root)")
