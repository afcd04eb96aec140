"""`guardctl locks`: the cross-machine locks in the store, who holds them and for how long."""

from __future__ import annotations

import argparse
import json
import time

from guard.commands.common import add_config_options, config_from, say_daemon_store, usable_store
from guard.sync.locks import list_locks

NAME = "locks"
HELP = "list the cross-machine locks in the store: resource, holder, age"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--all", action="store_true",
                        help="also show released leases that have not synced away yet")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    store = usable_store(cfg)
    if store is None:
        return 2
    say_daemon_store(cfg)
    found = [lock for lock in list_locks(store, time.time()) if args.all or not lock["released"]]
    if args.json:
        print(json.dumps({"backend": cfg.locks.backend, "locks": found}, indent=2))
    elif not found:
        print(f"no locks held in {store} (backend: {cfg.locks.backend})")
    else:
        for lock in found:
            print(lock["text"])
    return 0
