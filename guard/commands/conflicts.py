"""`guardctl conflicts`: the sync clients' conflict copies the guard resolved, and what needs
a person."""

from __future__ import annotations

import argparse
import datetime
import json
import sys

from guard.commands.common import add_config_options, config_from, say_daemon_store
from guard.core.config import Config
from guard.core.journal import Journal
from guard.core.state import StateDir
from guard.core.store import inspect_store
from guard.core.words import Progress, count, said
from guard.sync.experiment_names import find_same_names, merge, plan_for
from guard.sync.experiments import MergePlan
from guard.sync.leases import resource_name
from guard.sync.locks import HostLock, LockSettings, LockTimeout
from guard.sync.peers import read_all
from guard.sync.reconcile import find_copies, read_records, renumbered_versions

NAME = "conflicts"
HELP = "list the conflict copies the guard resolved and the ones that need a person"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--all", action="store_true",
                        help="list every resolved copy, not only those that need attention")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--merge-experiments", metavar="NAME",
                        help="merge the active experiments named NAME into the oldest: every "
                             "run and logged model moves (a dry run unless --yes)")
    parser.add_argument("--yes", action="store_true",
                        help="with --merge-experiments: carry the merge out")


def _when(record: dict) -> str:
    return datetime.datetime.fromtimestamp(record.get("time", 0)).strftime("%Y-%m-%d %H:%M")


def _plan_json(plan: MergePlan) -> dict:
    return {"name": plan.name, "keep": plan.keep, "merged": plan.merged,
            "moves": [{"what": m.what, "from": "/".join(m.src), "to": "/".join(m.dst),
                       "rewrites": [list(r) for r in m.rewrites]} for m in plan.moves],
            "model_versions": [{"meta": "/".join(r.version), "key": r.key, "old": r.old,
                                "new": r.new} for r in plan.repoints],
            "blockers": list(plan.blockers)}


def merge_experiments(cfg: Config, name: str, yes: bool, as_json: bool) -> int:
    """`--merge-experiments NAME [--yes]`: under the cross-machine lock of the experiment
    name, plan (and with --yes carry out) the merge. Exit 1 when there is nothing to merge,
    the merge is blocked, the lock cannot be had, or MLflow cannot open what moved."""
    store = cfg.require_store()
    say_daemon_store(cfg)
    lock = HostLock(LockSettings.from_config(cfg), resource_name("experiment", name))
    try:
        with Progress(f"waiting for the lock of experiment name {name!r}") as waiting:
            lock.acquire(on_wait=waiting.update)
    except LockTimeout as exc:
        print(f"guardctl: {exc}; try again later", file=sys.stderr)
        return 1
    try:
        plan = plan_for(store, name)  # under the lock: what another machine merged is gone
        if plan is None:
            print(f"guardctl: fewer than two active experiments are named {name!r}: nothing "
                  "to merge", file=sys.stderr)
            return 1
        doc = _plan_json(plan)
        if not as_json:
            print("\n".join(plan.lines()))
        if plan.blockers or not yes:
            if as_json:
                print(json.dumps({**doc, "dry_run": True}, indent=2))
            elif not plan.blockers:
                print("dry run: nothing was changed; run again with --yes to merge")
            return 1 if plan.blockers else 0
        state = StateDir(cfg.state_dir)
        batch, failures = merge(store, cfg.vault_root, cfg.host_id, plan,
                                Journal(state.conflict_journal))
    finally:
        lock.release()
    if as_json:
        print(json.dumps({**doc, "dry_run": False, "trash": str(batch),
                          "unreadable": failures}, indent=2))
    else:
        print(f"merged into experiment {plan.keep}; the emptied experiments are in {batch}; "
              "tombstones written so no machine restores them")
        for failure in failures:
            print(f"  MLflow cannot open: {failure}")
        print("every moved run reads through MLflow" if not failures else
              "some of what moved does not read through MLflow (above)")
    return 1 if failures else 0


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    store = cfg.require_store()
    if args.merge_experiments is not None:
        return merge_experiments(cfg, args.merge_experiments, args.yes, args.json)
    say_daemon_store(cfg)
    state = StateDir(cfg.state_dir)
    records = read_records(state.conflict_journal)
    check = inspect_store(store)
    hosts = [cfg.host_id] + [beat.host_id for beat in read_all(store)] if check.ok else []
    waiting = [str(c.path.relative_to(store)) for c in find_copies(store, hosts)] \
        if check.ok else []
    renumbered = [r for r, _ in renumbered_versions(store)] if check.ok else []
    same = find_same_names(store) if check.ok else []
    attention = [r for r in records if r.get("needs_attention")]
    if args.json:
        print(json.dumps({"journal": str(state.conflict_journal), "resolved": records,
                          "needs_attention": attention, "in_store_now": waiting,
                          "renumbered": [{"model": r.model, "was": r.was, "host": r.host,
                                          "now": r.now} for r in renumbered],
                          "same_name_experiments": [
                              {"name": g.name, "ids": list(g.ids), "command": g.command()}
                              for g in same],
                          "store_ok": check.ok}, indent=2))
        return 0
    if not check.ok:
        print(f"guardctl: {check.detail}", file=sys.stderr)
    print(f"{count(len(records), 'conflict copy')} resolved, {len(attention)} "
          f"{'needs' if len(attention) == 1 else 'need'} a look "
          f"(journal: {state.conflict_journal})")
    for record in records if args.all else attention:
        mark = "!" if record.get("needs_attention") else " "
        print(f"{mark} {_when(record)}  {said(record.get('original'))}  "
              f"[{said(record.get('action'))}]")
        print(f"      {said(record.get('report'), 'no report')}")
        for kept in record.get("quarantined", []):
            print(f"      kept: {kept}")
    if renumbered:
        print(f"{count(len(renumbered), 'model version')} renumbered (registered on two "
              "machines at once; tags mlflow-guard.renumbered_from/_host):")
        for r in renumbered:
            print(f"  {r.describe()}")
    for group in same:
        print(f"! {group.describe()}; see the merge: {group.command()}")
    if waiting:
        print(f"{count(len(waiting), 'conflict copy')} in the store now, waiting for the "
              "daemon:")
        for rel in waiting[:20]:
            print(f"  {rel}")
    return 0
