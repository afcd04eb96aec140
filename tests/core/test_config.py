"""load_config: lookup order, flag overrides, origins and every kind of refusal.

The user's real ~/.config and /etc are never consulted: the user and system config paths are
redirected under tmp_path and every call passes an explicit `env`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import guard.core.config as gc
from guard.core.config import ENV_CONFIG, Config, ConfigError, load_config


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real config files, a predictable default state_dir."""
    user = tmp_path / "xdg-config" / "mlflow-guard" / "config.yaml"
    system = tmp_path / "etc" / "mlflow-guard" / "config.yaml"
    monkeypatch.setattr(gc, "user_config_path", lambda: user)
    monkeypatch.setattr(gc, "system_config_path", lambda: system)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "xdg-state"))
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    return user, system


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args, **kwargs) -> str:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


# --- defaults ---------------------------------------------------------------------------------

def test_no_file_anywhere_gives_the_defaults(tmp_path):
    cfg = load_config(env={})
    assert isinstance(cfg, Config)
    assert cfg.file is None
    assert cfg.store is None
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.port == 5050
    assert cfg.server.workers == 1
    assert cfg.server.health_failures == 3
    assert cfg.restart.backoff_initial == 1.0
    assert cfg.restart.backoff_max == 60.0
    assert cfg.restart.crash_loop_count == 5
    assert cfg.log.level == "INFO"
    assert cfg.state_dir == tmp_path / "xdg-state" / "mlflow-guard"
    assert set(cfg.origins) == {f.key for f in gc.FIELDS}
    assert set(cfg.origins.values()) == {"default"}


def test_default_host_id_is_a_valid_host_id():
    cfg = load_config(env={})
    assert gc.HOST_ID_RE.match(cfg.host_id), cfg.host_id


def test_require_store_without_store_explains_how_to_set_it():
    cfg = load_config(env={})
    with pytest.raises(ConfigError) as info:
        cfg.require_store()
    assert "no store configured" in str(info.value)
    assert "--store" in str(info.value)


def test_values_is_a_flat_view_with_paths_as_strings(tmp_path):
    store = tmp_path / "mlruns"
    cfg = load_config(overrides={"store": str(store)}, env={})
    values = cfg.values()
    assert values["store"] == str(store)
    assert values["server.port"] == 5050
    assert values["log.level"] == "INFO"
    assert list(values) == [f.key for f in gc.FIELDS]


# --- lookup order -----------------------------------------------------------------------------

def test_system_config_is_used_when_nothing_else_exists(isolated):
    user, system = isolated
    write(system, "server:\n  port: 6001\n")
    cfg = load_config(env={})
    assert cfg.server.port == 6001
    assert cfg.file == system
    assert cfg.origins["server.port"] == f"{system} (system config)"


def test_user_config_beats_system_config(isolated):
    user, system = isolated
    write(system, "server:\n  port: 6001\n")
    write(user, "server:\n  port: 6002\n")
    cfg = load_config(env={})
    assert cfg.server.port == 6002
    assert cfg.file == user
    assert cfg.origins["server.port"] == f"{user} (user config)"


def test_env_config_beats_user_config(isolated, tmp_path):
    user, system = isolated
    write(system, "server:\n  port: 6001\n")
    write(user, "server:\n  port: 6002\n")
    envfile = write(tmp_path / "env.yaml", "server:\n  port: 6003\n")
    cfg = load_config(env={ENV_CONFIG: str(envfile)})
    assert cfg.server.port == 6003
    assert cfg.file == envfile
    assert cfg.origins["server.port"] == f"{envfile} (${ENV_CONFIG})"


def test_explicit_config_beats_env_config(isolated, tmp_path):
    user, _ = isolated
    write(user, "server:\n  port: 6002\n")
    envfile = write(tmp_path / "env.yaml", "server:\n  port: 6003\n")
    explicit = write(tmp_path / "explicit.yaml", "server:\n  port: 6004\n")
    cfg = load_config(str(explicit), env={ENV_CONFIG: str(envfile)})
    assert cfg.server.port == 6004
    assert cfg.file == explicit
    assert cfg.origins["server.port"] == f"{explicit} (--config)"


