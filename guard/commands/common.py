"""Options shared by subcommands, and loading the configuration from them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from guard.core.config import Config, load_config
from guard.core.store import inspect_store


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $MLFLOW_GUARD_CONFIG, then the user and "
                             "system config files)")
    parser.add_argument("--state-dir", metavar="PATH",
                        help="local state folder (overrides state_dir)")
    parser.add_argument("--store", metavar="PATH",
                        help="the synced mlruns folder (overrides store)")
    parser.add_argument("--port", type=int, metavar="N", help="server port (overrides server.port)")


def config_from(args: argparse.Namespace) -> Config:
    overrides = {
        "store": getattr(args, "store", None),
        "server.port": getattr(args, "port", None),
        "state_dir": getattr(args, "state_dir", None),
    }
    return load_config(args.config, overrides)


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
