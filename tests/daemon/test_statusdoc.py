"""The status document (guard.daemon.statusdoc) and `guardctl status`'s report of it: the
JSON keeps the keys and values it had before it was typed, the text stays byte-identical, and
a document that is partial, garbled or from another version never crashes `guardctl status`."""

from __future__ import annotations

import json
import time

import pytest

from guard.core.parts import PartState
from guard.core.records import from_json, to_json
from guard.core.watch import WatchFigures
from guard.daemon.status import (
    DEGRADED,
    HEALTHY,
    NOT_RUNNING,
    HealthCheck,
    Live,
    Stray,
    TreeEntry,
    render,
    summarize,
)
from guard.daemon.statusdoc import Off, StatusDoc, parse_status, read_status, write_status
from guard.portability.fixer import FullPass, LastRewrite, Problem, RewriteFigures
from guard.protection.restorer import VaultEvent, VaultFigures
from guard.supervision.keeper import HealthProbe
from guard.supervision.processes import GcProcess, ProcRef
from guard.supervision.supervisor import Phase
from guard.sync.conflicts import Renumbered
from guard.sync.experiments import SameName
from guard.sync.peers import PeerView
from guard.sync.reconcile import ConflictFigures

NOW = 1_700_000_000.0

# a part's life, in each "parts" entry: working, never restarted
WORKING = {"state": "running", "held": None, "restarts": 0, "last_error": None,
           "next_start_at": None}