def test_empty_env_variable_is_ignored(isolated):
    user, _ = isolated
    write(user, "server:\n  port: 6002\n")
    cfg = load_config(env={ENV_CONFIG: ""})
    assert cfg.server.port == 6002
    assert cfg.file == user


def test_missing_explicit_config_is_an_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    msg = config_error(str(missing))
    assert str(missing) in msg
    assert "--config" in msg
    assert "does not exist" in msg


def test_missing_explicit_config_is_an_error_even_when_env_file_exists(tmp_path):
    envfile = write(tmp_path / "env.yaml", "server:\n  port: 6003\n")
    missing = tmp_path / "nope.yaml"
    msg = config_error(str(missing), env={ENV_CONFIG: str(envfile)})
    assert str(missing) in msg
    assert "--config" in msg


def test_missing_env_config_is_an_error_naming_the_path_and_variable(isolated, tmp_path):
    user, _ = isolated
    write(user, "server:\n  port: 6002\n")  # must not silently fall back to this
    missing = tmp_path / "gone.yaml"
    msg = config_error(env={ENV_CONFIG: str(missing)})
    assert str(missing) in msg
    assert ENV_CONFIG in msg
    assert "does not exist" in msg


def test_explicit_config_path_that_is_a_folder_is_refused(tmp_path):
    msg = config_error(str(tmp_path))
    assert str(tmp_path) in msg
    assert "--config" in msg


