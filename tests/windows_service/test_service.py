"""The Windows service class (windows_service/service.py) under pywin32's own calling sequence,
replayed by tests/windows_service/fakes.py, with a real daemon and a real MLflow server.

What Windows must see: START_PENDING (with wait hints, stop accepted) until the server answers
/health; RUNNING exactly once, at a moment the server is healthy; STOP_PENDING while the tree
is ended; one STOPPED carrying the daemon's exit code, and nothing after it.
"""

from __future__ import annotations

import pytest

from guard.service.servicehost import ERROR_SERVICE_SPECIFIC_ERROR
from tests.helpers.daemons import any_alive, free_port, read_status, wait_for
from tests.scenarios.test_service import healthy, write_config
from tests.windows_service.fakes import (
    RUNNING,
    START_PENDING,
    STOP_PENDING,
    STOPPED,
    host_service,
)

pytestmark = pytest.mark.integration  # a real daemon and MLflow server


def start(scm, cfg_path):
    import windows_service.service as service

    scm.options[("mlflow-guard", "config")] = str(cfg_path)
    return host_service(service.MlflowGuardService, scm)


def test_the_scm_hears_running_once_after_health_then_stop_pending_and_stopped(
        scm, tmp_path, new_store):
    port = free_port()
    health_at_running: list[bool] = []
    scm.on_running = lambda: health_at_running.append(healthy(port))
    instance, thread, outcome = start(scm, write_config(tmp_path, new_store, port))
    tree: set[int] = set()
    try:
        wait_for(lambda: "running" in scm.states(), what="the service to report running")
        assert health_at_running == [True], "RUNNING came before the server answered /health"
        first_running = scm.states().index("running")
        starting = scm.statuses[:first_running]
        assert starting and all(s[1] == START_PENDING for s in starting)
        assert all(s[6] > 0 for s in starting), "a start-pending report without a wait hint"
        ours = starting[1:]  # the first is pywin32's own, before SvcRun
        assert [s[5] for s in ours] == sorted({s[5] for s in ours}), "checkpoints must grow"
        assert all(s[2] & 1 for s in ours), "stop must be accepted while starting"
        assert ("info", f"serving MLflow at http://127.0.0.1:{port}") in scm.events
        tree = {r["pid"] for r in read_status(tmp_path / "state")["server"]["tree"]}
        assert tree and any_alive(tree)

        instance.SvcStop()  # the SCM's stop control
        thread.join(60)
        assert not thread.is_alive()
        assert outcome == [("ended", 0)]
        states = scm.states()
        assert states.count("running") == 1
        assert states[-2:] == ["stop pending", "stopped"]
        assert scm.statuses[-1][3:5] == (0, 0)  # no error: the failure actions stay quiet
        assert scm.after_stopped == [], "a report after STOPPED"
        assert any_alive(tree) == []
    finally:
        if thread.is_alive():
            instance.SvcStop()
            thread.join(60)


def test_a_daemon_that_cannot_start_stops_the_service_with_its_exit_code(
        scm, tmp_path, new_store):
    import socket

    port = free_port()
    with socket.socket() as holder:  # the port is taken
        holder.bind(("127.0.0.1", port))
        holder.listen()
        instance, thread, outcome = start(scm, write_config(tmp_path, new_store, port))
        thread.join(60)
    assert outcome == [("ended", 2)]
    assert "running" not in scm.states()
    assert scm.statuses[-1][1] == STOPPED
    # a non-zero win32 exit code is what runs the failure actions; the daemon's code travels
    # in the service-specific one
    assert scm.statuses[-1][3:5] == (ERROR_SERVICE_SPECIFIC_ERROR, 2)
    assert scm.after_stopped == []
    errors = [m for level, m in scm.events if level == "error"]
    assert any("cannot start" in m and f"port {port}" in m for m in errors), errors
    assert ("error", "mlflow-guard stopped (exit code 2)") in scm.events


def test_a_broken_config_stops_the_service_with_exit_code_2_and_says_why(scm, tmp_path):
    bad = tmp_path / "guard.yaml"
    bad.write_text("store: [unclosed\n")
    instance, thread, outcome = start(scm, bad)
    thread.join(30)
    assert outcome == [("ended", 2)]
    assert scm.statuses[-1][1] == STOPPED and scm.statuses[-1][3:5] == (1066, 2)
    assert any(level == "error" and "cannot start" in m and str(bad) in m
               for level, m in scm.events), scm.events


def test_a_service_waiting_for_its_store_can_be_stopped(scm, tmp_path):
    """A sync drive that is not there yet: the daemon waits (START_PENDING, stop accepted),
    and a stop then ends it cleanly without ever reporting RUNNING."""
    port = free_port()
    missing = tmp_path / "drive" / "mlruns"
    instance, thread, outcome = start(scm, write_config(tmp_path, missing, port))
    wait_for(lambda: len(scm.statuses) >= 2, what="the service's own first report")
    assert scm.statuses[1][1] == START_PENDING and scm.statuses[1][2] & 1
    instance.SvcStop()
    thread.join(60)
    assert outcome == [("ended", 0)]
    assert "running" not in scm.states()
    assert scm.states()[-2:] == ["stop pending", "stopped"]
    assert scm.statuses[-1][3:5] == (0, 0)


def test_pywin32s_own_svcrun_would_report_running_before_the_daemon_starts(scm):
    """Why SvcRun is replaced: pywin32's reports RUNNING first (this fails if the fake's
    ServiceFramework stops being pywin32's)."""
    import win32serviceutil

    class Plain(win32serviceutil.ServiceFramework):  # type: ignore[misc,name-defined]
        _svc_name_ = "plain"

        def SvcDoRun(self) -> None:
            pass

    instance, thread, outcome = host_service(Plain, scm, "plain")
    thread.join(10)
    assert [s[1] for s in scm.statuses] == [START_PENDING, RUNNING, STOP_PENDING, STOPPED]
    assert scm.statuses[-1][3:5] == (0, 0)


def test_the_scm_starts_the_service_with_pythons_own_service_host(scm):
    import windows_service.service as service

    service.main(["python.exe"])
    assert [n for n, _, _ in scm.calls] == ["Initialize", "PrepareToHostSingle",
                                           "StartServiceCtrlDispatcher"]
    assert scm.called("Initialize")[0][0] == ("mlflow-guard",)
    assert scm.called("PrepareToHostSingle")[0][0] == (service.MlflowGuardService,)
