"""The pure parts of `guardctl status`: the verdict (assess) and the text (render)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from guard.core.parts import PartState
from guard.daemon.status import (
    DEGRADED,
    HEALTHY,
    NOT_RUNNING,
    DaemonView,
    HealthCheck,
    Report,
    ServerView,
    Stray,
    TreeEntry,
    Verdict,
    assess,
    render,
)
from guard.daemon.statusdoc import StatusDoc, parse_status
from guard.supervision.supervisor import Phase


def doc(**kw) -> StatusDoc:
    """A status document, as read from the JSON a daemon wrote."""
    base = {"daemon": {"pid": 4242, "create_time": 1.0, "started_at": 0.0},
            "phase": "running", "server": {"pid": 4300, "url": "http://127.0.0.1:5050"}}
    base.update(kw)
    parsed = parse_status(base)
    assert parsed is not None
    return parsed


# --- assess -----------------------------------------------------------------------------------

@pytest.mark.parametrize("missing", [None, {}, [], "not a document"])
def test_no_status_file_is_not_running(missing):
    v = assess(parse_status(missing), daemon_alive=False, server_alive=False, health_ok=False)
    assert isinstance(v, Verdict)
    assert v.label == NOT_RUNNING
    assert v.exit_code == 3
    assert "no status file" in v.reason


def test_dead_daemon_is_not_running_and_names_its_pid():
    v = assess(doc(), daemon_alive=False, server_alive=True, health_ok=True)
    assert v.label == NOT_RUNNING
    assert v.exit_code == 3
    assert "pid 4242" in v.reason
    assert "guardctl run" in v.reason


def test_dead_daemon_without_daemon_section_still_reports():
    v = assess(parse_status({"phase": "running"}), daemon_alive=False, server_alive=False,
               health_ok=False)
    assert v.label == NOT_RUNNING
    assert "pid None" in v.reason


@pytest.mark.parametrize("phase, extra, fragments", [
    ("backoff", {"last_reason": "server exited with code 1"},
     ["server backoff", "server exited with code 1"]),
    ("crash loop", {"last_reason": "crash loop: 5 failures within 300 s"},
     ["server crash loop", "5 failures within 300 s"]),
    ("waiting for store", {"message": "store folder /s/mlruns is empty",
                           "last_reason": "older reason"},
     ["server waiting for store", "store folder /s/mlruns is empty"]),
    ("starting", {}, ["server starting"]),
])
def test_non_running_phase_is_degraded_with_the_reason(phase, extra, fragments):
    v = assess(doc(phase=phase, **extra), daemon_alive=True, server_alive=False, health_ok=False)
    assert v.label == DEGRADED
    assert v.exit_code == 1
    for fragment in fragments:
        assert fragment in v.reason


def test_message_takes_precedence_over_last_reason():
    v = assess(doc(phase="waiting for store", message="M", last_reason="R"), True, False, False)
    assert v.reason == "server waiting for store: M"


def test_phase_without_reason_has_no_dangling_colon():
    v = assess(doc(phase="starting"), True, False, False)
    assert v.reason == "server starting"


def test_running_but_server_dead_is_degraded():
    v = assess(doc(), daemon_alive=True, server_alive=False, health_ok=False)
    assert v.label == DEGRADED
    assert v.exit_code == 1
    assert "server process is gone" in v.reason


def test_running_alive_but_health_fails_is_degraded():
    v = assess(doc(), daemon_alive=True, server_alive=True, health_ok=False)
    assert v.label == DEGRADED
    assert v.exit_code == 1
    assert "/health" in v.reason


def test_all_good_is_healthy():
    v = assess(doc(), daemon_alive=True, server_alive=True, health_ok=True)
    assert v == Verdict(HEALTHY, "serving")
    assert v.exit_code == 0


def test_health_ok_does_not_hide_a_dead_server():
    v = assess(doc(), daemon_alive=True, server_alive=False, health_ok=True)
    assert v.label == DEGRADED


# --- render -----------------------------------------------------------------------------------

def healthy_report() -> Report:
    return Report(
        state=HEALTHY, exit_code=0, reason="serving",
        daemon=DaemonView(4242, True, 3725.0),
        phase=Phase.RUNNING,
        server=ServerView(4300, (TreeEntry(4300, True), TreeEntry(4301, False)),
                          "http://127.0.0.1:5050", HealthCheck(True, "200 OK")),
        restarts=2, last_reason="server exited with code 1",
        store="/sync/mlruns", host_id="lab-pc", mlflow_version="3.1.0",
        guard_version="0.1.0", config_file="/etc/mlflow-guard/config.yaml",
        state_dir="/var/lib/guard", log_file="/var/lib/guard/guard.log",
        server_log_file="/var/lib/guard/server.log", status_age_s=1.0,
    )


def not_running_report() -> Report:
    return Report(
        state=NOT_RUNNING, exit_code=3,
        reason="no status file: the daemon has not run with this state folder",
        host_id="lab-pc",
        state_dir="/home/a/.local/state/mlflow-guard",
        log_file="/home/a/.local/state/mlflow-guard/guard.log",
        server_log_file="/home/a/.local/state/mlflow-guard/server.log",
        strays=(Stray(777, "bob", "mlflow ui --backend-store-uri /sync/mlruns"),),
    )


def test_render_healthy():
    text = render(healthy_report())
    lines = text.splitlines()
    assert lines[0] == "mlflow-guard: OK - serving"
    assert "pid 4242, up 1h 02m" in text
    assert "running; pid 4300 (tree: 4300, 4301 (gone))" in text
    assert "http://127.0.0.1:5050" in text
    assert "health: 200 OK" in text
    assert "restarts  2; last reason: server exited with code 1" in text
    assert "store     /sync/mlruns" in text
    assert "host_id   lab-pc" in text
    assert "mlflow    3.1.0" in text
    assert "config    /etc/mlflow-guard/config.yaml" in text
    assert "/var/lib/guard/guard.log" in text
    assert "/var/lib/guard/server.log" in text
    assert lines[-1] == "  strays    none"
    assert "STRAYS" not in text


def test_render_not_running():
    text = render(not_running_report())
    lines = text.splitlines()
    assert lines[0] == ("mlflow-guard: NOT RUNNING - no status file: the daemon has not run "
                        "with this state folder")
    assert "  daemon    not running" in lines
    assert "url" not in text  # no server lines without a live daemon
    assert "  restarts  0" in lines
    assert "last reason" not in text
    assert "store     (not configured)" in text
    assert "mlflow    -" in text
    assert "config    (defaults and flags only)" in text
    assert "STRAYS    MLflow servers over this store not started by the guard:" in text
    assert "pid 777 (bob): mlflow ui --backend-store-uri /sync/mlruns" in text
    assert "strays    none" not in text


def test_render_degraded_and_long_stray_command_is_cut():
    r = replace(healthy_report(), state=DEGRADED, reason="the server does not answer /health",
                strays=(Stray(9, None, "x" * 300),))
    text = render(r)
    assert text.splitlines()[0] == "mlflow-guard: DEGRADED - the server does not answer /health"
    stray_line = [ln for ln in text.splitlines() if "pid 9 " in ln][0]
    assert stray_line.endswith("x" * 120)
    assert "x" * 121 not in stray_line


def test_render_empty_tree_shows_dash():
    r = healthy_report()
    r = replace(r, server=replace(r.server, tree=()))
    assert "(tree: -)" in render(r)


def test_render_warns_about_failed_parts_not_reported_elsewhere():
    r = replace(healthy_report(), parts={
        "server": PartState(None, False, 1.0),
        "rewrite": PartState("rewrite thread failed: OSError(5); rewrites stopped until restart"),
        "gc": PartState("AccessDenied: psutil"),
        "vault": PartState("vault thread failed: x"),  # the vault's own lines say it
    })
    lines = render(r).splitlines()
    assert ("  WARNING   rewrite: rewrite thread failed: OSError(5); rewrites stopped until "
            "restart") in lines
    assert "  WARNING   gc: AccessDenied: psutil" in lines
    assert not any("server:" in ln or "vault thread failed" in ln for ln in lines)


def test_verdict_labels_are_enum_members_with_the_json_words_of_before():
    import json

    from guard.daemon.status import Health

    assert assess(None, False, False, False).label is Health.NOT_RUNNING
    assert assess(doc(), True, True, True).label is Health.HEALTHY
    assert json.dumps([h for h in Health]) == '["healthy", "degraded", "not running"]'
    assert [Verdict(h, "").exit_code for h in Health] == [0, 1, 3]