FULL_DOC = {
    "guard_version": "0.1.0",
    "daemon": {"pid": 4242, "create_time": 1699990000.5, "started_at": 1699996275.0},
    "phase": "running",
    "message": "",
    "server": {
        "pid": 4300,
        "tree": [{"pid": 4300, "create_time": 1699996276.25},
                 {"pid": 4301, "create_time": 1699996277.0}],
        "url": "http://127.0.0.1:5050",
        "started_at": 1699996276.0,
        "health": {"ok": True, "detail": "200 OK", "at": 1699999999.0},
    },
    "restarts": 2,
    "last_reason": "server exited with code 1",
    "next_start_at": None,
    "store": "/sync/mlruns",
    "host_id": "lab-pc",
    "mlflow_version": "3.1.0",
    "config_file": "/etc/mlflow-guard/config.yaml",
    "state_dir": "/var/lib/guard",
    "log_file": "/var/lib/guard/guard.log",
    "server_log_file": "/var/lib/guard/server.log",
    "port": 5050,
    "portability": {
        "rewrites_total": 12,
        "rewrites_last_hour": 3,
        "rewritten_by_kind": {"run": 10, "experiment": 2},
        "last_rewrite": {"time": NOW - 65, "file": "1/abc/meta.yaml", "key": "artifact_uri",
                         "new": "mlflow-artifacts:/1/abc/artifacts"},
        "pending_foreign": 4,
        "deferred_in_flight": 1,
        "deferred_quiet": 0,
        "unportable_count": 1,
        "problem_count": 3,
        "problems": [
            {"file": "1/abc/meta.yaml", "problem": "unportable", "key": "artifact_uri",
             "value": "s3://elsewhere/x", "why": "not under any store root"},
            {"file": "1/bad/meta.yaml", "problem": "malformed", "why": "not YAML"},
            {"file": "2", "problem": "symlink", "why": "resolves outside the store to /x"},
        ],
        "last_full_pass": {"at": NOW - 30, "duration_s": 1.234, "files": 812,
                           "outcomes": {"clean": 800, "rewritten": 12}},
        "error": None,
        "paused": False,
        "watch_mode": "events",
        "watch_note": "",
        "watch_overflows": 2,
        "watch_error": None,
    },
    "peers": {
        "list": [
            {"host_id": "office-pc", "age_s": 4.2, "stale": False, "state": "running",
             "mlflow_version": "3.1.0", "guard_version": "0.1.0", "platform": "win32",
             "store": "D:\\sync\\mlruns", "pid": 880},
            {"host_id": "old-laptop", "age_s": 90061.0, "stale": True, "state": "running",
             "mlflow_version": "3.0.1", "guard_version": "0.0.9", "platform": "darwin",
             "store": "/Users/a/mlruns", "pid": 77},
            {"host_id": "server", "age_s": 700.0, "stale": True, "state": "stopped",
             "mlflow_version": "3.1.0", "guard_version": "0.1.0", "platform": "linux",
             "store": "/srv/mlruns", "pid": 5},
        ],
        "clash": "another guard also uses host_id 'lab-pc' (pid 99 on /elsewhere)",
        "warning": "old-laptop runs MLflow 3.0.1; this host runs 3.1.0",
        "error": None,
    },
    "conflicts": {"enabled": True, "waiting": 2, "last_scan": NOW - 125, "resolved": 7,
                  "needs_attention": 1, "error": "waiting for the conflicts lock: held by b",
                  "paused": False, "left_alone": 0,
                  "renumbered": [{"model": "adder", "now": 2, "was": 1, "host": "hostB"}],
                  "same_names": [{"name": "shared", "ids": ["4", "9"]}]},
    "vault": {
        "enabled": True, "policy": "restore", "mode": "link", "path": "/var/lib/guard/vault",
        "ready": True, "paused": False, "unmounted": False, "pending": 1, "restored": 3,
        "followed": 5, "alerts": 1,
        "recent": [
            {"action": "restored", "path": "run 1/abc", "kind": "run",
             "reason": "deleted without a tombstone", "files": 14, "at": NOW - 3600},
            {"action": "alert", "path": "model m", "kind": "registered_model",
             "reason": "deleted by hand", "files": 0, "at": NOW - 7200},
        ],
        "last_pass": NOW - 240, "too_large": 6, "error": "vault thread failed: OSError(28)",
        "incomplete": [], "not_regular": 0, "pass_folders": 1234,
        "unprotected": [{"reason": "online-only placeholder", "count": 7,
                         "examples": ["0/abc/artifacts/model.pkl", "0/abc/metrics/loss"],
                         "fix": "make the store folder 'Always available on this device'"}],
        "unprotected_more": False,
    },
    "gc_processes": [{"pid": 555, "user": "bob", "command": "mlflow gc " + "--x " * 40,
                      "started_at": NOW - 10}],
    "parts": {
        "server": {"error": None, "paused": False, "last_tick": NOW - 0.2, **WORKING},
        "peers": {"error": None, "paused": False, "last_tick": NOW - 1, **WORKING},
        "gc": {"error": "AccessDenied: psutil", "paused": False, "last_tick": NOW - 2,
               **WORKING},
        "watch": {"error": None, "paused": False, "last_tick": NOW - 0.5, **WORKING},
        "rewrite": {"error": None, "paused": False, "last_tick": NOW - 0.1, **WORKING},
        "conflicts": {"error": "waiting for the conflicts lock: held by b", "paused": False,
                      "last_tick": NOW - 5, **WORKING},
        "vault": {"error": "vault thread failed: OSError(28)", "paused": False,
                  "last_tick": NOW - 9, **WORKING},
    },
    "updated_at": NOW - 0.4,
}

# the same guard with rewriting (not the watcher), conflicts and the vault switched off
OFF_DOC = {**FULL_DOC,
           "portability": {"enabled": False, "watch_mode": "polling",
                           "watch_note": "polling configured", "watch_overflows": 0,
                           "watch_error": None},
           "conflicts": {"enabled": False}, "vault": {"enabled": False}, "gc_processes": [],
           "peers": {"list": [], "clash": None, "warning": None, "error": None},
           "parts": {}}
# ... and with nothing that needs the watcher: no watcher either
ALL_OFF_DOC = {**OFF_DOC, "portability": {"enabled": False}}

# a guard just started, the store lost a moment: nothing has gone round yet
FRESH_DOC = {**FULL_DOC, "phase": "waiting for store",
             "message": "waiting for the store: /sync/mlruns does not exist",
             "portability": {**FULL_DOC["portability"], "last_rewrite": None,
                             "last_full_pass": None, "paused": True, "watch_overflows": 0,
                             "pending_foreign": 0, "deferred_in_flight": 0,
                             "problem_count": 0, "unportable_count": 0, "problems": []},
             "conflicts": {**FULL_DOC["conflicts"], "last_scan": None, "waiting": 0,
                           "paused": True, "error": None},
             "vault": {**FULL_DOC["vault"], "ready": False, "recent": [], "last_pass": None,
                       "too_large": 0, "error": None, "unprotected": []},
             "gc_processes": [], "parts": {}}

