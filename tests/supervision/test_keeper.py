"""The server keeper's life cycle with fake effects: no processes, no disk, a clock by hand."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from guard.core.records import to_json
from guard.core.store import StoreCheck, StoreState
from guard.supervision.keeper import (
    PORT_FREE_WAIT,
    STORE_CHECK_INTERVAL,
    HealthProbe,
    Keeper,
    Settings,
    StartupError,
)
from guard.supervision.processes import Census, ProcInfo, ProcRef
from guard.supervision.supervisor import Phase, Policy

POLICY = Policy(backoff_initial=1.0, backoff_max=8.0, crash_loop_count=3,
                crash_loop_window=100.0, startup_timeout=30.0, health_failures=2,
                stable_after=60.0)
SITE = Settings(store="/data/mlruns", host="127.0.0.1", port=5050, url="http://127.0.0.1:5050",
                health_interval=5.0)
OK = StoreCheck(Path(SITE.store), StoreState.OK, "")
GONE = StoreCheck(Path(SITE.store), StoreState.MISSING, "store folder /data/mlruns does not exist")


def proc(pid: int, command: str = "mlflow server") -> ProcInfo:
    return ProcInfo(pid, 1, 1000.0 + pid, tuple(command.split()))


@dataclass
class FakeServer:
    ref: ProcRef
    children: list[ProcRef]
    code: int | None = None
    stopped_with: list[ProcRef] | None = None
    survivors: list[int] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.code

    def tree(self) -> list[ProcRef]:
        return [] if self.stopped_with is not None else [self.ref, *self.children]

    def stop(self, extra: list[ProcRef] | None = None) -> list[int]:
        self.stopped_with = list(extra or [])
        return self.survivors


class FakeEffects:
    """The world as the keeper sees it, scripted by the test; every action is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.store = OK
        self.healthy = True
        self.bindable_at = 0.0  # the port is free from this time on
        self.ours: list[ProcInfo] = []
        self.same: list[ProcInfo] = []
        self.foreign: list[ProcInfo] = []
        self.unkillable: set[int] = set()
        self.servers: list[FakeServer] = []
        self.ended: list[list[int]] = []
        self.saved: list[list[int]] = []
        self.forgot = False
        self.probes = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def census(self, known) -> Census:
        return Census(tuple(self.ours), tuple(self.same), tuple(self.foreign))

    def start_server(self) -> FakeServer:
        pid = 100 + 10 * len(self.servers)
        server = FakeServer(ProcRef(pid, 1.0), [ProcRef(pid + 1, 1.0)])
        self.servers.append(server)
        return server

    def end_tree(self, refs: list[ProcRef]) -> list[int]:
        pids = [r.pid for r in refs]
        self.ended.append(pids)
        gone = set(pids) - self.unkillable
        self.ours = [p for p in self.ours if p.pid not in gone]
        self.same = [p for p in self.same if p.pid not in gone]
        return sorted(set(pids) & self.unkillable)

    def probe_health(self) -> tuple[bool, str]:
        self.probes += 1
        return (True, "OK") if self.healthy else (False, "Connection refused")

    def inspect_store(self) -> StoreCheck:
        return self.store

    def port_bindable(self) -> bool:
        return self.now >= self.bindable_at

    def alive(self, ref: ProcRef) -> bool:
        return True

    def save_pids(self, refs: list[ProcRef]) -> None:
        self.saved.append([r.pid for r in refs])

    def forget_pids(self) -> None:
        self.forgot = True

    @property
    def server(self) -> FakeServer:
        return self.servers[-1]


@pytest.fixture
def fx() -> FakeEffects:
    return FakeEffects()


def keeper(fx: FakeEffects) -> Keeper:
    return Keeper(fx, POLICY, SITE)


def run_for(k: Keeper, fx: FakeEffects, seconds: float, step: float = 0.25) -> None:
    """The daemon's loop: check the store, then tick while it is there."""
    end = fx.now + seconds
    while fx.now < end:
        if k.check_store(fx.now):
            k.tick(fx.now)
        fx.now += step


def serving(fx: FakeEffects) -> Keeper:
    k = keeper(fx)
    k.start()
    run_for(k, fx, 1.0)
    assert k.phase is Phase.RUNNING
    return k


# ---- start -----------------------------------------------------------------------------------

def test_first_tick_starts_the_server_and_a_probe_makes_it_running(fx, caplog):
    caplog.set_level(logging.INFO, logger="guard.daemon")
    k = keeper(fx)
    k.start()
    k.tick(fx.now)
    assert k.phase is Phase.STARTING and len(fx.servers) == 1
    assert k.snapshot().server.pid == 100
    assert k.health == HealthProbe(False, "starting", None)
    run_for(k, fx, 1.0)
    assert k.phase is Phase.RUNNING and len(fx.servers) == 1
    assert k.health.ok is True
    assert "server healthy at http://127.0.0.1:5050 (pid 100)" in caplog.text
    assert [r.pid for r in k.snapshot().server.tree] == [100, 101]
    assert fx.saved[-1] == [100, 101]  # the tree is on disk for a successor to find


