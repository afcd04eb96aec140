"""`guardctl run --relaunch` (guard.service.relaunch): the policy as a pure function, the loop
with a fake daemon, sleep and clock, and one real relaunching daemon whose first start fails."""

from __future__ import annotations

import argparse
import logging
import socket
import time

import pytest

from guard.service import relaunch
from guard.service.relaunch import after_exit, keep_running
from guard.service.units import RESTART_SEC, START_LIMIT_BURST, START_LIMIT_INTERVAL_SEC
from tests.helpers.daemons import free_port, wait_for


# ---- the policy -----------------------------------------------------------------------------
def test_the_limits_are_the_systemd_units():
    assert (RESTART_SEC, START_LIMIT_BURST, START_LIMIT_INTERVAL_SEC) == (10, 5, 600)


def test_a_clean_exit_ends_the_loop():
    decision = after_exit(0, [], 100.0)
    assert decision.wait is None and "exit code 0" in decision.reason
    assert after_exit(0, [90.0, 95.0, 99.0, 99.5], 100.0).wait is None


@pytest.mark.parametrize("earlier", [0, 1, 2, 3])
def test_a_failure_is_started_again_after_restart_sec(earlier):
    now = 1000.0
    decision = after_exit(2, [now - 10 * (i + 1) for i in range(earlier)], now)
    assert decision.wait == RESTART_SEC
    assert decision.reason == "the daemon failed (exit code 2); starting it again in 10 s"


def test_the_fifth_failure_within_the_window_gives_up():
    now = 1000.0
    decision = after_exit(3, [now - 500, now - 300, now - 100, now - 1], now)
    assert decision.wait is None
    assert "failed 5 times within 600 s" in decision.reason
    assert "last exit code 3" in decision.reason and "giving up" in decision.reason


def test_failures_older_than_the_window_do_not_count():
    now = 10_000.0
    old = [now - 5000, now - 900, now - 601]
    assert after_exit(1, old + [now - 599, now - 300, now - 20], now).wait == RESTART_SEC
    assert after_exit(1, old + [now - 599, now - 300, now - 20, now - 10], now).wait is None


# ---- the loop -------------------------------------------------------------------------------
class Script:
    """A daemon that exits with the scripted codes, each run lasting `runs_for` seconds of a
    fake clock that sleep advances too."""

    def __init__(self, codes: list[int], runs_for: float = 1.0) -> None:
        self.codes, self.runs_for = list(codes), runs_for
        self.now = 0.0
        self.starts = 0
        self.waits: list[float] = []

    def start(self) -> int:
        self.starts += 1
        self.now += self.runs_for
        return self.codes.pop(0)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def run(self, **kw) -> int:
        return keep_running(self.start, sleep=self.sleep, clock=self.clock, **kw)


def test_failures_then_a_clean_stop(caplog):
    script = Script([1, 1, 0])
    with caplog.at_level(logging.INFO, logger="guard.service"):
        assert script.run() == 0
    assert script.waits == [10, 10] and script.starts == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("relaunch: the daemon failed (exit code 1); starting it again in "
                          "10 s") == 2
    assert messages[-1] == "relaunch: the daemon stopped (exit code 0)"


def test_five_quick_failures_give_up_with_the_last_code(caplog):
    script = Script([2, 2, 2, 2, 3, 0])
    with caplog.at_level(logging.INFO, logger="guard.service"):
        assert script.run() == 3
    assert script.waits == [10] * 4 and script.starts == 5
    last = caplog.records[-1]
    assert last.levelno == logging.ERROR and "failed 5 times within 600 s" in last.getMessage()


def test_failures_spread_out_never_give_up():
    script = Script([1] * 8 + [0], runs_for=200.0)
    assert script.run() == 0
    assert script.waits == [10] * 8 and script.starts == 9