LIVE = Live(daemon=True, tree=(TreeEntry(4300, True), TreeEntry(4301, False)),
            health=HealthCheck(True, "200 OK"),
            strays=(Stray(777, "bob", "mlflow ui --backend-store-uri /sync/mlruns", 5000,
                          "/sync/mlruns"),))
FALLBACK = StatusDoc(host_id="from-config", state_dir="/var/lib/guard",
                     log_file="/config/guard.log", server_log_file="/config/server.log")

# What `guardctl status` printed for these documents before the types (the same `Live`), with
# issue 16's words: counts with the right noun, the health check and absent times in words,
# a stray on one line.
RENDERED_FULL = (
    'mlflow-guard: DEGRADED - `mlflow gc` is running against the store (pid 555); '
     'use `guardctl gc`',
    '  daemon    pid 4242, up 1h 02m',
    '  server    running; pid 4300 (tree: 4300, 4301 (gone))',
    '  url       http://127.0.0.1:5050  health: answering',
    '  restarts  2; last reason: server exited with code 1',
    '  store     /sync/mlruns',
    '  host_id   lab-pc',
    '  mlflow    3.1.0',
    '  config    /etc/mlflow-guard/config.yaml',
    '  logs      /var/lib/guard/guard.log',
    '            /var/lib/guard/server.log',
    '  paths     watching by events; 12 rewrites, 3 in the last hour',
    '            last rewrite 1m 05s ago: 1/abc/meta.yaml (artifact_uri)',
    '            last full pass: 1.23 s over 812 files',
    '            2 event overflows (each followed by a full check; raise '
     'fs.inotify.max_queued_events if frequent)',
    "            4 foreign paths waiting for their own machine's guard "
     '(rewrite.foreign_delay)',
    '            1 location left alone while its run or model is in progress',
    '  UNPORTABLE 1 unportable, 2 other problems (`guardctl fix --dry-run` lists them)',
    '  peers     host          age      mlflow    guard   state',
    '            office-pc     4s       3.1.0     0.1.0   ok',
    '            old-laptop    1d 1h 01m 3.0.1     0.0.9   STALE',
    '            server        11m 40s  3.1.0     0.1.0   stopped',
    "  WARNING   another guard also uses host_id 'lab-pc' (pid 99 on /elsewhere)",
    '  WARNING   old-laptop runs MLflow 3.0.1; this host runs 3.1.0',
    '  conflicts 7 copies resolved since start, 1 needs a look (`guardctl conflicts`)',
    '            last scan 2m 05s ago; 2 copies waiting',
    "            renumbered model 'adder': was version 1 on hostB, now 2",
    "  WARNING   experiment name 'shared' is held by 2 experiments (ids 4, 9; 4 is the "
    "oldest); merge them: `guardctl conflicts --merge-experiments shared`",
    '  WARNING   conflicts: waiting for the conflicts lock: held by b',
    '  vault     ok; link mode, policy restore, /var/lib/guard/vault',
    '            3 restored, 1 alert, 5 sanctioned or moved since start; last pass '
     '4m 00s ago',
    '  MLFLOW GC running against this store: pid 555 (bob): mlflow gc --x --x --x '
     '--x --x --x --x --x --x --x --x --x --x --x --x --x --x --x --x --x --x --x --; '
     'deletions it makes are put back from the vault; use `guardctl gc` instead',
    '            restored run 1/abc (run, 1h 00m ago): deleted without a tombstone',
    '            alert model m (registered_model, 2h 00m ago): deleted by hand',
    '  WARNING   vault: 6 artifacts above vault.copy_max_bytes are not kept (copy mode)',
    "  WARNING   vault: 7 store files not kept by the vault (online-only placeholder): "
     "0/abc/artifacts/model.pkl, 0/abc/metrics/loss and 5 more; deleting them cannot be "
     "undone: make the store folder 'Always available on this device'",
    '  WARNING   vault: vault thread failed: OSError(28)',
    '  WARNING   gc: AccessDenied: psutil',
    '  STRAYS    MLflow servers over this store not started by the guard:',
    '            pid 777 (bob), port 5000, store /sync/mlruns',
)
RENDERED_OFF = (
    'mlflow-guard: OK - serving',
    '  daemon    pid 4242, up 1h 02m',
    '  server    running; pid 4300 (tree: 4300, 4301 (gone))',
    '  url       http://127.0.0.1:5050  health: answering',
    '  restarts  2; last reason: server exited with code 1',
    '  store     /sync/mlruns',
    '  host_id   lab-pc',
    '  mlflow    3.1.0',
    '  config    /etc/mlflow-guard/config.yaml',
    '  logs      /var/lib/guard/guard.log',
    '            /var/lib/guard/server.log',
    '  paths     rewriting disabled (rewrite.enabled: false)',
    "  peers     none seen (no other guard's heartbeat has synced in)",
    '  conflicts not resolved (conflicts.enabled: false)',
    '  vault     off (vault.enabled: false): deletions are not put back',
    '  STRAYS    MLflow servers over this store not started by the guard:',
    '            pid 777 (bob), port 5000, store /sync/mlruns',
)

