"""The pure parts of `guardctl status`: the verdict (assess) and the text (render)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from guard.core.parts import PartPhase, PartState
from guard.daemon.status import (
    DEGRADED,
    HEALTHY,
    NOT_RUNNING,
    STALE_AFTER,
    DaemonView,
    HealthCheck,
    Live,
    Orphan,
    Report,
    ServerView,
    Stray,
    TreeEntry,
    Verdict,
    assess,
    orphan_verdict,
    part_problem,
    parts_verdict,
    render,
    responding,
    summarize,
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
    assert v.reason == "the daemon is not running; start it with `guardctl run`"


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
        strays=(Stray(777, "bob", "mlflow ui --backend-store-uri /sync/mlruns", 5000,
                      "/sync/mlruns"),),
    )


def test_render_healthy():
    text = render(healthy_report())
    lines = text.splitlines()
    assert lines[0] == "mlflow-guard: OK - serving"
    assert "pid 4242, up 1h 02m" in text
    assert "running; pid 4300 (tree: 4300, 4301 (gone))" in text
    assert "http://127.0.0.1:5050" in text
    assert "health: answering" in text
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
    assert "mlflow    unknown" in text
    assert "config    (defaults and flags only)" in text
    assert "STRAYS    MLflow servers over this store not started by the guard:" in text
    assert "            pid 777 (bob), port 5000, store /sync/mlruns" in lines
    assert "strays    none" not in text


def test_render_degraded_and_each_stray_on_one_line_with_its_port_and_store():
    """A hand-started server was 7 lines of command line cut before its port: now one line
    each, with what a person needs to find and stop it."""
    cmd = "/opt/venv/bin/python /opt/venv/bin/mlflow server --backend-store-uri " + "x" * 300
    r = replace(healthy_report(), state=DEGRADED, reason="the server does not answer /health",
                strays=(Stray(9, None, cmd, 5001, "/sync/mlruns"),
                        Stray(10, "ann", cmd, None, None)))
    lines = render(r).splitlines()
    assert lines[0] == "mlflow-guard: DEGRADED - the server does not answer /health"
    at = lines.index("  STRAYS    MLflow servers over this store not started by the guard:")
    assert lines[at + 1:] == ["            pid 9, port 5001, store /sync/mlruns",
                              "            pid 10 (ann), port unknown"]
    assert "xxx" not in "\n".join(lines)


def test_render_without_a_server_process_says_so_and_no_empty_tree():
    r = healthy_report()
    assert "(tree: " not in render(replace(r, server=replace(r.server, tree=())))
    text = render(replace(r, phase=Phase.BACKOFF, server=ServerView(None, (), None,
                                                                    HealthCheck())))
    assert "  server    backoff; no server process" in text.splitlines()
    assert "  url       none yet  health: not checked" in text.splitlines()
    assert "pid None" not in text and "tree: -" not in text


@pytest.mark.parametrize("detail, words", [
    ("[Errno 111] Connection refused", "not answering: connection refused"),
    ("timed out", "not answering: timed out"),
    ("HTTP 500", "not answering: HTTP 500"),
])
def test_a_server_not_answering_is_said_in_words(detail, words):
    r = healthy_report()
    text = render(replace(r, server=replace(r.server, health=HealthCheck(False, detail))))
    assert f"health: {words}" in text
    assert "Errno" not in text


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


# --- a dead daemon's server: the orphan ---------------------------------------------------------

ORPHANS = (Orphan(4300, "python -m mlflow server --backend-store-uri file:///sync/mlruns"),
           Orphan(4301, "python -m uvicorn --factory guard.app:create_app"))


def test_orphan_of_a_dead_daemon_is_degraded_naming_pids_and_stop():
    v = orphan_verdict(False, 4242, ORPHANS)
    assert v is not None and v.label == DEGRADED and v.exit_code == 1
    assert "pid 4242" in v.reason and "4300, 4301" in v.reason
    assert "`guardctl stop` ends it" in v.reason


def test_no_orphan_verdict_while_the_daemon_lives_or_nothing_is_left():
    assert orphan_verdict(True, 4242, ORPHANS) is None
    assert orphan_verdict(False, 4242, ()) is None


def test_summarize_a_dead_daemon_with_its_server_serving_is_degraded_not_not_running():
    r = summarize(doc(), Live(daemon=False, orphans=ORPHANS), StatusDoc(), now=100.0)
    assert r.state == DEGRADED and r.exit_code == 1
    assert r.orphans == ORPHANS
    text = render(r)
    assert text.splitlines()[0].startswith("mlflow-guard: DEGRADED - the daemon (pid 4242) is "
                                           "not running but its server is")
    assert "  ORPHAN    server of a dead daemon, still running (`guardctl stop` ends it):" \
        in text.splitlines()
    assert "            pid 4300: python -m mlflow server --backend-store-uri " \
           "file:///sync/mlruns" in text.splitlines()
    assert "pid 4301: python -m uvicorn" in text


def test_summarize_without_a_status_file_still_reports_orphans():
    r = summarize(None, Live(orphans=ORPHANS[:1]), StatusDoc(), now=100.0)
    assert r.state == DEGRADED and "orphan pids 4300" in r.reason


def test_render_without_orphans_has_no_orphan_section():
    assert "ORPHAN" not in render(healthy_report())
    assert "ORPHAN" not in render(not_running_report())


# --- the parts and a daemon that stopped responding ---------------------------------------------

NOW = 1_700_000_000.0
LIVE_OK = Live(daemon=True, tree=(TreeEntry(4300, True),), health=HealthCheck(True, "200 OK"))


def fresh(**kw) -> StatusDoc:
    return replace(doc(**kw), updated_at=NOW - 0.5)


@pytest.mark.parametrize("state, extra, words", [
    (PartPhase.BACKOFF, {"last_error": "rewrite thread failed: OSError(5)",
                         "next_start_at": NOW + 4}, ["path rewriting failed (rewrite thread "
                                                     "failed: OSError(5)); restarting it in 4s"]),
    (PartPhase.CRASH_LOOP, {"last_error": "IsADirectoryError: index"},
     ["path rewriting keeps failing", "crash loop", "IsADirectoryError: index",
      "fix the cause, then run `guardctl restart`"]),
    (PartPhase.STUCK, {"last_tick": NOW - 125}, ["path rewriting stuck: no progress for 2m 05s",
                                                 "`guardctl stop` then `guardctl run`"]),
    (PartPhase.HELD, {"held": "store is read-only (EROFS)"},
     ["path rewriting paused: store is read-only (EROFS); it resumes by itself"]),
    (PartPhase.PAUSED, {}, ["path rewriting paused: the store is not usable"]),
])
def test_an_unhealthy_part_degrades_the_guard_with_what_to_do(monkeypatch, state, extra, words):
    monkeypatch.setattr("time.time", lambda: NOW)  # the text says how long ago, as status does
    parts = {"server": PartState(), "rewrite": PartState(state=state, **extra)}
    line = part_problem("rewrite", parts["rewrite"], NOW)
    assert line is not None
    for w in words:
        assert w in line
    r = summarize(fresh(parts=to_json_parts(parts)), LIVE_OK, StatusDoc(), NOW)
    assert (r.state, r.exit_code, r.reason) == (DEGRADED, 1, line)
    assert f"  PART      {line}" in render(r).splitlines()


def to_json_parts(parts: dict[str, PartState]) -> dict:
    from guard.core.records import to_json
    return {name: to_json(p) for name, p in parts.items()}


def test_each_unhealthy_part_has_its_line_in_words_a_user_knows():
    parts = {name: PartState(state=PartPhase.CRASH_LOOP, last_error="x")
             for name in ("rewrite", "conflicts", "vault", "peers", "gc", "watch")}
    v = parts_verdict(parts, NOW)
    assert v is not None and v.label == DEGRADED and v.reason.endswith("; and 5 more parts (below)")
    lines = [ln for ln in render(replace(healthy_report(), parts=parts)).splitlines()
             if ln.startswith("  PART      ")]
    assert [ln.split(" keeps")[0].strip() for ln in lines] == [
        "PART      path rewriting", "PART      conflict copies", "PART      vault",
        "PART      heartbeats", "PART      gc watch", "PART      watcher"]


def test_working_parts_leave_the_verdict_alone_even_with_an_error_shown():
    parts = {"server": PartState(), "gc": PartState("AccessDenied: psutil"),
             "rewrite": PartState(restarts=3, last_error="old trouble")}
    assert parts_verdict(parts, NOW) is None
    r = summarize(fresh(parts=to_json_parts(parts)), LIVE_OK, StatusDoc(), NOW)
    assert (r.state, r.reason) == (HEALTHY, "serving")


def test_a_live_daemon_with_an_old_status_file_is_not_responding_never_ok():
    old = replace(doc(log_file="/s/guard.log"), updated_at=NOW - 42)
    v = responding(old, NOW)
    assert v == Verdict(DEGRADED, "daemon not responding (status file 42 s old); see /s/guard.log")
    r = summarize(old, LIVE_OK, StatusDoc(), NOW)
    assert (r.state, r.exit_code) == (DEGRADED, 1) and r.reason.startswith("daemon not responding")
    assert responding(replace(old, updated_at=NOW - STALE_AFTER), NOW) is None
    assert responding(replace(old, updated_at=None), NOW) is None
    assert summarize(fresh(), LIVE_OK, StatusDoc(), NOW).state == HEALTHY


def test_an_old_status_file_of_a_dead_daemon_is_still_not_running():
    old = replace(doc(), updated_at=NOW - 3600)
    assert summarize(old, Live(), StatusDoc(), NOW).state == NOT_RUNNING


def test_a_restore_mlflow_cannot_open_degrades_the_guard_and_names_the_unit():
    incomplete = {"action": "restore incomplete", "path": "0/abc", "kind": "run",
                  "reason": "run deleted without a tombstone; MLflow cannot open it: get_run: "
                            "Run 'abc' not found", "files": 3, "at": NOW - 5}
    vault = {"enabled": True, "ready": True, "restored": 1, "recent": [incomplete],
             "incomplete": [incomplete]}
    r = summarize(fresh(vault=vault), LIVE_OK, StatusDoc(), NOW)
    assert (r.state, r.exit_code) == (DEGRADED, 1)
    assert r.reason == ("restore incomplete: 0/abc (run): run deleted without a tombstone; "
                        "MLflow cannot open it: get_run: Run 'abc' not found")
    assert any(ln.startswith("  WARNING   vault: restore incomplete: 0/abc (run)")
               for ln in render(r).splitlines())
    two = dict(vault, incomplete=[incomplete, dict(incomplete, path="0/def")])
    assert summarize(fresh(vault=two), LIVE_OK, StatusDoc(), NOW).reason.endswith("; and 1 more")
    done = dict(vault, incomplete=[])
    assert summarize(fresh(vault=done), LIVE_OK, StatusDoc(), NOW).state == HEALTHY


def test_render_shows_a_non_utf8_name_escaped_and_the_files_left_alone():
    """A store file name that is not UTF-8 must not break `guardctl status` (print would
    raise UnicodeEncodeError on a UTF-8 terminal); the bytes show as \\xNN."""
    import os

    from guard.protection.restorer import VaultFigures
    from guard.sync.reconcile import ConflictFigures

    r = replace(healthy_report(), store=os.fsdecode(b"/sync/ml\xffruns"),
                conflicts=ConflictFigures(left_alone=2),
                vault=VaultFigures(ready=True, not_regular=3))
    text = render(r)
    text.encode("utf-8")
    assert "store     /sync/ml\\xffruns" in text
    assert "2 left alone (not regular files or too large; see the log)" in text
    assert "3 symlinks, FIFOs or devices in the store left alone" in text


def test_render_lists_renumbered_model_versions_and_the_status_file_keeps_them():
    from guard.core.records import from_json, to_json
    from guard.sync.conflicts import Renumbered
    from guard.sync.reconcile import ConflictFigures

    moved = tuple(Renumbered(f"m{i}", 2, 1, "hostB") for i in range(6))
    figures = ConflictFigures(renumbered=moved)
    assert from_json(StatusDoc, to_json(StatusDoc(conflicts=figures))).conflicts == figures
    text = render(replace(healthy_report(), conflicts=figures))
    assert "            renumbered model 'm0': was version 1 on hostB, now 2" in text
    assert "renumbered model 'm5'" not in text
    assert "and 1 more renumbered (`guardctl conflicts`)" in text


def test_render_names_experiments_sharing_a_name_and_the_command_that_merges_them():
    from guard.core.records import from_json, to_json
    from guard.sync.experiments import SameName
    from guard.sync.reconcile import ConflictFigures

    figures = ConflictFigures(same_names=(SameName("shared", ("4", "9")),))
    assert from_json(StatusDoc, to_json(StatusDoc(conflicts=figures))).conflicts == figures
    text = render(replace(healthy_report(), conflicts=figures))
    assert ("  WARNING   experiment name 'shared' is held by 2 experiments (ids 4, 9; 4 is the "
            "oldest); merge them: `guardctl conflicts --merge-experiments shared`") in text


# --- the text, polished (issue 16) ----------------------------------------------------------------

def full_report() -> Report:
    """A live daemon's report with every section there, as a status file gives it."""
    from guard.core.parts import PartState
    from guard.daemon.statusdoc import Portability
    from guard.portability.fixer import FullPass, RewriteFigures
    from guard.protection.restorer import VaultFigures
    from guard.sync.heartbeats import PeerReport
    from guard.sync.peers import PeerView
    from guard.sync.reconcile import ConflictFigures

    return replace(
        healthy_report(), last_reason=None,
        portability=Portability(RewriteFigures(rewrites_total=1, deferred_in_flight=1,
                                               last_full_pass=FullPass(NOW, 0.5, 1))),
        peers=PeerReport(hosts=(PeerView("office-pc", 4.0, False, "running", "3.17.2", "0.1.0",
                                         "linux", "/s", 12),)),
        conflicts=ConflictFigures(resolved=1, waiting=1, needs_attention=1),
        vault=VaultFigures(ready=True, mode="link", policy="restore", path="/v", restored=1,
                           alerts=1, too_large=1),
        parts={"server": PartState()})


