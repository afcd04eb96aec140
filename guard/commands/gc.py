"""`guardctl gc`: remove runs and experiments deleted in MLflow long ago, safely for every
machine."""

from __future__ import annotations

import argparse
import re
import sys
import time

from guard.commands.common import add_config_options, config_from, say_daemon_store, usable_store
from guard.core.words import Progress, count
from guard.protection.collector import collect, plan, survey
from guard.sync.locks import HostLock, LockSettings, LockTimeout

NAME = "gc"
HELP = ("remove runs and experiments in MLflow's deleted stage (dry run unless --yes); the "
        "safe replacement for `mlflow gc` on a synced store")
_AGE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[dhms]?)$")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 86400}


def older_than_ms(text: str) -> int:
    """'30', '30d', '12h', '90m', '45s' -> milliseconds (a bare number is days)."""
    match = _AGE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"--older-than {text!r}: write a number of days, or a number with d, h, m or s "
            "(e.g. 30d, 12h)")
    return int(float(match.group("n")) * _UNIT_S[match.group("unit")] * 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--older-than", type=older_than_ms, default=older_than_ms("30d"),
                        metavar="AGE", help="only what was deleted longer ago (default 30d)")
    act = parser.add_mutually_exclusive_group()
    act.add_argument("--yes", action="store_true",
                     help="act; without it, only print what would be removed")
    act.add_argument("--dry-run", action="store_true",
                     help="only print what would be removed (the default without --yes)")


def _line(verb: str, item, why: str = "") -> str:
    name = f" ({item.name})" if item.name else ""
    return f"  {verb:7} {item.kind:10} {'/'.join(item.rel)}{name}" + (f": {why}" if why else "")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    store = usable_store(cfg, "nothing was removed")
    if store is None:
        return 2
    say_daemon_store(cfg)
    lock = HostLock(LockSettings.from_config(cfg), "gc")
    try:
        with Progress("waiting for the gc lock") as waiting:
            lock.acquire(on_wait=waiting.update)
    except LockTimeout as exc:
        print(f"guardctl: {exc}; another machine is collecting, try again later",
              file=sys.stderr)
        return 1
    try:
        with Progress("looking for deleted runs and experiments") as looking:
            # under the lock: what another gc left is gone
            items, protected = survey(store, lambda n: looking.update(
                f"{count(n, 'folder')} looked at"))
        take, keep = plan(items, protected, int(time.time() * 1000), args.older_than)
        for item, why in keep:
            print(_line("keep", item, why))
        if not take:
            print("nothing to remove")
            return 0
        verb = "removing" if args.yes else "would remove"
        print(f"{verb} {count(len(take), 'item')}:")
        for item in take:
            print(_line("remove", item))
        if not args.yes:
            print("dry run: nothing was changed; run again with --yes to remove these")
            return 0
        with Progress("moving to the vault's trash") as moving:
            batch = collect(store, cfg.vault_root, cfg.host_id, take,
                            lambda n: moving.update(f"{n} of {len(take)}"))
        days = cfg.gc.retention_days
        kept = count(int(days), "day") if days.is_integer() else f"{days:g} days"
        print(f"moved to {batch} (kept {kept}); tombstones written so no machine restores "
              "them")
        return 0
    finally:
        lock.release()
