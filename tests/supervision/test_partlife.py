"""A part's life under the server's restart rules (guard.supervision.partlife): pure."""

from __future__ import annotations

from dataclasses import replace

from guard.core.parts import PartPhase
from guard.supervision.partlife import Life, Seen, resumed, runs, step, stuck
from guard.supervision.supervisor import Policy

POLICY = Policy(backoff_initial=1.0, backoff_max=8.0, crash_loop_count=3,
                crash_loop_window=100.0, stable_after=60.0)


def crash(life: Life, now: float, error: str = "OSError: boom") -> Life:
    """The part raised once more; the daemon looks at it at `now`."""
    seen = Seen(crashes=life.crashes + 1, error=error, alive=False)
    after, restart = step(life, seen, now, POLICY)
    assert not restart
    return after


def test_a_working_part_stays_running():
    life, restart = step(Life(), Seen(last_tick=99.0, deadline=60.0), 100.0, POLICY)
    assert (life.phase, restart) == (PartPhase.RUNNING, False)


def test_a_failure_backs_off_then_the_part_is_restarted_once_due():
    life = crash(Life(), 10.0)
    assert life.phase is PartPhase.BACKOFF and life.next_start_at == 11.0
    assert life.last_error == "OSError: boom"
    seen = Seen(crashes=1, alive=False)
    assert step(life, seen, 10.5, POLICY) == (life, False)  # not yet
    after, restart = step(life, seen, 11.0, POLICY)
    assert restart and after.phase is PartPhase.RUNNING and after.restarts == 1
    assert after.last_error == "OSError: boom"  # kept for the status after the restart
    again, restart = step(after, Seen(crashes=1, alive=True), 11.5, POLICY)
    assert not restart and again.phase is PartPhase.RUNNING  # the same crash counts once


def test_the_backoff_doubles_like_the_servers_and_is_capped():
    policy = replace(POLICY, crash_loop_count=10)
    life, delays = Life(), []
    for i in range(6):
        now = 1000.0 * i  # far apart, but inside no window: crash_loop_window is 100 s
        life, _ = step(life, Seen(crashes=life.crashes + 1, alive=False), now, policy)
        assert life.next_start_at is not None
        delays.append(life.next_start_at - now)
        life = replace(life, phase=PartPhase.RUNNING, started_at=now)  # restarted, failed fast
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_part_that_ran_stably_starts_its_backoff_over():
    life = crash(Life(), 0.0)
    life, _ = step(life, Seen(crashes=1, alive=False), 1.0, POLICY)  # restarted at 1
    life, _ = step(life, Seen(crashes=1), 61.0, POLICY)  # 60 s without a failure
    assert life.streak == 0
    life = crash(life, 500.0)
    assert life.next_start_at == 501.0


def test_too_many_failures_within_the_window_is_a_crash_loop_until_guardctl_restart():
    life = Life()
    for now in (0.0, 10.0, 20.0):
        life = crash(life, now)
        if life.phase is PartPhase.BACKOFF:
            life, _ = step(life, Seen(crashes=life.crashes, alive=False), now + 5, POLICY)
    assert life.phase is PartPhase.CRASH_LOOP and len(life.failures) == 3
    assert step(life, Seen(crashes=3, alive=False), 10_000.0, POLICY) == (life, False)
    assert not runs(life)
    back = resumed(life, 10_000.0)
    assert back.phase is PartPhase.BACKOFF and back.failures == () and back.streak == 0
    after, restart = step(back, Seen(crashes=3, alive=False), 10_000.0, POLICY)
    assert restart and after.phase is PartPhase.RUNNING and runs(after)


def test_failures_outside_the_window_do_not_add_up_to_a_crash_loop():
    life = Life()
    for now in (0.0, 200.0, 400.0, 600.0):
        life = crash(life, now)
        assert life.phase is PartPhase.BACKOFF
        life, _ = step(life, Seen(crashes=life.crashes, alive=False), now + 50, POLICY)


def test_guardctl_restart_leaves_a_working_part_alone():
    for phase in (PartPhase.RUNNING, PartPhase.STUCK, PartPhase.HELD):
        life = Life(phase=phase)
        assert resumed(life, 5.0) is life


def test_a_part_due_for_restart_waits_while_the_store_is_away():
    life = crash(Life(), 0.0)
    waiting, restart = step(life, Seen(crashes=1, alive=False, paused=True), 50.0, POLICY)
    assert not restart and waiting.phase is PartPhase.BACKOFF
    _, restart = step(waiting, Seen(crashes=1, alive=False), 51.0, POLICY)
    assert restart


def test_a_busy_round_without_progress_past_the_deadline_is_stuck_until_it_moves():
    busy = Seen(alive=True, last_tick=100.0, deadline=60.0)
    assert not stuck(busy, 160.0) and stuck(busy, 160.5)
    life, restart = step(Life(), busy, 200.0, POLICY)
    assert life.phase is PartPhase.STUCK and not restart  # a thread cannot be ended
    life, _ = step(life, replace(busy, last_tick=199.0), 200.0, POLICY)
    assert life.phase is PartPhase.RUNNING


def test_waiting_for_work_a_dead_thread_or_no_deadline_is_never_stuck():
    old = Seen(alive=True, last_tick=0.0, deadline=60.0)
    assert not stuck(replace(old, idle=True), 1000.0)
    assert not stuck(replace(old, alive=False), 1000.0)
    assert not stuck(replace(old, deadline=None), 1000.0)
    assert not stuck(replace(old, last_tick=None), 1000.0)


def test_held_and_paused_are_shown_and_clear_by_themselves():
    life, _ = step(Life(), Seen(held="store is read-only (EROFS)"), 1.0, POLICY)
    assert life.phase is PartPhase.HELD and runs(life)
    life, _ = step(life, Seen(paused=True), 2.0, POLICY)
    assert life.phase is PartPhase.PAUSED
    life, _ = step(life, Seen(), 3.0, POLICY)
    assert life.phase is PartPhase.RUNNING


def test_a_held_part_that_also_raises_is_backed_off():
    life, _ = step(Life(), Seen(crashes=1, error="boom", held="disk full"), 1.0, POLICY)
    assert life.phase is PartPhase.BACKOFF and not runs(life)
