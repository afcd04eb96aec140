"""The supervisor state machine, driven with plain float times."""

from __future__ import annotations

from dataclasses import replace

import pytest

from guard.supervision.supervisor import (
    Phase,
    Policy,
    State,
    backoff_delay,
    due,
    exited,
    failed,
    healthy,
    probed,
    resumed,
    started,
    stopped,
    stopping,
    store_back,
    store_lost,
    waiting_for_store,
)

POLICY = Policy(backoff_initial=1.0, backoff_max=60.0, crash_loop_count=5,
                crash_loop_window=300.0, startup_timeout=90.0, health_failures=3,
                stable_after=60.0)


def running(now: float = 0.0, s: State | None = None, policy: Policy = POLICY) -> State:
    """Start the server at `now` and let the first probe (at the same time) succeed."""
    s = started(s or State(), now)
    s, end = probed(s, True, now, policy)
    assert s.phase is Phase.RUNNING and end is False
    return s


# --- first start and the happy path -----------------------------------------------------------

def test_fresh_state_is_stopped_and_due_at_once():
    s = State()
    assert s.phase is Phase.STOPPED
    assert s.starts == 0
    assert s.restarts == 0
    assert due(s, 0.0) is True
    assert healthy(s) is False


def test_started_enters_starting():
    s = started(State(), 10.0)
    assert s.phase is Phase.STARTING
    assert s.starts == 1
    assert s.started_at == 10.0
    assert s.next_start_at is None
    assert s.healthy_since is None
    assert due(s, 10.0) is False
    assert due(s, 1e9) is False
    assert healthy(s) is False


def test_healthy_probe_while_starting_enters_running():
    s = started(State(), 10.0)
    s, end = probed(s, True, 12.5, POLICY)
    assert end is False
    assert s.phase is Phase.RUNNING
    assert s.healthy_since == 12.5
    assert s.failed_probes == 0
    assert healthy(s) is True
    assert due(s, 1e9) is False


def test_stopped_after_a_start_is_not_due():
    s = started(State(), 0.0)
    s = replace(s, phase=Phase.STOPPED)
    assert due(s, 100.0) is False


# --- probes -----------------------------------------------------------------------------------

def test_failed_probe_while_starting_before_timeout_changes_nothing():
    s = started(State(), 0.0)
    s2, end = probed(s, False, 30.0, POLICY)
    assert end is False
    assert s2 == s
    assert s2.phase is Phase.STARTING


def test_startup_timeout_is_a_failure_that_ends_the_tree():
    s = started(State(), 100.0)
    s, end = probed(s, False, 100.0 + 90.0, POLICY)  # exactly at the limit: still waiting
    assert end is False and s.phase is Phase.STARTING
    s, end = probed(s, False, 100.0 + 90.5, POLICY)
    assert end is True
    assert s.phase is Phase.BACKOFF
    assert s.last_reason == "not healthy 90 s after start"
    assert s.streak == 1
    assert s.failures == (190.5,)
    assert s.next_start_at == 190.5 + 1.0


def test_k_failed_probes_in_a_row_back_off_and_end_the_tree():
    s = running(0.0)
    s, end = probed(s, False, 5.0, POLICY)
    assert (s.phase, s.failed_probes, end) == (Phase.RUNNING, 1, False)
    s, end = probed(s, False, 10.0, POLICY)
    assert (s.phase, s.failed_probes, end) == (Phase.RUNNING, 2, False)
    assert healthy(s) is True
    s, end = probed(s, False, 15.0, POLICY)
    assert end is True
    assert s.phase is Phase.BACKOFF
    assert s.last_reason == "3 health probes in a row failed"
    assert s.failed_probes == 0
    assert s.healthy_since is None
    assert s.next_start_at == 16.0
    assert healthy(s) is False


def test_health_failures_policy_is_respected():
    policy = Policy(health_failures=1)
    s = running(0.0, policy=policy)
    s, end = probed(s, False, 5.0, policy)
    assert end is True
    assert s.phase is Phase.BACKOFF
    assert s.last_reason == "1 health probes in a row failed"


