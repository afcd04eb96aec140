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
