"""What must wait before its location is rewritten: work a direct-file client may be doing."""

from __future__ import annotations

import pytest

from guard.portability.rewrite import experiment_wait, in_flight

NOW = 1_800_000_000_000  # ms
HOUR = 3_600_000
GRACE = 72 * HOUR


@pytest.mark.parametrize("kind,doc,expected", [
    ("run", {"status": 1, "start_time": NOW - HOUR}, True),           # RUNNING
    ("run", {"status": 2, "start_time": NOW - HOUR}, True),           # SCHEDULED
    ("run", {"status": 3, "start_time": NOW - HOUR}, False),          # FINISHED
    ("run", {"status": 4, "start_time": NOW - HOUR}, False),          # FAILED
    ("run", {"status": 1, "start_time": NOW - 73 * HOUR}, False),     # abandoned
    ("run", {"status": 1}, True),                                      # no start time: wait
    ("logged_model", {"status": 1, "creation_timestamp": NOW - HOUR}, True),   # PENDING
    ("logged_model", {"status": 2, "creation_timestamp": NOW - HOUR}, False),  # READY
    ("model_version", {"status": "PENDING_REGISTRATION", "creation_timestamp": NOW}, True),
    ("model_version", {"status": "READY", "creation_timestamp": NOW}, False),
    ("experiment", {"status": 1}, False),
])
def test_in_flight(kind, doc, expected):
    assert in_flight(kind, doc, NOW, GRACE) is expected


def test_experiment_with_a_running_run_waits_until_its_runs_finish():
    runs = [{"status": 3, "start_time": NOW - 5 * HOUR, "end_time": NOW - 4 * HOUR},
            {"status": 1, "start_time": NOW - 2 * HOUR}]
    why, until = experiment_wait({"creation_time": NOW - 9 * HOUR}, runs, NOW, 600_000, GRACE)
    assert "in progress" in why and until is None


def test_experiment_waits_for_a_quiet_spell_after_its_last_run():
    runs = [{"status": 3, "start_time": NOW - 200_000, "end_time": NOW - 100_000}]
    why, until = experiment_wait({"creation_time": NOW - HOUR}, runs, NOW, 600_000, GRACE)
    assert "100 s ago" in why and until == NOW - 100_000 + 600_000
    assert experiment_wait({"creation_time": NOW - HOUR}, runs, until, 600_000, GRACE) is None


def test_new_empty_experiment_waits_then_may_be_rewritten():
    doc = {"creation_time": NOW - 1000}
    assert experiment_wait(doc, [], NOW, 600_000, GRACE)[1] == NOW - 1000 + 600_000
    assert experiment_wait(doc, [], NOW + 600_000, 600_000, GRACE) is None


def test_zero_quiet_never_waits_even_for_future_timestamps():
    runs = [{"status": 3, "start_time": NOW + HOUR, "end_time": NOW + 2 * HOUR}]  # clock skew
    assert experiment_wait({"creation_time": NOW}, runs, NOW, 0, GRACE) is None
    assert experiment_wait({"creation_time": NOW}, runs, NOW, 600_000, GRACE) is not None


def test_abandoned_running_run_does_not_hold_its_experiment_forever():
    runs = [{"status": 1, "start_time": NOW - 100 * HOUR}]
    assert experiment_wait({"creation_time": NOW - 100 * HOUR}, runs, NOW, 600_000, GRACE) is None


def test_odd_timestamps_are_ignored_not_crashed_on():
    runs = [{"status": 3, "start_time": "yesterday", "end_time": True}, {}]
    assert experiment_wait({"creation_time": None}, runs, NOW, 600_000, GRACE) is None
