"""`guardctl run`: run the daemon in the foreground (what a service manager starts)."""

from __future__ import annotations

import argparse
import sys

from guard.commands.common import SAVE_COMMAND, add_config_options, config_from
from guard.core.config import Config
from guard.core.state import StateDir
from guard.core.store import inspect_store
from guard.daemon.loop import AlreadyRunning, Daemon, StartupError

NAME = "run"
HELP = "run the daemon in the foreground: one supervised MLflow server over the store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, port=True)
    parser.add_argument("--wait-for-store", action="store_true",
                        help="wait for a missing or empty store (a sync drive not mounted yet) "
                             "instead of exiting")


def permanence_hint(cfg: Config, store_ok: bool) -> str | None:
    """One line for a usable store named only by --store (no config file): how to stop
    needing the flag, for the next `run` and the commands run while the daemon does not."""
    if not store_ok or cfg.file is not None \
            or not cfg.origins.get("store", "").startswith("flag"):
        return None
    return (f"guardctl: the store is named only by --store (no config file); make it "
            f"permanent: `{SAVE_COMMAND} --store {cfg.store}`")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    hint = permanence_hint(cfg, cfg.store is not None and inspect_store(cfg.store).ok)
    if hint:
        print(hint, file=sys.stderr)
    try:
        StateDir(cfg.state_dir).create()
    except OSError as exc:  # its message names the folder and what to do
        print(f"guardctl: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        return Daemon(cfg, wait_for_store=args.wait_for_store).run()
    except AlreadyRunning as exc:
        print(f"guardctl: {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"guardctl: cannot start: {exc}", file=sys.stderr)
        return 2
