"""`guardctl init`: create a new, empty MLflow file store on purpose."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    return 0