def test_explicit_config_path_expands_tilde(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    path = write(home / "guard.yaml", "server:\n  port: 6010\n")
    cfg = load_config("~/guard.yaml", env={})
    assert cfg.server.port == 6010
    assert cfg.file == path


# --- flags and origins ------------------------------------------------------------------------

def test_flags_override_file_values_and_origins_say_where_each_value_came_from(tmp_path):
    store = tmp_path / "mlruns"
    path = write(tmp_path / "c.yaml",
                 f"store: {store}\nserver:\n  port: 6000\n  workers: 2\n"
                 "restart:\n  backoff_max: 30\n")
    cfg = load_config(str(path), overrides={"server.port": 7000, "server.workers": None,
                                            "restart.backoff_initial": 0.5}, env={})
    assert cfg.server.port == 7000
    assert cfg.origins["server.port"] == "flag --port"
    assert cfg.server.workers == 2  # a None override means "flag not given"
    assert cfg.origins["server.workers"] == f"{path} (--config)"
    assert cfg.restart.backoff_max == 30.0
    assert isinstance(cfg.restart.backoff_max, float)
    assert cfg.origins["restart.backoff_max"] == f"{path} (--config)"
    assert cfg.restart.backoff_initial == 0.5
    assert cfg.origins["restart.backoff_initial"] == "flag --backoff-initial"
    assert cfg.store == store
    assert cfg.origins["store"] == f"{path} (--config)"
    assert cfg.origins["server.host"] == "default"
    assert cfg.server.host == "127.0.0.1"


def test_flag_names_in_origins_use_dashes(tmp_path):
    cfg = load_config(overrides={"host_id": "lab-pc", "state_dir": str(tmp_path / "st")},
                      env={})
    assert cfg.host_id == "lab-pc"
    assert cfg.origins["host_id"] == "flag --host-id"
    assert cfg.state_dir == tmp_path / "st"
    assert cfg.origins["state_dir"] == "flag --state-dir"


def test_bad_flag_value_is_an_error_naming_the_flag():
    msg = config_error(overrides={"server.port": 0})
    assert "'server.port'" in msg
    assert "flag --port" in msg
    assert "between 1 and 65535" in msg


# --- unknown keys -----------------------------------------------------------------------------

def test_unknown_top_level_key_suggests_close_match(tmp_path):
    path = write(tmp_path / "c.yaml", "sever:\n  port: 6000\n")
    msg = config_error(str(path))
    assert "unknown key 'sever'" in msg
    assert str(path) in msg
    assert "did you mean 'server'?" in msg


def test_unknown_section_key_suggests_close_match(tmp_path):
    path = write(tmp_path / "c.yaml", "server:\n  prot: 6000\n")
    msg = config_error(str(path))
    assert "unknown key 'server.prot'" in msg
    assert str(path) in msg
    assert "did you mean 'server.port'?" in msg


def test_unknown_key_without_close_match_lists_known_keys(tmp_path):
    path = write(tmp_path / "c.yaml", "zzzzzz: 1\n")
    msg = config_error(str(path))
    assert "unknown key 'zzzzzz'" in msg
    assert "known keys:" in msg
    for key in ("store", "server", "restart", "log", "host_id", "state_dir"):
        assert key in msg


def test_misspelt_top_level_field_suggests_it(tmp_path):
    path = write(tmp_path / "c.yaml", "stor: /x\n")
    msg = config_error(str(path))
    assert "unknown key 'stor'" in msg
    assert "did you mean 'store'?" in msg


# --- wrong types and ranges -------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, fragments",
    [
        ("server:\n  port: abc\n", ["'server.port'", "whole number", "'abc'"]),
        ("server:\n  port: \"5050\"\n", ["'server.port'", "whole number", "'5050'"]),
        ("server:\n  port: 70000\n", ["'server.port'", "70000", "between 1 and 65535"]),
        ("server:\n  port: 0\n", ["'server.port'", "between 1 and 65535"]),
        ("server:\n  port: true\n", ["'server.port'", "whole number", "True"]),
        ("server:\n  port: 5050.5\n", ["'server.port'", "whole number", "5050.5"]),
        ("server:\n  workers: true\n", ["'server.workers'", "whole number", "True"]),
        ("server:\n  workers: 0\n", ["'server.workers'", "is 0", "at least 1"]),
        ("server:\n  startup_timeout: soon\n", ["'server.startup_timeout'", "must be a number"]),
        ("server:\n  health_interval: 0.1\n", ["'server.health_interval'", "at least 0.2"]),
        ("restart:\n  crash_loop_count: 0\n", ["'restart.crash_loop_count'", "at least 1"]),
        ("restart:\n  backoff_max: false\n", ["'restart.backoff_max'", "must be a number"]),
        ("log:\n  max_bytes: 10\n", ["'log.max_bytes'", "at least 1024"]),
        ("server:\n  host: \"\"\n", ["'server.host'", "non-empty string"]),
        ("server:\n  host: 42\n", ["'server.host'", "non-empty string", "42"]),
        ("server: 5050\n", ["'server'", "must be a mapping", "5050"]),
        ("store: 5\n", ["'store'", "must be a folder path", "5"]),
    ],
)
def test_wrong_types_and_ranges_are_refused_naming_key_and_file(tmp_path, text, fragments):
    path = write(tmp_path / "c.yaml", text)
    msg = config_error(str(path))
    for fragment in fragments:
        assert fragment in msg
    assert str(path) in msg


def test_int_is_accepted_for_a_float_key_and_converted(tmp_path):
    path = write(tmp_path / "c.yaml", "server:\n  startup_timeout: 30\n")
    cfg = load_config(str(path), env={})
    assert cfg.server.startup_timeout == 30.0
    assert isinstance(cfg.server.startup_timeout, float)


def test_empty_section_keeps_the_defaults(tmp_path):
    path = write(tmp_path / "c.yaml", "server:\nlog:\n")
    cfg = load_config(str(path), env={})
    assert cfg.server.port == 5050
    assert cfg.log.level == "INFO"
    assert cfg.origins["server.port"] == "default"


# --- file shape -------------------------------------------------------------------------------