def test_a_stop_during_the_wait_starts_nothing_more():
    script = Script([1, 1, 0])
    assert script.run(stopping=lambda: bool(script.waits)) == 0  # a stop is a clean end
    assert script.starts == 1 and script.waits == [10]


def test_a_clean_exit_is_never_slept_on():
    script = Script([0])
    assert script.run() == 0 and script.waits == [] and script.starts == 1


class _NoFileConfig:
    store = None
    file = None
    origins: dict[str, str] = {}
    state_dir = "unused"


class _NoState:
    def __init__(self, root: object) -> None:
        pass

    def create(self) -> None:
        return None


def test_run_relaunch_hands_the_daemon_to_this_loop(monkeypatch):
    """`guardctl run --relaunch` runs the daemon under keep_running, an unexpected error as
    exit code 1; without the flag the daemon runs once, its errors raised."""
    from guard.commands import run as run_cmd

    seen: list[str] = []
    monkeypatch.setattr(relaunch, "keep_running",
                        lambda start, **kw: seen.append("loop") or start())
    monkeypatch.setattr(run_cmd, "_run_daemon",
                        lambda cfg, wait, crash=None: seen.append(f"daemon {wait} {crash}") or 7)
    monkeypatch.setattr(run_cmd, "config_from", lambda args: _NoFileConfig())
    monkeypatch.setattr(run_cmd, "StateDir", _NoState)
    args = argparse.Namespace(relaunch=True, wait_for_store=True)
    assert run_cmd.run(args) == 7 and seen == ["loop", "daemon True 1"]
    seen.clear()
    args = argparse.Namespace(relaunch=False, wait_for_store=False)
    assert run_cmd.run(args) == 7 and seen == ["daemon False None"]


# ---- a real relaunching daemon ------------------------------------------------------------------
def failing_at_first(store, make_guard):
    """A real `guardctl run --relaunch` whose first daemon fails (its port is held by the
    returned socket) and that now waits to start it again: (guard, port, holder)."""
    port = free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        guard = make_guard(store, port=port, extra=("--relaunch",)).start()
        wait_for(lambda: "starting it again in 10 s" in guard.output(), timeout=30,
                 what="the relauncher to say it starts the daemon again")
    except BaseException:
        holder.close()
        raise
    return guard, port, holder


@pytest.mark.integration
def test_a_daemon_that_cannot_start_is_started_again_and_a_stop_ends_the_loop(
        tmp_path, new_store, make_guard):
    """Its port is taken by a socket this test holds: the daemon fails, the process stays and
    says it starts again in 10 s; with the port released the next start serves; `guardctl
    stop` then ends the process with 0 (no relaunch after a clean stop)."""
    guard, port, holder = failing_at_first(new_store, make_guard)
    try:
        assert guard.proc is not None and guard.proc.poll() is None, guard.output()
        assert f"port {port} is taken" in guard.output()
    finally:
        holder.close()
    guard.wait_healthy(timeout=40)
    assert guard.output().count("starting it again") == 1
    res = guard.ctl("stop")
    assert res.returncode == 0, res.stderr
    assert guard.proc.wait(timeout=30) == 0, guard.output()
    assert "relaunch: the daemon stopped (exit code 0)" in guard.output()


def test_a_stop_while_the_relauncher_waits_ends_it_at_once_with_0(tmp_path, new_store,
                                                                  make_guard):
    """Between starts no daemon listens: `guardctl stop` must still end the process, quickly
    and cleanly, and nothing is started after it."""
    guard, port, holder = failing_at_first(new_store, make_guard)
    try:
        assert guard.proc is not None
        began = time.monotonic()
        res = guard.ctl("stop")
        assert res.returncode == 0, res.stderr
        assert guard.proc.wait(timeout=15) == 0, guard.output()
        assert time.monotonic() - began < 8, "the stop waited for the next start"
        assert "did not stop on request" not in res.stderr
        assert guard.output().count("starting it again") == 1
    finally:
        holder.close()
