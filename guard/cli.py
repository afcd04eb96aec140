"""`guardctl`: the one command-line entry point; each subcommand lives in guard/commands/."""

from __future__ import annotations

import argparse
import sys

from guard import __version__
from guard.commands import COMMANDS
from guard.core.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guardctl",
        description="Run and inspect the mlflow-sync-guard daemon over a synced MLflow store.")
    parser.add_argument("--version", action="version", version=f"mlflow-sync-guard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"guardctl: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