@pytest.mark.parametrize("make", [not_running_report, healthy_report, full_report])
def test_render_says_absent_values_and_flags_in_words(make):
    """No "None", "True", "False" or a lone "-" where a word is clearer."""
    text = render(make())
    for word in ("None", "True", "False"):
        assert word not in text, (word, text)
    assert not [ln for ln in text.splitlines() if ln.rstrip().endswith(" -")
                or " - " in ln.split("mlflow-guard: ", 1)[-1].split(" - ", 1)[-1]], text


def test_render_counts_with_the_right_noun():
    text = render(full_report())
    for said in ("1 rewrite,", "over 1 file", "1 location left alone while its run or model "
                 "is in progress", "1 copy resolved since start, 1 needs a look",
                 "; 1 copy waiting", "1 restored, 1 alert,", "1 artifact above "
                 "vault.copy_max_bytes is not kept"):
        assert said in text, said
    for wrong in ("1 files", "1 locations", "1 rewrites", "1 alerts", "1 copies", "1 need a"):
        assert wrong not in text, wrong


def test_experiments_waiting_out_their_quiet_spell_are_not_said_to_be_in_progress():
    from guard.daemon.status import deferred_lines

    assert deferred_lines(3, 1) == [
        "            2 locations left alone while their run or model is in progress",
        "            1 experiment waiting out its quiet spell before its location is rewritten "
        "(rewrite.experiment_quiet)"]
    only_quiet = deferred_lines(2, 2)
    assert len(only_quiet) == 1 and "in progress" not in only_quiet[0]
    assert "2 experiments waiting out their quiet spell before their locations are" \
        in only_quiet[0]
    assert deferred_lines(1, 0) == [
        "            1 location left alone while its run or model is in progress"]
    assert deferred_lines(0, 0) == []


