"""`guardctl config`: the effective configuration and where each value came from; `--save`
writes the store a flag or the running daemon gave into the user config file, so that every
command (and the next `guardctl run`) finds it without flags."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from guard.commands.common import (
    DAEMON_FILE,
    SAVE_COMMAND,
    add_config_options,
    config_from,
    daemon_pid_of,
    usable_store,
)
from guard.core.config import Config, find_config_file, user_config_path
from guard.core.words import said

NAME = "config"
HELP = ("print the effective configuration and the source of each value; --save writes the "
        "store into the user config file")

# The keys `--save` writes when a flag or the running daemon gave them.
SAVED_KEYS = ("store", "server.port", "state_dir")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, port=True)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--save", action="store_true",
                        help="write the store (and --port, --state-dir) into the user config "
                             f"file, {user_config_path()}, when no config file is in use")


def shown(value: Any) -> str:
    """A value as the config file would spell it: true/false, 'not set' for an absent one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return said(value, "not set")


def origin_shown(key: str, origin: str) -> str:
    """Where a value came from; a store from the running daemon says how to keep it."""
    if key == "store" and origin.startswith("the running daemon ("):
        return f"{origin}; make it permanent: `{SAVE_COMMAND}`"
    return origin


def file_line(cfg: Config, explicit: str | None) -> str:
    """The first line: which config file, and why that one (or that there is none)."""
    if cfg.file is None:
        where = "defaults and flags" + (", and the running daemon" if daemon_pid_of(cfg) else "")
        return f"# config file: none found ({where})"
    if any(DAEMON_FILE in o for o in cfg.origins.values()):
        return f"# config file: {cfg.file} ({DAEMON_FILE})"
    return f"# config file: {cfg.file} ({find_config_file(explicit)[1]})"


def saved_values(cfg: Config) -> dict[str, Any]:
    """The nested mapping `--save` writes: the store, and the port and state folder when a
    flag or the daemon gave them (pure)."""
    out: dict[str, Any] = {}
    values = cfg.values()
    for key in SAVED_KEYS:
        if key != "store" and cfg.origins.get(key, "default") == "default":
            continue
        value = values[key]
        if "." in key:
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
        else:
            out[key] = str(value)
    return out


def save(cfg: Config) -> int:
    """`--save`: write the user config file, only when no config file is in use (editing one
    would lose its comments: the user is told what to add instead)."""
    store = usable_store(cfg, "nothing was saved")
    if store is None:
        return 2
    if cfg.file is not None:
        print(f"guardctl: the config file {cfg.file} is in use; set `store: {store}` in it "
              "(nothing was saved)", file=sys.stderr)
        return 1
    path = user_config_path()
    if path.exists():
        print(f"guardctl: {path} exists; set `store: {store}` in it (nothing was saved)",
              file=sys.stderr)
        return 1
    text = ("# written by `guardctl config --save`; every key: config.example.yaml\n"
            + yaml.safe_dump(saved_values(cfg), sort_keys=False))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}: store {store}; every guardctl command now finds it without flags")
    return 0


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    if args.save:
        return save(cfg)
    values = cfg.values()
    if args.json:
        print(json.dumps({"file": str(cfg.file) if cfg.file else None,
                          "values": {k: {"value": v, "from": cfg.origins[k]}
                                     for k, v in values.items()}}, indent=2))
        return 0
    print(file_line(cfg, args.config))
    width = max(len(k) for k in values)
    for key, value in values.items():
        print(f"{key:<{width}} = {shown(value):<40} # {origin_shown(key, cfg.origins[key])}")
    return 0