def test_malformed_yaml_error_mentions_file_and_line(tmp_path):
    path = write(tmp_path / "c.yaml",
                 "server:\n  port: 5050\n  host: [1, 2\nlog:\n  level: INFO\n")
    msg = config_error(str(path))
    assert str(path) in msg
    assert "not valid YAML" in msg
    assert "line 4" in msg


def test_tab_indentation_error_mentions_line(tmp_path):
    path = write(tmp_path / "c.yaml", "store: /x\n\tserver: 1\n")
    msg = config_error(str(path))
    assert "not valid YAML at line 2" in msg


def test_top_level_list_is_refused(tmp_path):
    path = write(tmp_path / "c.yaml", "- store\n- server\n")
    msg = config_error(str(path))
    assert str(path) in msg
    assert "must be a mapping" in msg
    assert "list" in msg


def test_top_level_scalar_is_refused(tmp_path):
    path = write(tmp_path / "c.yaml", "just a string\n")
    msg = config_error(str(path))
    assert "must be a mapping" in msg
    assert "str" in msg


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_means_defaults(tmp_path, text):
    path = write(tmp_path / "c.yaml", text)
    cfg = load_config(str(path), env={})
    assert cfg.file == path
    assert cfg.server.port == 5050
    assert cfg.store is None
    assert set(cfg.origins.values()) == {"default"}


def test_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"store: /\xff\xfe\n")
    msg = config_error(str(path))
    assert "cannot read config file" in msg
    assert str(path) in msg


# --- paths ------------------------------------------------------------------------------------

def test_relative_store_in_file_is_refused(tmp_path):
    path = write(tmp_path / "c.yaml", "store: mlruns\n")
    msg = config_error(str(path))
    assert "'store'" in msg
    assert "relative path 'mlruns'" in msg
    assert "absolute path" in msg
    assert str(path) in msg


def test_relative_state_dir_in_file_is_refused(tmp_path):
    path = write(tmp_path / "c.yaml", "state_dir: ./state\n")
    msg = config_error(str(path))
    assert "'state_dir'" in msg
    assert "relative path" in msg


