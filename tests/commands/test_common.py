"""Where the commands' configuration comes from: flags, the config file, and when neither names
a store, the daemon running with this state folder (issue 16: the quickstart writes no config)."""

from __future__ import annotations

import argparse

from guard.commands import common
from guard.commands.common import RunningDaemon, config_from, daemon_overrides, daemon_pid_of
from guard.core.config import load_config


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"config": None, "store": None, "state_dir": None,
                                 "port": None, **kw})


DAEMON = RunningDaemon(pid=4242, store="/data/mlruns", port=5077, config_file=None)
NO_FLAGS = {"store": None, "server.port": None, "state_dir": None}


def test_the_daemon_fills_in_a_store_nothing_names(no_config_file):
    cfg = load_config(None, NO_FLAGS)
    out = daemon_overrides(cfg, NO_FLAGS, DAEMON)
    assert out is not None
    assert out["store"] == "/data/mlruns" and out["server.port"] == 5077
    assert out["state_dir"] == str(cfg.state_dir)


def test_a_port_flag_wins_over_the_daemons_port(no_config_file):
    flags = {**NO_FLAGS, "server.port": 6000}
    out = daemon_overrides(load_config(None, flags), flags, DAEMON)
    assert out is not None and out["server.port"] == 6000


def test_a_named_store_or_no_daemon_leaves_the_configuration_alone(no_config_file, tmp_path):
    flags = {**NO_FLAGS, "store": str(tmp_path / "s")}
    assert daemon_overrides(load_config(None, flags), flags, DAEMON) is None
    assert daemon_overrides(load_config(None, NO_FLAGS), NO_FLAGS, None) is None


def test_config_from_takes_store_and_port_from_the_running_daemon(no_config_file, monkeypatch):
    monkeypatch.setattr(common, "running_daemon", lambda state_dir: DAEMON)
    cfg = config_from(args())
    assert str(cfg.store) == "/data/mlruns" and cfg.server.port == 5077
    assert cfg.origins["store"] == "the running daemon (pid 4242)"
    assert cfg.origins["server.port"] == "the running daemon (pid 4242)"
    assert cfg.origins["state_dir"] == "default"
    assert daemon_pid_of(cfg) == 4242


def test_config_from_with_a_store_flag_ignores_the_daemon(no_config_file, monkeypatch, tmp_path):
    monkeypatch.setattr(common, "running_daemon", lambda state_dir: DAEMON)
    cfg = config_from(args(store=str(tmp_path / "other")))
    assert cfg.store == tmp_path / "other" and cfg.server.port == 5050
    assert daemon_pid_of(cfg) is None


def test_config_from_reads_the_daemons_own_config_file(no_config_file, monkeypatch, tmp_path):
    file = tmp_path / "service.yaml"
    file.write_text("store: /data/mlruns\nserver:\n  port: 5077\nlocks:\n  settle: 3\n")
    monkeypatch.setattr(common, "running_daemon", lambda state_dir: RunningDaemon(
        4242, "/data/mlruns", 5077, str(file)))
    cfg = config_from(args())
    assert cfg.file == file and cfg.locks.settle == 3 and cfg.server.port == 5077
    assert cfg.origins["locks.settle"] == f"{file} (the running daemon's config file)"
    assert daemon_pid_of(cfg) is None  # the store is in a file: nothing to make permanent


def test_no_daemon_and_no_store_still_says_how_to_name_one(no_config_file, monkeypatch):
    monkeypatch.setattr(common, "running_daemon", lambda state_dir: None)
    cfg = config_from(args())
    assert cfg.store is None and daemon_pid_of(cfg) is None


def test_run_says_how_to_make_a_flag_only_store_permanent(no_config_file, tmp_path):
    from guard.commands.run import permanence_hint

    cfg = load_config(None, {"store": str(tmp_path / "s")})
    hint = permanence_hint(cfg, True)
    assert hint is not None and f"guardctl config --save --store {tmp_path / 's'}" in hint
    assert permanence_hint(cfg, False) is None  # not a store: saving it would not help
    file = tmp_path / "g.yaml"
    file.write_text(f"store: {tmp_path / 's'}\n")
    assert permanence_hint(load_config(str(file)), True) is None
