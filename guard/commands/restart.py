"""`guardctl restart`: restart the MLflow server now, and every part that failed; also the way
out of a crash loop, the server's or a part's."""

from __future__ import annotations

import argparse
import sys
import time

from guard.commands.common import add_config_options, config_from, state_access_problem
from guard.core.parts import PartPhase
from guard.core.state import StateDir
from guard.core.words import said
from guard.daemon.status import title
from guard.daemon.statusdoc import StatusDoc, read_status
from guard.supervision.processes import alive
from guard.supervision.supervisor import Phase

NAME = "restart"
HELP = "restart the MLflow server and any failed part (resumes after a crash loop)"

FAILED = (PartPhase.BACKOFF, PartPhase.CRASH_LOOP)


def failed_parts(doc: StatusDoc) -> list[str]:
    """The parts waiting for a restart (in backoff or a crash loop): the request resumes them."""
    return [name for name, p in doc.parts.items() if p.state in FAILED]


def parts_line(before: list[str], doc: StatusDoc) -> str:
    """What became of the parts the request resumed."""
    still = [n for n in before if n in doc.parts and doc.parts[n].state in FAILED]
    back = [n for n in before if n not in still]
    words = [f"resumed {', '.join(title(n) for n in back)}"] if back else []
    words += [f"{', '.join(title(n) for n in still)} failed again"] if still else []
    return "; ".join(words)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, store=False)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for health")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    state = StateDir(cfg.state_dir)
    problem = state_access_problem(state.root)
    if problem is not None:
        print(f"guardctl: {problem}", file=sys.stderr)
        return 1
    doc = read_status(state.status) or StatusDoc()
    daemon = doc.daemon.ref
    if daemon is None or not alive(daemon):
        print("mlflow-guard is not running; start it with `guardctl run`")
        return 3
    old_pid = doc.keeper.server.pid
    stopped = failed_parts(doc)
    state.request("restart")
    if args.no_wait:
        print("restart requested")
        return 0
    deadline = time.monotonic() + cfg.server.startup_timeout + cfg.server.stop_grace + 10
    while time.monotonic() < deadline:
        doc = read_status(state.status) or StatusDoc()
        pid = doc.keeper.server.pid
        if doc.keeper.phase is Phase.RUNNING and pid and pid != old_pid:
            parts = parts_line(stopped, doc)
            print(f"server restarted (pid {pid}) and healthy" + (f"; {parts}" if parts else ""))
            return 1 if failed_parts(doc) else 0
        time.sleep(0.25)
    phase = doc.keeper.phase
    print(f"server not healthy yet: {said(phase.value if phase else None)}; see "
          "`guardctl status`")
    return 1