@pytest.mark.parametrize("name", ["model\nMALLORY: OK - serving", "a\rb", "tab\there",
                                  "rtl\u202etxt.exe", "sep\u2028arator", "bell\x07"])
def test_a_name_from_the_store_stays_on_its_line(name):
    """A model or file name synced in from another machine may hold a newline (or another
    control character): every value shows escaped, so no line can be forged or broken."""
    from guard.core.records import from_json
    from guard.sync.reconcile import ConflictFigures

    base = full_report()
    conflicts = from_json(ConflictFigures, {"enabled": True, "renumbered": [
        {"model": name, "now": 2, "was": 1, "host": name}]})
    hostile = replace(base, store=f"/sync/{name}", host_id=name, conflicts=conflicts,
                      last_reason=name, strays=(Stray(5, name, name, 5000, name),))
    lines, plain = render(hostile).splitlines(), render(base).splitlines()
    assert len(lines) == len(plain) + 2  # the STRAYS heading and its line, renumbered
    text = "\n".join(lines)
    for ch in ("\r", "\t", "\u202e", "\u2028", "\x07"):
        assert ch not in text
    assert not any(ln.startswith("MALLORY") for ln in lines)
    assert any("\\n" in ln or "\\r" in ln or "\\t" in ln or "\\u" in ln or "\\x07" in ln
               for ln in lines if ln.startswith("  store"))


