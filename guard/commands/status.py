"""`guardctl status`: is the guard healthy? Exit 0 healthy, 1 degraded, 3 not running."""

from __future__ import annotations

import argparse
import json

from guard.commands.common import add_config_options, config_from
from guard.core.records import to_json
from guard.daemon.status import render, report

NAME = "status"
HELP = "show whether the daemon and its MLflow server are healthy (exit 0/1/3)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, port=True)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    result = report(config_from(args))
    print(json.dumps(to_json(result), indent=2) if args.json else render(result))
    return result.exit_code
