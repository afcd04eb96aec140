"""The daemon's supervision of its parts, driven turn by turn without a server: a failed part
is restarted after its backoff, a stuck one stops the watchdog pings, a crash loop waits for
the restart request, and the status says so (the real daemon: tests/faults/test_parts.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from guard.core.config import load_config
from guard.core.parts import PartPhase
from guard.core.store import init_store
from guard.core.watch import Change
from guard.daemon.loop import Daemon
from guard.service.readiness import Advice
from guard.supervision import supervisor
from guard.supervision.keeper import HealthProbe
from tests.helpers.daemons import wait_for
from tests.helpers.parts import Recorder


class Manager:
    """A service manager that records what it was told."""

    every = 0.0

    def __init__(self) -> None:
        self.told: list[Advice] = []

    def send(self, advice: Advice) -> None:
        self.told.append(advice)


@pytest.fixture
def daemon(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    init_store(store)
    cfg_path = tmp_path / "guard.yaml"
    cfg_path.write_text(f"store: {store}\nstate_dir: {tmp_path / 'state'}\n"
                        "restart:\n  backoff_initial: 1\n  crash_loop_count: 2\n")
    made = Daemon(load_config(str(cfg_path)), reporter=Manager())
    part = Recorder()
    made.background = [part]
    made.keeper.sup = supervisor.State(phase=supervisor.Phase.RUNNING)
    made.keeper.health = HealthProbe(ok=True)
    yield made, part
    part.block.set()
    part.stop()


def fail(part: Recorder, crashes: int) -> None:
    part.fail_on = "bad"
    part.notice(Change.FILE, Path("bad"))
    wait_for(lambda: part.crashes == crashes and not part.alive, 5, what="the part to fail")


def test_a_failed_part_is_restarted_after_its_backoff_and_shown_meanwhile(daemon):
    d, part = daemon
    part.start()
    fail(part, 1)
    now = time.time()
    d._supervise(now)
    shown = d.status_doc().parts["recorder"]
    assert shown.state is PartPhase.BACKOFF and "RuntimeError('boom')" in (shown.last_error or "")
    assert shown.next_start_at == pytest.approx(now + 1.0)
    d._supervise(now + 0.5)
    assert not part.alive
    d._supervise(now + 1.0)
    assert part.alive and d.status_doc().parts["recorder"].state is PartPhase.RUNNING
    assert d.status_doc().parts["recorder"].restarts == 1


def test_a_crash_loop_waits_for_the_restart_request(daemon, monkeypatch):
    d, part = daemon
    part.start()
    fail(part, 1)
    now = time.time()
    d._supervise(now)
    d._supervise(now + 1)  # restarted
    fail(part, 2)
    d._supervise(now + 2)
    assert d.lives["recorder"].phase is PartPhase.CRASH_LOOP
    d._supervise(now + 1000)
    assert not part.alive
    d.state.create()
    d.state.request("restart")
    restarted: list[float] = []
    monkeypatch.setattr(d.keeper, "restart", restarted.append)  # there is no server here
    d._handle_request()
    d._supervise(time.time())
    assert part.alive and d.lives["recorder"].phase is PartPhase.RUNNING
    assert len(restarted) == 1  # and the server is restarted too


def test_a_stuck_part_stops_the_watchdog_pings_until_it_moves(daemon):
    d, part = daemon
    manager = d.reporter
    assert isinstance(manager, Manager)
    part.deadline = 0.3
    part.start()
    d._tell()  # ready
    d._tell()
    assert manager.told[-1].watchdog
    part.notice(Change.FILE, Path("slow"))  # blocks its thread until `block` is set
    wait_for(lambda: not part.idle, 5, what="the part to be busy")
    time.sleep(0.5)
    d._supervise(time.time())
    assert d.lives["recorder"].phase is PartPhase.STUCK
    count = len(manager.told)
    d._tell()
    assert not any(a.watchdog for a in manager.told[count:])
    part.block.set()
    wait_for(lambda: part.idle, 5, what="the part to finish")
    d._supervise(time.time())
    d._tell()
    assert d.lives["recorder"].phase is PartPhase.RUNNING and manager.told[-1].watchdog
