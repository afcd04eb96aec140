"""`guardctl run`: run the daemon in the foreground (what a service manager starts)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from guard.commands.common import SAVE_COMMAND, add_config_options, config_from
from guard.core.config import Config
from guard.core.state import StateDir
from guard.core.store import inspect_store
from guard.daemon.loop import AlreadyRunning, Daemon, StartupError
from guard.service import relaunch

NAME = "run"
HELP = "run the daemon in the foreground: one supervised MLflow server over the store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser, port=True)
    parser.add_argument("--wait-for-store", action="store_true",
                        help="wait for a missing or empty store (a sync drive not mounted yet) "
                             "instead of exiting")
    parser.add_argument("--relaunch", action="store_true",
                        help="start the daemon again after it fails (10 s later; gives up after "
                             "5 failures in 10 minutes), where no service manager does: the "
                             "Windows logon task uses it")


def permanence_hint(cfg: Config, store_ok: bool) -> str | None:
    """One line for a usable store named only by --store (no config file): how to stop
    needing the flag, for the next `run` and the commands run while the daemon does not."""
    if not store_ok or cfg.file is not None \
            or not cfg.origins.get("store", "").startswith("flag"):
        return None
    return (f"guardctl: the store is named only by --store (no config file); make it "
            f"permanent: `{SAVE_COMMAND} --store {cfg.store}`")


def run(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    hint = permanence_hint(cfg, cfg.store is not None and inspect_store(cfg.store).ok)
    if hint:
        print(hint, file=sys.stderr)
    try:
        StateDir(cfg.state_dir).create()
    except OSError as exc:  # its message names the folder and what to do
        print(f"guardctl: cannot start: {exc}", file=sys.stderr)
        return 2
    if args.relaunch:
        return _relaunching(cfg, args.wait_for_store)
    return _run_daemon(cfg, args.wait_for_store)


def _relaunching(cfg: Config, wait_for_store: bool) -> int:
    """The daemon under relaunch.keep_running, in this process (so `guardctl stop` finds it
    by the same pid). Between starts no daemon listens, so the wait itself obeys a stop:
    `guardctl stop`'s request in the state folder, SIGTERM or Ctrl-C."""
    state = StateDir(cfg.state_dir)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    def start() -> int:
        code = _run_daemon(cfg, wait_for_store, crash=1)
        for sig in (signal.SIGTERM, signal.SIGINT):  # the daemon's handlers died with it
            signal.signal(sig, on_signal)
        return code

    def stopping() -> bool:
        request = state.take_request()
        if request is not None and request.get("command") == "stop":
            stop.set()
        return stop.is_set()

    def wait(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not stopping() and time.monotonic() < deadline:
            stop.wait(min(0.5, max(0.0, deadline - time.monotonic())))

    return relaunch.keep_running(start, sleep=wait, stopping=stopping)


def _run_daemon(cfg: Config, wait_for_store: bool, crash: int | None = None) -> int:
    """Run the daemon to its end; its exit code. `crash`: the code for an unexpected error
    (said in one line, with the traceback in the log), instead of letting it propagate."""
    try:
        return Daemon(cfg, wait_for_store=wait_for_store).run()
    except AlreadyRunning as exc:
        print(f"guardctl: {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"guardctl: cannot start: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if crash is None:
            raise
        logging.getLogger("guard.daemon").exception("the daemon failed")
        print(f"guardctl: the daemon failed: {exc!r}", file=sys.stderr)
        return crash
