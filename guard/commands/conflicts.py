"""`guardctl conflicts`: the sync clients' conflict copies the guard resolved, and what needs
a person."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from guard.commands.common import add_config_options, config_from
from guard.core.state import StateDir
from guard.core.store import inspect_store
from guard.sync.peers import read_all
from guard.sync.reconcile import find_copies, read_records

NAME = "conflicts"
HELP = "list the conflict copies the guard resolved and the ones that need a person"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--all", action="store_true",
                        help="list every resolved copy, not only those that need attention")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _when(record: dict) -> str:
    return datetime.datetime.fromtimestamp(record.get("time", 0)).strftime("%Y-%m-%d %H:%M")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    store = cfg.require_store()
    state = StateDir(cfg.state_dir)
    records = read_records(state.conflict_journal)
    check = inspect_store(store)
    hosts = [cfg.host_id] + [beat.host_id for beat in read_all(store)] if check.ok else []
    waiting = [str(c.path.relative_to(store)) for c in find_copies(store, hosts)] \
        if check.ok else []
    attention = [r for r in records if r.get("needs_attention")]
    if args.json:
        print(json.dumps({"journal": str(state.conflict_journal), "resolved": records,
                          "needs_attention": attention, "in_store_now": waiting,
                          "store_ok": check.ok}, indent=2))
        return 0
    if not check.ok:
        print(f"guardctl: {check.detail}", file=sys.stderr)
    print(f"{len(records)} conflict copies resolved, {len(attention)} need a look "
          f"(journal: {state.conflict_journal})")
    for record in records if args.all else attention:
        mark = "!" if record.get("needs_attention") else " "
        print(f"{mark} {_when(record)}  {record.get('original')}  [{record.get('action')}]")
        print(f"      {record.get('report')}")
        for kept in record.get("quarantined", []):
            print(f"      kept: {kept}")
    if waiting:
        print(f"{len(waiting)} conflict copies in the store now, waiting for the daemon:")
        for rel in waiting[:20]:
            print(f"  {rel}")
    return 0
