"""`guardctl stop`: ask the running daemon to stop, and make sure nothing is left behind.

A daemon killed with -9 leaves its server serving; `stop` then ends that server tree (the
processes `processes.orphans` names: this guard's by pid and start time or owner mark, and
over this store by their command line) and says which pids it ended. A pid that pids.json
names is never ended on that word alone: a forged file could name any process.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable

from guard.commands.common import add_config_options, config_from, state_access_problem
from guard.core.config import Config
from guard.core.state import StateDir
from guard.daemon.statusdoc import StatusDoc, read_status
from guard.supervision.processes import (
    ProcInfo,
    ProcRef,
    alive,
    end_tree,
    orphans_now,
    resolve,
    tree_of,
)

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


def pid_list(pids: Iterable[int]) -> str:
    return ", ".join(str(p) for p in sorted(pids))


def terminate(daemon: ProcRef) -> None:
    proc = resolve(daemon)
    if proc is not None:
        proc.terminate()


def ask_to_stop(state: StateDir, daemon: ProcRef) -> None:
    """The stop request; when the state folder cannot take it (full, read-only), SIGTERM to
    the daemon instead, which stops it the same way."""
    try:
        state.request("stop")
    except OSError as exc:
        print(f"guardctl: cannot leave the stop request in {state.control} "
              f"({exc.strerror or exc}); sending SIGTERM to daemon pid {daemon.pid}",
              file=sys.stderr)
        terminate(daemon)


def stop_daemon(cfg: Config, state: StateDir, daemon: ProcRef) -> None:
    ask_to_stop(state, daemon)
    if wait_gone(daemon, cfg.server.stop_grace + 20):
        return
    print(f"daemon pid {daemon.pid} did not stop on request; terminating it", file=sys.stderr)
    terminate(daemon)
    if not wait_gone(daemon, cfg.server.stop_grace + 10):
        end_tree([daemon], 0)
    # the server tree it leaves is ended by `left_behind`: only what is verified as this
    # guard's MLflow server over the store (pids.json alone could name any process)


def left_behind(cfg: Config, state: StateDir, doc: StatusDoc | None) -> tuple[ProcInfo, ...]:
    """This guard's server processes still running over its store (none without a store)."""
    store = cfg.store or (doc.store if doc else None)
    if not store:
        return ()
    known = doc.keeper.server.tree if doc else ()
    return orphans_now(str(store), state, known)


def end_left_behind(cfg: Config, found: tuple[ProcInfo, ...]) -> tuple[list[int], list[int]]:
    """End them as whole trees: the pids ended, and those that survived."""
    refs = [p.ref for p in found]
    pids = {p.pid for p in tree_of(refs)}
    survivors = end_tree(refs, cfg.server.stop_grace)
    return sorted(pids - set(survivors)), survivors


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    state = StateDir(cfg.state_dir)
    problem = state_access_problem(state.root)
    if problem is not None:
        print(f"guardctl: {problem}", file=sys.stderr)
        return 1
    doc = read_status(state.status)
    ref = doc.daemon.ref if doc else None
    daemon = ref if ref is not None and alive(ref) else None
    if daemon is not None:
        stop_daemon(cfg, state, daemon)
    found = left_behind(cfg, state, doc)
    ended, survivors = end_left_behind(cfg, found) if found else ([], [])
    if daemon is not None:
        print(f"mlflow-guard stopped (was pid {daemon.pid})")
        if ended:
            print(f"also ended server processes it left behind: pids {pid_list(ended)}")
    elif found:
        was = f" (pid {doc.daemon.pid})" if doc and doc.daemon.pid else ""
        print(f"mlflow-guard is not running; ended the server its dead daemon{was} left "
              f"serving: pids {pid_list(ended)}")
    else:
        print("mlflow-guard is not running")
    if survivors:
        print(f"guardctl: could not end pids {pid_list(survivors)}; end them by hand",
              file=sys.stderr)
        return 1
    return 0