def test_a_success_in_between_resets_the_failed_probe_count():
    s = running(0.0)
    s, _ = probed(s, False, 5.0, POLICY)
    s, _ = probed(s, False, 10.0, POLICY)
    s, end = probed(s, True, 15.0, POLICY)
    assert (s.failed_probes, end, s.phase) == (0, False, Phase.RUNNING)
    s, end = probed(s, False, 20.0, POLICY)
    assert (s.failed_probes, end, s.phase) == (1, False, Phase.RUNNING)
    s, end = probed(s, False, 25.0, POLICY)
    assert (s.failed_probes, end, s.phase) == (2, False, Phase.RUNNING)
    s, end = probed(s, False, 30.0, POLICY)
    assert end is True and s.phase is Phase.BACKOFF


@pytest.mark.parametrize("phase", [Phase.BACKOFF, Phase.CRASH_LOOP, Phase.WAITING_STORE,
                                   Phase.STOPPED, Phase.STOPPING])
@pytest.mark.parametrize("ok", [True, False])
def test_probes_outside_starting_and_running_are_ignored(phase, ok):
    s = State(phase=phase, starts=2, failed_probes=0, next_start_at=5.0)
    s2, end = probed(s, ok, 1000.0, POLICY)
    assert s2 == s
    assert end is False


# --- exits ------------------------------------------------------------------------------------

def test_exit_while_running_backs_off():
    s = running(0.0)
    s = exited(s, 1, 20.0, POLICY)
    assert s.phase is Phase.BACKOFF
    assert s.last_reason == "server exited with code 1"
    assert s.streak == 1
    assert s.failures == (20.0,)
    assert s.next_start_at == 21.0
    assert s.healthy_since is None


def test_exit_while_starting_backs_off():
    s = started(State(), 0.0)
    s = exited(s, None, 3.0, POLICY)
    assert s.phase is Phase.BACKOFF
    assert s.last_reason == "server exited with code None"
    assert s.next_start_at == 4.0


@pytest.mark.parametrize("phase", [Phase.BACKOFF, Phase.CRASH_LOOP, Phase.STOPPED,
                                   Phase.STOPPING, Phase.WAITING_STORE])
def test_exit_in_other_phases_is_ignored(phase):
    s = State(phase=phase, starts=3, streak=2, failures=(1.0,), next_start_at=9.0)
    assert exited(s, 1, 5.0, POLICY) == s


# --- backoff ----------------------------------------------------------------------------------

@pytest.mark.parametrize("streak, delay", [(0, 0.0), (-1, 0.0), (1, 1.0), (2, 2.0), (3, 4.0),
                                           (4, 8.0), (5, 16.0), (6, 32.0), (7, 60.0),
                                           (8, 60.0), (50, 60.0)])
def test_backoff_delay_doubles_and_is_capped(streak, delay):
    assert backoff_delay(streak, POLICY) == delay


