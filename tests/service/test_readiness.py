"""What the daemon tells a service manager, decided without clocks or sockets."""

from __future__ import annotations

from guard.service.readiness import Advice, Told, advise, status_line
from guard.supervision.supervisor import Phase

URL = "http://127.0.0.1:5050"


def step(phase, healthy, told, now, message="", every=10.0):
    return advise(phase, healthy, URL, message, told, now, every)


def test_not_ready_while_starting_but_the_start_timeout_is_extended():
    advice, told = step(Phase.STARTING, False, Told(), 0)
    assert not advice.ready and advice.extend and not advice.watchdog
    assert advice.status == "starting"
    again, told = step(Phase.STARTING, False, told, 5)
    assert again == Advice()  # nothing new before `every` passed
    later, _ = step(Phase.STARTING, False, told, 10)
    assert later.extend and later.status is None


def test_ready_once_healthy_and_only_once():
    _, told = step(Phase.STARTING, False, Told(), 0)
    advice, told = step(Phase.RUNNING, True, told, 1)
    assert advice.ready and not advice.extend and advice.status == f"serving {URL}"
    advice, told = step(Phase.RUNNING, True, told, 2)
    assert advice == Advice()
    advice, _ = step(Phase.RUNNING, True, told, 11)
    assert advice.watchdog and not advice.ready


def test_running_but_not_healthy_is_never_ready():
    advice, _ = step(Phase.RUNNING, False, Told(), 0)
    assert not advice.ready and not advice.extend and not advice.watchdog


def test_watchdog_withheld_while_health_probes_fail_and_in_a_crash_loop():
    _, told = step(Phase.RUNNING, True, Told(), 0)
    advice, told = step(Phase.RUNNING, False, told, 20)
    assert not advice.watchdog and advice.status == f"{URL} failing health probes"
    advice, _ = step(Phase.CRASH_LOOP, False, told, 40, "5 failures in 300 s")
    assert not advice.watchdog and advice.status == "crash loop: 5 failures in 300 s"


def test_watchdog_continues_while_the_daemon_restarts_the_server_or_waits_for_the_drive():
    _, told = step(Phase.RUNNING, True, Told(), 0)
    for i, phase in enumerate((Phase.BACKOFF, Phase.STARTING, Phase.WAITING_STORE), start=1):
        advice, told = step(phase, False, told, 10 * i)
        assert advice.watchdog and not advice.extend and not advice.ready, phase


def test_waiting_for_the_drive_before_ready_extends_the_start():
    advice, _ = step(Phase.WAITING_STORE, False, Told(), 0, "/mnt/nas/mlruns is missing")
    assert advice.extend and advice.status == "waiting for store: /mnt/nas/mlruns is missing"


def test_stopping_is_told_once():
    _, told = step(Phase.RUNNING, True, Told(), 0)
    advice, told = step(Phase.STOPPING, False, told, 1)
    assert advice.stopping and not advice.watchdog and advice.status == "stopping"
    advice, _ = step(Phase.STOPPED, False, told, 2)
    assert not advice.stopping and advice.status == "stopped"


def test_status_line():
    assert status_line(Phase.BACKOFF, False, URL, "") == "backoff"
    assert status_line(Phase.RUNNING, True, URL, "ignored") == f"serving {URL}"


def test_a_stuck_part_withholds_the_watchdog_until_it_moves_again():
    _, told = step(Phase.RUNNING, True, Told(), 0)
    advice, told = advise(Phase.RUNNING, True, URL, "", told, 20, 10.0, stuck=True)
    assert not advice.watchdog and not advice.extend
    advice, told = advise(Phase.RUNNING, True, URL, "", told, 40, 10.0, stuck=True)
    assert not advice.watchdog
    advice, _ = step(Phase.RUNNING, True, told, 41)
    assert advice.watchdog
    before_ready, _ = advise(Phase.STARTING, False, URL, "", Told(), 0, 10.0, stuck=True)
    assert not before_ready.extend  # nor is the start timeout extended