def test_relative_store_flag_resolves_against_cwd(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_config(overrides={"store": "mlruns"}, env={})
    assert cfg.store == work / "mlruns"
    assert cfg.store.is_absolute()
    assert cfg.origins["store"] == "flag --store"


def test_relative_store_flag_is_normalised(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_config(overrides={"store": "./a/../mlruns/"}, env={})
    assert cfg.store == work / "mlruns"


def test_absolute_store_in_file_is_normalised(tmp_path):
    path = write(tmp_path / "c.yaml", f"store: {tmp_path}/x/../mlruns/\n")
    cfg = load_config(str(path), env={})
    assert cfg.store == tmp_path / "mlruns"


def test_tilde_expands_in_file_and_flag(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    path = write(tmp_path / "c.yaml", "store: ~/Sync/mlruns\n")
    cfg = load_config(str(path), env={})
    assert cfg.store == home / "Sync" / "mlruns"
    cfg = load_config(overrides={"store": "~/Other/mlruns"}, env={})
    assert cfg.store == home / "Other" / "mlruns"


def test_state_dir_inside_store_is_refused(tmp_path):
    store = tmp_path / "mlruns"
    path = write(tmp_path / "c.yaml", f"store: {store}\nstate_dir: {store}/.guard\n")
    msg = config_error(str(path))
    assert "'state_dir'" in msg
    assert "inside the store" in msg
    assert str(store / ".guard") in msg


@pytest.mark.parametrize("vault", ["{store}/vault", "{store}", "{parent}"])
def test_a_vault_overlapping_the_store_is_refused(tmp_path, vault):
    """The vault is this machine's unsynced copy: inside the store it would sync (and hold
    the store twice); around it, it would hold itself."""
    store = tmp_path / "sync" / "mlruns"
    where = vault.format(store=store, parent=tmp_path / "sync")
    path = write(tmp_path / "c.yaml", f"store: {store}\nvault:\n  path: {where}\n")
    msg = config_error(str(path))
    assert "the vault" in msg and "overlaps the store" in msg and "vault.path" in msg


def test_the_vault_defaults_to_the_state_folder(tmp_path):
    cfg = load_config(overrides={"store": str(tmp_path / "mlruns"),
                                 "state_dir": str(tmp_path / "state")}, env={})
    assert cfg.vault_root == tmp_path / "state" / "vault"
    assert cfg.vault.policy == "restore" and cfg.gc.model_deletions == "allow"


def test_state_dir_equal_to_store_is_refused(tmp_path):
    store = tmp_path / "mlruns"
    msg = config_error(overrides={"store": str(store), "state_dir": str(store)})
    assert "'state_dir'" in msg
    assert "inside the store" in msg


def test_store_inside_state_dir_is_refused(tmp_path):
    state = tmp_path / "state"
    msg = config_error(overrides={"store": str(state / "mlruns"), "state_dir": str(state)})
    assert "'store'" in msg
    assert "inside the state folder" in msg


def test_sibling_folder_with_common_prefix_is_not_inside(tmp_path):
    # /x/mlruns-state is not inside /x/mlruns
    store = tmp_path / "mlruns"
    cfg = load_config(overrides={"store": str(store), "state_dir": str(tmp_path / "mlruns-state")},
                      env={})
    assert cfg.store == store
    assert cfg.state_dir == tmp_path / "mlruns-state"


# --- host_id and log level --------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../x", "a b", ".hidden", "-dash", "x/y", "a" * 65])
def test_bad_host_id_is_refused(tmp_path, bad):
    path = write(tmp_path / "c.yaml", f"host_id: '{bad}'\n")
    msg = config_error(str(path))
    assert "'host_id'" in msg
    assert repr(bad) in msg
    assert "letters, digits" in msg


@pytest.mark.parametrize("good", ["lab-pc", "LAB_PC.01", "a", "a" * 64])
def test_good_host_id_is_accepted(tmp_path, good):
    path = write(tmp_path / "c.yaml", f"host_id: '{good}'\n")
    assert load_config(str(path), env={}).host_id == good


def test_bad_host_id_flag_is_refused():
    msg = config_error(overrides={"host_id": "a b"})
    assert "'host_id'" in msg
    assert "flag --host-id" in msg


@pytest.mark.parametrize("given, expected", [("debug", "DEBUG"), ("Warning", "WARNING"),
                                             ("ERROR", "ERROR"), ("info", "INFO")])
def test_log_level_is_case_insensitive(tmp_path, given, expected):
    path = write(tmp_path / "c.yaml", f"log:\n  level: {given}\n")
    assert load_config(str(path), env={}).log.level == expected


def test_unknown_log_level_lists_the_choices(tmp_path):
    path = write(tmp_path / "c.yaml", "log:\n  level: verbose\n")
    msg = config_error(str(path))
    assert "'log.level'" in msg
    assert "'verbose'" in msg
    assert "DEBUG, INFO, WARNING, ERROR" in msg


def test_full_file_round_trip(tmp_path):
    store = tmp_path / "mlruns"
    state = tmp_path / "state"
    path = write(tmp_path / "c.yaml", (
        f"store: {store}\n"
        "host_id: lab-pc\n"
        f"state_dir: {state}\n"
        "server:\n  host: 0.0.0.0\n  expose: true\n  auth: basic\n  port: 5001\n  workers: 4\n"
        "  health_failures: 5\n"
        "restart:\n  backoff_initial: 2\n  backoff_max: 120\n  crash_loop_count: 3\n"
        "  crash_loop_window: 600\n  stable_after: 30\n"
        "log:\n  level: warning\n  max_bytes: 2048\n  backups: 0\n"
    ))
    cfg = load_config(str(path), env={})
    assert cfg.require_store() == store
    assert cfg.host_id == "lab-pc"
    assert cfg.state_dir == state
    assert (cfg.server.host, cfg.server.port, cfg.server.workers) == ("0.0.0.0", 5001, 4)
    assert cfg.server.health_failures == 5
    assert cfg.restart.backoff_initial == 2.0
    assert cfg.restart.backoff_max == 120.0
    assert cfg.restart.crash_loop_count == 3
    assert cfg.restart.crash_loop_window == 600.0
    assert cfg.restart.stable_after == 30.0
    assert (cfg.log.level, cfg.log.max_bytes, cfg.log.backups) == ("WARNING", 2048, 0)
    assert os.fspath(cfg.file) == os.fspath(path)


# --- `key: null` and the shipped example ------------------------------------------------------

def test_null_value_means_the_default(tmp_path):
    path = write(tmp_path / "c.yaml",
                 "store: null\nhost_id: null\nstate_dir: null\nserver:\n  port: null\n"
                 "log:\n  level: ~\n")
    cfg = load_config(str(path), env={})
    defaults = load_config(env={})
    assert cfg.store is None
    assert cfg.host_id == defaults.host_id
    assert cfg.state_dir == tmp_path / "xdg-state" / "mlflow-guard"
    assert cfg.server.port == 5050
    assert cfg.log.level == "INFO"
    assert cfg.origins["host_id"] == "default"
    assert cfg.origins["server.port"] == "default"


EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def test_example_config_loads_and_shows_the_defaults():
    assert EXAMPLE.is_file(), f"{EXAMPLE} is missing"
    cfg = load_config(str(EXAMPLE), env={})
    defaults = load_config(env={})
    assert cfg.values() == defaults.values()


def test_example_config_documents_every_key():
    text = EXAMPLE.read_text(encoding="utf-8")
    data = gc.flatten(gc._read_yaml(EXAMPLE), EXAMPLE)
    assert set(data) == {f.key for f in gc.FIELDS}
    for f in gc.FIELDS:
        assert f.key.split(".")[-1] + ":" in text


@pytest.mark.parametrize("text, names, fix", [
    ("locks:\n  ttl: 20\n  renew_every: 10\n  settle: 15\n",
     ["'locks.ttl' = 20", "'locks.renew_every' = 10", "'locks.settle' = 15"],
     "raise locks.ttl above renew_every + settle"),
    ("locks:\n  ttl: 40\n  renew_every: 5\n  settle: 15\n  skew: 5\n",
     ["'locks.ttl' = 40", "'locks.skew' = 5"], "above 2 * settle + 2 * skew"),
    ("peers:\n  stale_after: 10\n  heartbeat_interval: 5\n",
     ["'peers.stale_after' = 10", "'locks.settle' = 15 (default)"],
     "raise peers.stale_after to at least"),
    ("locks:\n  timeout: 120\n", ["'locks.timeout' = 120", "MLFLOW_HTTP_REQUEST_TIMEOUT"],
     "set locks.timeout below 120"),
    ("locks:\n  timeout: 29\n", ["'locks.timeout' = 29", "'locks.settle' = 15 (default)"],
     "raise locks.timeout to at least 2 * settle"),
])
def test_lock_timings_that_break_the_lease_protocol_are_refused(tmp_path, text, names, fix):
    path = write(tmp_path / "c.yaml", text)
    message = config_error(str(path))
    for name in names:
        assert name in message
    assert fix in message and str(path) in message


def test_the_lock_timeout_stays_below_the_mlflow_clients(tmp_path):
    assert load_config(None, env={}).locks.timeout == 60.0
    path = write(tmp_path / "c.yaml", "locks:\n  timeout: 119\n")
    assert load_config(str(path), env={}).locks.timeout == 119.0


def test_lock_backend_is_checked(tmp_path):
    path = write(tmp_path / "c.yaml", "locks:\n  backend: nfs\n")
    assert "use one of lease, os" in config_error(str(path))
    path = write(tmp_path / "d.yaml", "locks:\n  backend: os\n  settle: 1\n")
    assert load_config(str(path), env={}).locks.backend == "os"


# --- keys declared on the dataclasses; choices as enums ---------------------------------------

def test_every_field_of_a_section_dataclass_is_a_declared_key():
    """A field added to a section without `key(...)` metadata would be missing from FIELDS
    (so from files, flags and `guardctl config`)."""
    from dataclasses import fields

    assert gc.SECTION_TYPES["server"] is gc.ServerConfig and gc.SECTIONS == set(gc.SECTION_TYPES)
    for name, cls in gc.SECTION_TYPES.items():
        for f in fields(cls):
            assert f"{name}.{f.name}" in gc.FIELD_BY_KEY
    assert [f.key for f in gc.FIELDS][:3] == ["store", "host_id", "state_dir"]


@pytest.mark.parametrize("key, enum, words", [
    ("rewrite.watch", gc.WatchMode, "auto, events, polling"),
    ("locks.backend", gc.LockBackend, "lease, os"),
    ("vault.policy", gc.VaultPolicy, "restore, alert"),
    ("gc.model_deletions", gc.ModelDeletions, "allow, refuse"),
])
def test_a_choice_key_offers_the_values_of_its_enum(tmp_path, key, enum, words):
    section, name = key.split(".")
    assert gc.FIELD_BY_KEY[key].choices == tuple(enum)
    path = write(tmp_path / "c.yaml", f"{section}:\n  {name}: nope\n")
    assert config_error(str(path)) == f"'{key}' (in {path}) is 'nope'; use one of {words}"


def test_choices_load_as_enum_members_that_read_as_their_strings(tmp_path):
    import json

    path = write(tmp_path / "c.yaml", "rewrite:\n  watch: polling\nlocks:\n  backend: os\n"
                 "  settle: 1\nvault:\n  policy: alert\ngc:\n  model_deletions: refuse\n")
    cfg = load_config(str(path), env={})
    assert cfg.rewrite.watch is gc.WatchMode.POLLING
    assert cfg.locks.backend is gc.LockBackend.OS
    assert cfg.vault.policy is gc.VaultPolicy.ALERT
    assert cfg.gc.model_deletions is gc.ModelDeletions.REFUSE
    assert load_config(env={}).rewrite.watch is gc.WatchMode.AUTO  # defaults too
    watch = cfg.values()["rewrite.watch"]
    # what `guardctl config` prints and writes, and what the status documents hold
    assert (str(watch), f"{watch!s:<9}|", f"{watch}", json.dumps(watch)) == \
        ("polling", "polling  |", "polling", '"polling"')
    assert watch == "polling" and {"polling": 1}[watch] == 1


# --- non-finite numbers -------------------------------------------------------------------------

FLOAT_KEYS = [f.key for f in gc._declared(Config) if f.kind == "float"]


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", ".NaN", "+.Inf"])
@pytest.mark.parametrize("dotted", FLOAT_KEYS)
def test_non_finite_numbers_are_refused_for_every_float_key(tmp_path, dotted, text):
    section, _, name = dotted.rpartition(".")
    yaml_text = f"{section}:\n  {name}: {text}\n" if section else f"{name}: {text}\n"
    path = write(tmp_path / "guard.yaml", yaml_text)
    msg = config_error(str(path))
    assert "not a finite number" in msg
    assert f"'{dotted}'" in msg and str(path) in msg


def test_float_keys_are_found():
    assert "server.health_timeout" in FLOAT_KEYS and "gc.retention_days" in FLOAT_KEYS


# --- exposure: beyond loopback only with server.expose and server.auth ------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST.", "::1",
                                  "[::1]", "::ffff:127.0.0.1"])
def test_loopback_hosts(host):
    assert gc.is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "10.0.0.1", "fe80::1",
                                  "my-laptop", "localhost.example.org", "127.1", "128.0.0.1"])
