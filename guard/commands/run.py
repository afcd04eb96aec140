"""`guardctl run`: run the daemon in the foreground (what a service manager starts)."""

from __future__ import annotations

import argparse
import sys

from guard.commands.common import add_config_options, config_from
from guard.core.state import StateDir
from guard.daemon.loop import AlreadyRunning, Daemon, StartupError

NAME = "run"
HELP = "run the daemon in the foreground: one supervised MLflow server over the store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--wait-for-store", action="store_true",
                        help="wait for a missing or empty store (a sync drive not mounted yet) "
                             "instead of exiting")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
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
