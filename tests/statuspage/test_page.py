"""The status page's pure parts and its routes on a plain Flask app (no MLflow server): the
files it ships, the refusal journal (bounded), what the report selects to show."""

from __future__ import annotations

import json
import re
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from guard.core.journal import read_journal
from guard.core.state import StateDir
from guard.daemon.status import latest_lines, recent_refusals, tail_records
from guard.statuspage import refusals
from guard.statuspage.routes import FILES, install_page
from guard.sync.locks import LockSettings

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = ("index.html", *FILES)


# --- the files -----------------------------------------------------------------------------------

def test_the_page_files_ship_with_the_package():
    """Read as an installed package reads them (importlib.resources), and declared as package
    data, so a non-editable install has them too."""
    static = resources.files("guard.statuspage").joinpath("static")
    for name in PAGE_FILES:
        assert static.joinpath(name).read_bytes(), name
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, from the `test` extra
        import tomli as tomllib
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["guard.statuspage"]
    folder = ROOT / "guard" / "statuspage"
    shipped = {p.relative_to(folder).as_posix() for pattern in declared
               for p in folder.glob(pattern)}
    assert {f"static/{name}" for name in PAGE_FILES} <= shipped


def test_the_page_needs_no_network_and_inserts_text_only():
    """No CDN (the machines may be offline), no inline script (the CSP forbids it), and no
    innerHTML: names arrive by sync and are untrusted."""
    static = resources.files("guard.statuspage").joinpath("static")
    html = static.joinpath("index.html").read_text()
    js = static.joinpath("status.js").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert re.findall(r"<script[^>]*>", html) == ['<script src="status.js" defer>']
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert unsafe not in js, unsafe
    assert "http" not in js.replace("the server answered HTTP", "")


# --- the refusal journal ------------------------------------------------------------------------

def test_what_a_refused_request_was_in_words():
    assert refusals.what_of("_delete_traces") == "delete traces"
    assert refusals.what_of("_delete_artifact_mlflow_artifacts") == "delete an artifact"
    assert refusals.what_of("_some_new_handler") == "some new handler"
    assert refusals.what_of(None) == "unknown operation"


def test_kept_tail_keeps_whole_lines_only():
    data = b"".join(f'{{"n": {i}}}\n'.encode() for i in range(100))
    tail = refusals.kept_tail(data, 55)  # 5 whole lines and the end of a sixth
    assert len(tail) == 50 and tail.endswith(b'{"n": 99}\n')
    assert all(json.loads(line) for line in tail.splitlines())
    assert refusals.kept_tail(data, len(data)) == data


def test_the_refusal_journal_stays_small_and_keeps_the_latest(tmp_path, monkeypatch):
    monkeypatch.setattr(refusals, "MAX_BYTES", 4096)
    path = StateDir(tmp_path).refusal_journal
    for i in range(200):
        refusals.record(path, "POST", f"/api/2.0/mlflow/traces/delete-traces/{i}",
                        "delete traces", "Deleting traces is blocked " + "x" * 40, 403)
    assert path.stat().st_size <= 4096
    records = list(read_journal(path))
    assert records[-1]["path"].endswith("/199") and len(records) >= 10
    assert [r["path"] for r in records] == sorted((r["path"] for r in records),
                                                  key=lambda p: int(p.rsplit("/", 1)[1]))
    assert (path.stat().st_mode & 0o777) == 0o600


def test_a_refusal_that_cannot_be_journaled_never_raises(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    refusals.record(blocked / "journal" / "refusals.jsonl", "POST", "/x", "x", "y", 403)


# --- what the report selects --------------------------------------------------------------------

NOW = 1_700_000_000.0


def test_recent_refusals_are_the_last_day_newest_first_and_bounded():
    records = [{"time": NOW - age, "method": "POST", "path": f"/p{age}", "what": "w",
                "reason": "r", "status": 403} for age in (5, 90000, 1, 3)]
    got = recent_refusals(records, NOW)
    assert [r.path for r in got] == ["/p1", "/p3", "/p5"]
    assert [r.path for r in recent_refusals(records, NOW, limit=2)] == ["/p1", "/p3"]
    odd = recent_refusals([{"time": "soon", "method": None}, {}], NOW)
    assert odd == ()  # a line without a usable time is not shown as the 1970s


def test_latest_journal_lines_merge_the_journals_newest_first():
    got = latest_lines({"rewrites": [{"time": NOW - 3, "file": "0/a/meta.yaml",
                                      "old_text": "long", "txn": "t"}],
                        "vault": [{"time": NOW - 1, "action": "restored", "path": "0/b"},
                                  {"time": NOW - 9, "action": "alert", "path": "0/c"}]},
                       limit=2)
    assert [(ln.journal, ln.text) for ln in got] == [
        ("vault", "action=restored, path=0/b"), ("rewrites", "file=0/a/meta.yaml")]


def test_tail_records_reads_only_the_end_and_skips_a_cut_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b"".join(json.dumps({"n": i, "pad": "x" * 30}).encode() + b"\n"
                              for i in range(1000)) + b'{"torn')
    got = tail_records(path, size=500)
    assert got and got[-1]["n"] == 999 and len(got) < 20
    assert [r["n"] for r in got] == list(range(1000 - len(got), 1000))
    assert tail_records(tmp_path / "missing.jsonl") == []


# --- the routes on a Flask app ------------------------------------------------------------------

def flask_client(settings: LockSettings | None):
    from flask import Flask

    app = Flask("mlflow-like")
    install_page(app, settings)
    return app.test_client()


def test_a_server_not_started_by_the_guard_says_so():
    client = flask_client(None)
    page = client.get("/guard/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    doc = client.get("/guard/status.json").get_json()
    assert doc["state"] == "not guarded" and "`guardctl run`" in doc["reason"]
    assert client.get("/guard/status.js").mimetype == "text/javascript"
    assert client.get("/guard/passwd").status_code == 404
    assert client.get("/guard/..%2f__init__.py").status_code == 404


def test_status_json_is_the_report_of_the_state_folder(tmp_path):
    """A daemon that is gone: NOT RUNNING, with the refusals its server journaled."""
    state = StateDir(tmp_path / "state")
    state.root.mkdir()
    (state.status).write_text(json.dumps({"daemon": {"pid": 2 ** 22 + 7, "create_time": 1.0},
                                          "phase": "running"}))  # no store: the settings' one
    refusals.record(state.refusal_journal, "POST", "/api/2.0/mlflow/traces/delete-traces",
                    "delete traces", "Deleting traces is blocked", 403)
    settings = LockSettings(str(tmp_path / "s"), str(state.root), "lab-pc", "lease", 1.0,
                            20.0, 2.0, 0.5, 5.0, 10.0)
    doc = flask_client(settings).get("/guard/status.json").get_json()
    assert doc["state"] == "not running" and doc["exit_code"] == 3
    assert doc["store"] == str(tmp_path / "s") and doc["host_id"] == "lab-pc"
    assert [(r["what"], r["reason"]) for r in doc["refusals"]] == [
        ("delete traces", "Deleting traces is blocked")]
    assert doc["problems"] and "`guardctl run`" in doc["problems"][0]
    assert time.time() - doc["refusals"][0]["at"] < 60


@pytest.mark.parametrize("name", PAGE_FILES)
def test_every_page_file_is_served_uncached(name):
    answer = flask_client(None).get("/guard/" + ("" if name == "index.html" else name))
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