def test_hosts_other_machines_may_reach(host):
    assert not gc.is_loopback(host)


def test_exposure_needs_both_auth_and_the_explicit_switch():
    none, basic = gc.ServerAuth.NONE, gc.ServerAuth.BASIC
    assert gc.exposure_problem("127.0.0.1", False, none) is None
    assert gc.exposure_problem("localhost", True, basic) is None
    assert gc.exposure_problem("0.0.0.0", True, basic) is None
    both = gc.exposure_problem("0.0.0.0", False, none)
    assert both is not None and "every network interface" in both
    assert "server.auth: basic and server.expose: true" in both and "127.0.0.1" in both
    no_auth = gc.exposure_problem("192.168.1.5", True, none)
    assert no_auth is not None and "server.auth is none" in no_auth and "delete" in no_auth
    assert "server.expose: true" not in no_auth
    no_switch = gc.exposure_problem("192.168.1.5", False, basic)
    assert no_switch is not None and "server.expose is not true" in no_switch
    assert "server.auth: basic" not in no_switch


def test_a_wildcard_host_without_auth_is_a_config_error_naming_where(tmp_path):
    path = write(tmp_path / "g.yaml", "server:\n  host: 0.0.0.0\n  expose: true\n")
    msg = config_error(str(path))
    assert "'server.host' is '0.0.0.0'" in msg and "server.auth is none" in msg
    assert f"'server.host' ({path} (--config))" in msg and "'server.auth' (default)" in msg


