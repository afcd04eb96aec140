"""`guardctl config`: the effective configuration and where each value came from."""

from __future__ import annotations

import argparse
import json

from guard.commands.common import add_config_options, config_from
from guard.core.config import find_config_file

NAME = "config"
HELP = "print the effective configuration and the source of each value"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    values = cfg.values()
    if args.json:
        print(json.dumps({"file": str(cfg.file) if cfg.file else None,
                          "values": {k: {"value": v, "from": cfg.origins[k]}
                                     for k, v in values.items()}}, indent=2))
        return 0
    _, why = find_config_file(args.config)
    print(f"# config file: {cfg.file or '(none)'} ({why})")
    width = max(len(k) for k in values)
    for key, value in values.items():
        print(f"{key:<{width}} = {value!s:<40} # {cfg.origins[key]}")
    return 0
