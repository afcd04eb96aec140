"""`guardctl fix`: one pass of the path rewriter without the daemon, or an undo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from guard.commands.common import add_config_options, config_from, say_daemon_store, usable_store
from guard.core.journal import Journal
from guard.core.safeio import printable
from guard.core.state import StateDir
from guard.core.words import Progress, count
from guard.core.writefaults import hold_reason
from guard.portability.fixer import Fixer, undo
from guard.supervision.processes import running_daemon_pid

NAME = "fix"
HELP = "rewrite machine-specific artifact paths in meta.yaml once, and print a summary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="change nothing, only report")
    parser.add_argument("--undo", metavar="JOURNAL",
                        help="put back the old values recorded in a rewrite journal")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


JOURNAL_PEEK_LINES = 5
JOURNAL_LINE_MAX = 4 << 20  # a line carries at most a whole meta.yaml (1 MB), escaped


def is_journal_line(line: bytes) -> bool:
    """Whether one line is a record as the guard's journals write them (a JSON object with
    the `action` and `time` every record has)."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return (isinstance(record, dict) and isinstance(record.get("action"), str)
            and isinstance(record.get("time"), (int, float)))


def is_journal(path: Path) -> bool:
    """Whether the file reads as a journal of this guard: one of its first lines is a record
    (the first may be torn by a crash). Reads a bounded amount: any file may be named."""
    try:
        with open(path, "rb") as fh:
            for _ in range(JOURNAL_PEEK_LINES):
                line = fh.readline(JOURNAL_LINE_MAX)
                if not line:
                    return False
                if is_journal_line(line.strip()):
                    return True
    except OSError:
        return False
    return False


def refused(exc: OSError, journal: Journal | None, command: str) -> str:
    """What stopped a pass whose write failed, and what to do (no partial file is left: each
    file is replaced whole by a rename, or not at all)."""
    in_state = journal is not None and exc.filename is not None \
        and Path(str(exc.filename)) == journal.path
    where = "state folder" if in_state else "store"
    again = f"then run `guardctl {command}` again; nothing partial was left"
    reason = hold_reason(exc, where, again)
    if reason is None:
        target = f" {exc.filename}" if exc.filename else ""
        reason = f"cannot write{target}: {exc.strerror or exc}; {again}"
    return printable(reason)


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    store = usable_store(cfg, "nothing was changed")
    if store is None:
        return 2
    say_daemon_store(cfg)
    state = StateDir(cfg.state_dir)
    if args.undo:
        pid = running_daemon_pid(state)
        if pid:
            print(f"guardctl: the daemon (pid {pid}) is running and would rewrite the paths "
                  "again at once; stop it first with `guardctl stop`", file=sys.stderr)
            return 1
        undo_from = Path(args.undo)
        if not undo_from.is_file():
            print(f"guardctl: no journal at {undo_from}", file=sys.stderr)
            return 2
        if not is_journal(undo_from):
            print(f"guardctl: {undo_from} is not a journal of this guard (none of its first "
                  "lines is a record the guard writes); nothing was changed", file=sys.stderr)
            return 1
        out = None if args.dry_run else Journal(state.rewrite_journal)
        try:
            result = undo(store, undo_from, out, dry_run=args.dry_run)
        except OSError as exc:
            print(f"guardctl: {refused(exc, out, 'fix --undo')}", file=sys.stderr)
            return 1
        verb = "would undo" if args.dry_run else "undone"
        print(json.dumps(result) if args.json else
              f"{verb}: {result['undone']}, skipped (changed since or gone): {result['skipped']}")
        return 0
    journal = None if args.dry_run else Journal(state.rewrite_journal)
    rw = cfg.rewrite
    fixer = Fixer(store, journal, cfg.host_id, dry_run=args.dry_run,
                  in_flight_grace=rw.in_flight_grace, experiment_quiet=rw.experiment_quiet)
    try:
        with Progress("checking artifact paths") as progress:
            seen = [0]

            def tick() -> None:
                seen[0] += 1
                progress.update(f"{count(seen[0], 'folder')} checked, "
                                f"{count(fixer.total, 'file')} rewritten")

            fixer.progress = tick
            figures = fixer.full_pass(force=True)
    except OSError as exc:
        print(f"guardctl: {refused(exc, journal, 'fix')}", file=sys.stderr)
        if fixer.total:
            print(f"guardctl: {count(fixer.total, 'file')} rewritten before that; journal: "
                  f"{state.rewrite_journal}", file=sys.stderr)
        return 1
    snap = fixer.snapshot()
    result = {"dry_run": args.dry_run, "files": figures.files,
              "duration_s": figures.duration_s,
              "rewritten_by_kind": dict(fixer.would if args.dry_run else fixer.rewritten),
              "problems": [{"file": k, **p} for k, ps in sorted(fixer.problems.items())
                           for p in ps],
              "unportable_count": snap.unportable_count,
              "deferred": {k: why for k, (why, _) in sorted(fixer.deferred.items())},
              "journal": None if journal is None else str(journal.path)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    verb = "would rewrite" if args.dry_run else "rewrote"
    kinds = (", ".join(count(n, k.replace("_", " "))
                       for k, n in sorted(result["rewritten_by_kind"].items()))
             or "nothing")
    print(f"checked {count(result['files'], 'meta.yaml file')} in "
          f"{result['duration_s']:.2f} s; {verb} {kinds}")
    if result["journal"] and result["rewritten_by_kind"]:
        print(f"journal: {result['journal']} (undo with `guardctl fix --undo {result['journal']}`)")
    for file, why in result["deferred"].items():
        print(f"  {'DEFERRED':<11} {file}  ({why})")
    for p in result["problems"]:
        what = f"{p['key']}: {p['value']}" if "key" in p else ""
        print(f"  {p['problem'].upper():<11} {p['file']}  {what}  ({p['why']})")
    return 0