def test_an_exposed_host_with_auth_and_the_switch_loads(tmp_path):
    path = write(tmp_path / "g.yaml", "server:\n  host: 0.0.0.0\n  expose: true\n"
                                      "  auth: basic\n")
    cfg = load_config(str(path), env={})
    assert (cfg.server.host, cfg.server.expose, cfg.server.auth) == ("0.0.0.0", True, "basic")
    assert cfg.server.auth is gc.ServerAuth.BASIC and cfg.server.auth_config is None


def test_defaults_serve_this_machine_without_auth():
    cfg = load_config(env={})
    assert (cfg.server.expose, cfg.server.auth, cfg.server.auth_config) == (False, "none", None)


def test_server_auth_is_a_choice(tmp_path):
    path = write(tmp_path / "g.yaml", "server:\n  auth: ldap\n")
    assert "use one of none, basic" in config_error(str(path))


INI = "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///a.db\n"


def test_auth_config_problems():
    assert gc.auth_config_problem(None, "bundled", {}) is None
    assert gc.auth_config_problem(INI, "f.ini", {}) is None
    assert gc.auth_config_problem(INI + "admin_password = s3cret-Pass!\n", "f.ini", {}) is None
    legacy = gc.auth_config_problem(INI + "admin_password = password1234\n", "f.ini", {})
    assert legacy is not None and "f.ini" in legacy and "public" in legacy
    from_env = gc.auth_config_problem(None, "bundled",
                                      {gc.AUTH_PASSWORD_ENV: "password1234"})
    assert from_env is not None and gc.AUTH_PASSWORD_ENV in from_env
    # the environment wins over the file, as in MLflow
    assert gc.auth_config_problem(INI + "admin_password = password1234\n", "f.ini",
                                  {gc.AUTH_PASSWORD_ENV: "another-one-9"}) is None
    missing = gc.auth_config_problem("[mlflow]\ndatabase_uri = x\n", "f.ini", {})
    assert missing is not None and "default_permission" in missing
    broken = gc.auth_config_problem("no section here", "f.ini", {})
    assert broken is not None and "not an ini file" in broken


def test_auth_config_is_read_and_checked_only_with_basic_auth(tmp_path):
    ini = write(tmp_path / "auth.ini", INI + "admin_password = password1234\n")
    path = write(tmp_path / "g.yaml", f"server:\n  auth: basic\n  auth_config: {ini}\n")
    assert "password1234" in config_error(str(path))
    write(path, f"server:\n  auth: none\n  auth_config: {ini}\n")
    assert load_config(str(path), env={}).server.auth_config == ini
    write(path, f"server:\n  auth: basic\n  auth_config: {tmp_path / 'missing.ini'}\n")
    assert "cannot be read" in config_error(str(path))