def test_backoff_delay_uses_initial_and_max():
    policy = Policy(backoff_initial=0.5, backoff_max=3.0)
    assert [backoff_delay(n, policy) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_next_start_at_follows_the_backoff_sequence():
    # Crash loop disabled in practice (huge count) so the sequence can run long.
    policy = Policy(backoff_initial=1.0, backoff_max=8.0, crash_loop_count=100,
                    crash_loop_window=300.0)
    s = State()
    now = 0.0
    waits = []
    for _ in range(6):
        assert due(s, now)
        s = started(s, now)
        now += 0.5
        s = exited(s, 1, now, policy)
        assert s.phase is Phase.BACKOFF
        waits.append(s.next_start_at - now)
        assert not due(s, s.next_start_at - 0.01)
        now = s.next_start_at
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert s.streak == 6
    assert s.starts == 6
    assert s.restarts == 5


def test_due_only_from_next_start_at():
    s = exited(running(0.0), 1, 10.0, POLICY)
    assert s.next_start_at == 11.0
    assert due(s, 10.0) is False
    assert due(s, 10.999) is False
    assert due(s, 11.0) is True
    assert due(s, 500.0) is True


def test_backoff_without_next_start_is_not_due():
    assert due(State(phase=Phase.BACKOFF, starts=1, next_start_at=None), 1e9) is False


# --- crash loop -------------------------------------------------------------------------------

def test_crash_loop_after_count_failures_within_window():
    s = State()
    now = 0.0
    for i in range(4):
        s = started(s, now)
        s = exited(s, 1, now + 1.0, POLICY)
        assert s.phase is Phase.BACKOFF, i
        now = s.next_start_at
    s = started(s, now)
    s = exited(s, 3, now + 1.0, POLICY)
    assert s.phase is Phase.CRASH_LOOP
    assert len(s.failures) == 5
    assert s.next_start_at is None
    assert "crash loop: 5 failures within 300 s" in s.last_reason
    assert "last: server exited with code 3" in s.last_reason
    assert "guardctl restart" in s.last_reason
    assert due(s, now + 10_000.0) is False
    assert healthy(s) is False


def test_crash_loop_via_failed_probes():
    policy = Policy(crash_loop_count=2, crash_loop_window=300.0, health_failures=1)
    s = running(0.0, policy=policy)
    s, end = probed(s, False, 5.0, policy)
    assert end and s.phase is Phase.BACKOFF
    s = running(s.next_start_at, s, policy=policy)
    s, end = probed(s, False, 20.0, policy)
    assert end is True
    assert s.phase is Phase.CRASH_LOOP
    assert "last: 1 health probes in a row failed" in s.last_reason


def test_failures_spread_wider_than_the_window_never_crash_loop():
    # one failure every 100 s with a 300 s window: never more than 3 in the window
    policy = Policy(crash_loop_count=4, crash_loop_window=300.0, backoff_max=1.0,
                    stable_after=1e9)
    s = State()
    for i in range(20):
        t = i * 100.0
        s = started(s, t)
        s = exited(s, 1, t + 1.0, policy)
        assert s.phase is Phase.BACKOFF, f"crash loop after failure {i + 1}"
        assert len(s.failures) <= 3
        assert all(s.failures[-1] - t_ < 300.0 for t_ in s.failures)
    assert s.starts == 20


def test_failures_just_inside_the_window_crash_loop():
    policy = Policy(crash_loop_count=3, crash_loop_window=300.0)
    s = failed(State(phase=Phase.RUNNING), "x", 0.0, policy)
    s = failed(s, "x", 150.0, policy)
    s = failed(s, "x", 299.0, policy)
    assert s.phase is Phase.CRASH_LOOP


def test_failure_exactly_window_old_has_left_the_window():
    policy = Policy(crash_loop_count=3, crash_loop_window=300.0)
    s = failed(State(phase=Phase.RUNNING), "x", 0.0, policy)
    s = failed(s, "x", 150.0, policy)
    s = failed(s, "x", 300.0, policy)
    assert s.phase is Phase.BACKOFF
    assert s.failures == (150.0, 300.0)


# --- resume -----------------------------------------------------------------------------------

def test_resumed_clears_failures_and_is_due_at_once():
    s = State()
    now = 0.0
    for _ in range(5):
        s = started(s, now)
        s = exited(s, 1, now + 1.0, POLICY)
        now = (s.next_start_at or now + 1.0)
    assert s.phase is Phase.CRASH_LOOP
    s = resumed(s, 1000.0)
    assert s.phase is Phase.BACKOFF
    assert s.failures == ()
    assert s.streak == 0
    assert s.next_start_at == 1000.0
    assert s.last_reason == "restart requested"
    assert due(s, 1000.0) is True
    # after the resume a single failure is an ordinary 1 s backoff again
    s = started(s, 1000.0)
    s = exited(s, 1, 1001.0, POLICY)
    assert s.phase is Phase.BACKOFF
    assert s.failures == (1001.0,)
    assert s.next_start_at == 1002.0


# --- counters ---------------------------------------------------------------------------------

def test_restarts_is_starts_minus_one():
    s = State()
    assert s.restarts == 0
    s = started(s, 0.0)
    assert (s.starts, s.restarts) == (1, 0)
    s = exited(s, 1, 1.0, POLICY)
    s = started(s, s.next_start_at)
    assert (s.starts, s.restarts) == (2, 1)
    s = exited(s, 1, 5.0, POLICY)
    s = started(s, s.next_start_at)
    assert (s.starts, s.restarts) == (3, 2)


def test_streak_resets_after_stable_after_seconds_healthy():
    s = exited(running(0.0), 1, 5.0, POLICY)
    s = exited(running(s.next_start_at, s), 1, 10.0, POLICY)
    assert s.streak == 2
    s = running(100.0, s)
    assert s.healthy_since == 100.0
    s, _ = probed(s, True, 159.0, POLICY)  # healthy 59 s: not yet stable
    assert s.streak == 2
    s, _ = probed(s, True, 160.0, POLICY)  # healthy 60 s: stable
    assert s.streak == 0
    s = exited(s, 1, 170.0, POLICY)
    assert s.streak == 1
    assert s.next_start_at == 171.0  # back to the initial delay


def test_streak_kept_when_the_server_fails_before_it_is_stable():
    s = exited(running(0.0), 1, 5.0, POLICY)
    s = running(s.next_start_at, s)
    s, _ = probed(s, True, 30.0, POLICY)
    s = exited(s, 1, 40.0, POLICY)
    assert s.streak == 2
    assert s.next_start_at == 42.0


def test_failed_probes_do_not_reset_healthy_since_for_stability():
    s = running(0.0)
    s, _ = probed(s, False, 30.0, POLICY)
    s, _ = probed(s, True, 61.0, POLICY)
    assert s.healthy_since == 0.0
    assert s.failed_probes == 0


# --- the store, and the daemon's own stop -----------------------------------------------------

def test_waiting_for_store_keeps_the_start_count_and_reason_only():
    s = failed(running(0.0), "server exited with code 1", 5.0, POLICY)
    w = waiting_for_store(s)
    assert w.phase is Phase.WAITING_STORE
    assert (w.starts, w.last_reason) == (1, "server exited with code 1")
    assert (w.failures, w.streak, w.next_start_at, w.started_at) == ((), 0, None, None)
    assert due(w, 1e9) is False and healthy(w) is False
    assert waiting_for_store(s, "why").last_reason == "why"


def test_store_lost_while_running_waits_and_forgets_the_server():
    s = running(0.0)
    lost = store_lost(s, "store folder /s does not exist")
    assert lost.phase is Phase.WAITING_STORE
    assert lost.last_reason == "store lost: store folder /s does not exist"
    assert lost.starts == 1 and lost.healthy_since is None and lost.started_at is None
    assert due(lost, 1e9) is False


@pytest.mark.parametrize("phase", [Phase.STARTING, Phase.BACKOFF, Phase.CRASH_LOOP])
def test_store_lost_from_any_serving_phase_waits(phase):
    s = replace(running(0.0), phase=phase)
    assert store_lost(s, "gone").phase is Phase.WAITING_STORE


def test_store_lost_while_already_waiting_changes_nothing():
    w = waiting_for_store(State(), "store folder /s is empty")
    assert store_lost(w, "gone") == w


def test_store_back_starts_at_once_and_forgets_the_crash_loop():
    s = State()
    for t in range(5):
        s = failed(started(s, float(t)), "boom", float(t), POLICY)
    assert s.phase is Phase.CRASH_LOOP
    back = store_back(store_lost(s, "gone"), 100.0)
    assert back.phase is Phase.BACKOFF and back.next_start_at == 100.0
    assert back.failures == () and back.streak == 0
    assert due(back, 100.0) is True


def test_store_back_outside_waiting_changes_nothing():
    s = running(0.0)
    assert store_back(s, 10.0) == s


def test_stopping_then_stopped_keep_the_record_and_never_restart():
    s = failed(running(0.0), "server exited with code 1", 5.0, POLICY)
    going = stopping(s)
    assert going.phase is Phase.STOPPING
    assert (going.starts, going.last_reason, going.next_start_at) == (1, s.last_reason, None)
    assert due(going, 1e9) is False
    done = stopped(going)
    assert done.phase is Phase.STOPPED and done.starts == 1 and done.restarts == 0
    assert done.last_reason == s.last_reason
    assert due(done, 1e9) is False