def test_startup_timeout_ends_the_tree_and_backs_off(fx, caplog):
    fx.healthy = False
    k = keeper(fx)
    k.start()
    run_for(k, fx, 30.0)
    assert k.phase is Phase.STARTING and fx.server.stopped_with is None  # not yet
    run_for(k, fx, 1.0)
    assert k.phase is Phase.BACKOFF
    assert k.sup.last_reason == "not healthy 30 s after start"
    assert fx.servers[0].stopped_with is not None
    assert "not healthy 30 s after start; ending the server tree" in caplog.text


def test_an_exit_is_restarted_after_backoff_with_its_exit_code(fx, caplog):
    k = serving(fx)
    fx.server.code = 3
    k.tick(fx.now)
    assert k.phase is Phase.BACKOFF
    assert k.sup.last_reason == "server exited with code 3"
    assert k.health.detail == "server ended: exited with code 3"
    assert "server exited with code 3" in caplog.text
    assert k.snapshot().server.pid is None
    run_for(k, fx, 0.9)
    assert len(fx.servers) == 1  # backoff_initial 1 s not over yet
    run_for(k, fx, 1.5)
    assert len(fx.servers) == 2 and k.phase is Phase.RUNNING
    assert k.snapshot().restarts == 1
    assert "restarting the server (restart 1; last: server exited with code 3)" in caplog.text


def test_failing_probes_end_the_tree(fx):
    k = serving(fx)
    fx.healthy = False
    run_for(k, fx, 2 * SITE.health_interval + 1)
    assert k.sup.last_reason == "2 health probes in a row failed"
    assert fx.servers[0].stopped_with is not None


def test_a_crash_loop_stops_restarts_until_restart_is_requested(fx):
    k = serving(fx)
    for _ in range(POLICY.crash_loop_count):
        fx.server.code = 1
        run_for(k, fx, 10.0)
    assert k.phase is Phase.CRASH_LOOP
    assert "guardctl restart" in (k.sup.last_reason or "")
    starts = len(fx.servers)
    run_for(k, fx, 600.0, step=5.0)
    assert len(fx.servers) == starts  # no restart while in a crash loop
    k.restart(fx.now)
    run_for(k, fx, 1.0)
    assert k.phase is Phase.RUNNING and len(fx.servers) == starts + 1


def test_restart_request_ends_the_tree_and_starts_at_once(fx):
    k = serving(fx)
    first = fx.server
    k.restart(fx.now)
    assert first.stopped_with is not None
    assert k.health.detail == "server ended: restart requested"
    k.tick(fx.now)
    assert fx.server is not first and k.phase is Phase.STARTING


# ---- leftovers at start --------------------------------------------------------------------

def test_orphans_and_hand_started_servers_are_ended_before_the_first_start(fx, caplog):
    fx.ours, fx.same = [proc(7)], [proc(8, "mlflow server --backend-store-uri /data/mlruns")]
    k = keeper(fx)
    k.start()
    assert fx.ended == [[7], [8]]
    assert "ending orphaned guard server: pid 7 (mlflow server)" in caplog.text
    assert "ending hand-started MLflow server over this store: pid 8" in caplog.text
    assert fx.saved == [[]]


def test_an_orphan_that_cannot_be_ended_refuses_the_start(fx):
    fx.ours, fx.unkillable = [proc(7)], {7}
    with pytest.raises(StartupError, match=r"could not end orphaned guard server pids \[7\]; "
                                           "end them by hand"):
        keeper(fx).start()


def test_a_foreign_process_on_the_port_is_left_alone_and_refuses_the_start(fx):
    fx.foreign = [proc(9, "nginx")]
    with pytest.raises(StartupError) as err:
        keeper(fx).start()
    assert str(err.value) == (
        "port 5050 is taken by pid 9 (nginx); it is not an MLflow server over this store, so "
        "it was left alone: stop it or choose another port (--port or server.port)")
    assert fx.ended == []


def test_a_port_held_by_an_invisible_process_refuses_the_start_after_a_wait(fx):
    fx.bindable_at = fx.now + 60
    start = fx.now
    with pytest.raises(StartupError, match="port 5050 on 127.0.0.1 is in use by a process this "
                                           "user cannot see"):
        keeper(fx).start()
    assert PORT_FREE_WAIT <= fx.now - start < PORT_FREE_WAIT + 1


def test_a_port_freed_within_the_wait_is_fine(fx):
    fx.bindable_at = fx.now + 1
    keeper(fx).start()


def test_a_foreign_listener_appearing_later_is_a_failed_start(fx):
    k = keeper(fx)
    k.start()
    fx.foreign = [proc(9, "nginx")]
    k.tick(fx.now)
    assert fx.servers == [] and k.phase is Phase.BACKOFF
    assert k.sup.last_reason == "port 5050 taken by pid 9 (nginx)"


