"""The parts skeleton (guard.core.parts): threads and ticks, no processes (the watcher part's
fan-out: test_watch)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from guard.core.parts import Part, PartState, TickPart, state_of
from guard.core.watch import Change
from tests.helpers.daemons import wait_for
from tests.helpers.parts import Recorder


@pytest.fixture
def part():
    made = Recorder()
    yield made
    made.block.set()
    made.stop()


def test_a_thread_part_begins_once_then_handles_its_events_in_order(part):
    part.start()
    for name in ("a", "b", "c"):
        part.notice(Change.FILE, Path(name))
    wait_for(lambda: len(part.events()) == 3, 5, what="three events")
    assert part.begun == 1
    assert part.events() == [(Change.FILE, Path("a")), (Change.FILE, Path("b")),
                             (Change.FILE, Path("c"))]
    assert part.alive and part.error is None


def test_without_events_a_thread_part_goes_round_every_wait_seconds(part):
    part.start()
    wait_for(lambda: part.handled.count(None) >= 3, 5, what="rounds without events")
    first = part.last_tick
    time.sleep(0.15)
    assert part.last_tick is not None and first is not None and part.last_tick > first


def test_wake_makes_a_round_at_once():
    slow = Recorder(wait=30.0)
    slow.start()
    try:
        time.sleep(0.1)
        slow.wake()
        wait_for(lambda: slow.handled == [None], 2, what="a round after wake")
    finally:
        slow.stop()


def test_a_paused_part_drops_events_and_resumes(part):
    part.paused.set()
    part.start()
    part.notice(Change.FILE, Path("while-paused"))
    time.sleep(0.3)
    assert part.handled == []
    part.paused.clear()
    part.notice(Change.FILE, Path("after"))
    wait_for(lambda: part.events() == [(Change.FILE, Path("after"))], 5, what="event after pause")


def test_an_exception_ends_the_thread_and_becomes_its_error(part, caplog):
    caplog.set_level(logging.ERROR, logger="guard.daemon")
    part.fail_on = "bad"
    part.start()
    part.notice(Change.FILE, Path("bad"))
    wait_for(lambda: not part.alive, 5, what="the thread to end")
    assert part.error == ("recorder thread failed: RuntimeError('boom'); "
                          "nothing is recorded until restart")
    assert part.snapshot() == PartState(part.error, False, part.last_tick)
    record = next(r for r in caplog.records if "recorder thread failed" in r.getMessage())
    assert record.exc_info is not None  # the traceback is in the log


def test_stop_ends_the_thread_and_a_part_never_started_stops_quietly():
    idle = Recorder()
    idle.stop()  # never started: nothing to join
    busy = Recorder()
    busy.start()
    busy.stop()
    assert not busy.alive


def test_stop_gives_up_after_join_timeout_on_a_stuck_part(caplog):
    caplog.set_level(logging.WARNING, logger="guard.daemon")
    stuck = Recorder(join_timeout=0.2)
    stuck.start()
    stuck.notice(Change.FILE, Path("slow"))
    time.sleep(0.1)
    started = time.monotonic()
    stuck.stop()
    assert time.monotonic() - started < 2
    assert stuck.alive
    assert "still busy" in caplog.text
    stuck.block.set()
    wait_for(lambda: not stuck.alive, 5, what="the stuck thread to finish")


def test_drain_takes_every_waiting_event_and_skips_wakes():
    part = Recorder()
    part.notice(Change.FILE, Path("a"))
    part.wake()
    part.notice(Change.GONE, Path("b"))
    assert part.drain() == [(Change.FILE, Path("a")), (Change.GONE, Path("b"))]
    assert part.drain() == []


class Counter(TickPart):
    name = "counter"

    def __init__(self, every: float) -> None:
        super().__init__(every)
        self.rounds: list[float] = []
        self.fail = False

    def round(self, now: float) -> None:
        if self.fail:
            raise OSError("disk gone")
        self.rounds.append(now)


def test_a_tick_part_goes_round_at_most_every_interval():
    c = Counter(every=5.0)
    assert not c.ran
    for now in (100.0, 101.0, 104.9, 105.0, 106.0, 110.0):
        c.tick(now)
    assert c.rounds == [100.0, 105.0, 110.0]
    assert c.ran and c.last_tick is not None


def test_a_paused_tick_part_does_nothing_and_resumes_when_due():
    c = Counter(every=5.0)
    c.paused.set()
    c.tick(100.0)
    assert c.rounds == [] and not c.ran
    c.paused.clear()
    c.tick(101.0)
    assert c.rounds == [101.0]


def test_a_failing_round_is_the_error_until_a_good_one(caplog):
    caplog.set_level(logging.ERROR, logger="guard.daemon")
    c = Counter(every=1.0)
    c.fail = True
    c.tick(0.0)
    assert c.error == "OSError: disk gone"
    assert c.snapshot() == PartState("OSError: disk gone", False, c.last_tick)
    assert any(r.exc_info for r in caplog.records)
    c.fail = False
    c.tick(1.0)
    assert c.error is None and c.rounds == [1.0]


def test_both_kinds_are_parts():
    parts: list[Part] = [Counter(1.0), Recorder()]
    for p in parts:
        assert p.name and p.error is None and not p.paused.is_set() and p.last_tick is None
        p.tick(0.0)
        assert p.snapshot() == state_of(p) == PartState(None, False, p.last_tick)


# ---- what the daemon's supervision needs of the skeletons -----------------------------------

def test_a_failed_thread_part_restarts_with_a_new_thread_keeping_what_it_knows(part, caplog):
    caplog.set_level(logging.ERROR, logger="guard.daemon")
    part.fail_on = "bad"
    for name in ("a", "bad", "left"):  # "left" still waits in the inbox when "bad" fails
        part.notice(Change.FILE, Path(name))
    part.start()
    wait_for(lambda: part.crashes == 1 and not part.alive, 5, what="the thread to fail")
    part.notice(Change.FILE, Path("while-dead"))  # dropped: the restart's pass finds it
    assert part.inbox.qsize() == 1  # only "left"
    part.restart()
    assert part.alive and part.error is None
    wait_for(lambda: part.begun == 2, 5, what="begin() again")
    part.notice(Change.FILE, Path("after"))
    wait_for(lambda: Path("after") in [e[1] for e in part.events()], 5, what="a round after")
    assert [e[1].name for e in part.events()] == ["a", "after"]  # kept; nothing from while dead
    part.restart()  # a running part is left alone
    assert part.begun == 2 and part.crashes == 1


def test_a_stopped_or_never_failed_part_is_not_restarted():
    stopped = Recorder()
    stopped.start()
    stopped.stop()
    stopped.restart()
    assert not stopped.alive


def test_a_thread_part_waiting_for_work_is_idle_and_its_passes_report_progress(part):
    part.start()
    wait_for(lambda: part.idle, 5, what="the part to wait for work")
    part.notice(Change.FILE, Path("slow"))
    wait_for(lambda: not part.idle, 5, what="the part to be busy")
    before = part.last_tick
    time.sleep(0.05)
    part.progress()
    assert part.last_tick is not None and before is not None and part.last_tick > before
    assert part.deadline == 60.0 and part.held is None


def test_a_tick_part_counts_its_failed_rounds_and_restarts_at_once():
    c = Counter(every=100.0)
    c.fail = True
    c.tick(0.0)
    c.tick(1.0)  # not due: the round failed, but the part waits its interval
    assert c.crashes == 1 and c.alive and c.deadline is None and c.held is None
    c.fail = False
    c.restart()
    c.tick(2.0)
    assert c.rounds == [2.0] and c.error is None and c.ran