RENDERED_FRESH = (
    'mlflow-guard: DEGRADED - server waiting for store: waiting for the store: '
     '/sync/mlruns does not exist',
    '  daemon    pid 4242, up 1h 02m',
    '  server    waiting for store; pid 4300 (tree: 4300, 4301 (gone))',
    '  url       http://127.0.0.1:5050  health: answering',
    '  restarts  2; last reason: server exited with code 1',
    '  store     /sync/mlruns',
    '  host_id   lab-pc',
    '  mlflow    3.1.0',
    '  config    /etc/mlflow-guard/config.yaml',
    '  logs      /var/lib/guard/guard.log',
    '            /var/lib/guard/server.log',
    '  paths     watching by events (paused: store lost); 12 rewrites, 3 in the last hour',
    '            first full pass running',
    '  peers     host          age      mlflow    guard   state',
    '            office-pc     4s       3.1.0     0.1.0   ok',
    '            old-laptop    1d 1h 01m 3.0.1     0.0.9   STALE',
    '            server        11m 40s  3.1.0     0.1.0   stopped',
    "  WARNING   another guard also uses host_id 'lab-pc' (pid 99 on /elsewhere)",
    '  WARNING   old-laptop runs MLflow 3.0.1; this host runs 3.1.0',
    '  conflicts 7 copies resolved since start, 1 needs a look (`guardctl conflicts`)',
    '            last scan never; paused: store lost',
    "            renumbered model 'adder': was version 1 on hostB, now 2",
    "  WARNING   experiment name 'shared' is held by 2 experiments (ids 4, 9; 4 is the "
    "oldest); merge them: `guardctl conflicts --merge-experiments shared`",
    '  vault     building (1234 store folders so far); link mode, policy restore, '
    '/var/lib/guard/vault',
    '            3 restored, 1 alert, 5 sanctioned or moved since start; last pass never',
    '  STRAYS    MLflow servers over this store not started by the guard:',
    '            pid 777 (bob), port 5000, store /sync/mlruns',
)


def expected_json(doc: dict, state: str, exit_code: int, reason: str) -> dict:
    """`guardctl status --json` for a live daemon, as the untyped report built it."""
    return {
        "state": state, "exit_code": exit_code, "reason": reason,
        "daemon": {"pid": doc["daemon"]["pid"], "alive": True,
                   "uptime_s": round(NOW - doc["daemon"]["started_at"], 1)},
        "phase": doc["phase"],
        "server": {"pid": doc["server"]["pid"],
                   "tree": [{"pid": 4300, "alive": True}, {"pid": 4301, "alive": False}],
                   "url": doc["server"]["url"], "health": {"ok": True, "detail": "200 OK"}},
        "restarts": doc["restarts"], "last_reason": doc["last_reason"], "store": doc["store"],
        "host_id": doc["host_id"], "mlflow_version": doc["mlflow_version"],
        "guard_version": doc["guard_version"], "config_file": doc["config_file"],
        "state_dir": "/var/lib/guard", "log_file": doc["log_file"],
        "server_log_file": doc["server_log_file"],
        "strays": [{"pid": 777, "user": "bob",
                    "command": "mlflow ui --backend-store-uri /sync/mlruns", "port": 5000,
                    "store": "/sync/mlruns"}],
        "orphans": [],  # only while a dead daemon's server still runs
        "portability": doc["portability"], "peers": doc["peers"], "conflicts": doc["conflicts"],
        "vault": doc["vault"], "gc_processes": doc["gc_processes"], "parts": doc["parts"],
        "status_age_s": round(NOW - doc["updated_at"], 1),
        "locks": [], "refusals": [], "journal": [],  # found live in the store and state folder
    }