def test_one_line_escapes_controls_and_keeps_text():
    from guard.daemon.status import one_line

    assert one_line("plain é ✓ 模型") == "plain é ✓ 模型"
    assert one_line("a\nb\rc\td\x00e\x1bf\u202eg\u2029h") == \
        "a\\nb\\rc\\td\\x00e\\x1bf\\u202eg\\u2029h"


def test_refused_requests_are_counted_and_the_latest_listed():
    from guard.daemon.status import Refusal

    refused = tuple(Refusal(NOW - i, "POST", f"/ajax-api/3.0/mlflow/traces/delete-traces/{i}",
                            "delete traces", "Deleting traces is blocked") for i in range(7))
    lines = render(replace(healthy_report(), refusals=refused)).splitlines()
    at = [i for i, ln in enumerate(lines) if ln.startswith("  REFUSED")][0]
    assert lines[at].startswith("  REFUSED   7 requests refused by the guard in the last 24 "
                                "hours")
    listed = lines[at + 1:at + 6]
    assert all("POST /ajax-api/3.0/mlflow/traces/delete-traces/" in ln and
               "(delete traces): Deleting traces is blocked" in ln for ln in listed)
    assert listed[0].endswith("delete-traces/0 (delete traces): Deleting traces is blocked")
    assert lines[at + 6] == ("            and 2 more (the status page lists them: /guard/ on "
                             "the server)")
    one = render(replace(healthy_report(), refusals=refused[:1]))
    assert "  REFUSED   1 request refused" in one and "and 1 more" not in one
    assert "REFUSED" not in render(healthy_report())


