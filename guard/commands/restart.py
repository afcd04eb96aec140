"""`guardctl restart`: restart the MLflow server now; also the way out of a crash loop."""

from __future__ import annotations

import argparse
import time

from guard.commands.common import add_config_options, config_from
from guard.core.state import StateDir
from guard.daemon.statusdoc import StatusDoc, read_status
from guard.supervision.processes import alive
from guard.supervision.supervisor import Phase

NAME = "restart"
HELP = "restart the MLflow server (resumes after a crash loop)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for health")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    state = StateDir(cfg.state_dir)
    doc = read_status(state.status) or StatusDoc()
    daemon = doc.daemon.ref
    if daemon is None or not alive(daemon):
        print("mlflow-guard is not running; start it with `guardctl run`")
        return 3
    old_pid = doc.keeper.server.pid
    state.request("restart")
    if args.no_wait:
        print("restart requested")
        return 0
    deadline = time.monotonic() + cfg.server.startup_timeout + cfg.server.stop_grace + 10
    while time.monotonic() < deadline:
        doc = read_status(state.status) or StatusDoc()
        pid = doc.keeper.server.pid
        if doc.keeper.phase is Phase.RUNNING and pid and pid != old_pid:
            print(f"server restarted (pid {pid}) and healthy")
            return 0
        time.sleep(0.25)
    phase = doc.keeper.phase
    print(f"server not healthy yet: {phase.value if phase else None}; see `guardctl status`")
    return 1
