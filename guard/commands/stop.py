"""`guardctl stop`: ask the running daemon to stop, and make sure nothing is left behind."""

from __future__ import annotations

import argparse
import sys
import time

from guard.commands.common import add_config_options, config_from
from guard.core.state import StateDir, read_json
from guard.daemon.statusdoc import read_status
from guard.supervision.processes import ProcRef, alive, end_tree, resolve

NAME = "stop"
HELP = "stop the daemon and its whole MLflow server tree"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)


def wait_gone(ref: ProcRef, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(ref):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    state = StateDir(cfg.state_dir)
    doc = read_status(state.status)
    daemon = doc.daemon.ref if doc else None
    if daemon is None or not alive(daemon):
        print("mlflow-guard is not running")
        return 0
    state.request("stop")
    if not wait_gone(daemon, cfg.server.stop_grace + 20):
        print(f"daemon pid {daemon.pid} did not stop on request; terminating it", file=sys.stderr)
        proc = resolve(daemon)
        if proc is not None:
            proc.terminate()
        if not wait_gone(daemon, cfg.server.stop_grace + 10):
            end_tree([daemon], 0)
        records = (read_json(state.pids) or {}).get("server", [])
        end_tree([ProcRef.from_json(r) for r in records], cfg.server.stop_grace)
    print(f"mlflow-guard stopped (was pid {daemon.pid})")
    return 0
