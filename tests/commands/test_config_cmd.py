"""`guardctl config`: values in words, where each came from, and `--save`."""

from __future__ import annotations

import argparse

import yaml

from guard.commands import common, config_cmd
from guard.commands.common import RunningDaemon
from guard.commands.config_cmd import origin_shown, saved_values, shown
from guard.core.config import load_config, user_config_path


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"config": None, "store": None, "state_dir": None, "port": None,
                                 "json": False, "save": False, **kw})


def test_values_are_said_as_the_config_file_spells_them():
    assert shown(None) == "not set"
    assert shown(True) == "true" and shown(False) == "false"
    assert shown({}) == "none" and shown({"vault": "DEBUG"}) == "vault: DEBUG"
    assert shown(5050) == "5050"


def test_a_store_from_the_daemon_says_how_to_make_it_permanent():
    assert "guardctl config --save" in origin_shown("store", "the running daemon (pid 7)")
    assert origin_shown("server.port", "default") == "default"


def test_config_prints_no_python_spellings(no_config_file, capsys, monkeypatch):
    monkeypatch.setattr(common, "running_daemon",
                        lambda state_dir: RunningDaemon(7, "/data/mlruns", 5077, None))
    assert config_cmd.run(args()) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "True" not in out and "(none)" not in out
    assert "# config file: none found (defaults and flags, and the running daemon)" in out
    assert "/data/mlruns" in out and "the running daemon (pid 7)" in out
    assert "make it permanent: `guardctl config --save`" in out


def test_save_writes_the_user_config_file_once(no_config_file, new_store, capsys):
    assert config_cmd.run(args(store=str(new_store), port=5077, save=True)) == 0
    path = user_config_path()
    assert yaml.safe_load(path.read_text()) == {"store": str(new_store),
                                                "server": {"port": 5077}}
    cfg = load_config()
    assert cfg.store == new_store and cfg.server.port == 5077
    assert config_cmd.run(args(store=str(new_store), save=True)) == 1  # a file is in use now
    assert "nothing was saved" in capsys.readouterr().err


def test_save_refuses_a_folder_that_is_not_a_store(no_config_file, tmp_path):
    assert config_cmd.run(args(store=str(tmp_path / "nope"), save=True)) == 2
    assert not user_config_path().exists()


def test_saved_values_leave_out_defaults(no_config_file, tmp_path):
    cfg = load_config(None, {"store": str(tmp_path / "s")})
    assert saved_values(cfg) == {"store": str(tmp_path / "s")}