def parsed(raw: object) -> StatusDoc:
    doc = parse_status(raw)
    assert doc is not None
    return doc


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)


# ---- the document's JSON ---------------------------------------------------------------------

@pytest.mark.parametrize("raw", [FULL_DOC, OFF_DOC, ALL_OFF_DOC, FRESH_DOC],
                         ids=["full", "off", "all-off", "fresh"])
def test_a_status_doc_reads_and_writes_back_the_json_it_was(raw):
    doc = parsed(json.loads(json.dumps(raw)))
    assert to_json(doc) == raw
    assert list(to_json(doc)) == list(raw)  # and in the same order
    assert from_json(StatusDoc, to_json(doc)) == doc


def test_a_full_doc_reads_as_the_parts_figures():
    doc = parsed(FULL_DOC)
    k = doc.keeper
    assert k.phase is Phase.RUNNING and k.restarts == 2
    assert k.server.tree == (ProcRef(4300, 1699996276.25), ProcRef(4301, 1699996277.0))
    assert k.server.health.ok is True and doc.daemon.ref == ProcRef(4242, 1699990000.5)
    rw = doc.portability.rewrite
    assert isinstance(rw, RewriteFigures)
    assert rw.last_rewrite == LastRewrite(NOW - 65, "1/abc/meta.yaml", "artifact_uri",
                                          "mlflow-artifacts:/1/abc/artifacts")
    assert rw.last_full_pass == FullPass(NOW - 30, 1.234, 812, {"clean": 800, "rewritten": 12})
    assert rw.problems[1] == Problem("1/bad/meta.yaml", "malformed", why="not YAML")
    assert doc.portability.watch == WatchFigures("events", "", 2, None)
    assert [type(p) for p in doc.peers.hosts] == [PeerView] * 3 and doc.peers.hosts[1].stale
    assert doc.conflicts == ConflictFigures(True, 2, NOW - 125, 7, 1,
                                            "waiting for the conflicts lock: held by b", False,
                                            renumbered=(Renumbered("adder", 2, 1, "hostB"),),
                                            same_names=(SameName("shared", ("4", "9")),))
    assert isinstance(doc.vault, VaultFigures) and doc.vault.recent[0] == VaultEvent(
        "restored", "run 1/abc", "run", "deleted without a tombstone", 14, NOW - 3600)
    assert doc.gc_processes[0] == GcProcess(555, "bob", "mlflow gc " + "--x " * 40, NOW - 10)
    assert doc.parts["gc"] == PartState("AccessDenied: psutil", False, NOW - 2)


def test_parts_switched_off_read_as_off():
    off, all_off = parsed(OFF_DOC), parsed(ALL_OFF_DOC)
    assert off.conflicts == off.vault == off.portability.rewrite == Off()
    assert off.portability.watch == WatchFigures("polling", "polling configured", 0, None)
    assert all_off.portability.rewrite == Off() and all_off.portability.watch is None


def test_the_status_file_round_trip(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, parsed(FULL_DOC))
    assert json.loads(path.read_text()) == FULL_DOC
    assert read_status(path) == parsed(FULL_DOC)
    path.write_text(json.dumps(FULL_DOC)[:700])  # half-written
    assert read_status(path) is None
    assert read_status(tmp_path / "missing.json") is None


# ---- what `guardctl status` makes of it ------------------------------------------------------

@pytest.mark.parametrize("raw, text, verdict", [
    (FULL_DOC, RENDERED_FULL, (DEGRADED, 1, "`mlflow gc` is running against the store (pid 555);"
                                            " use `guardctl gc`")),
    (OFF_DOC, RENDERED_OFF, (HEALTHY, 0, "serving")),
    (ALL_OFF_DOC, RENDERED_OFF, (HEALTHY, 0, "serving")),
    (FRESH_DOC, RENDERED_FRESH, (DEGRADED, 1, "server waiting for store: waiting for the store: "
                                              "/sync/mlruns does not exist")),
], ids=["full", "off", "all-off", "fresh"])
def test_status_text_and_json_are_as_before(frozen_clock, raw, text, verdict):
    report = summarize(parsed(raw), LIVE, FALLBACK, NOW)
    assert render(report) == "\n".join(text)
    got = to_json(report)
    problems = got.pop("problems")  # what the status page lists (tests/daemon/test_status.py)
    assert got == expected_json(raw, *verdict)
    assert json.dumps(got) == json.dumps(expected_json(raw, *verdict))
    assert all(isinstance(p, str) for p in problems)
    assert problems if verdict[0] != HEALTHY else True