def test_orphans_found_before_a_restart_are_ended_first(fx, caplog):
    k = serving(fx)
    fx.server.code = 1
    k.tick(fx.now)
    fx.ours = [proc(55)]
    run_for(k, fx, 2.0)
    assert [55] in fx.ended
    assert "ending leftover guard processes before start: pid 55" in caplog.text


# ---- the store -----------------------------------------------------------------------------

def test_a_missing_store_at_start_is_an_error_unless_waiting(fx):
    fx.store = GONE
    with pytest.raises(StartupError) as err:
        keeper(fx).store_ready(wait=False)
    assert str(err.value) == ("store folder /data/mlruns does not exist. Nothing was created or "
                              "written. Start with --wait-for-store to wait for the drive to "
                              "appear.")
    k = keeper(fx)
    assert k.store_ready(wait=True) is False
    assert k.phase is Phase.WAITING_STORE
    assert k.message == "waiting for the store: store folder /data/mlruns does not exist"
    fx.store = OK
    assert k.store_ready(wait=True) is True and k.message == ""


def test_waiting_for_the_store_is_logged_every_few_seconds_not_every_look(fx, caplog):
    fx.store = GONE
    k = keeper(fx)
    for _ in range(10):  # one look a second, as the daemon does
        k.store_ready(wait=True)
        fx.now += 1.0
    assert caplog.text.count("waiting for the store") == 2


def test_after_waiting_the_store_is_back_and_the_server_starts(fx, caplog):
    caplog.set_level(logging.INFO, logger="guard.daemon")
    fx.store = GONE
    k = keeper(fx)
    k.store_ready(wait=True)
    fx.store = OK
    assert k.store_ready(wait=True)
    k.start()
    run_for(k, fx, 1.0)
    assert k.phase is Phase.RUNNING
    assert "store is back: /data/mlruns" in caplog.text


def test_store_lost_ends_the_server_and_back_starts_it_again(fx, caplog):
    k = serving(fx)
    first = fx.server
    fx.store = GONE
    run_for(k, fx, STORE_CHECK_INTERVAL + 0.5)
    assert k.phase is Phase.WAITING_STORE and k.paused.is_set() and not k.store_ok
    assert first.stopped_with is not None
    assert k.sup.last_reason == "store lost: store folder /data/mlruns does not exist"
    assert k.message == "waiting for the store: store folder /data/mlruns does not exist"
    assert "store lost, pausing the server" in caplog.text
    run_for(k, fx, 30.0)
    assert len(fx.servers) == 1  # nothing starts over a store that is not there
    assert caplog.text.count("store lost") == 1
    fx.store = OK
    run_for(k, fx, STORE_CHECK_INTERVAL + 1.0)
    assert k.phase is Phase.RUNNING and len(fx.servers) == 2
    assert not k.paused.is_set() and k.message == ""


def test_the_store_is_looked_at_every_interval_not_every_tick(fx):
    k = serving(fx)
    looks = []
    fx.inspect_store = lambda: looks.append(fx.now) or OK  # type: ignore[method-assign]
    run_for(k, fx, 10.0)
    assert 4 <= len(looks) <= 6


# ---- shutdown ------------------------------------------------------------------------------

def test_shutdown_ends_the_tree_and_orphans_and_forgets_the_pids(fx):
    k = serving(fx)
    fx.ours = [proc(77)]
    k.begin_stop()
    assert k.phase is Phase.STOPPING
    k.stop()
    assert k.phase is Phase.STOPPED
    assert [r.pid for r in fx.server.stopped_with or []] == [100, 101, 77]
    assert fx.forgot
    assert k.survivors == [] and to_json(k.snapshot().server) == {
        "pid": None, "tree": [], "url": SITE.url, "started_at": None,
        "health": {"ok": False, "detail": "server ended: daemon stopping", "at": fx.now}}


def test_shutdown_ends_the_tree_even_when_the_state_folder_cannot_be_written(fx):
    k = serving(fx)
    fx.ours = [proc(77)]

    def full(*_args) -> None:
        raise OSError(28, "No space left on device")

    fx.save_pids = full  # type: ignore[method-assign]
    fx.forget_pids = full  # type: ignore[method-assign]
    k.begin_stop()
    k.stop()
    assert [r.pid for r in fx.server.stopped_with or []] == [100, 101, 77]
    assert k.phase is Phase.STOPPED and k.survivors == []


def test_ending_the_server_on_restart_records_that_none_is_left(fx):
    k = serving(fx)
    k.restart(fx.now)
    assert fx.server.stopped_with is not None and fx.saved[-1] == []


def test_shutdown_reports_what_survived(fx):
    k = serving(fx)
    fx.server.survivors = [101]
    k.stop()
    assert k.survivors == [101]


def test_shutdown_without_a_server_still_ends_orphans(fx):
    k = keeper(fx)
    fx.ours = [proc(66)]
    k.stop()
    assert fx.ended == [[66]] and k.phase is Phase.STOPPED