def test_after_the_store_came_back_the_last_reason_says_so():
    """Nobody asked for a restart: the store was lost and came back."""
    from guard.supervision.supervisor import State, resumed, store_back, store_lost

    back = store_back(store_lost(State(), "gone"), 100.0)
    assert back.last_reason == "the store came back"
    assert resumed(State(), 1.0).last_reason == "restart requested"
    r = summarize(fresh(last_reason=back.last_reason, restarts=1), LIVE_OK, StatusDoc(), NOW)
    assert "  restarts  1; last reason: the store came back" in render(r).splitlines()


def test_problems_say_what_to_do_about_each():
    from guard.daemon.status import problems

    r = replace(full_report(), strays=(Stray(9, "bob", "mlflow ui", 5001, "/sync/mlruns"),))
    found = problems(r, NOW)
    assert any("1 conflict copy needs a person: `guardctl conflicts`" in p for p in found)
    assert any("1 artifact above vault.copy_max_bytes is not kept" in p for p in found)
    assert any("pid 9 (bob), port 5001, store /sync/mlruns" in p and "stop it" in p
               for p in found)
    assert problems(healthy_report(), NOW) == ()
    dead = summarize(None, Live(), StatusDoc(), NOW)
    assert dead.problems == (dead.reason,)


def test_files_the_vault_could_not_keep_are_a_warning_with_what_to_do():
    """Online-only placeholders and files on another volume have no second name in the vault:
    status says so with the fix for each reason, as a warning (the verdict stays healthy,
    as for too_large)."""
    from guard.core.records import from_json, to_json
    from guard.daemon.status import problems
    from guard.protection.restorer import Unprotected, VaultFigures
    from guard.protection.vault import OTHER_VOLUME, PLACEHOLDER, unprotected_fix

    figures = VaultFigures(ready=True, mode="link", policy="restore", path="/v", unprotected=(
        Unprotected(PLACEHOLDER, 12, ("0/abc/artifacts/model.pkl", "0/abc/metrics/loss",
                                      "0/def/meta.yaml"), unprotected_fix(PLACEHOLDER)),
        Unprotected(OTHER_VOLUME, 1, ("0/abc/artifacts/data/big.parquet",),
                    unprotected_fix(OTHER_VOLUME))))
    assert from_json(StatusDoc, to_json(StatusDoc(vault=figures))).vault == figures
    r = replace(healthy_report(), vault=figures)
    text = render(r).splitlines()
    placeholder = ("  WARNING   vault: 12 store files not kept by the vault (online-only "
                   "placeholder): 0/abc/artifacts/model.pkl, 0/abc/metrics/loss, 0/def/meta.yaml "
                   "and 9 more; deleting them cannot be undone: make the store folder 'Always "
                   "available on this device' (pinned) in Synology Drive, or 'Always keep on "
                   "this device' in Windows Explorer")
    assert any(line.startswith(placeholder) for line in text), text
    assert ("  WARNING   vault: 1 store file not kept by the vault (on another volume): "
            "0/abc/artifacts/data/big.parquet; deleting it cannot be undone: keep the store on "
            "one volume") in "\n".join(text)
    found = problems(r, NOW)
    assert any("Always available on this device" in p for p in found)
    assert any("keep the store on one volume" in p for p in found)
    doc = fresh(vault={**to_json(figures), "enabled": True})
    verdict = summarize(doc, LIVE_OK, StatusDoc(), NOW)
    assert verdict.state == HEALTHY and any("12 store files not kept" in p
                                            for p in verdict.problems)
    more = render(replace(r, vault=replace(figures, unprotected_more=True)))
    assert "and more store files the vault could not keep than it lists" in more