def test_a_dead_daemon_shows_none_of_its_sections(frozen_clock):
    report = summarize(parsed(FULL_DOC), Live(), FALLBACK, NOW)
    assert (report.state, report.daemon.pid, report.phase) == (NOT_RUNNING, 4242, None)
    assert report.portability is report.peers is report.vault is report.conflicts is None
    assert report.gc_processes == () and report.parts == {} and report.server.tree == ()
    assert render(report).splitlines()[1] == "  daemon    not running"


def test_without_a_status_file_the_configuration_fills_in():
    report = summarize(None, Live(strays=LIVE.strays), FALLBACK, NOW)
    assert report.state == NOT_RUNNING and report.status_age_s is None
    assert (report.host_id, report.log_file, report.state_dir) == (
        "from-config", "/config/guard.log", "/var/lib/guard")
    assert to_json(report)["server"] == {"pid": None, "tree": [], "url": None,
                                         "health": {"ok": False, "detail": "not probed"}}


GARBAGE = [
    {"phase": "running"},
    {"daemon": "4242", "phase": 3, "server": [], "restarts": "2", "peers": None,
     "portability": "on", "conflicts": 1, "vault": [], "gc_processes": {}, "parts": [],
     "updated_at": "now"},
    {"daemon": {"pid": True, "create_time": "x"}, "phase": "draining",  # a newer daemon
     "server": {"pid": 1.5, "tree": [{"pid": 1}, "x", {"pid": 2, "create_time": 3}],
                "health": {"ok": "yes", "detail": None}},
     "portability": {"rewrites_total": "many", "problems": [{"file": 1}, None],
                     "last_rewrite": {"time": 1}, "watch_overflows": 2.5},
     "peers": {"list": [{"host_id": "half"}, 7], "clash": 3},
     "conflicts": {"enabled": True, "resolved": None, "waiting": -1},
     "vault": {"enabled": "yes", "error": "x"},
     "gc_processes": [{"pid": "x"}, {"pid": 5, "user": None, "command": "mlflow gc"}],
     "parts": {"gc": 1, "vault": {"error": 5, "paused": "no"}},
     "something_new": {"a": 1}},
    {**FULL_DOC, "portability": {"enabled": "no"}, "conflicts": {"enabled": False, "x": 1}},
]


@pytest.mark.parametrize("raw", GARBAGE)
def test_a_partial_or_garbled_doc_gives_defaults_and_never_crashes_status(frozen_clock, raw):
    doc = parsed(raw)
    for live in (LIVE, Live()):
        text = render(summarize(doc, live, FALLBACK, NOW))
        assert text.startswith("mlflow-guard: ")
        json.dumps(to_json(summarize(doc, live, FALLBACK, NOW)))


def test_what_garbage_reads_as():
    doc = parsed(GARBAGE[2])
    assert doc.daemon.ref is None and doc.keeper.phase is None  # an unknown phase
    assert doc.keeper.server.pid is None and doc.keeper.server.tree == (ProcRef(2, 3.0),)
    assert doc.keeper.server.health == HealthProbe()  # neither "yes" nor None was right
    assert isinstance(doc.portability.rewrite, RewriteFigures)
    assert doc.portability.rewrite.rewrites_total == 0 and doc.portability.rewrite.problems == ()
    assert doc.portability.rewrite.last_rewrite is None
    assert doc.portability.watch == WatchFigures()  # its one key was not an int
    assert doc.peers.hosts == () and doc.peers.clash is None
    assert doc.conflicts == ConflictFigures(waiting=-1)
    assert doc.vault == Off()  # "enabled": "yes" is neither tag
    assert doc.gc_processes == (GcProcess(5, None, "mlflow gc"),)
    assert doc.parts == {"vault": PartState()}
