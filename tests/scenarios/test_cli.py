"""`guardctl` as a user meets it: the console script, config errors, `config`, `init`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.daemons import guardctl

pytestmark = pytest.mark.integration  # `guardctl` subprocesses


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("guardctl")
    res = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "mlflow-sync-guard" in res.stdout


def test_config_shows_values_and_their_sources(tmp_path, new_store):
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(f"store: {new_store}\nserver:\n  workers: 2\n")
    res = guardctl("config", "--config", str(cfg), "--port", "6001", "--json")
    assert res.returncode == 0, res.stderr
    values = json.loads(res.stdout)["values"]
    assert values["store"] == {"value": str(new_store), "from": f"{cfg} (--config)"}
    assert values["server.workers"]["value"] == 2
    assert values["server.port"] == {"value": 6001, "from": "flag --port"}
    assert values["server.host"] == {"value": "127.0.0.1", "from": "default"}
    text = guardctl("config", "--config", str(cfg)).stdout
    assert f"# config file: {cfg} (--config)" in text and "flag --port" not in text


def test_config_file_from_environment(tmp_path):
    cfg = tmp_path / "env.yaml"
    cfg.write_text("server:\n  port: 6123\n")
    env = {"MLFLOW_GUARD_CONFIG": str(cfg), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = guardctl("config", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["values"]["server.port"]["value"] == 6123


def test_typo_in_config_names_key_and_file_and_starts_nothing(tmp_path, new_store):
    cfg = tmp_path / "guard.yaml"
    cfg.write_text("server:\n  prot: 5051\n")
    res = guardctl("run", "--config", str(cfg), "--store", str(new_store),
                   "--state-dir", str(tmp_path / "state"))
    assert res.returncode == 2
    assert "unknown key 'server.prot'" in res.stderr and str(cfg) in res.stderr
    assert "did you mean 'server.port'" in res.stderr
    assert not (tmp_path / "state").exists()


def test_malformed_yaml_is_a_clear_error(tmp_path):
    cfg = tmp_path / "guard.yaml"
    cfg.write_text("server:\n  port: [5050\n")
    res = guardctl("status", "--config", str(cfg))
    assert res.returncode == 2
    assert "not valid YAML" in res.stderr and "line" in res.stderr and str(cfg) in res.stderr


def test_state_dir_inside_store_is_refused(tmp_path, new_store):
    res = guardctl("run", "--store", str(new_store), "--state-dir", str(new_store / "state"))
    assert res.returncode == 2
    assert "'state_dir'" in res.stderr and "inside the store" in res.stderr
    assert not (new_store / "state").exists()


def test_run_without_a_store_says_how_to_name_one(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = guardctl("run", "--state-dir", str(tmp_path / "s"), env=env)
    assert res.returncode == 2 and "--store PATH" in res.stderr


def test_init_creates_once_and_refuses_a_folder_with_other_content(tmp_path):
    store = tmp_path / "fresh"
    first = guardctl("init", "--store", str(store))
    assert first.returncode == 0 and "created" in first.stdout
    assert (store / "0" / "meta.yaml").is_file()
    again = guardctl("init", "--store", str(store))
    assert again.returncode == 0 and "already" in again.stdout
    other = tmp_path / "documents"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    res = guardctl("init", "--store", str(other))
    assert res.returncode == 2 and "refusing" in res.stderr
    assert sorted(p.name for p in other.iterdir()) == ["thesis.tex"]


def test_stop_and_restart_when_not_running(tmp_path):
    state = str(tmp_path / "state")
    res = guardctl("stop", "--state-dir", state)
    assert res.returncode == 0 and "not running" in res.stdout
    res = guardctl("restart", "--state-dir", state)
    assert res.returncode == 3 and "not running" in res.stdout
    res = guardctl("status", "--state-dir", state, "--json")
    assert res.returncode == 3 and json.loads(res.stdout)["state"] == "not running"


# --- errors are messages with their exit code, never tracebacks --------------------------------

# Each command with a state folder that cannot be created (its parent is a file): the exit
# code it documents, and the message when it needs the folder.
UNUSABLE_STATE = [
    (("run",), 2, "guardctl: cannot start: cannot create the state folder"),
    (("status",), 3, ""),
    (("status", "--json"), 3, ""),
    (("stop",), 0, ""),
    (("restart",), 3, ""),
    (("fix", "--dry-run"), 0, ""),
    (("locks",), 0, ""),
    (("conflicts",), 2, "Not a directory"),
    (("gc",), 2, "Not a directory"),
    (("config",), 0, ""),
    (("doctor",), 0, ""),
]


@pytest.mark.parametrize("args, code, message", UNUSABLE_STATE,
                         ids=[" ".join(a) for a, _, _ in UNUSABLE_STATE])
def test_a_state_folder_that_cannot_be_created_is_no_traceback(tmp_path, new_store, args,
                                                               code, message):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = [] if args[0] == "restart" else ["--store", str(new_store)]
    port = ["--port", "1"] if args[0] in ("run", "status", "doctor", "config") else []
    res = guardctl(*args, *store, "--state-dir", str(blocker / "state"), *port)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == code, res.stdout + res.stderr
    assert message in res.stderr
    if message:
        assert str(blocker) in res.stderr


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_number_in_config_stops_run_with_a_message(tmp_path, new_store, value):
    cfg = tmp_path / "guard.yaml"
    cfg.write_text(f"server:\n  health_timeout: {value}\n")
    res = guardctl("run", "--config", str(cfg), "--store", str(new_store),
                   "--state-dir", str(tmp_path / "state"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "'server.health_timeout'" in res.stderr and str(cfg) in res.stderr
    assert "not a finite number" in res.stderr
    assert not (tmp_path / "state").exists()


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`guardctl status | head -1`: the reader is gone before the output is written."""
    proc = subprocess.Popen([sys.executable, "-m", "guard.cli", "status", "--json",
                             "--state-dir", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141  # as a shell reports a program ended by SIGPIPE
    assert err == ""


def test_status_into_head_prints_its_first_line_only(tmp_path):
    res = subprocess.run(
        f"set -o pipefail; {sys.executable} -m guard.cli status --state-dir "
        f"'{tmp_path / 'state'}' | head -1", shell=True, executable="/bin/bash",
        capture_output=True, text=True, timeout=60)
    assert res.stdout.startswith("mlflow-guard: NOT RUNNING") and res.stdout.count("\n") == 1
    assert res.stderr == "" and res.returncode in (3, 141)


def test_undo_of_a_file_that_is_not_a_journal_changes_nothing(tmp_path, new_store):
    for name, content in (("notes.txt", "just some notes\n"), ("data.json", '{"a": 1}\n'),
                          ("empty", ""), ("binary", "\x00\x01\x02" * 1000)):
        path = tmp_path / name
        path.write_text(content)
        before = sorted(p.name for p in new_store.rglob("*"))
        res = guardctl("fix", "--undo", str(path), "--store", str(new_store),
                       "--state-dir", str(tmp_path / "state"))
        assert res.returncode == 1, res.stdout + res.stderr
        assert f"{path} is not a journal of this guard" in res.stderr
        assert "undone" not in res.stdout
        assert sorted(p.name for p in new_store.rglob("*")) == before
        assert not (tmp_path / "state" / "journal").exists()
