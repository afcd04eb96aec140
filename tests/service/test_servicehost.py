"""guard.service.servicehost's pure parts: the SERVICE_STATUS of each report, the exit codes
Windows sees, and the daemon's log lines reaching the event log."""

from __future__ import annotations

import logging

from guard.service.servicehost import (
    RUNNING,
    START_PENDING,
    STOP_PENDING,
    STOPPED,
    EventLogHandler,
    exit_codes,
    status,
)


def test_each_state_reports_what_windows_expects():
    # (type, state, accepted, win32 code, specific code, checkpoint, wait hint)
    assert status(START_PENDING, 3, 15000) == (0x10, 2, 0x5, 0, 0, 3, 15000)
    assert status(RUNNING, 4, 999) == (0x10, 4, 0x5, 0, 0, 0, 0)
    assert status(STOP_PENDING, 5, 40000) == (0x10, 3, 0, 0, 0, 5, 40000)
    assert status(STOPPED, 6, 0, exit_code=0) == (0x10, 1, 0, 0, 0, 0, 0)
    assert status(STOPPED, 6, 0, exit_code=2) == (0x10, 1, 0, 1066, 2, 0, 0)


def test_a_failed_exit_is_a_service_specific_error():
    assert exit_codes(0) == (0, 0)
    assert exit_codes(1) == (1066, 1) and exit_codes(2) == (1066, 2)


def test_the_event_log_gets_warnings_and_errors_through_the_manager():
    events: list[tuple[int, str]] = []

    class Manager:
        def report(self, state: str, wait_hint_ms: int = 0, exit_code: int = 0) -> None: ...

        def event(self, level: int, message: str) -> None:
            events.append((level, message))

    logger = logging.getLogger("guard.test.eventlog")
    logger.propagate = False
    handler = EventLogHandler(Manager())
    logger.addHandler(handler)
    try:
        logger.setLevel(logging.DEBUG)
        logger.info("chatty")
        logger.warning("the store is not mounted")
        logger.error("the server died")
    finally:
        logger.removeHandler(handler)
    assert events == [(logging.WARNING, "the store is not mounted"),
                      (logging.ERROR, "the server died")]
