"""`guardctl init`: create a new, empty MLflow file store on purpose."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from guard.commands.common import SAVE_COMMAND
from guard.core.config import ConfigError, load_config
from guard.core.store import init_store

NAME = "init"
HELP = "create a new empty MLflow file store (never done implicitly)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, metavar="PATH", help="folder for the new store")


def run(args: argparse.Namespace) -> int:
    path = Path(os.path.abspath(os.path.expanduser(args.store)))
    try:
        print(init_store(path))
    except (ValueError, OSError) as exc:
        print(f"guardctl: {exc}", file=sys.stderr)
        return 2
    if not _store_configured():
        print(f"to have every guardctl command use it without --store: "
              f"`{SAVE_COMMAND} --store {path}`")
    return 0


def _store_configured() -> bool:
    """Whether a config file already names a store (a broken one: say nothing here)."""
    try:
        return load_config().store is not None
    except ConfigError:
        return True
