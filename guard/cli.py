"""`guardctl`: the one command-line entry point; each subcommand lives in guard/commands/."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from guard import __version__
from guard.commands import COMMANDS
from guard.core.config import ConfigError


class Parser(argparse.ArgumentParser):
    """The top-level parser, whose errors about a subcommand's arguments show that
    subcommand's usage (argparse leaves flags no subparser knows to the top level, which
    would show the top-level usage: no help for `guardctl gc --bogus`)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = self.commands.get(getattr(parsed, "command", None) or "", self)
            owner.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser() -> Parser:
    parser = Parser(
        prog="guardctl",
        description="Run and inspect the mlflow-sync-guard daemon over a synced MLflow store.")
    parser.add_argument("--version", action="version", version=f"mlflow-sync-guard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
        parser.commands[module.NAME] = cmd
    return parser


EXIT_BROKEN_PIPE = 141  # what a shell reports for a program ended by SIGPIPE (128 + 13)


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: which path, and what the system said about it."""
    if exc.filename is None:
        return str(exc)
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {exc.strerror or exc}"


def _quiet_stdout() -> None:
    """The reader of our output went away (`guardctl status | head -1`): point stdout at
    devnull, so the flush at exit does not raise again (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _windowless_streams() -> None:
    """Under pythonw.exe (the Windows logon task) there is no console: sys.stdout and
    sys.stderr are None, and a write or flush would raise. Give them the null device; the
    daemon's log goes to its files in the state folder."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; every error the user can cause is a message and an exit code,
    never a traceback: 2 for a configuration, store or state folder that cannot be used."""
    _windowless_streams()
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        print(f"guardctl: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"guardctl: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
